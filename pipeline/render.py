"""DVC stage `render`: the seed figure of gradient statistics, the convergence panels and
retrieval per dimension, as PNG and SVG.

The figures are logged to an MLflow run of their own, tagged with the training runs whose
numbers they show (each training run is tagged back with `report_run`); every PNG names in its
metadata that run, the training runs and the commit. `<out>/run.json` names the run too.
"""

import json
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import artifacts, figures, params, tracking
from smec.cli import main, parser

INPUTS = ("table", "claims", "retrieval", "mrl-history", "smrl-history", "mrl-run", "smrl-run")


def run(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=INPUTS, outputs=("out",))
    args = ap.parse_args(argv)
    p = params.load(args.params)
    runs = {}
    for method, path in (("mrl", args.mrl_run), ("smrl", args.smrl_run)):
        runs[method] = artifacts.read_json(path)["run_id"]
        tracking.check_run_exists(runs[method], path)
    grad_table = artifacts.read_csv(args.table)
    history = pd.concat(
        [artifacts.read_csv(args.mrl_history), artifacts.read_csv(args.smrl_history)]
    )
    retrieval_table = artifacts.read_csv(args.retrieval)
    commit = tracking.commit(_bootstrap.CHECKOUT)
    caption = figures.caption(p, commit)
    out: Path = args.out
    with tracking.stage_run(
        p, "render", _bootstrap.CHECKOUT, tags={f"train_run.{m}": r for m, r in runs.items()}
    ) as report:
        meta = {
            "Title": "MRL vs SMRL gradient statistics",
            "smec.commit": commit,
            "smec.render_run": report.info.run_id,
            "smec.train_runs": json.dumps(runs, sort_keys=True),
            "smec.tracking_uri": tracking.tracking_uri(),
        }
        dims = p.train.method_dims
        paths = figures.save(
            figures.gradient_stats(grad_table, p.render.epochs, dims, caption),
            out / "gradient_stats",
            meta,
        )
        paths += figures.save(figures.convergence(history, caption), out / "convergence", meta)
        paths += figures.save(figures.retrieval(retrieval_table, caption), out / "retrieval", meta)
        for path in [*paths, args.table, args.claims]:
            mlflow.log_artifact(str(path))
    client = mlflow.MlflowClient(tracking.tracking_uri())
    for run_id in runs.values():
        client.set_tag(run_id, "report_run", report.info.run_id)
    artifacts.write_json(
        out / "run.json", {**tracking.run_info(report), "train_runs": runs, "commit": commit}
    )
    print(f"MLflow report run {report.info.run_id} (training runs {runs})")
    return {
        "report_run": report.info.run_id,
        "train_runs": runs,
        "figures": [str(x) for x in paths],
    }


if __name__ == "__main__":
    main(run)
