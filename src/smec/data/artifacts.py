"""Reading and writing the pipeline's artifacts: the one place that touches their files.

The paths themselves have one home, `dvc.yaml`, whose stage commands pass them to the scripts in
`pipeline/`; the functions here take a path and data, or a path and return data. Every write is
atomic (a failed stage leaves the old file or none), and a missing input is a one-line error
that names the file and how to get it back.
"""

from __future__ import annotations

import filecmp
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from smec.errors import SmecError
from smec.infra import atomic


@dataclass(frozen=True)
class Dataset:
    """A prepared retrieval data set: the tables the prepare stage writes."""

    corpus: pd.DataFrame  # corpus_id, title, text
    queries: pd.DataFrame  # query_id, text
    qrels: pd.DataFrame  # query_id, corpus_id, score, split (train / heldout / test)


def require(*paths: str | Path) -> None:
    """Stop with one line if an input is missing (a failed stage upstream, or never made)."""
    for path in paths:
        if not Path(path).exists():
            raise SmecError(
                f"{path}: missing; restore the last good version with `dvc checkout {path}`, "
                f"or make it with `dvc repro`"
            )


def write_prepared(ds: Dataset, corpus: Path, queries: Path, qrels: Path) -> None:
    for df, path in ((ds.corpus, corpus), (ds.queries, queries), (ds.qrels, qrels)):
        atomic.write(path, lambda p, df=df: df.to_parquet(p, index=False))


def read_prepared(corpus: Path, queries: Path, qrels: Path) -> Dataset:
    require(corpus, queries, qrels)
    return Dataset(*(pd.read_parquet(p) for p in (corpus, queries, qrels)))


def read_texts(corpus: Path, queries: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The prepared corpus and queries alone (what the encoder reads)."""
    require(corpus, queries)
    return pd.read_parquet(corpus), pd.read_parquet(queries)


def write_array(path: Path, array: np.ndarray) -> None:
    atomic.write(path, lambda p: np.save(p, array))


def read_array(path: Path, mmap: bool = False) -> np.ndarray:
    require(path)
    return np.load(path, mmap_mode="r" if mmap else None)


def read_parquets(paths: list[Path], name: str) -> pd.DataFrame:
    """The tables at `paths`, one after another; a folder stands for every `<folder>/*/<name>`
    in it, in name order (a grid cell's arms: runs/grid/<cell>/compare/<method>/scores.parquet)."""
    files = [f for p in paths for f in (sorted(p.glob(f"*/{name}")) if p.is_dir() else [p])]
    if not files:
        raise SmecError(f"{', '.join(map(str, paths))}: no {name} there")
    return pd.concat([read_parquet(f) for f in files], ignore_index=True)


def width(path: Path) -> int:
    """The encoder width D of an embeddings file, from its header: what params resolve at."""
    return int(read_array(path, mmap=True).shape[1])


def write_json(path: Path, data: object) -> None:
    atomic.write_json(path, data)


def read_json(path: Path) -> dict:
    require(path)
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise SmecError(f"{path}: not valid JSON ({exc.msg})") from None


def write_csv(path: Path, table: pd.DataFrame, float_format: str = "%.6g") -> None:
    atomic.write(path, lambda p: table.to_csv(p, index=False, float_format=float_format))


def read_csv(path: Path) -> pd.DataFrame:
    require(path)
    return pd.read_csv(path)


def write_parquet(path: Path, table: pd.DataFrame) -> None:
    atomic.write(path, lambda p: table.to_parquet(p, index=False))


def read_parquet(path: Path) -> pd.DataFrame:
    require(path)
    return pd.read_parquet(path)


def write_modules(path: Path, meta: dict, states: list[dict]) -> None:
    """A method's trained modules, one member: their weights (state dicts), and what
    `smec.model.methods.restore` needs to rebuild them (`method`, `dims`, `in_dim`, ...)."""
    state = {"meta": meta, "states": states}
    atomic.write(path, lambda p: p.write_bytes(torch_bytes(state)))


def torch_bytes(obj: object) -> bytes:
    """`torch.save`'s archive of `obj`, the same bytes whatever file it goes to (saved to a path,
    the archive's folder is named after that file: a temporary name, new on every run)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def read_modules(path: Path) -> tuple[dict, list[dict]]:
    require(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["meta"], state["states"]


def write_mteb(path: Path, result) -> None:
    """An MTEB `TaskResult` as MTEB itself writes it (atomically, parents made)."""
    atomic.write(path, lambda p: result.to_disk(p))


def write_model(path: Path, model, like: Path | None = None) -> None:
    """A sentence-transformers model folder, each file that is byte-identical to the same file
    of the folder `like` a hard link to it: eighteen exported models hold the encoder's weights
    once on disk (DVC's `hardlink` cache keeps them so, `.dvc/config`). Written in place: the
    caller's `atomic.directory` makes the whole export atomic."""
    model.save(str(path))
    if like is None:
        return
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        twin = like / file.relative_to(path)
        if twin.is_file() and filecmp.cmp(file, twin, shallow=False):
            file.unlink()
            os.link(twin, file)
