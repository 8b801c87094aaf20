"""DVC stage `aggregate`: means and 95% intervals over seeds of every sweep arm, and the seed
figure's claims decided on those intervals.

Reads each arm's per-training statistics and test scores; writes the long table of intervals
(`loss` is the arm, `method` is `mrl`, `smrl` or `mrl/smrl` for a ratio of the two, `quantity`
a column of reports/gradstats.csv, a `fall_<column>` from the first to the last plotted epoch,
or a `*_over_*` ratio), the claims per arm, flat DVC metrics, and the test scores' intervals
with the paired MRL − SMRL difference per width.
"""

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import params
from smec.data import artifacts
from smec.infra import tracking
from smec.infra.cli import main, parser
from smec.measure import claims, intervals

OUTPUTS = ("table", "claims", "metrics", "scores")


def run(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__, _bootstrap.CHECKOUT, outputs=OUTPUTS, many=("stats", "retrieval"))
    args = ap.parse_args(argv)
    p = params.load(args.params)
    tracking.use_store()
    stats = pd.concat([artifacts.read_parquet(s) for s in args.stats], ignore_index=True)
    scores = pd.concat([artifacts.read_csv(s) for s in args.retrieval], ignore_index=True)
    epochs, g = p.render.epochs, p.gradstats
    table = intervals.seed_table(stats, epochs)
    report = claims.check_arms(stats, epochs, g)
    flat = claims.arm_metrics(report)
    score_table = intervals.score_table(scores)
    artifacts.write_csv(args.table, table)
    artifacts.write_json(args.claims, report)
    artifacts.write_json(args.metrics, flat)
    artifacts.write_csv(args.scores, score_table, float_format="%.6f")
    with tracking.stage_run(p, "aggregate", _bootstrap.CHECKOUT) as run:
        metrics = {f"{arm}.{k}": float(v) for arm, m in flat.items() for k, v in m.items()}
        mlflow.log_metrics(metrics)
        tracking.log_to_parent(run, metrics)
        for path in (args.table, args.claims, args.scores):
            mlflow.log_artifact(str(path))
    print(claims.arms_summary(report))
    return report


if __name__ == "__main__":
    main(run)
