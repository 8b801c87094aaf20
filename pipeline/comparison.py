"""DVC stage `comparison`: every method at every width, with intervals, calibrated tests and
verdicts.

Reads each method's per-query test scores (`compare@<method>`), adds the registry's
learning-free baselines (fitted on the corpus) at the same widths, and writes
reports/comparison.csv: per arm (`compare.arms`), method and width, nDCG@10's mean with its 95%
t interval (over seeds, or over study replicates' means for an arm trained at the studies'
best settings), the replicates' spread, Recall@100 and MRR@10, and the pooled difference from
`mrl`. `--pairs` holds every contrast the results state (:func:`smec.measure.comparison.family`)
with its interval, calibrated p-value, Holm over the one family and each replicate's outcome;
`--verdicts` the verdict of each (an outcome where 4 of 5 replicates agree, else undecided);
`--calibration` the A/A check of the tests on these scores (the `aa` arm). Also the first
module's gradient statistics and ADS diagnostics with intervals (`--gradstats`), each ADS
method's selection at the end of its first step (`--selection`), and the per-query table.
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

OUTPUTS = (
    "table",
    "pairs",
    "verdicts",
    "calibration",
    "queries-table",
    "gradstats",
    "selection",
    "metrics",
)


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
    p = params.load(args.params, args.cell, artifacts.width(args.queries_emb))
    tracking.use_store()
    c = p.compare
    trained = artifacts.read_parquets(args.scores, "scores.parquet")
    untrained = baselines(inputs.read(args), c, resolve(p.evaluate.device))
    scores = pd.concat([trained, comparison.with_starts(untrained, c.arms)], ignore_index=True)
    stated = scores[scores["init"] != comparison.CALIBRATION_ARM]
    table = comparison.table(stated, reference="mrl")
    stats = artifacts.read_parquets(args.stats, "stats.parquet")
    nested = comparison.metrics(table)
    artifacts.write_csv(args.table, table, float_format="%.6g")
    labels = [params.label_arm(f) for f in c.label_fractions]
    full = "tuned" if c.tuned else c.inits[0]  # the label curve's 100% point
    pairs = comparison.pairs(stated, table, labels, full)
    artifacts.write_csv(args.pairs, pairs, float_format="%.6g")
    artifacts.write_csv(args.verdicts, comparison.verdicts(pairs), float_format="%.6g")
    calibration = comparison.calibration(scores, c.inits[0], c.bootstrap)
    artifacts.write_csv(args.calibration, calibration, float_format="%.6g")
    artifacts.write_csv(args.queries_table, comparison.per_query_means(stated), float_format="%.6f")
    artifacts.write_csv(args.gradstats, comparison.gradstats_table(stats, p.render.epochs))
    artifacts.write_csv(args.selection, comparison.selection_table(stats))
    artifacts.write_json(args.metrics, nested)
    with tracking.stage_run(p, "comparison", _bootstrap.CHECKOUT) as run:
        flat = retrieval.flat_metrics(nested)
        mlflow.log_metrics(flat)
        tracking.log_to_parent(run, flat)
        for path in (args.table, args.pairs, args.verdicts, args.calibration, args.gradstats):
            mlflow.log_artifact(str(path))
    print(comparison.summary(table))
    return table


if __name__ == "__main__":
    main(run)
