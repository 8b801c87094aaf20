"""Reading and validating a retrieval data set in the BEIR layout.

A BEIR folder holds `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl` (`_id`, `text`) and
`qrels/<split>.tsv` (header `query-id corpus-id score`). The first problem found is reported with
its file and line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from smec.data.artifacts import Dataset
from smec.errors import SmecError
from smec.infra import atomic

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"
# Published sizes, checked after a download: corpus, queries, {split: qrels rows}.
KNOWN_COUNTS = {"scifact": (5183, 1109, {"train": 919, "test": 339})}


def resolve_path(name: str, path: str | None, root: Path, download_dir: Path) -> Path:
    """Where the data set lives: `data.path` if set (it must exist), else $BEIR_DATA_DIR/<name>,
    else <root>/../shared/data/<name>, else a download of the public BEIR zip into
    `download_dir`. Relative paths are taken from `root`, the repository DVC runs."""
    if path:
        folder = root / Path(path).expanduser()
        if not (folder / "corpus.jsonl").is_file():
            raise SmecError(f"data.path={path!r}: no corpus.jsonl in {folder}")
        return folder.resolve()
    candidates = []
    if os.environ.get("BEIR_DATA_DIR"):
        candidates.append(Path(os.environ["BEIR_DATA_DIR"]).expanduser() / name)
    candidates += [root.parent / "shared" / "data" / name, download_dir / name]
    for folder in candidates:
        if (folder / "corpus.jsonl").is_file():
            return folder.resolve()
    return download(name, download_dir)


def download(name: str, download_dir: Path) -> Path:
    """Fetch the public BEIR zip of `name` (needs a network) and check its published counts;
    the folder appears only once the whole set is unpacked and checked."""
    url = BEIR_URL.format(name=name)
    print(f"no local copy of '{name}' found; downloading {url}")
    download_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=download_dir) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            urllib.request.urlretrieve(url, archive)
        except OSError as exc:
            raise SmecError(
                f"data set '{name}' not found locally and download of {url} failed ({exc}); "
                "set data.path or BEIR_DATA_DIR"
            ) from None
        with atomic.directory(download_dir / name) as out, zipfile.ZipFile(archive) as zf:
            zf.extractall(out)
            inner = out / name
            if inner.is_dir():  # the BEIR zips hold one folder named like the set
                for item in inner.iterdir():
                    item.rename(out / item.name)
                inner.rmdir()
            if name in KNOWN_COUNTS:
                check_counts(read(out), name)
    return download_dir / name


def check_counts(ds: Dataset, name: str) -> None:
    corpus, queries, qrels = KNOWN_COUNTS[name]
    got = (len(ds.corpus), len(ds.queries))
    if got != (corpus, queries):
        raise SmecError(f"{name}: expected {corpus} documents and {queries} queries, got {got}")
    for split, rows in qrels.items():
        n = int((ds.qrels.split == split).sum())
        if n != rows:
            raise SmecError(f"{name}: expected {rows} qrels in split '{split}', got {n}")


def _jsonl(path: Path, fields: tuple[str, ...]) -> list[dict]:
    if not path.is_file():
        raise SmecError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SmecError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise SmecError(f"{path}:{line_no}: expected a JSON object")
            for field in fields:
                if not isinstance(row.get(field), str):
                    raise SmecError(f"{path}:{line_no}: missing or non-string '{field}'")
            rows.append(row)
    if not rows:
        raise SmecError(f"{path}: no records")
    return rows


def _qrels(path: Path, split: str) -> pd.DataFrame:
    rows = []
    with path.open(encoding="utf-8", newline="") as fh:
        for line_no, cols in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if line_no == 1 and cols and cols[0] == "query-id":
                continue
            if len(cols) != 3:
                raise SmecError(
                    f"{path}:{line_no}: expected 3 tab-separated columns, got {len(cols)}"
                )
            try:
                score = int(cols[2])
            except ValueError:
                raise SmecError(f"{path}:{line_no}: score {cols[2]!r} is not an integer") from None
            rows.append((cols[0], cols[1], score))
    if not rows:
        raise SmecError(f"{path}: split '{split}' is empty")
    df = pd.DataFrame(rows, columns=["query_id", "corpus_id", "score"])
    df["split"] = split
    return df


def _check_ids(qrels: pd.DataFrame, path: Path, ids: set[str], column: str, what: str) -> None:
    bad = ~qrels[column].isin(ids)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        raise SmecError(
            f"{path}:{i + 2}: {what} id {qrels[column].iloc[i]!r} is not in the data set"
        )


def read(folder: Path, splits: tuple[str, ...] = ("train", "test")) -> Dataset:
    """Read and validate a BEIR folder; splits whose qrels file is absent are skipped."""
    folder = Path(folder)
    corpus = pd.DataFrame(
        [
            {"corpus_id": r["_id"], "title": r.get("title") or "", "text": r["text"]}
            for r in _jsonl(folder / "corpus.jsonl", ("_id", "text"))
        ]
    )
    queries = pd.DataFrame(
        [
            {"query_id": r["_id"], "text": r["text"]}
            for r in _jsonl(folder / "queries.jsonl", ("_id", "text"))
        ]
    )
    for df, key, name in (
        (corpus, "corpus_id", "corpus.jsonl"),
        (queries, "query_id", "queries.jsonl"),
    ):
        dup = df[key].duplicated()
        if dup.any():
            raise SmecError(f"{folder / name}: duplicate _id {df[key][dup].iloc[0]!r}")
    parts = []
    for split in splits:
        path = folder / "qrels" / f"{split}.tsv"
        if not path.is_file():
            continue
        qrels = _qrels(path, split)
        _check_ids(qrels, path, set(queries.query_id), "query_id", "query")
        _check_ids(qrels, path, set(corpus.corpus_id), "corpus_id", "document")
        parts.append(qrels)
    if not parts:
        raise SmecError(f"{folder / 'qrels'}: no qrels file for any of the splits {list(splits)}")
    return Dataset(corpus, queries, pd.concat(parts, ignore_index=True))


def _fraction_of(ids: np.ndarray, fraction: float, seed: int, salt: str) -> set[str]:
    """A deterministic random subset of `ids` (at least one, at most all but one)."""
    rng = np.random.default_rng([seed, int(hashlib.sha256(salt.encode()).hexdigest()[:8], 16)])
    n = min(max(1, round(len(ids) * fraction)), len(ids) - 1)
    return set(rng.permutation(np.sort(ids))[:n])


def split(
    ds: Dataset, train: str, test: str, test_fraction: float, heldout_fraction: float, seed: int
) -> Dataset:
    """Label qrels as train / heldout / test.

    Sets without training qrels have their test queries split by `test_fraction`. A fraction
    `heldout_fraction` of the training queries is held out for per-epoch validation.
    """
    qrels = ds.qrels[ds.qrels.score > 0].copy()
    splits = set(qrels.split)
    if test not in splits:
        raise SmecError(f"data.test_split={test!r}: no qrels for that split")
    if train not in splits:
        tq = _fraction_of(
            qrels.loc[qrels.split == test, "query_id"].unique(), test_fraction, seed, "test"
        )
        qrels.loc[qrels.split == test, "split"] = np.where(
            qrels.loc[qrels.split == test, "query_id"].isin(tq), test, train
        )
    qrels = qrels[qrels.split.isin([train, test])]
    qrels["split"] = qrels.split.map({train: "train", test: "test"})
    if heldout_fraction > 0:
        train_ids = qrels.loc[qrels.split == "train", "query_id"].unique()
        held = _fraction_of(train_ids, heldout_fraction, seed, "heldout")
        qrels.loc[(qrels.split == "train") & qrels.query_id.isin(held), "split"] = "heldout"
    return Dataset(ds.corpus, ds.queries, qrels.reset_index(drop=True))


def subset_corpus(ds: Dataset, limit: int | None, seed: int) -> Dataset:
    """Keep at most `limit` documents: every judged one first, then a seeded random fill."""
    if limit is None or limit >= len(ds.corpus):
        return ds
    judged = set(ds.qrels.corpus_id)
    if len(judged) > limit:
        raise SmecError(
            f"data.corpus_limit={limit}: smaller than the {len(judged)} documents the qrels judge"
        )
    rest = ds.corpus.loc[~ds.corpus.corpus_id.isin(judged), "corpus_id"].to_numpy()
    fill = np.random.default_rng(seed).permutation(rest)[: limit - len(judged)]
    keep = ds.corpus.corpus_id.isin(judged | set(fill))
    return Dataset(ds.corpus[keep].reset_index(drop=True), ds.queries, ds.qrels)


def prepare(folder: Path, data) -> Dataset:
    """Read, validate, split and subset by the `data` params: everything the prepare stage does
    but writing. Every draw comes from `data.split_seed`."""
    ds = read(folder, (data.train_split, data.test_split))
    ds = split(
        ds,
        data.train_split,
        data.test_split,
        data.test_fraction,
        data.heldout_fraction,
        data.split_seed,
    )
    ds = subset_corpus(ds, data.corpus_limit, data.split_seed)
    used = set(ds.qrels.query_id)
    return Dataset(
        ds.corpus, ds.queries[ds.queries.query_id.isin(used)].reset_index(drop=True), ds.qrels
    )
