import multiprocessing
import subprocess

import mlflow

from smec import params
from smec.infra import tracking


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
