"""One training of a stage, resumable and tracked: the helper `train`, `sweep` and `compare`
share.

A training's checkpoint (keyed by the stage's code, inputs and settings) holds its MLflow run
id, so a stopped training resumes into the same run. Metrics are logged once: per epoch as
they come (`live`), or as one batch at the end (cheaper when a stage trains dozens of models);
a training that was finished before a stop is read back from its checkpoint and not logged
again.
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
class Track:
    """How a stage tracks one training: its params, MLflow stage name, run label and tags."""

    params: Params
    stage: str
    checkout: Path
    label: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    live: bool = False  # log each epoch's metrics as it ends (else one batch at the end)


@dataclass
class Fitted:
    """A finished training inside its MLflow run; `metrics` set by the stage are logged once
    when the block ends, with the history (unless live) and each step's kept epoch."""

    result: Result
    run: object
    fresh: bool  # nothing was logged to this run before (a new run, or one stopped early)
    metrics: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def tracked_fit(job: Job, data: TrainData, ckpt: Checkpoint, track: Track) -> Iterator[Fitted]:
    """Train `job` (resuming from `ckpt`) inside its stage run; yield the result to the stage,
    then log what was not logged before."""
    import mlflow

    done = ckpt.load()
    run_id = done.run_id if done is not None else None
    if run_id is not None:
        print(f"{track.stage} {track.label}".strip() + f": resuming from {ckpt.path} ({run_id})")
    with tracking.stage_run(
        track.params, track.stage, track.checkout, run_id=run_id, tags=track.tags, label=track.label
    ) as run:
        fresh = not mlflow.get_run(run.info.run_id).data.metrics
        log = (
            (lambda row: mlflow.log_metrics(metric_names(row), step=row["global_epoch"]))
            if (track.live)
            else (lambda row: None)
        )
        fitted = Fitted(fit(job, data, ckpt, on_epoch=log, run_id=run.info.run_id), run, fresh)
        yield fitted
        if fresh and not track.live:
            rows = fitted.result.history.to_dict("records")
            tracking.log_steps([(r["global_epoch"], metric_names(r)) for r in rows])
        if fresh:
            kept = {
                f"step{r.step}.kept_epoch": r.kept_epoch
                for r in fitted.result.selection.itertuples()
            }
            mlflow.log_metrics(fitted.metrics | kept)
