"""MLflow: where the store is, how runs are tagged, and run ids in and out of DVC outputs.

The store is `MLFLOW_TRACKING_URI` if set, else a sqlite file `mlflow.db` at the repo root with
artifacts under `mlruns/`. The root is `DVC_ROOT` when DVC runs the stage (so `dvc exp run
--temp` writes into the real store, not the temporary copy), else the folder of the git
checkout, else the current folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from smec import atomic
from smec.errors import SmecError

TAG_COMMIT = "git.commit"
TAG_STAGE = "dvc.stage"
TAG_PARAMS = "params.digest"
TAG_EXP = "dvc.exp"


def root() -> Path:
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        return Path(top)
    except (OSError, subprocess.CalledProcessError):
        return Path.cwd().resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root() / 'mlflow.db'}"


def commit() -> str:
    """The git commit of the code, with `-dirty` when tracked files differ from it."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=root()
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            cwd=root(),
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def _experiment(name: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = (root() / "mlruns").as_uri()
    uri = tracking_uri()
    if not uri.startswith("sqlite:"):
        artifacts = None  # a server or other store chooses its own artifact location
    return mlflow.create_experiment(name, artifact_location=artifacts)


@contextlib.contextmanager
def start_run(
    experiment: str,
    run_name: str,
    params_digest: str,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
) -> Iterator:
    """Start (or, with `run_id`, resume) an MLflow run tagged with commit, stage and params."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    all_tags = {
        TAG_COMMIT: commit(),
        TAG_STAGE: os.environ.get("DVC_STAGE", "manual"),
        TAG_PARAMS: params_digest,
        **({TAG_EXP: os.environ["DVC_EXP_NAME"]} if os.environ.get("DVC_EXP_NAME") else {}),
        **(tags or {}),
    }
    if run_id is not None:
        with mlflow.start_run(run_id=run_id) as run:
            yield run
        return
    with mlflow.start_run(
        experiment_id=_experiment(experiment), run_name=run_name, tags=all_tags
    ) as run:
        yield run


def run_info(run) -> dict:
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "run_name": run.info.run_name,
        "tracking_uri": tracking_uri(),
    }


def write_run_json(path: Path, run, **extra) -> None:
    atomic.write_json(path, {**run_info(run), **extra})


def read_run_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SmecError(f"{path}: not found; run the stage that writes it (dvc repro)") from None


def check_run_exists(run_id: str, source: Path) -> None:
    """A run.json restored from DVC's run-cache must still name a run that exists."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri())
    try:
        client.get_run(run_id)
    except MlflowException:
        raise SmecError(
            f"{source}: run {run_id} is not in the MLflow store {tracking_uri()}; "
            f"re-run its stage with `dvc repro -f <stage>`"
        ) from None
