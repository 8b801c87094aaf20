"""A team's setup, for real: `make services` from a checkout inside a folder only its owner
may enter (PostgreSQL, SeaweedFS's S3 gateway and an MLflow server on 127.0.0.1, behind
generated credentials: `smec.infra.services`), every door checked shut without them, the
pipeline tracked on that server (up to `gradstats`: five stages), a DVC remote on the object
store with a push / fresh clone / pull round trip, three queued experiments run two at a time,
stages against a dead or wrong tracking URI, a `dvc exp run --temp` through `export` in a fresh
clone (the studies, the comparison and the export under real DVC, into the clone's default
store), two tuning workers on the team's PostgreSQL, and a rotation of the credentials.
`make test-team` (part of `.ci/run`); minutes, so not part of `make test`. (Tracking the whole
graph on the server took 982 s of this file's 1,762 s: each stage costs its process ~10 s
before it computes anything, and `make ci-repro` runs that graph anyway.)"""

import contextlib
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path

import botocore.exceptions
import mlflow
import optuna
import psutil
import psycopg2
import pytest
import requests
import yaml

from smec import params
from smec.infra import services, tracking
from smec.model import methods
from smec.training import tuning

from .conftest import ROOT, dvc_commands, stage_argv, write_beir
from .test_pipeline import BIN, DVC, init, lock_md5, make_repo, sh, user_env

pytestmark = [
    pytest.mark.team,
    pytest.mark.skipif(
        not (services.PG_BIN / "initdb").is_file(),
        reason=f"PostgreSQL's binaries are not at {services.PG_BIN} (set SMEC_PG_BIN)",
    ),
]


TRACKED = "gradstats"  # the stage the tracked pipeline reproduces, with its upstream


def make(target: str, checkout: Path, env: dict):
    """`make <target>` in `checkout`; `-o`: its venv is this one, already installed."""
    return sh(["make", "-o", ".venv/.installed", target], checkout, env)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """What `make services` needs of a checkout, inside a folder that only its owner may enter
    (mode 700, as root's home folder and many users' are)."""
    home = tmp_path_factory.mktemp("home")
    home.chmod(0o700)
    checkout = home / "checkout"
    checkout.mkdir()
    for item in ("Makefile", "pyproject.toml", "requirements.txt", "constraints.txt", "src"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, checkout / item)
    (checkout / ".venv").symlink_to(BIN.parent)
    return checkout


@pytest.fixture(scope="module")
def team(checkout):
    """`make services` in that checkout (timed), its state and credentials; this process's
    MLflow clients log in with them. `make services-stop` and the cluster removed after."""
    env = {**user_env(), "PYTHONPATH": str(checkout / "src")}
    root = checkout / ".services"
    try:
        start = time.perf_counter()
        printed = make("services", checkout, env).stdout
        took = time.perf_counter() - start
        creds = json.loads((root / services.CREDENTIALS).read_text())
        admin = creds["mlflow"]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_USERNAME", admin["username"])
            mp.setenv("MLFLOW_TRACKING_PASSWORD", admin["password"])
            state = services.read_state(root)
            yield {**state, "credentials": creds, "printed": printed, "took": took}
    finally:
        state = services.read_state(root) if (root / "services.json").exists() else {}
        if state:
            make("services-stop", checkout, env)
        shutil.rmtree(state.get("postgres_data", root / "postgres"), ignore_errors=True)
        busy = [name for name, port in state.get("ports", {}).items() if services.port_open(port)]
        assert not busy, f"ports still open after stop: {busy}"


def login(team) -> dict[str, str]:
    """What a teammate exports to reach the MLflow server."""
    admin = team["credentials"]["mlflow"]
    return {
        "MLFLOW_TRACKING_URI": team["tracking_uri"],
        "MLFLOW_TRACKING_USERNAME": admin["username"],
        "MLFLOW_TRACKING_PASSWORD": admin["password"],
    }


def refused(connect) -> str:
    """The error of a connection or request that must fail."""
    with pytest.raises((psycopg2.OperationalError, botocore.exceptions.ClientError)) as err:
        connect()
    return str(err.value)


@pytest.fixture(scope="module")
def tracked(team, tmp_path_factory):
    """The tiny pipeline up to `gradstats`, tracked on the team's MLflow server (no storage
    credentials on this side: the server proxies the artifacts)."""
    root = tmp_path_factory.mktemp("team")
    repo = make_repo(root / "repo", write_beir(root / "tiny"))
    env = {**user_env(), **login(team)}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        env.pop(key, None)
    init(repo, env)
    sh([DVC, "repro", TRACKED], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "repro"], repo, env)
    return repo, env


def remote(repo, env, team) -> None:
    """The DVC remote on the team's object store, its credentials in config.local."""
    sh([DVC, "remote", "add", "-f", "-d", "team", "s3://dvc/store"], repo, env)
    key = team["credentials"]["s3"]["dvc"]
    for name, value in (
        ("endpointurl", team["s3_endpoint"]),
        ("access_key_id", key["access_key_id"]),
        ("secret_access_key", key["secret_access_key"]),
    ):
        sh([DVC, "remote", "modify", "--local", "team", name, value], repo, env)


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


def test_make_services_starts_from_a_checkout_inside_a_private_home_folder(team, checkout):
    """As root the cluster runs as `postgres`, who may not enter that folder: its files live in
    that user's home, private to it, and `make services` says where."""
    assert checkout.parent.stat().st_mode & 0o777 == 0o700
    assert (checkout / ".services").stat().st_mode & 0o777 == 0o700
    data = Path(team["postgres_data"])
    runner = pwd.getpwnam(services.PG_SUPERUSER).pw_uid if os.geteuid() == 0 else os.geteuid()
    assert (data.stat().st_uid, data.stat().st_mode & 0o777) == (runner, 0o700)
    if os.geteuid() == 0:
        assert checkout.parent not in data.parents
    assert f"(cluster in {data})" in team["printed"]
    print(f"make services: {team['took']:.1f} s")


def test_make_services_prints_each_address_the_tracking_uri_first_and_a_teammates_lines(team):
    out, key = team["printed"], team["credentials"]["s3"]["dvc"]
    named = [
        f"MLflow server   {team['tracking_uri']}",
        f"S3 (SeaweedFS)  {team['s3_endpoint']}",
        f"PostgreSQL      {team['postgres']}",
    ]
    at = [out.index(line) for line in named]
    assert at == sorted(at)
    exports = [line.strip() for line in out.splitlines() if line.strip().startswith("export ")]
    assert exports == [f"export {k}={v}" for k, v in login(team).items()]
    for line in (
        f"dvc remote modify --local team endpointurl {team['s3_endpoint']}",
        f"dvc remote modify --local team access_key_id {key['access_key_id']}",
        f"dvc remote modify --local team secret_access_key {key['secret_access_key']}",
    ):
        assert f"  {line}\n" in out


def test_the_credentials_file_is_readable_by_its_owner_only(team, checkout):
    path = checkout / ".services" / services.CREDENTIALS
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_uid == os.geteuid()
    assert json.loads(path.read_text()) == team["credentials"]


def test_postgresql_refuses_a_connection_without_its_password_or_with_a_wrong_one(
    team, monkeypatch, tmp_path
):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))  # no ~/.pgpass either
    passwords = team["credentials"]["postgres"]
    at = {"host": services.LOOPBACK, "port": team["ports"]["postgres"], "connect_timeout": 5}
    mlflow_db = {**at, "user": "mlflow", "dbname": "mlflow"}
    assert "no password supplied" in refused(lambda: psycopg2.connect(**mlflow_db))
    wrong = refused(lambda: psycopg2.connect(**mlflow_db, password="wrong"))
    assert 'password authentication failed for user "mlflow"' in wrong
    superuser = {**at, "user": "postgres", "dbname": "postgres", "password": passwords["mlflow"]}
    assert "pg_hba.conf rejects connection" in refused(lambda: psycopg2.connect(**superuser))
    other = {**at, "user": "optuna", "dbname": "mlflow", "password": passwords["optuna"]}
    assert "does not have CONNECT privilege" in refused(lambda: psycopg2.connect(**other))
    with contextlib.closing(psycopg2.connect(**mlflow_db, password=passwords["mlflow"])) as db:
        cur = db.cursor()
        cur.execute(
            "SELECT rolsuper, pg_get_userbyid(datdba) FROM pg_roles, pg_database "
            "WHERE rolname = current_user AND datname = current_database()"
        )
        assert cur.fetchone() == (False, "mlflow")  # owns its database, is no superuser


def test_the_s3_store_refuses_a_wrong_key_and_the_mlflow_key_on_the_dvc_bucket(team):
    keys = team["credentials"]["s3"]
    client = lambda key: services.s3_client(team["s3_endpoint"], key)  # noqa: E731
    wrong = {**keys["mlflow"], "secret_access_key": "wrong"}
    made_up = {"access_key_id": "smec", "secret_access_key": "smec-secret"}  # the old README's
    assert "SignatureDoesNotMatch" in refused(
        lambda: client(wrong).list_objects_v2(Bucket="mlflow")
    )
    assert "InvalidAccessKeyId" in refused(lambda: client(made_up).list_objects_v2(Bucket="dvc"))
    mlflow_key, dvc_key = client(keys["mlflow"]), client(keys["dvc"])
    for call in (
        lambda: mlflow_key.list_objects_v2(Bucket="dvc"),
        lambda: mlflow_key.put_object(Bucket="dvc", Key="x", Body=b"x"),
        lambda: dvc_key.delete_object(Bucket="mlflow", Key="x"),
    ):
        assert "AccessDenied" in refused(call)
    assert requests.get(f"{team['s3_endpoint']}/dvc", timeout=10).status_code == 403  # unsigned
    assert dvc_key.list_objects_v2(Bucket="dvc")["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_the_mlflow_servers_rest_api_and_ui_ask_for_credentials(team):
    uri, admin = team["tracking_uri"], team["credentials"]["mlflow"]
    assert services.mlflow_status(uri) == 401
    assert services.mlflow_status(uri, admin["username"], "wrong") == 401
    assert requests.get(f"{uri}/", timeout=30).status_code == 401  # the UI
    assert services.mlflow_status(uri, admin["username"], admin["password"]) == 200


def test_the_pipeline_lands_on_the_server_with_its_tables_in_the_object_store(team, tracked):
    repo, _ = tracked
    client = mlflow.MlflowClient(team["tracking_uri"])
    exp = client.get_experiment_by_name("smec")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags[tracking.TAG_ROLE] == "pipeline"]
    stages = {r.data.tags[tracking.TAG_STAGE]: r for r in runs if r is not parent}
    assert set(stages) == {"embed", "train@mrl", "train@smrl", "gradstats"}
    assert stages["train@mrl"].data.params["train.loss"] == "rank"
    assert "heldout_d96.ndcg_at_10" in stages["train@mrl"].data.metrics
    assert "epoch0_mrl_low_over_high" in parent.data.metrics
    run = stages["gradstats"].info.run_id
    workspace = (repo / "reports/gradstats.csv").read_bytes()
    key = f"artifacts/{exp.experiment_id}/{run}/artifacts/gradstats.csv"
    s3 = services.s3_client(team["s3_endpoint"], team["credentials"]["s3"]["mlflow"])
    stored = s3.get_object(Bucket="mlflow", Key=key)
    assert stored["Body"].read() == workspace  # the object store holds the workspace's bytes
    local = mlflow.artifacts.download_artifacts(
        run_id=run, artifact_path="gradstats.csv", tracking_uri=team["tracking_uri"]
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
    sh([DVC, "pull", "--with-deps", TRACKED], clone, env)  # what the tiny repro made
    for path in ("data/embeddings/corpus.npy", "models/mrl/heads.pt", "reports/gradstats.csv"):
        assert hashlib.md5((clone / path).read_bytes()).hexdigest() == lock_md5(repo, path)
    again = sh([DVC, "repro", TRACKED], clone, env).stdout
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
                TRACKED,
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
        assert stages == {"gradstats"}  # what the param changes, of the tracked stages
        for run in runs:
            assert run.data.params["gradstats.claim3_min_fall"] == str(float(value))
            assert run.data.tags[tracking.TAG_COMMIT] == head
        spans.append((parent.info.start_time, parent.info.end_time))
    spans.sort()
    assert any(b[0] < a[1] for a, b in pairwise(spans))  # two experiments ran side by side


@pytest.mark.parametrize(
    ("stage", "output", "where", "answer"),
    [
        ("gradstats", "reports/gradstats.csv", "dead", ": nothing answered ("),
        ("embed", "data/embeddings/corpus.npy", "s3", ": not an MLflow server: "),
    ],
)
def test_a_stage_against_a_dead_or_wrong_tracking_uri_fails_in_seconds_in_one_line(
    team, tracked, stage, output, where, answer
):
    """Nothing listening (MLflow's retries took 254 s, then a traceback), or the S3 gateway's
    address, the first one `make services` used to print: one line naming the URI and what
    answered, before the stage computed anything; `dvc checkout` restores what DVC removed."""
    repo, env = tracked
    uri = f"http://127.0.0.1:{services.free_port()}" if where == "dead" else team["s3_endpoint"]
    start = time.perf_counter()
    failed = sh([DVC, "repro", "-f", "-s", stage], repo, {**env, "MLFLOW_TRACKING_URI": uri}, False)
    took = time.perf_counter() - start
    sh([DVC, "checkout", stage], repo, env)
    assert failed.returncode != 0
    assert took < 30, took
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, failed.stderr
    assert f"error: the MLflow tracking server {uri} (MLFLOW_TRACKING_URI){answer}" in errors[0]
    assert "Traceback" not in failed.stderr
    assert hashlib.md5((repo / output).read_bytes()).hexdigest() == lock_md5(repo, output)
    print(f"{stage} against {uri}: failed in {took:.1f} s")


def test_a_temp_experiment_through_export_in_a_fresh_clone_logs_into_the_workspaces_store(
    team, tracked, tmp_path
):
    """`dvc exp run --temp` runs the stages in a temporary copy; with no MLFLOW_TRACKING_URI the
    store is the clone's own mlflow.db (DVC_ROOT), never the copy's. `export` logged its models
    on the comparison's training runs before anything had set the store (`Run with id=... not
    found`, in the copy's store). A fresh clone has no cache: every stage up to export runs,
    the studies too (the tracked pipeline did not reach them), each study's trials nested
    under its run and found by the experiment's tag.
    The clone has the team's default DVC remote, with the outputs pushed there, and, as a
    teammate would, its keys in `.dvc/config.local` (DVC reads the lock's outputs of the
    stages it does not run from there)."""
    repo, env = tracked
    env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_")}
    remote(repo, env, team)
    sh([DVC, "push"], repo, env)  # the team's outputs on its remote, as a teammate finds them
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    (clone / ".venv").symlink_to(BIN.parent)
    remote(clone, env, team)  # a teammate's DVC keys (without them: `Unable to locate credentials`)
    out = sh([DVC, "exp", "run", "--temp", "-n", "to-export", "export"], clone, env)
    assert "Ran experiment(s)" in out.stdout
    client = mlflow.MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    exp_id = client.get_experiment_by_name("smec").experiment_id
    new = client.search_runs([exp_id], filter_string=f"tags.`{tracking.TAG_EXP}` = 'to-export'")
    (parent,) = [r for r in new if r.data.tags[tracking.TAG_ROLE] == "pipeline"]
    stages = {r.data.tags[tracking.TAG_STAGE] for r in new if r is not parent}
    tuned = [s.removeprefix("tune@") for s in dvc_commands() if s.startswith("tune@")]
    studied = {*(f"tune@{m}" for m in tuned), *(f"compare@{m}" for m in methods.LEARNED)}
    assert stages == {"embed", "export", *studied}
    p = yaml.safe_load((clone / "params.yaml").read_text())
    studies = {
        r.info.run_id: r.data.tags[tracking.TAG_STAGE]
        for r in new
        if r.data.tags[tracking.TAG_ROLE] == "stage"
        and r.data.tags[tracking.TAG_STAGE].startswith("tune@")
    }
    trials = [r for r in new if r.data.tags[tracking.TAG_ROLE] == "trial"]  # the exp's own tags
    per_study = Counter(studies[r.data.tags[tracking.TAG_PARENT]] for r in trials)
    studied = len(params.Compare(**p["compare"]).studied_losses) * p["tune"]["replicates"]
    assert per_study == {f"tune@{m}": p["tune"]["trials"] * studied for m in tuned}
    dims = p["compare"]["dims"]
    logged = client.search_logged_models(experiment_ids=[exp_id])
    encoders = [m for m in logged if m.name.startswith("encoder-")]
    models = [m for m in logged if m not in encoders]
    assert len(models) == len(methods.LEARNED) * len(dims)  # one per method and width ...
    assert {m.source_run_id for m in models} <= {r.info.run_id for r in new}  # ... on its run
    assert len(encoders) == 1  # ... all referring to the encoder, logged once
    shutil.rmtree(clone)


def tune_worker(repo: Path, out: Path, env: dict, worker: int):
    """`tune@smrl`'s command on `repo`, its outputs under `out`, as worker `worker`."""
    out.mkdir()
    files = {"trials": str(out / "trials.csv"), "best": str(out / "best.json")}
    script, argv = stage_argv("tune@smrl", repo, out.parent / "params.yaml", **files)
    cmd = [str(BIN / "python"), str(repo / "pipeline" / f"{script}.py"), *argv]
    worker_env = {**env, "SMEC_TUNE_WORKER": str(worker), "DVC_ROOT": str(repo)}
    return subprocess.Popen(cmd, cwd=repo, env=worker_env, stdout=subprocess.PIPE, text=True)


def test_two_tuning_workers_on_the_team_postgresql_run_the_budget_exactly_once(
    team, tracked, tmp_path
):
    """Two processes run one study in the team's PostgreSQL: exactly the budgeted trials, each
    run once, both workers busy, both writing the same outputs; and the best value that one
    worker alone finds (sqlite) within the tiny set's noise (docs/pipeline.md, "Tuning")."""
    repo, env = tracked
    p = yaml.safe_load((repo / "params.yaml").read_text())
    p["tune"].update(trials=6, startup=3, epochs=[1, 2], replicates=1)
    p["compare"].update(losses=[], tuned_losses=[])  # one study
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    url = (
        f"postgresql+psycopg2://optuna:{team['credentials']['postgres']['optuna']}"
        f"@{team['postgres']}/optuna"
    )
    shared = {**env, tuning.STORAGE_ENV: url}
    procs = [tune_worker(repo, tmp_path / f"w{w}", shared, w) for w in (0, 1)]
    printed = [proc.communicate(timeout=600)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], printed
    ran = [int(re.search(r" ran (\d+) of ", text).group(1)) for text in printed]
    assert sum(ran) == 6 and min(ran) >= 1  # both took trials, none twice
    (best,) = json.loads((tmp_path / "w0/best.json").read_text())["studies"]
    study = optuna.load_study(study_name=best["study"], storage=url)
    assert sorted(t.number for t in study.trials) == list(range(6))
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    for name in ("trials.csv", "best.json"):  # every worker writes the study's outputs
        assert (tmp_path / "w0" / name).read_bytes() == (tmp_path / "w1" / name).read_bytes()
    alone = tune_worker(repo, tmp_path / "alone", {**env, "SMEC_TUNE_WORKER": "0"}, 0)
    assert alone.communicate(timeout=600) and alone.returncode == 0
    (one,) = json.loads((tmp_path / "alone/best.json").read_text())["studies"]
    assert one["trials"] == 6 and abs(one["value"] - best["value"]) <= 0.25


def test_rotated_credentials_replace_the_old_ones_on_every_service(team, checkout):
    """`make services-rotate` restarts the running services with new credentials: the old ones
    are refused everywhere, the new ones work, and it prints the new lines."""
    env = {**user_env(), "PYTHONPATH": str(checkout / "src")}
    old = team["credentials"]
    printed = make("services-rotate", checkout, env).stdout
    state = services.read_state(checkout / ".services")
    new = json.loads((checkout / ".services" / services.CREDENTIALS).read_text())
    assert f"export MLFLOW_TRACKING_PASSWORD={new['mlflow']['password']}" in printed
    uri, admin = state["tracking_uri"], new["mlflow"]["username"]
    assert services.mlflow_status(uri, admin, old["mlflow"]["password"]) == 401
    assert services.mlflow_status(uri, admin, new["mlflow"]["password"]) == 200
    db = {"host": services.LOOPBACK, "port": state["ports"]["postgres"], "connect_timeout": 5}
    db |= {"user": "mlflow", "dbname": "mlflow"}
    refused(lambda: psycopg2.connect(**db, password=old["postgres"]["mlflow"]))
    psycopg2.connect(**db, password=new["postgres"]["mlflow"]).close()
    dvc = services.s3_client(state["s3_endpoint"], old["s3"]["dvc"])
    assert "InvalidAccessKeyId" in refused(lambda: dvc.list_objects_v2(Bucket="dvc"))
    services.s3_client(state["s3_endpoint"], new["s3"]["dvc"]).list_objects_v2(Bucket="dvc")
