"""A team's setup, for real: PostgreSQL, SeaweedFS's S3 gateway and an MLflow server started on
127.0.0.1 (`smec.infra.services`), the pipeline tracked on that server, a DVC remote on the object
store with a push / fresh clone / pull round trip, and three queued experiments run two at a
time. `make test-team` (part of `.ci/run`); minutes, so not part of `make test`."""

import hashlib
import json
import os
import shutil
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import mlflow
import psutil
import pytest

from smec.infra import services, tracking

from .conftest import write_beir
from .test_pipeline import BIN, DVC, init, lock_md5, make_repo, sh, user_env

pytestmark = [
    pytest.mark.team,
    pytest.mark.skipif(
        not (services.PG_BIN / "initdb").is_file(),
        reason=f"PostgreSQL's binaries are not at {services.PG_BIN} (set SMEC_PG_BIN)",
    ),
]


@pytest.fixture(scope="module")
def team():
    """The services in a folder of their own (pytest's are private to root; PostgreSQL runs as
    the `postgres` user and must reach its data)."""
    root = Path(tempfile.mkdtemp(prefix="smec-services-"))
    root.chmod(0o755)
    try:
        yield services.start(root)
    finally:
        ports = services.stop(root) if (root / "services.json").exists() else {}
        shutil.rmtree(root)
        busy = [name for name, port in ports.items() if services.port_open(port)]
        assert not busy, f"ports still open after stop: {busy}"


@pytest.fixture(scope="module")
def tracked(team, tmp_path_factory):
    """The tiny pipeline up to `render`, tracked on the team's MLflow server (no storage
    credentials on this side: the server proxies the artifacts)."""
    root = tmp_path_factory.mktemp("team")
    repo = make_repo(root / "repo", write_beir(root / "tiny"))
    env = {**user_env(), "MLFLOW_TRACKING_URI": team["tracking_uri"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        env.pop(key, None)
    init(repo, env)
    sh([DVC, "repro", "render"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "repro"], repo, env)
    return repo, env


def remote(repo, env, team) -> None:
    """The DVC remote on the team's object store, its credentials in config.local."""
    sh([DVC, "remote", "add", "-f", "-d", "team", "s3://dvc/store"], repo, env)
    for key, value in (
        ("endpointurl", team["s3_endpoint"]),
        ("access_key_id", services.S3_KEY),
        ("secret_access_key", services.S3_SECRET),
    ):
        sh([DVC, "remote", "modify", "--local", "team", key, value], repo, env)


def queue_status(repo, env) -> list[str]:
    """The Status column of `dvc queue status` (it has no --json)."""
    table = sh([DVC, "queue", "status"], repo, env).stdout.split("\n\n")[0].splitlines()
    return [line.split()[-1] for line in table[1:]] if table[0].startswith("Task") else []


def test_every_service_listens_on_loopback_only(team):
    for name, pid in team["pids"].items():
        proc = psutil.Process(pid)
        listening = [
            c.laddr.ip
            for p in [proc, *proc.children(recursive=True)]
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening, name
        assert set(listening) == {"127.0.0.1"}, (name, listening)


def test_the_pipeline_lands_on_the_server_with_its_figure_in_the_object_store(team, tracked):
    repo, _ = tracked
    client = mlflow.MlflowClient(team["tracking_uri"])
    exp = client.get_experiment_by_name("smec")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == "pipeline"]
    stages = {r.data.tags[tracking.TAG_STAGE]: r for r in runs if r is not parent}
    assert {"embed", "train@mrl", "gradstats", "evaluate", "render"} <= set(stages)
    assert stages["train@mrl"].data.params["train.loss"] == "rank"
    assert "mrl_d96.ndcg_at_10" in stages["evaluate"].data.metrics
    assert "epoch0_mrl_low_over_high" in parent.data.metrics
    render = json.loads((repo / "figures/run.json").read_text())["run_id"]
    workspace = (repo / "figures/gradient_stats.png").read_bytes()
    key = f"artifacts/{exp.experiment_id}/{render}/artifacts/gradient_stats.png"
    stored = services.s3_client(team["ports"]["s3"]).get_object(Bucket="mlflow", Key=key)
    assert stored["Body"].read() == workspace  # the object store holds the workspace's bytes
    local = mlflow.artifacts.download_artifacts(
        run_id=render, artifact_path="gradient_stats.png", tracking_uri=team["tracking_uri"]
    )
    assert hashlib.md5(Path(local).read_bytes()).digest() == hashlib.md5(workspace).digest()


def test_a_fresh_clone_pulls_the_outputs_and_reruns_nothing(team, tracked, tmp_path):
    repo, env = tracked
    remote(repo, env, team)
    sh(["git", "commit", "-qm", "the team's remote", ".dvc/config"], repo, env)
    sh([DVC, "push"], repo, env)
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    (clone / ".venv").symlink_to((repo / ".venv").resolve())
    remote(clone, env, team)
    sh([DVC, "pull", "--with-deps", "render"], clone, env)  # what the tiny repro made
    for path in ("data/embeddings/corpus.npy", "models/mrl/heads.pt", "reports/claims.json"):
        assert hashlib.md5((clone / path).read_bytes()).hexdigest() == lock_md5(repo, path)
    again = sh([DVC, "repro", "render"], clone, env).stdout
    ran = [line for line in again.splitlines() if line.startswith("Running stage")]
    assert ran == ["Running stage 'prepare':"]  # it re-reads the data set; nothing else runs


def test_three_queued_experiments_run_two_at_a_time_and_all_land(team, tracked):
    repo, env = tracked
    env = {**env, "PATH": f"{BIN}{os.pathsep}{env['PATH']}"}  # activated: the workers run `dvc`
    head = sh(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    names = {f"fall-{v}": v for v in (3, 5, 20)}
    for name, value in names.items():
        sh(
            [
                DVC,
                "exp",
                "run",
                "--queue",
                "-n",
                name,
                "-S",
                f"gradstats.claim3_min_fall={value}",
                "render",
            ],
            repo,
            env,
        )
    sh([DVC, "queue", "start", "-j", "2"], repo, env)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = queue_status(repo, env)
        if len(status) == 3 and set(status) <= {"Success", "Failed"}:
            break
        time.sleep(2)
    assert status == ["Success"] * 3, status
    sh([DVC, "queue", "stop"], repo, env)
    shown = json.loads(sh([DVC, "exp", "show", "--json"], repo, env).stdout)
    exps = {e["name"]: e for e in shown[-1].get("experiments") or []}
    client = mlflow.MlflowClient(team["tracking_uri"])
    exp_id = client.get_experiment_by_name("smec").experiment_id
    spans = []  # each parent run's start and end on the server
    for name, value in names.items():
        params = exps[name]["revs"][0]["data"]["params"]["params.yaml"]["data"]
        assert params["gradstats"]["claim3_min_fall"] == value  # dvc exp show ...
        runs = client.search_runs([exp_id], filter_string=f"tags.`{tracking.TAG_EXP}` = '{name}'")
        (parent,) = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == "pipeline"]
        assert parent.info.run_name.startswith(f"{name} · ")  # ... and MLflow agree
        stages = {r.data.tags[tracking.TAG_STAGE] for r in runs if r is not parent}
        assert stages == {"gradstats", "aggregate", "render"}  # what the param changes
        for run in runs:
            assert run.data.params["gradstats.claim3_min_fall"] == str(float(value))
            assert run.data.tags[tracking.TAG_COMMIT] == head
        spans.append((parent.info.start_time, parent.info.end_time))
    spans.sort()
    assert any(b[0] < a[1] for a, b in pairwise(spans))  # two experiments ran side by side
