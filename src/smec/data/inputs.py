"""The inputs of every stage that trains or evaluates: the prepared tables and the frozen
embeddings, read once, through one set of command-line options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from smec.data import artifacts
from smec.data.artifacts import Dataset

OPTIONS = ("corpus", "queries", "qrels", "corpus-emb", "queries-emb")  # as dvc.yaml passes them


@dataclass(frozen=True)
class StageInputs:
    ds: Dataset
    corpus_emb: np.ndarray  # (n_docs, D) frozen corpus embeddings, in the corpus table's order
    queries_emb: np.ndarray  # (n_queries, D) likewise for the queries
    paths: tuple[Path, ...]  # the files they came from (what a checkpoint key digests)


def read(args: argparse.Namespace) -> StageInputs:
    """The tables and embeddings named by a stage's `--corpus ... --queries-emb` options."""
    paths = (args.corpus, args.queries, args.qrels, args.corpus_emb, args.queries_emb)
    return StageInputs(
        ds=artifacts.read_prepared(args.corpus, args.queries, args.qrels),
        corpus_emb=artifacts.read_array(args.corpus_emb),
        queries_emb=artifacts.read_array(args.queries_emb),
        paths=paths,
    )
