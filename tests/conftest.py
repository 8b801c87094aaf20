"""Shared fixtures: tiny BEIR folders, a migrated MLflow sqlite store copied per test, and the
stage scripts run in process with the very arguments `dvc.yaml` gives them."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
sys.path.insert(0, str(ROOT / "pipeline"))  # the stage scripts import their _bootstrap

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
for key, value in {
    "GIT_AUTHOR_NAME": "smec tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "smec tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}.items():
    os.environ.setdefault(key, value)

TOPICS = [
    "protein folding",
    "gene expression",
    "vaccine trials",
    "heart disease",
    "neural circuits",
    "tumor growth",
    "gut bacteria",
    "sleep deprivation",
]


def write_beir(folder: Path, n_docs: int = 48, n_queries: int = 24, train: int = 16) -> Path:
    """A small, valid BEIR folder: query i is about the topic of document i."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as fh:
        for i in range(n_docs):
            topic = TOPICS[i % len(TOPICS)]
            fh.write(
                json.dumps(
                    {
                        "_id": f"d{i}",
                        "title": f"On {topic} {i}",
                        "text": f"A study of {topic} in cohort {i}.",
                    }
                )
                + "\n"
            )
    with (folder / "queries.jsonl").open("w") as fh:
        for i in range(n_queries):
            fh.write(
                json.dumps(
                    {
                        "_id": f"q{i}",
                        "text": f"What is known about {TOPICS[i % 8]}?",
                        "metadata": {},
                    }
                )
                + "\n"
            )
    (folder / "qrels").mkdir(exist_ok=True)
    for split, ids in (("train", range(train)), ("test", range(train, n_queries))):
        rows = [f"q{i}\td{i}\t1" for i in ids]
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n"
        )
    return folder


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """One migrated sqlite store per session (migrations take seconds)."""
    import mlflow

    db = tmp_path_factory.mktemp("mlflow") / "template.db"
    mlflow.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


def use_store(mp: pytest.MonkeyPatch, root: Path, template: Path) -> str:
    """A copy of the migrated store at `root`/mlflow.db, the stages pointed at it and at `root`."""
    db = root / "mlflow.db"
    shutil.copy(template, db)
    uri = f"sqlite:///{db}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.setenv("DVC_ROOT", str(root))
    return uri


@contextlib.contextmanager
def store_at(root: Path, template: Path):
    """`use_store` for a module-scoped fixture (monkeypatch is per test)."""
    with pytest.MonkeyPatch.context() as mp:
        yield use_store(mp, root, template)


@pytest.fixture
def mlflow_uri(tmp_path: Path, mlflow_template: Path, monkeypatch) -> str:
    return use_store(monkeypatch, tmp_path, mlflow_template)


@functools.cache
def dvc_commands() -> dict[str, list[str]]:
    """Each stage's command from the real dvc.yaml, split into words (DVC resolves foreach)."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {s.addressing: shlex.split(s.cmd) for s in repo.index.stages}


def stage_script(name: str):
    """pipeline/<name>.py imported as a module (its `run(argv)` is the stage)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "pipeline" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NOT_PATHS = {
    "cell",
    "method",
    "arm",
    "loss",
    "optimizer",
    "lr",
    "momentum",
    "rank_scale",
}  # not paths


def stage_argv(stage: str, root: Path, params: Path, **replace: str | list[str]):
    """A stage's script name and arguments from dvc.yaml, its paths placed under `root`;
    `replace` swaps an option's value or values (`mrl_gradients="x"` for `--mrl-gradients x`)."""
    words = dvc_commands()[stage]
    argv, key = [], None
    for w in words[2:]:
        if w.startswith("--"):
            key = w[2:].replace("-", "_")
            argv.append(w)
            if key in replace:
                value = replace[key]
                argv += [value] if isinstance(value, str) else [str(root / v) for v in value]
        elif key not in replace:
            argv.append(w if key in NOT_PATHS else str(root / w))
    return Path(words[1]).stem, [*argv, "--params", str(params)]


def run_stage(stage: str, root: Path, params: Path, **replace: str | list[str]):
    """Run a stage in process (see :func:`stage_argv`)."""
    script, argv = stage_argv(stage, root, params, **replace)
    return stage_script(script).run(argv)


def write_params(path: Path, **sections: dict) -> Path:
    """params.yaml with the repository's values, some sections' keys replaced."""
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        p[section].update(values)
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path
