import ast
import http.server
import multiprocessing
import shutil
import subprocess
import threading
import time

import mlflow
import pytest

from smec import params
from smec.errors import SmecError
from smec.infra import services, tracking

from ..conftest import ROOT


def _create(barrier, queue):
    barrier.wait()
    queue.put(tracking.experiment_id("race"))


def test_experiment_creation_is_safe_when_stages_race(mlflow_uri):
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_create, args=(barrier, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    ids = {queue.get() for _ in procs}
    assert len(ids) == 1
    names = [e.name for e in mlflow.MlflowClient(mlflow_uri).search_experiments()]
    assert names.count("race") == 1


def test_an_existing_experiment_is_marked_as_model_training(mlflow_uri):
    client = mlflow.MlflowClient(mlflow_uri)
    exp_id = client.create_experiment("old")
    assert tracking.experiment_id("old") == exp_id
    assert client.get_experiment(exp_id).tags[tracking.TAG_KIND] == tracking.KIND


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)


def test_the_commit_is_dirty_only_when_code_differs_from_it(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    repo = tmp_path
    for name in ("dvc.lock", "params.yaml", "metrics/m.json", "src/code.py"):
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_text("v1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    sha = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert tracking.commit(repo) == sha
    for name in ("dvc.lock", "params.yaml", "metrics/m.json"):  # what the pipeline rewrites
        (repo / name).write_text("v2\n")
    assert tracking.commit(repo) == sha
    (repo / "src/code.py").write_text("v2\n")
    assert tracking.commit(repo) == f"{sha}-dirty"


def test_under_dvc_exp_run_the_commit_is_the_experiments_baseline(tmp_path, monkeypatch):
    repo = tmp_path
    (repo / "a.py").write_text("1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    base = git(repo, "rev-parse", "HEAD").stdout.strip()
    (repo / "a.py").write_text("2\n")
    git(repo, "commit", "-qam", "two")  # the queue's temporary copy sits on its own commit
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", base)
    assert tracking.commit(repo) == f"{base}-dirty"  # code differs from the baseline
    git(repo, "checkout", "-q", base)
    assert tracking.commit(repo) == base


def test_a_run_name_fits_the_sql_stores_column_however_many_params_changed():
    p = params.Params.model_validate({"data": {"path": "/" + "long/" * 60}})
    name = tracking.run_name("sweep@ce mrl", p)
    assert len(name) == tracking.RUN_NAME_MAX and name.endswith("…")
    assert name.startswith("sweep@ce mrl · data.path=/long/")
    assert tracking.run_name("embed", params.Params()) == "embed · defaults"


def test_a_tracking_uri_where_nothing_listens_fails_in_seconds_in_one_line(monkeypatch):
    uri = f"http://127.0.0.1:{services.free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.perf_counter()
    with pytest.raises(SmecError) as err:
        tracking.use_store()
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert f"the MLflow tracking server {uri} (MLFLOW_TRACKING_URI): nothing answered" in message
    assert "Connection refused" in message and "\n" not in message


class NoSuchBucket(http.server.BaseHTTPRequestHandler):
    """What an S3 gateway says to MLflow's REST path."""

    def do_GET(self):
        body = b"<?xml version='1.0'?><Error><Code>NoSuchBucket</Code></Error>"
        self.send_response(404)
        self.send_header("Content-Type", "application/xml")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_tracking_uri_that_is_not_an_mlflow_server_fails_naming_what_answered(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), NoSuchBucket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    try:
        with pytest.raises(SmecError) as err:
            tracking.use_store()
    finally:
        server.shutdown()
    message = str(err.value)
    assert f"{uri} (MLFLOW_TRACKING_URI): not an MLflow server:" in message
    assert "HTTP 404" in message and "NoSuchBucket" in message and "\n" not in message


def test_after_use_store_every_mlflow_call_lands_in_the_stages_store(
    tmp_path, mlflow_template, monkeypatch
):
    """As under `dvc exp run --temp`: the stage runs in a copy, DVC_ROOT names the workspace,
    and `mlflow.start_run` (no tracking URI of its own) must write into the workspace's store."""
    workspace, copy = tmp_path / "workspace", tmp_path / "copy"
    workspace.mkdir()
    copy.mkdir()
    shutil.copy(mlflow_template, workspace / "mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(workspace))
    monkeypatch.chdir(copy)
    assert tracking.use_store() == f"sqlite:///{workspace / 'mlflow.db'}"
    with mlflow.start_run() as run:
        mlflow.log_metric("m", 1.0)
    client = mlflow.MlflowClient(f"sqlite:///{workspace / 'mlflow.db'}")
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert not (copy / "mlflow.db").exists()


def test_every_stage_that_logs_checks_its_store_before_its_work():
    """`tracking.use_store()` soon after the params are read: nothing between the two reads
    inputs, writes outputs or calls MLflow (prepare logs nothing)."""
    work = ("inputs.", "artifacts.", "mlflow", "tracking.", "read", "write", "fit(", "relaunch")
    for script in sorted((ROOT / "pipeline").glob("*.py")):
        if script.stem in ("_bootstrap", "where", "prepare"):
            continue
        (run,) = [f for f in ast.parse(script.read_text()).body if getattr(f, "name", "") == "run"]
        calls = [ast.unparse(s) for s in run.body]
        loads = [i for i, c in enumerate(calls) if "params.load(" in c]
        assert loads and "tracking.use_store()" in calls, script.name
        between = calls[loads[0] + 1 : calls.index("tracking.use_store()")]
        assert not [c for c in between if any(w in c for w in work)], script.name
