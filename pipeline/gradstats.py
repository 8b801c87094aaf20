"""DVC stage `gradstats`: per-epoch gradient statistics of both methods and the seed's claims.

Reads both gradient records; writes the figure's table (one row per method and epoch of the
head of width method_dims[0]), its per-epoch curves for `dvc plots`, the three claims and flat
DVC metrics. A failed claim is a result, not an error: the stage still succeeds.
"""

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import params
from smec.data import artifacts
from smec.infra import tracking
from smec.infra.cli import main, parser
from smec.measure import claims, gradstats

INPUTS = ("mrl-gradients", "smrl-gradients", "queries-emb")
OUTPUTS = ("table", "curves", "claims", "metrics")


def run(argv: list[str] | None = None) -> dict:
    args = parser(__doc__, _bootstrap.CHECKOUT, inputs=INPUTS, outputs=OUTPUTS).parse_args(argv)
    p = params.load(args.params, args.cell, artifacts.width(args.queries_emb))
    tracking.use_store()
    record = pd.concat(
        [artifacts.read_parquet(args.mrl_gradients), artifacts.read_parquet(args.smrl_gradients)],
        ignore_index=True,
    )
    table = gradstats.figure_table(record, p.train.method_dims, p.gradstats.variance)
    g = p.gradstats
    report = claims.check(
        table, p.render.epochs, g.claim1_mrl_min_ratio, g.claim1_smrl_max_ratio, g.claim3_min_fall
    )
    report["variance_definition"] = g.variance
    flat = claims.metrics(report)
    artifacts.write_csv(args.table, table)
    artifacts.write_csv(args.curves, gradstats.wide(table))
    artifacts.write_json(args.claims, report)
    artifacts.write_json(args.metrics, flat)
    with tracking.stage_run(p, "gradstats", _bootstrap.CHECKOUT) as run:
        mlflow.log_metrics({k: float(v) for k, v in flat.items()})
        tracking.log_to_parent(run, flat)
        for path in (args.table, args.claims):
            mlflow.log_artifact(str(path))
    print(claims.summary(report))
    return report


if __name__ == "__main__":
    main(run)
