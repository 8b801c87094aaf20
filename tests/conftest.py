"""Shared fixtures: tiny BEIR folders, a migrated MLflow sqlite store copied per test."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"

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


@pytest.fixture
def mlflow_uri(tmp_path: Path, mlflow_template: Path, monkeypatch) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copy(mlflow_template, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    return uri
