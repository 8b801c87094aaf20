"""One training of a stage, resumable and tracked: the helper `train`, `sweep` and `compare`
share.

A training trains S members at once (:mod:`smec.training.loop`); each member is its own
MLflow run (its own params: its seed, its learning rate), nested under the stage's pipeline
run. The training's checkpoint (keyed by the stage's code, inputs and settings) holds the run
ids, so a stopped training resumes into the same runs. Metrics are logged once: per epoch as
they come (`live`), or as one batch per run at the end (cheaper when a stage trains dozens of
models); a training that was finished before a stop is read back from its checkpoint and not
logged again. A run is RUNNING while its member trains, FAILED if the training stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from smec.infra import tracking
from smec.params import Params
from smec.training.checkpoint import Checkpoint
from smec.training.data import TrainData
from smec.training.loop import Job, Result, fit, metric_names


@dataclass(frozen=True)
class MemberRun:
    """One member's MLflow run: its full params and its label in the run name."""

    params: Params
    label: str = ""


@dataclass(frozen=True)
class Track:
    """How a stage tracks one training: its MLflow stage name, its members' runs, and tags."""

    stage: str
    checkout: Path
    runs: tuple[MemberRun, ...]
    tags: dict[str, str] = field(default_factory=dict)
    live: bool = False  # log each epoch's metrics as it ends (else one batch at the end)


@dataclass
class Fitted:
    """A finished training inside its MLflow runs; `metrics` (one dict per member) set by the
    stage are logged once when the block ends, with the history (unless live) and each step's
    kept epoch."""

    result: Result
    runs: list  # one MLflow run per member
    fresh: list[bool]  # nothing was logged to the run before (a new run, or one stopped early)
    metrics: list[dict[str, float]]


def _open(track: Track, run_ids: list[str | None]) -> list:
    """Each member's stage run, created (or found again) and left RUNNING."""
    runs = []
    for member, run_id in zip(track.runs, run_ids, strict=True):
        with tracking.stage_run(
            member.params, track.stage, track.checkout, run_id, track.tags, member.label
        ) as run:
            runs.append(run)
    return runs


@contextlib.contextmanager
def tracked_fit(job: Job, data: TrainData, ckpt: Checkpoint, track: Track) -> Iterator[Fitted]:
    """Train `job` (resuming from `ckpt`) inside its members' stage runs; yield the result to
    the stage, then log what was not logged before."""
    import mlflow

    client = mlflow.MlflowClient(tracking.tracking_uri())
    done = ckpt.load()
    run_ids = done.run_ids if done is not None else [None] * len(track.runs)
    if done is not None:
        print(f"{track.stage}: resuming from {ckpt.path} ({', '.join(map(str, run_ids))})")
    runs = _open(track, run_ids)
    ids = [r.info.run_id for r in runs]
    fresh = [not client.get_run(i).data.metrics for i in ids]
    by_seed = dict(zip(job.seeds, ids, strict=True))
    status = "FAILED"
    try:
        for i in ids:
            client.update_run(i, status="RUNNING")

        def log(row: dict) -> None:
            if track.live:
                step = (row["global_epoch"], metric_names(row))
                tracking.log_steps_to(by_seed[row["seed"]], [step])

        result = fit(job, data, ckpt, on_epoch=log, run_ids=ids)
        fitted = Fitted(result, runs, fresh, [{} for _ in ids])
        yield fitted
        for s, (seed, run_id) in enumerate(by_seed.items()):
            _log_once(client, run_id, fitted, s, seed, track.live)
        status = "FINISHED"
    finally:
        for i in ids:
            client.set_terminated(i, status)


def _log_once(client, run_id: str, fitted: Fitted, s: int, seed: int, live: bool) -> None:
    """A member's history (unless live), kept epochs and the stage's metrics, if not yet."""
    if not fitted.fresh[s]:
        return
    result = fitted.result
    if not live:
        rows = result.member(seed).to_dict("records")
        tracking.log_steps_to(run_id, [(r["global_epoch"], metric_names(r)) for r in rows])
    selection = result.selection[result.selection["seed"] == seed]
    kept = {f"step{r.step}.kept_epoch": r.kept_epoch for r in selection.itertuples()}
    tracking.log_steps_to(run_id, [(0, fitted.metrics[s] | kept)])
