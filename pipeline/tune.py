"""DVC stage `tune@<method>`: the method's Optuna studies, `tune.trials` trials each like every
method's, one study per loss the comparison trains under (`compare.loss`, then with
`compare.tuned` each of `compare.losses`), one after the other.

Each trial trains the method once (seed `tune.seed`) on the training queries with settings the
study's TPE sampler draws (:mod:`smec.training.tuning`: learning rate, epochs per module, start,
and the method's own knobs), under the comparison's widths and model selection and the study's
loss; its value is the held-out training queries' nDCG@10, mean over `compare.dims`. The test
queries are never read: only `compare` scores them. Each trial is an MLflow run nested under
this stage's run (its settings as params, its per-epoch history, its value, the trial's number,
state and loss as tags).

The study lives in `--study` (sqlite), or in `$SMEC_TUNE_STORAGE` (the team's PostgreSQL): then
any number of workers run one study at once, each the same command on its own clone, worker w
with `SMEC_TUNE_WORKER=w` (its sampler seeded `tune.seed + w`); each waits for the others' last
trials and writes the same outputs. The study's name digests this stage's code, inputs and
params, so a changed setting starts a new study, and a stopped one resumes with the trials it
finished (with sqlite, those it left running are marked failed and run again).

Writes every trial of every study (`--trials`: loss, number, state, value, best value so far,
settings) and the best settings with the study's summary (`--best`, what `compare@<method>`
reads): the headline loss's study at the top level, each other loss's under `losses`.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import params
from smec.data import artifacts, inputs
from smec.infra import provenance, tracking
from smec.infra.cli import main, parser
from smec.infra.device import resolve
from smec.model import methods
from smec.model.methods.base import Method
from smec.training import data as training_data
from smec.training import loop, tuning
from smec.training.checkpoint import Checkpoint

SCRIPT = Path(__file__).resolve()
OUTPUTS = ("trials", "best")
WORKER_ENV = "SMEC_TUNE_WORKER"


@dataclass(frozen=True)
class Worker:
    """Where this run's studies live (`url`), which of their workers it is, and the folder of
    its trials' checkpoints."""

    url: str
    index: int
    checkpoints: Path

    @property
    def storage(self) -> str:
        return self.url.split("://")[0]


def study_name(p: params.Params, method: Method, loss: str, paths) -> str:
    """`<method>-<loss>-<digest of this stage's code, inputs and the params a trial reads>`."""
    sections = ("data", "train", "methods", "compare", "tune")
    settings = {"method": method.name, "loss": loss}
    settings |= {s: getattr(p, s).model_dump() for s in sections}
    key = provenance.stage_key(SCRIPT, _bootstrap.CHECKOUT, paths, settings)
    return f"{method.name}-{loss}-{key}"


def objective(p: params.Params, method: Method, loss: str, data, folder: Path):
    """A trial's evaluation under `loss`: train under its settings inside its nested MLflow
    run."""
    common = {
        **tracking.common_tags(p, _bootstrap.CHECKOUT),
        tracking.TAG_STAGE: f"tune@{method.name}",
        tracking.TAG_ROLE: "trial",
        "method": method.name,
        "tune.loss": loss,
    }

    def evaluate(trial) -> float:
        settings = tuning.suggest(trial, method, p.tune, p.methods)
        ps = tuning.train_params(p, p.tune.seed, settings, loss)
        job = loop.Job(method, ps.train, settings.methods, p.compare.select == "best_heldout")
        ckpt = Checkpoint(folder / f"{loss}-trial-{trial.number}.pt", trial.study.study_name)
        tags = {**common, "optuna.study": trial.study.study_name}
        stage = mlflow.active_run().info  # the trial's run goes under it, in its experiment
        with mlflow.start_run(
            run_name=f"{loss} trial {trial.number}",
            experiment_id=stage.experiment_id,
            nested=True,
            tags=tags,
        ) as run:
            mlflow.log_params(settings.as_dict(method) | {"trial": trial.number})

            def log(row: dict) -> None:
                step = (row["global_epoch"], loop.metric_names(row))
                tracking.log_steps_to(run.info.run_id, [step])

            result = loop.fit(job, data, ckpt, on_epoch=log)
            value = tuning.heldout_value(method, result.modules, p.compare.dims, data)[0]
            mlflow.log_metric("heldout.ndcg_at_10", value)
            mlflow.set_tag("optuna.trial", str(trial.number))
        ckpt.clear()
        return value

    return evaluate


def study(p: params.Params, method: Method, loss: str, stage_in, data, worker: Worker) -> tuple:
    """Run this worker's share of the method's study under `loss`, wait for the others';
    returns its trials table and best-settings summary."""
    name = study_name(p, method, loss, stage_in.paths)
    opened = tuning.open_study(worker.url, name, p.tune, worker.index)
    if worker.storage == "sqlite" and (orphans := tuning.fail_orphans(opened)):
        print(f"tune@{method.name}: {orphans} {loss} trial(s) left running by a stopped run failed")
    evaluate = objective(p, method, loss, data, worker.checkpoints)
    ran = tuning.work(opened, p.tune.trials, worker.url, evaluate)
    tuning.wait_for_others(opened)
    table = tuning.trials_table(opened, method)
    table.insert(1, "loss", loss)
    _, best = tuning.best_settings(opened, method, p.methods)
    best = {**best, "loss": loss}
    print(
        f"tune@{method.name}: worker {worker.index} ran {ran} of "
        f"{best['trials']} {loss} trials; best held-out nDCG@10 {best['value']:.4f} "
        f"(trial {best['best_trial']}): {best['settings']}"
    )
    return table, best


def run(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=inputs.OPTIONS, outputs=OUTPUTS)
    ap.add_argument("--method", required=True, choices=methods.LEARNED)
    ap.add_argument("--study", type=Path, required=True, help="the study's sqlite file (default)")
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of a trial's state")
    args = ap.parse_args(argv)
    p, method = params.load(args.params), methods.learned(args.method)
    tracking.use_store()
    stage_in = inputs.read(args)
    data = training_data.train_data(stage_in, resolve(p.train.device))
    tables, bests, tags = [], {}, {"method": method.name}
    worker = Worker(
        tuning.storage_url(args.study), int(os.environ.get(WORKER_ENV, "0")), args.checkpoints
    )
    with tracking.stage_run(p, f"tune@{method.name}", _bootstrap.CHECKOUT, tags=tags):
        for loss in p.compare.studied_losses:
            table, bests[loss] = study(p, method, loss, stage_in, data, worker)
            tables.append(table)
            prefix = "best" if loss == p.compare.loss else f"best.{loss}"
            mlflow.log_metric(f"{prefix}.heldout.ndcg_at_10", bests[loss]["value"])
        headline = bests.pop(p.compare.loss)
        mlflow.set_tags({"optuna.study": headline["study"], "optuna.storage": worker.storage})
    best = headline | ({"losses": bests} if bests else {})
    artifacts.write_csv(args.trials, pd.concat(tables, ignore_index=True))
    artifacts.write_json(args.best, best)
    return best


if __name__ == "__main__":
    main(run)
