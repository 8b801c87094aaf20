"""DVC stage `render`: the figures, as PNG and SVG.

From the default run: the seed figure of gradient statistics, the convergence panels and
retrieval per dimension. From the sweep's intervals over seeds: the seed figure per loss, the
update sizes under Adam and SGD, and how far each series falls per loss and rank-loss scale.
From the comparison: nDCG@10 per width for every arm, quality against bytes, and each method's
study (`--trials`): its best held-out value against the trial number.

The figures are logged to an MLflow run of their own, tagged with the training runs whose
numbers they show (each training run is tagged back with `report_run`); every PNG names in its
metadata that run, the training runs and the commit. `<out>/run.json` names the run too.
"""

import json
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import params
from smec.data import artifacts
from smec.infra import tracking
from smec.infra.cli import main, parser
from smec.measure import gradstats
from smec.report import figures

INPUTS = (
    "table",
    "claims",
    "retrieval",
    "mrl-history",
    "smrl-history",
    "mrl-run",
    "smrl-run",
    "intervals",
    "arm-claims",
    "comparison",
    "queries-emb",
)


def arm_panels(report: dict) -> dict[str, list[tuple[str, str]]]:
    """Which sweep arm goes in which figure, from the settings each arm records."""
    arms = report["arms"]
    order = ("rank", "ce", "mse")
    per_loss = {k: report["per_loss"][k] for k in sorted(report["per_loss"], key=order.index)}
    rank = per_loss.get("rank")
    settings = lambda arm: arms[arm]["settings"]  # noqa: E731
    sgd = [a for a in arms if settings(a)["loss"] == "rank" and settings(a)["optimizer"] == "sgd"]
    scaled = sorted(
        (a for a in arms if settings(a)["loss"] == "rank" and settings(a)["optimizer"] == "adam"),
        key=lambda a: settings(a)["rank_scale"],
    )
    return {
        "losses": [(loss, arm) for loss, arm in per_loss.items()],
        "updates": [("rank loss, Adam", rank)] + [("rank loss, SGD", a) for a in sgd[:1]],
        "falls": [(f"rank σ={settings(a)['rank_scale']:g}", a) for a in scaled]
        + [(loss, arm) for loss, arm in per_loss.items() if loss != "rank"],
    }


def arm_titles(c: params.Compare) -> dict[str, str]:
    """The comparison figure's panels: each start, the tuned settings, each other loss at the
    default settings and at its own study's best."""
    titles = {
        init: f"every module starts {init} ({'headline' if k == 0 else 'ablation'})"
        for k, init in enumerate(c.inits)
    }
    if c.tuned:
        titles["tuned"] = "each method at its studies' best settings (mean over replicates)"
    titles |= {loss: f"{loss} loss, start {c.inits[0]}, default settings" for loss in c.losses}
    if c.tuned:
        titles |= {
            f"{loss}_tuned": f"{loss} loss, its own studies' best" for loss in c.tuned_losses
        }
    return titles


def sweep_figures(p, args, dims: list[int], out: Path, meta: dict, commit: str) -> list[Path]:
    long = artifacts.read_csv(args.intervals)
    report = artifacts.read_json(args.arm_claims)
    panels = arm_panels(report)
    caption = figures.sweep_caption(p, report, commit)
    epochs = p.render.epochs
    paths = figures.save(
        figures.gradient_stats_ci(long, panels["losses"], epochs, dims, caption),
        out / "gradient_stats_ci",
        meta,
    )
    if len(panels["updates"]) > 1:
        paths += figures.save(
            figures.gradient_stats_ci(
                long,
                panels["updates"],
                epochs,
                dims,
                caption,
                bars=("avg_update_low", "avg_update_high"),
                var=None,
                title="Does the gradient imbalance reach the weights? ‖W_after − W_before‖ per row",
            ),
            out / "update_size",
            meta,
        )
    paths += figures.save(
        figures.falls(long, panels["falls"], p.gradstats.claim3_min_fall, caption),
        out / "falls",
        meta,
    )
    return paths


def run(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=INPUTS, outputs=("out",), many=("trials",))
    args = ap.parse_args(argv)
    p = params.load(args.params, width=artifacts.width(args.queries_emb))
    tracking.use_store()
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
        variance = gradstats.VARIANCES[p.gradstats.variance]
        paths += figures.save(
            figures.convergence(history, caption, variance), out / "convergence", meta
        )
        paths += figures.save(figures.retrieval(retrieval_table, caption), out / "retrieval", meta)
        paths += sweep_figures(p, args, dims, out, meta, commit)
        compare_caption = figures.compare_caption(p, commit)
        compared = artifacts.read_csv(args.comparison)
        paths += figures.save(
            figures.comparison(compared, arm_titles(p.compare), compare_caption),
            out / "comparison",
            meta,
        )
        shares = {params.label_arm(f): f for f in p.compare.label_fractions}
        shares["tuned" if p.compare.tuned else p.compare.inits[0]] = 1.0  # all the queries
        paths += figures.save(
            figures.label_scarcity(compared, shares, p.compare.dims[1], compare_caption),
            out / "label_scarcity",
            meta,
        )
        paths += figures.save(
            figures.quality_bytes(retrieval_table, compare_caption), out / "quality_bytes", meta
        )
        trials = pd.concat([artifacts.read_csv(t) for t in args.trials], ignore_index=True)
        paths += figures.save(figures.tuning(trials, compare_caption), out / "tuning", meta)
        for path in [
            *paths,
            args.table,
            args.claims,
            args.intervals,
            args.arm_claims,
            args.comparison,
            *args.trials,
        ]:
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
