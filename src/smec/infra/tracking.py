"""MLflow: where the store is, one parent run per pipeline execution, a nested run per stage.

The store is `MLFLOW_TRACKING_URI` if set, else a sqlite file `mlflow.db` at the repository root
with artifacts under `mlruns/`. The root is `DVC_ROOT` when DVC runs the stage (so `dvc exp run
--temp` and `--queue` write into the real store, not the temporary copy), else the folder of
the git checkout, else the current folder. Every stage calls :func:`use_store` before its work:
it checks that the store answers, as an MLflow store, within seconds, and points every MLflow
call of the process at it.

Layout: every stage execution is a run nested under the run of the pipeline execution it is
part of (one `dvc repro` or one `dvc exp run`; see :func:`smec.infra.provenance.execution`), named
after the DVC experiment when there is one. Every run carries the full params and the tags
below; a run's `git.commit` is the commit its code came from (`DVC_EXP_BASELINE_REV` under
`dvc exp run`), with `-dirty` when tracked files other than DVC's own records differ from it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

from smec import params
from smec.errors import SmecError
from smec.infra import provenance

TAG_COMMIT = "git.commit"
TAG_STAGE = "dvc.stage"
TAG_PARAMS = "params.digest"
TAG_EXP = "dvc.exp"
TAG_EXECUTION = "smec.execution"
TAG_HOST = "smec.host"
TAG_CELL = "smec.cell"  # the grid cell (data-encoder) of a cell stage's run
TAG_ROLE = "smec.role"  # "pipeline" (a parent run), "stage", or "trial" (nested in tune@<m>)
TAG_PARENT = "mlflow.parentRunId"
# MLflow 3's UI opens an experiment on its runs ("Model training") only when it knows the
# experiment is not a GenAI one; a new experiment otherwise opens on an empty traces overview.
TAG_KIND = "mlflow.experimentKind"
KIND = "custom_model_development"
PROBE = "/api/2.0/mlflow/experiments/search"  # what use_store asks a tracking server
PROBE_TIMEOUT = 5  # seconds
RUN_NAME_MAX = 250  # the `runs.name` column of MLflow's SQL schema
# Files the pipeline itself rewrites while it runs: their changes do not make the code dirty.
PIPELINE_RECORDS = ("dvc.lock", "params.yaml", "metrics")


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


def use_store() -> str:
    """Check the stage's store and point every MLflow call of this process at it (`mlflow.
    start_run` included); returns its URI. A store that is down, wrong or elsewhere stops the
    stage in seconds with one line, before it has computed or written anything."""
    import mlflow

    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        _probe(uri)
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise SmecError(f"the MLflow store {uri}: the folder {folder} does not exist")
    mlflow.set_tracking_uri(uri)
    return uri


def _probe(uri: str) -> None:
    """One REST call to the tracking server, without MLflow's retries (minutes, by default)
    unless MLFLOW_HTTP_REQUEST_MAX_RETRIES / MLFLOW_HTTP_REQUEST_TIMEOUT ask for them."""
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES as RETRIES
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_TIMEOUT as TIMEOUT
    from mlflow.exceptions import MlflowException
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    where = f"the MLflow tracking server {uri} (MLFLOW_TRACKING_URI)"
    try:
        response = http_request(
            get_default_host_creds(uri),
            PROBE,
            "GET",
            max_retries=RETRIES.get() if RETRIES.is_set() else 0,
            timeout=TIMEOUT.get() if TIMEOUT.is_set() else PROBE_TIMEOUT,
            raise_on_status=False,
            params={"max_results": 1},
        )
    except MlflowException as exc:
        raise SmecError(
            f"{where}: nothing answered ({_root_cause(exc)}); start it, or unset "
            "MLFLOW_TRACKING_URI for this checkout's mlflow.db (to wait for a server that is "
            "restarting, set MLFLOW_HTTP_REQUEST_MAX_RETRIES: docs/pipeline.md)"
        ) from None
    if problem := _not_mlflow(response):
        raise SmecError(f"{where}: {problem}")


def _root_cause(exc: BaseException) -> str:
    """The innermost exception behind `exc`, in its own words (`[Errno 111] Connection
    refused`, `timed out`, ...)."""
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__
    return str(exc) or type(exc).__name__


def _not_mlflow(response) -> str | None:
    """What is wrong with the probe's answer, or None when an MLflow server gave it."""
    code = response.status_code
    if code == 401:
        return (
            "it asks for credentials (HTTP 401): set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to the ones `make services` printed"
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    if code == 200 and isinstance(body, dict):
        return None
    if isinstance(body, dict) and "error_code" in body:
        return f"it answered HTTP {code}: {body['error_code']}: {body.get('message', '')}"
    server = response.headers.get("Server", "the server")
    text = " ".join(response.text.split())[:160] or "an empty body"
    return f"not an MLflow server: {server} answered HTTP {code} to {PROBE}: {text}"


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd)


def commit(checkout: Path) -> str:
    """The commit the code in `checkout` came from, `-dirty` if its tracked files differ from it
    (other than the pipeline's own records: dvc.lock, params.yaml, metrics/)."""
    base = os.environ.get("DVC_EXP_BASELINE_REV")
    if not base:
        head = _git(["rev-parse", "HEAD"], checkout)
        if head.returncode != 0:
            return "unknown"
        base = head.stdout.strip()
    excludes = [f":(exclude){p}" for p in PIPELINE_RECORDS]
    diff = _git(["diff", "--quiet", base, "--", ".", *excludes], checkout)
    return f"{base}-dirty" if diff.returncode == 1 else base


def experiment_id(name: str) -> str:
    """The experiment's id, created if absent (tagged as a model-training experiment). Safe when
    several stages or queued experiments create it at the same moment."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri())
    exp = client.get_experiment_by_name(name)
    if exp is None:
        artifacts = (root() / "mlruns").as_uri() if tracking_uri().startswith("sqlite:") else None
        try:
            return client.create_experiment(name, artifacts, tags={TAG_KIND: KIND})
        except MlflowException:  # created by another process since we looked
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.tags.get(TAG_KIND) != KIND:
        client.set_experiment_tag(exp.experiment_id, TAG_KIND, KIND)
    return exp.experiment_id


def common_tags(p: params.Params, checkout: Path) -> dict[str, str]:
    """What every run of one execution carries: its commit, params digest, execution, exp, and
    the machine it ran on."""
    tags = {
        TAG_COMMIT: commit(checkout),
        TAG_PARAMS: params.digest(p.root),
        TAG_EXECUTION: provenance.execution(),
        TAG_HOST: provenance.host(),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags[TAG_EXP] = os.environ["DVC_EXP_NAME"]
    return tags


def parent_run(p: params.Params, checkout: Path) -> str:
    """The run of this pipeline execution, created by its first stage."""
    import mlflow
    from mlflow.entities import Param

    client = mlflow.MlflowClient(tracking_uri())
    exp_id = experiment_id(p.tracking.experiment)
    tags = common_tags(p, checkout)
    found = client.search_runs(
        [exp_id],
        filter_string=f"tags.`{TAG_EXECUTION}` = '{tags[TAG_EXECUTION]}' "
        f"and tags.`{TAG_ROLE}` = 'pipeline'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    name = os.environ.get("DVC_EXP_NAME") or "dvc repro"
    root = p.root  # params.yaml as written, whichever stage (cell, width) creates the run
    run = client.create_run(
        exp_id, run_name=run_name(name, root), tags={**tags, TAG_ROLE: "pipeline"}
    )
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.flat(root).items()])
    return run.info.run_id


def run_name(head: str, p: params.Params) -> str:
    """`head · <the params that differ from the defaults>`, cut to the 250 characters a run name
    may have in MLflow's SQL stores (sqlite does not enforce it; PostgreSQL refuses the run)."""
    name = f"{head} · {params.changed(p)}"
    return name if len(name) <= RUN_NAME_MAX else name[: RUN_NAME_MAX - 1] + "…"


@contextlib.contextmanager
def stage_run(
    p: params.Params,
    stage: str,
    checkout: Path,
    run_id: str | None = None,
    tags: dict[str, str] | None = None,
    label: str = "",
) -> Iterator:
    """A stage's MLflow run, nested under its pipeline execution's run, with the full params
    (or, with `run_id`, the same run resumed and moved under the current execution). A stage
    that trains several models names each run with a `label` (`sweep@ce mrl · ...`)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient(tracking_uri())
    parent = parent_run(p, checkout)
    stage = os.environ.get("DVC_STAGE", stage)
    all_tags = {
        **common_tags(p, checkout),
        TAG_STAGE: stage,
        TAG_ROLE: "stage",
        **({TAG_CELL: p.cell} if p.cell else {}),
        **(tags or {}),
    }
    status = "FAILED"
    try:
        if run_id is not None:
            with mlflow.start_run(run_id=run_id) as run:
                mlflow.set_tags({**all_tags, TAG_PARENT: parent})
                yield run
        else:
            with mlflow.start_run(
                experiment_id=experiment_id(p.tracking.experiment),
                run_name=run_name(f"{stage} {label}".strip(), p),
                parent_run_id=parent,
                tags=all_tags,
            ) as run:
                mlflow.log_params(params.flat(p))
                yield run
        status = "FINISHED"
    finally:
        client.set_terminated(parent, status)


def ui_url(experiment: str, base: str = "http://127.0.0.1:5000") -> str:
    """Where `mlflow ui` shows the experiment's runs. MLflow 3's UI opens an experiment in its
    GenAI view unless the page asks for the model-training one."""
    import mlflow

    exp = mlflow.MlflowClient(tracking_uri()).get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else ""
    return f"{base}/#/experiments/{exp_id}/runs?workflowType=machine_learning"


def log_steps_to(run_id: str, steps: list[tuple[int, dict[str, float]]]) -> None:
    """(step, metrics) pairs for the run `run_id`, in batches: one call per metric would cost
    seconds on a sqlite store."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, int(step)) for step, ms in steps for k, v in ms.items()]
    client = mlflow.MlflowClient(tracking_uri())
    for start in range(0, len(batch), 1000):  # MLflow's limit per call
        client.log_batch(run_id, metrics=batch[start : start + 1000])


def log_to_parent(run, metrics: dict[str, float]) -> None:
    """Copy a stage's headline metrics onto its pipeline run, so that pipeline runs compare."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient(tracking_uri())
    parent = client.get_run(run.info.run_id).data.tags[TAG_PARENT]
    now = int(run.info.start_time)
    client.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])


def log_dataset(table, name: str, source: Path, digest: str, context: str) -> None:
    """Log a prepared table as an MLflow dataset input, with the digest DVC recorded for it."""
    import mlflow

    with warnings.catch_warnings():  # MLflow's hints on source and integer-schema inference
        warnings.simplefilter("ignore", UserWarning)
        ds = mlflow.data.from_pandas(table, source=str(source), name=name, digest=digest)
        mlflow.log_input(ds, context=context)


def log_prepared(ds, corpus: Path, queries: Path, qrels: Path, name: str, context: str) -> None:
    """The three prepared tables as dataset inputs of the active run, named `<data>/<table>`."""
    for table, path in ((ds.corpus, corpus), (ds.queries, queries), (ds.qrels, qrels)):
        log_dataset(table, f"{name}/{Path(path).stem}", path, provenance.md5(path), context)


def run_info(run) -> dict:
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "run_name": run.info.run_name,
        "tracking_uri": tracking_uri(),
    }


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
