"""DVC stage `tune@<method>`: the method's Optuna studies: `tune.replicates` studies per loss the
comparison trains under (`compare.loss`, then with `compare.tuned` each of
`compare.tuned_losses`), each of `tune.trials` trials like every method's and with its own
sampler seed, one after the other.

The first trial of every study is the default settings; the others are drawn by the study's
multivariate TPE sampler (:mod:`smec.training.tuning`: learning rate, epochs per module, start,
and the method's own knobs). Each trial trains the method on the training queries for every seed
of `tune.seeds` as one stack (seeds no test model trains), under the comparison's widths and
model selection and the study's loss; its value is the held-out training queries' nDCG@10, mean
over `compare.dims` and the seeds. The test queries are never read: only `compare` scores them.
Each trial is an MLflow run nested under this stage's run (its settings as params, its value,
the trial's number, state, loss and replicate as tags).

The studies live in `--study` (sqlite), or in `$SMEC_TUNE_STORAGE` (the team's PostgreSQL):
then any number of workers run them at once, each the same command on its own clone, worker w
with `SMEC_TUNE_WORKER=w`; each waits for the others' last trials and writes the same outputs.
A study's name digests this stage's code, inputs and params, so a changed setting starts a new
study, and a stopped one resumes with the trials it finished (those its stopped workers left
running on this host are marked failed and run again; the live workers' run on).

Writes every trial of every study (`--trials`: loss, replicate, number, state, value, its SD
over the seeds, best value so far, settings) and each study's best settings with its summary
(`--best`'s `studies`, what `compare@<method>` reads).
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
COMPARE_READ = ("dims", "loss", "epochs", "inits", "select")  # what a trial reads of `compare`


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


def study_name(p: params.Params, one, paths) -> str:
    """`<method>-<loss>-r<replicate>-<digest of this stage's code, inputs and the params a trial
    reads>`."""
    sections = ("data", "train", "methods", "tune")
    settings = {"method": one.method.name, "loss": one.loss, "replicate": one.replicate}
    settings |= {s: getattr(p, s).model_dump() for s in sections}
    settings["compare"] = p.compare.model_dump(include=set(COMPARE_READ))
    key = provenance.stage_key(SCRIPT, _bootstrap.CHECKOUT, paths, settings)
    return f"{one.method.name}-{one.loss}-r{one.replicate}-{key}"


@dataclass(frozen=True)
class Study:
    """One study of the method: its loss and replicate."""

    method: Method
    loss: str
    replicate: int

    @property
    def label(self) -> str:
        return f"{self.loss} r{self.replicate}"


def objective(p: params.Params, study: Study, data, folder: Path):
    """A trial's evaluation: every seed of `tune.seeds` trained under its settings as one stack
    inside its nested MLflow run; the mean of their held-out nDCG@10."""
    method, loss = study.method, study.loss
    common = {
        **tracking.common_tags(p, _bootstrap.CHECKOUT),
        tracking.TAG_STAGE: f"tune@{method.name}",
        tracking.TAG_ROLE: "trial",
        "method": method.name,
        "tune.loss": loss,
        "tune.replicate": str(study.replicate),
    }

    def evaluate(trial) -> float:
        settings = tuning.suggest(trial, method, p.tune, p.methods, data.n_items)
        ps = tuning.train_params(p, p.tune.seeds[0], settings, loss)
        members = tuple(loop.Member(seed, settings.lr) for seed in p.tune.seeds)
        job = loop.Job(
            method, ps.train, settings.methods, p.compare.select == "best_heldout", members
        )
        name = f"{loss}-r{study.replicate}-trial-{trial.number}.pt"
        ckpt = Checkpoint(folder / name, trial.study.study_name)
        tags = {**common, "optuna.study": trial.study.study_name}
        stage = mlflow.active_run().info  # the trial's run goes under it, in its experiment
        with mlflow.start_run(
            run_name=f"{study.label} trial {trial.number}",
            experiment_id=stage.experiment_id,
            nested=True,
            tags=tags,
        ) as run:
            mlflow.log_params(settings.as_dict(method) | {"trial": trial.number})
            result = loop.fit(job, data, ckpt)
            per_seed = tuning.heldout_value(method, result.modules, p.compare.dims, data)
            value = sum(per_seed) / len(per_seed)
            trial.set_user_attr(tuning.PER_SEED, per_seed)
            mlflow.log_metric("heldout.ndcg_at_10", value)
            mlflow.log_metric("heldout.ndcg_at_10.seed_sd", tuning.seed_sd(per_seed))
            mlflow.set_tag("optuna.trial", str(trial.number))
            tracking.log_steps_to(run.info.run_id, history_steps(result))
        ckpt.clear()
        return value

    return evaluate


def history_steps(result: loop.Result) -> list:
    """The first seed's per-epoch history as MLflow steps (what a trial's charts show)."""
    first = result.member(result.history["seed"].iloc[0])
    return [(row["global_epoch"], loop.metric_names(row)) for row in first.to_dict("records")]


def study(p: params.Params, one: Study, stage_in, data, worker: Worker) -> tuple:
    """Run this worker's share of one study, wait for the others'; returns its trials table
    and best-settings summary."""
    method = one.method
    name = study_name(p, one, stage_in.paths)
    seed = tuning.sampler_seed(p.tune, one.replicate, worker.index)
    first = tuning.default_values(p, method, data.n_items)
    opened = tuning.open_study(worker.url, name, seed, p.tune, first)
    if orphans := tuning.fail_orphans(opened, worker.url):
        print(
            f"tune@{method.name}: {orphans} {one.label} trial(s) left running by a stopped "
            "worker failed, to run again"
        )
    evaluate = objective(p, one, data, worker.checkpoints)
    ran = tuning.work(opened, p.tune.trials, worker.url, evaluate)
    tuning.wait_for_others(opened)
    table = tuning.trials_table(opened, method)
    table.insert(1, "loss", one.loss)
    table.insert(2, "replicate", one.replicate)
    _, best = tuning.best_settings(opened, method, p.methods)
    steps = tuning.gradient_steps(method, p, data, best.pop("epochs_trained"))
    best = {"loss": one.loss, "replicate": one.replicate, **best, "gradient_steps": steps}
    print(
        f"tune@{method.name}: worker {worker.index} ran {ran} of {best['trials']} {one.label} "
        f"trials; best held-out nDCG@10 {best['value']:.4f} (trial {best['best_trial']}; "
        f"defaults {best['default_value']:.4f}): {best['settings']}"
    )
    return table, best


def run(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=inputs.OPTIONS, outputs=OUTPUTS)
    ap.add_argument("--method", required=True, choices=methods.LEARNED)
    ap.add_argument("--study", type=Path, required=True, help="the study's sqlite file (default)")
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of a trial's state")
    args = ap.parse_args(argv)
    p, method = (
        params.load(args.params, args.cell, artifacts.width(args.queries_emb)),
        methods.learned(args.method),
    )
    tracking.use_store()
    stage_in = inputs.read(args)
    data = training_data.train_data(stage_in, resolve(p.train.device))
    tables, bests, tags = [], [], {"method": method.name}
    worker = Worker(
        tuning.storage_url(args.study), int(os.environ.get(WORKER_ENV, "0")), args.checkpoints
    )
    with tracking.stage_run(p, f"tune@{method.name}", _bootstrap.CHECKOUT, tags=tags):
        for loss in p.compare.studied_losses:
            for replicate in range(p.tune.replicates):
                table, best = study(p, Study(method, loss, replicate), stage_in, data, worker)
                tables.append(table)
                bests.append(best)
                mlflow.log_metric(f"best.{loss}.heldout.ndcg_at_10", best["value"], step=replicate)
        mlflow.set_tags({"optuna.storage": worker.storage})
    best = {"method": method.name, "studies": bests}
    artifacts.write_csv(args.trials, pd.concat(tables, ignore_index=True))
    artifacts.write_json(args.best, best)
    return best


if __name__ == "__main__":
    main(run)
