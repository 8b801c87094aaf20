"""Equal tuning budgets: Optuna studies per method, their trials shared by any number of workers.

A trial's settings (:class:`Settings`) are the knobs every method shares, the learning rate
(log-uniform over `tune.lr`), the epochs per trained module (over `tune.epochs`) and the start
(`identity` or `random`), and the method's own (its `Method.knobs`, `methods.<name>` params; a
count of training items ends at the items there are). The first trial of every study is the
default settings (:func:`default_values`), so a study can only keep or beat them by its own
objective. A trial trains every seed of `tune.seeds` as one stack and scores the mean over them
(:func:`heldout_value`): none of them trains a test model.

The sampler is Optuna's multivariate TPE, seeded, so one worker draws the same trials from the
same params; replicate r's worker w draws from `tune.seed + 100 r + w` (:func:`sampler_seed`),
with the constant liar, so workers do not all try the same point while the others' trials run.

The budget is exact however many workers share a study (in several processes or on several
machines): a worker asks for a trial only while it holds the storage's lock (PostgreSQL's
advisory lock, held by the server for every machine; with sqlite, a lock file beside the
database), and only while the study's completed and running trials are fewer than the budget.
A trial that fails is marked so and does not count, so another takes its place. Each trial
carries its worker (host and process id): a trial left running by a worker that is gone (on
this host) is failed when a worker opens the study, while the live workers' trials run on.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from smec import params
from smec.errors import SmecError
from smec.model.methods.base import Knob, Method
from smec.params import Methods, Tune
from smec.training.data import TrainData, steps_per_epoch

STORAGE_ENV = "SMEC_TUNE_STORAGE"  # the team's storage URL (PostgreSQL), else a sqlite file
INITS = ("identity", "random")
COUNTED = ("COMPLETE", "RUNNING", "WAITING")  # what uses up the budget
PER_SEED = "per_seed"  # a trial's user attribute: held-out nDCG@10 of each of its seeds
OWNER = "worker"  # a trial's user attribute: `<host>:<pid>` of the worker running it


@dataclass(frozen=True)
class Settings:
    """What one trial (or the tuned arm of the comparison) trains with."""

    lr: float
    epochs: int
    init: str
    methods: Methods

    def as_dict(self, method: Method) -> dict:
        """The settings as plain values: the shared knobs, then the method's own."""
        own = {k.name: getattr(self.methods, k.name) for k in method.knobs}
        return {"lr": self.lr, "epochs": self.epochs, "init": self.init, **own}

    @classmethod
    def of(cls, values: dict, base: Methods) -> Settings:
        """Settings from `as_dict`'s values, the method options not in them from `base`."""
        shared = ("lr", "epochs", "init")
        own = {k: v for k, v in values.items() if k not in shared}
        return cls(values["lr"], values["epochs"], values["init"], base.model_copy(update=own))


def defaults(p: params.Params, init: str) -> Settings:
    """The untuned settings of the comparison at start `init`: params.yaml's."""
    return Settings(p.train.lr, p.compare.epochs, init, p.methods)


def train_params(
    p: params.Params, seed: int, settings: Settings, loss: str | None = None
) -> params.Params:
    """The comparison's training params for one seed under `settings`: its widths, loss
    (`compare.loss` unless `loss` names an arm's other one), learning rate, start, budget and
    selection (the same for a trial as for the comparison)."""
    changes = {
        "method_dims": p.compare.dims,
        "loss": loss or p.compare.loss,
        "lr": settings.lr,
        "epochs": settings.epochs,
        "seed": seed,
        "init": settings.init,
        "heldout_eval": True,
        "mrl_weights": None,
        "smrl_step_epochs": None,
    }
    return params.with_train(p, changes, "compare", whole=False)


@torch.no_grad()
def heldout_value(method: Method, modules: list, dims: list[int], data: TrainData) -> list[float]:
    """Per member, nDCG@10 of the held-out training queries, mean over the widths `dims`: a
    trial's objective (the test queries are never read)."""
    per_width, queries = [], data.q[data.heldout]
    for d in dims:
        zq = method.embed_at(modules, dims, queries, d)
        zc = method.embed_at(modules, dims, data.c, d)
        per_width.append(data.heldout_set.score_members(zq, zc))
    return [sum(v) / len(v) for v in zip(*per_width, strict=True)]


def _suggest_knob(trial, knob: Knob, n_items: int) -> float | int:
    low, high = knob.bounds(n_items)
    if knob.integer:
        return trial.suggest_int(knob.name, int(low), int(high), log=knob.log)
    return trial.suggest_float(knob.name, low, high, log=knob.log)


def suggest(trial, method: Method, tune: Tune, base: Methods, n_items: int) -> Settings:
    """A trial's settings, drawn by the study's sampler from the shared space and the method's
    (`n_items`: the training items, where a per-item knob's range ends)."""
    values = {
        "lr": trial.suggest_float("lr", *tune.lr, log=True),
        "epochs": trial.suggest_int("epochs", *tune.epochs),
        "init": trial.suggest_categorical("init", INITS),
    }
    values |= {k.name: _suggest_knob(trial, k, n_items) for k in method.knobs}
    return Settings.of(values, base)


def default_values(p: params.Params, method: Method, n_items: int) -> dict:
    """The default settings as a trial's values (the headline start, `train.lr`,
    `compare.epochs`, `methods`): every study's first trial. A per-item knob's default beyond
    the items there are is the whole range's end, which trains the same; any other default
    outside its knob's range is an error."""
    values = {"lr": p.train.lr, "epochs": p.compare.epochs, "init": p.compare.inits[0]}
    if not p.tune.lr[0] <= p.train.lr <= p.tune.lr[1]:
        raise SmecError(
            f"tune.lr={p.tune.lr}: must contain the default train.lr={p.train.lr}; "
            "a study starts at the defaults"
        )
    for knob in method.knobs:
        low, high = knob.bounds(n_items)
        value = getattr(p.methods, knob.name)
        if knob.per_item:
            value = min(value, high)
        if not low <= value <= high:
            raise SmecError(
                f"methods.{knob.name}={value}: outside {method.name}'s search range "
                f"[{low:g}, {high:g}]; a study starts at the defaults"
            )
        values[knob.name] = value
    return values


def sampler_seed(tune: Tune, replicate: int, worker: int) -> int:
    """The TPE seed of one worker of one study replicate."""
    return tune.seed + 100 * replicate + worker


def gradient_steps(method: Method, p: params.Params, data: TrainData, epochs: int) -> int:
    """The optimiser steps one trial takes at `epochs` per module: modules × epochs × steps per
    epoch × the trial's seeds."""
    plan = method.plan(params.Train(method_dims=p.compare.dims), data.q.shape[1])
    per_epoch = steps_per_epoch(len(data.pairs), p.train.batch_size)
    return len(plan) * epochs * per_epoch * len(p.tune.seeds)


def storage_url(default: Path) -> str:
    """`$SMEC_TUNE_STORAGE` (the team's PostgreSQL), else the sqlite file `default`."""
    if url := os.environ.get(STORAGE_ENV):
        return url
    default.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{default.resolve()}"


def open_study(url: str, name: str, seed: int, tune: Tune, first: dict):
    """The study `name` in `url`, created (with the storage's tables) by whichever worker comes
    first, which queues `first` (the default settings) as its first trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=tune.startup, multivariate=True, constant_liar=True
    )
    with budget_lock(url, name):  # two workers creating the storage's tables at once collide
        study = optuna.create_study(
            storage=url, study_name=name, sampler=sampler, direction="maximize", load_if_exists=True
        )
        if not study.get_trials(deepcopy=False):
            study.enqueue_trial(first)
    return study


@contextlib.contextmanager
def budget_lock(url: str, name: str) -> Iterator[None]:
    """Held while a worker counts the study's trials and asks for one: one worker at a time."""
    if url.startswith("sqlite:///"):
        with open(f"{url.removeprefix('sqlite:///')}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield
        return
    import sqlalchemy

    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    engine.dispose()


def counted(study) -> int:
    """The trials that use up the budget: completed, running and waiting."""
    return sum(t.state.name in COUNTED for t in study.get_trials(deepcopy=False))


def next_trial(study, budget: int, url: str):
    """A new trial of the study, marked with this worker, or None once the budget is used up."""
    with budget_lock(url, study.study_name):
        if counted(study) >= budget:
            return None
        trial = study.ask()
        trial.set_user_attr(OWNER, f"{socket.gethostname()}:{os.getpid()}")
        return trial


def work(study, budget: int, url: str, evaluate: Callable[[object], float]) -> int:
    """Run trials of the study until its budget is used up; returns how many this worker ran.
    A trial whose evaluation raises is marked FAIL, then the error goes on."""
    import optuna

    ran = 0
    while (trial := next_trial(study, budget, url)) is not None:
        try:
            value = evaluate(trial)
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, value)
        ran += 1
    return ran


def orphaned(owner: str | None) -> bool:
    """Whether a running trial's worker is gone: it has none, or it ran on this host and its
    process has ended. (A worker on another host is taken to be alive.)"""
    if owner is None:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def fail_orphans(study, url: str) -> int:
    """Mark FAIL the trials left running by a stopped worker, so they run again; the trials of
    workers still running are left alone. Returns how many were failed."""
    import optuna

    with budget_lock(url, study.study_name):
        running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        orphans = [t for t in running if orphaned(t.user_attrs.get(OWNER))]
        for t in orphans:
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
    return len(orphans)


def wait_for_others(study, poll: float = 2.0) -> None:
    """Until no trial of the study is running (the other workers' last trials)."""
    while any(t.state.name == "RUNNING" for t in study.get_trials(deepcopy=False)):
        time.sleep(poll)


def trials_table(study, method: Method) -> pd.DataFrame:
    """One row per trial: its number, state, value, the best value so far, and its settings."""
    rows = []
    best = float("-inf")
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        value = t.value if t.state.name == "COMPLETE" else float("nan")
        best = max(best, value) if value == value else best
        knobs = ["lr", "epochs", "init", *(k.name for k in method.knobs)]
        rows.append(
            {
                "method": method.name,
                "trial": t.number,
                "state": t.state.name,
                "value": value,
                "value_sd": seed_sd(t.user_attrs.get(PER_SEED, [])),
                "best_so_far": best if best > float("-inf") else float("nan"),
                **{k: t.params.get(k) for k in knobs},
            }
        )
    return pd.DataFrame(rows)


def seed_sd(values: list[float]) -> float:
    """The SD over a trial's seeds of their held-out nDCG@10 (nan for fewer than two)."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean = sum(values) / n
    return (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5


def best_settings(study, method: Method, base: Methods) -> tuple[Settings, dict]:
    """The best completed trial's settings, and a summary of the study (for `best.json`): its
    best trial, and the first trial's (the defaults') value and SD over its seeds."""
    trials = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"),
        key=lambda t: t.number,
    )
    top = max(trials, key=lambda t: (t.value, -t.number))
    settings = Settings.of(top.params, base)
    first = trials[0]
    summary = {
        "method": method.name,
        "study": study.study_name,
        "trials": len(trials),
        "best_trial": top.number,
        "value": top.value,
        "settings": settings.as_dict(method),
        "default_value": first.value if first.number == 0 else None,
        "default_seed_sd": sd
        if (sd := seed_sd(first.user_attrs.get(PER_SEED, []))) == sd
        else None,
        "epochs_trained": sum(t.params["epochs"] for t in trials),
    }
    return settings, summary
