"""DVC stage `comparison`: every method at every width, with intervals and paired tests.

Reads each method's per-query test scores (`compare@<method>`), adds the untrained baselines
`truncate` and `pca` (fitted on the corpus) at the same widths, and writes
reports/comparison.csv: per method and width, nDCG@10's mean over seeds with its 95% t
interval, Recall@100 and MRR@10 (means), and against `mrl` at the same width the mean paired
difference of per-query nDCG@10 (seeds averaged per query) with its two-sided sign-flip
randomisation p-value over the test queries. Also the step-1 gradient statistics of every
method with intervals (reports/comparison_gradstats.csv) and the per-query table.
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

OUTPUTS = ("table", "queries-table", "gradstats", "metrics")


def baselines(stage_in: inputs.StageInputs, dims: list[int], device) -> pd.DataFrame:
    """Per-query scores of every learning-free baseline of the registry at every width."""
    c = torch.from_numpy(stage_in.corpus_emb).to(device)
    test = retrieval.TestSet.of(stage_in.ds, torch.from_numpy(stage_in.queries_emb).to(device))
    return pd.concat(
        [
            test.per_query(zq, zc).assign(**labels, seed=0)
            for labels, zq, zc in methods.baselines(test.queries, c, dims)
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
    trained = pd.concat([artifacts.read_parquet(s) for s in args.scores], ignore_index=True)
    untrained = baselines(inputs.read(args), p.compare.dims, resolve(p.evaluate.device))
    scores = pd.concat([trained, untrained])
    table = comparison.table(scores, reference="mrl", draws=p.compare.permutations)
    per_query = comparison.per_query_means(scores)
    stats = pd.concat([artifacts.read_parquet(s) for s in args.stats], ignore_index=True)
    grad = comparison.gradstats_table(stats, p.render.epochs)
    nested = comparison.metrics(table)
    artifacts.write_csv(args.table, table, float_format="%.6g")
    artifacts.write_csv(args.queries_table, per_query, float_format="%.6f")
    artifacts.write_csv(args.gradstats, grad)
    artifacts.write_json(args.metrics, nested)
    with tracking.stage_run(p, "comparison", _bootstrap.CHECKOUT) as run:
        flat = retrieval.flat_metrics(nested)
        mlflow.log_metrics(flat)
        tracking.log_to_parent(run, flat)
        for path in (args.table, args.gradstats):
            mlflow.log_artifact(str(path))
    print(comparison.summary(table))
    return table


if __name__ == "__main__":
    main(run)
