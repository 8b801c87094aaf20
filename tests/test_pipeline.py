"""A real DVC repo in a temp folder: `dvc repro` end to end with the real encoder on a tiny
BEIR set, then a no-op repro, then `dvc exp run -S` re-running only what depends on it."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

BIN = Path(sys.executable).parent


def sh(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture
def repo(tmp_path, tiny_beir, mlflow_uri):
    repo = tmp_path / "repo"
    repo.mkdir()
    for item in ("dvc.yaml", "params.yaml", "pipeline", "src"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, repo / item)
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["data"]["path"] = str(tiny_beir)
    p["encoder"]["max_seq_length"] = 32
    p["train"].update(epochs=3, batch_size=8)
    p["render"]["epochs"] = [0, 2]
    (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("DVC_ROOT", None)
    sh(["git", "init", "-q"], repo, env)
    sh(["dvc", "init", "-q"], repo, env)
    sh(["dvc", "config", "core.analytics", "false"], repo, env)
    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "init"], repo, env)
    return repo, env


@pytest.mark.slow
def test_dvc_repro_end_to_end_then_nothing_to_do_then_exp_run(repo):
    repo, env = repo
    out = sh(["dvc", "repro"], repo, env)
    for path in (
        "data/prepared/qrels.parquet",
        "data/embeddings/corpus.npy",
        "runs/mrl/gradients.parquet",
        "runs/smrl/run.json",
        "reports/claims.json",
        "reports/retrieval.csv",
        "figures/gradient_stats.png",
        "figures/convergence.png",
        "figures/retrieval.png",
        "metrics/gradstats.json",
    ):
        assert (repo / path).exists(), path
    assert "claim 1:" in out.stdout

    start = time.perf_counter()
    again = sh(["dvc", "repro"], repo, env)
    assert time.perf_counter() - start < 10
    assert "Data and pipelines are up to date" in again.stdout
    assert "Running stage" not in again.stdout

    sh(["git", "add", "-A"], repo, env)
    sh(["git", "commit", "-qm", "repro"], repo, env)
    exp = sh(["dvc", "exp", "run", "-S", "train.smrl_step_loss=pair"], repo, env)
    assert "Stage 'embed' didn't change" in exp.stdout
    assert "Stage 'train@mrl' didn't change" in exp.stdout
    assert "Running stage 'train@smrl'" in exp.stdout


def test_bad_params_stop_the_stage_with_one_line(repo):
    repo, env = repo
    path = repo / "params.yaml"
    path.write_text(path.read_text().replace("loss: rank", "loss: hinge"))
    out = sh([str(BIN / "python"), "pipeline/prepare.py"], repo, env, check=False)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert out.stderr.startswith("error: ")
    assert "params.yaml: train.loss='hinge': Input should be 'rank', 'ce' or 'mse'" in out.stderr
    assert not (repo / "data/prepared").exists()


def test_stage_scripts_have_help(repo):
    repo, env = repo
    for script in sorted((repo / "pipeline").glob("*.py")):
        out = sh([str(BIN / "python"), str(script), "--help"], repo, env)
        assert "usage:" in out.stdout, script.name
