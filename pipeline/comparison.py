"""DVC stage `comparison`: every method at every width, with intervals and paired tests.

Reads each method's per-query test scores (`compare@<method>`), adds the registry's
learning-free baselines (fitted on the corpus) at the same widths, and writes
reports/comparison.csv: per start (`compare.inits`), method and width, nDCG@10's mean over
seeds with its 95% t interval, Recall@100 and MRR@10 (means), and against `mrl` at the same
start and width the mean paired difference of per-query nDCG@10 (seeds averaged per query)
with its two-sided sign-flip randomisation p-value over the test queries. `--pairs` holds every
difference the results state (:func:`smec.measure.comparison.family`). Also the first module's
gradient statistics and ADS diagnostics with intervals (`--gradstats`), each ADS method's
selection at the end of its first step (`--selection`), and the per-query table.
"""

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd
import torch

from smec import params
from smec.data import artifacts, inputs
from smec.infra import tracking
from smec.infra.cli import main, parser
from smec.infra.device import resolve
from smec.measure import comparison, retrieval
from smec.model import methods

OUTPUTS = ("table", "pairs", "queries-table", "gradstats", "selection", "metrics")


def baselines(stage_in: inputs.StageInputs, c: params.Compare, device) -> pd.DataFrame:
    """Per-query scores of every learning-free baseline of the registry at every width (a
    seeded one for every seed of the comparison)."""
    corpus = torch.from_numpy(stage_in.corpus_emb).to(device)
    test = retrieval.TestSet.of(stage_in.ds, torch.from_numpy(stage_in.queries_emb).to(device))
    return pd.concat(
        [
            test.per_query(zq, zc).assign(**labels)
            for labels, zq, zc in methods.baselines(test.queries, corpus, c.dims, c.seeds)
        ],
        ignore_index=True,
    )


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(
        __doc__,
        _bootstrap.CHECKOUT,
        inputs=inputs.OPTIONS,
        outputs=OUTPUTS,
        many=("scores", "stats"),
    )
    args = ap.parse_args(argv)
    p = params.load(args.params)
    tracking.use_store()
    c = p.compare
    trained = pd.concat([artifacts.read_parquet(s) for s in args.scores], ignore_index=True)
    untrained = baselines(inputs.read(args), c, resolve(p.evaluate.device))
    scores = pd.concat([trained, comparison.with_starts(untrained, c.arms)], ignore_index=True)
    table = comparison.table(scores, reference="mrl", draws=c.permutations)
    stats = pd.concat([artifacts.read_parquet(s) for s in args.stats], ignore_index=True)
    nested = comparison.metrics(table)
    artifacts.write_csv(args.table, table, float_format="%.6g")
    pairs = comparison.pairs(scores, table, draws=c.permutations, boot=c.bootstrap)
    artifacts.write_csv(args.pairs, pairs, float_format="%.6g")
    artifacts.write_csv(args.queries_table, comparison.per_query_means(scores), float_format="%.6f")
    artifacts.write_csv(args.gradstats, comparison.gradstats_table(stats, p.render.epochs))
    artifacts.write_csv(args.selection, comparison.selection_table(stats))
    artifacts.write_json(args.metrics, nested)
    with tracking.stage_run(p, "comparison", _bootstrap.CHECKOUT) as run:
        flat = retrieval.flat_metrics(nested)
        mlflow.log_metrics(flat)
        tracking.log_to_parent(run, flat)
        for path in (args.table, args.pairs, args.gradstats, args.selection):
            mlflow.log_artifact(str(path))
    print(comparison.summary(table))
    return table


if __name__ == "__main__":
    main(run)
