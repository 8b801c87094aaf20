import json
import shutil
import zipfile

import pytest

from smec import params
from smec.data import beir
from smec.errors import SmecError

from ..conftest import SCIFACT, write_beir


def test_reads_a_valid_folder(tiny_beir):
    ds = beir.read(tiny_beir)
    assert (len(ds.corpus), len(ds.queries)) == (48, 24)
    assert ds.qrels.groupby("split").size().to_dict() == {"test": 8, "train": 16}


def _lines(path, edit):
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda f: (f / "corpus.jsonl").unlink(), r"corpus.jsonl: file not found"),
        (
            lambda f: _lines(f / "corpus.jsonl", lambda ls: ls.insert(2, "{oops")),
            r"corpus.jsonl:3: not valid JSON",
        ),
        (
            lambda f: _lines(
                f / "queries.jsonl", lambda ls: ls.__setitem__(4, json.dumps({"text": "no id"}))
            ),
            r"queries.jsonl:5: missing or non-string '_id'",
        ),
        (
            lambda f: _lines(
                f / "corpus.jsonl",
                lambda ls: ls.__setitem__(0, json.dumps({"_id": "d0", "title": "t"})),
            ),
            r"corpus.jsonl:1: missing or non-string 'text'",
        ),
        (
            lambda f: _lines(f / "qrels/train.tsv", lambda ls: ls.__setitem__(3, "q2\td2")),
            r"qrels/train.tsv:4: expected 3 tab-separated columns, got 2",
        ),
        (
            lambda f: _lines(f / "qrels/test.tsv", lambda ls: ls.__setitem__(2, "q99\td1\t1")),
            r"qrels/test.tsv:3: query id 'q99' is not in the data set",
        ),
        (
            lambda f: _lines(f / "qrels/train.tsv", lambda ls: ls.__setitem__(1, "q0\tzzz\t1")),
            r"qrels/train.tsv:2: document id 'zzz' is not in the data set",
        ),
        (
            lambda f: (f / "qrels/test.tsv").write_text("query-id\tcorpus-id\tscore\n"),
            r"qrels/test.tsv: split 'test' is empty",
        ),
        (
            lambda f: _lines(f / "corpus.jsonl", lambda ls: ls.append(ls[0])),
            r"corpus.jsonl: duplicate _id 'd0'",
        ),
    ],
)
def test_bad_input_names_file_and_line(tiny_beir, breaker, message):
    breaker(tiny_beir)
    with pytest.raises(SmecError, match=message) as err:
        beir.read(tiny_beir)
    assert "\n" not in str(err.value)


def test_split_holds_out_training_queries_deterministically(tiny_beir):
    ds = beir.read(tiny_beir)
    a = beir.split(ds, "train", "test", 0.2, 0.25, seed=0)
    b = beir.split(ds, "train", "test", 0.2, 0.25, seed=0)
    c = beir.split(ds, "train", "test", 0.2, 0.25, seed=1)
    assert a.qrels.equals(b.qrels)
    assert a.qrels.groupby("split").size().to_dict() == {"heldout": 4, "test": 8, "train": 12}
    held = lambda d: set(d.qrels.query_id[d.qrels.split == "heldout"])  # noqa: E731
    assert held(a) != held(c)


def test_the_split_follows_data_split_seed_alone(tiny_beir):
    """The held-out queries and the corpus subset are drawn from data.split_seed; train.seed
    (initialisation, batch order) is not a param of prepare at all."""
    a = beir.prepare(tiny_beir, params.Data(heldout_fraction=0.25, corpus_limit=30))
    b = beir.prepare(tiny_beir, params.Data(heldout_fraction=0.25, corpus_limit=30, split_seed=1))
    held = lambda d: set(d.qrels.query_id[d.qrels.split == "heldout"])  # noqa: E731
    assert held(a) != held(b)
    assert set(a.corpus.corpus_id) != set(b.corpus.corpus_id)
    import inspect

    assert list(inspect.signature(beir.prepare).parameters) == ["folder", "data"]


def test_set_without_training_qrels_is_split_from_its_test_queries(tmp_path):
    folder = write_beir(tmp_path / "t")
    (folder / "qrels/train.tsv").unlink()
    ds = beir.split(beir.read(folder), "train", "test", 0.25, 0.0, seed=3)
    counts = ds.qrels.groupby("split").query_id.nunique().to_dict()
    assert counts == {"test": 2, "train": 6}
    assert beir.split(beir.read(folder), "train", "test", 0.25, 0.0, seed=3).qrels.equals(ds.qrels)


def test_corpus_limit_keeps_every_judged_document(tiny_beir):
    ds = beir.prepare(tiny_beir, params.Data(corpus_limit=30))
    assert len(ds.corpus) == 30
    assert set(ds.qrels.corpus_id) <= set(ds.corpus.corpus_id)
    with pytest.raises(SmecError, match=r"data.corpus_limit=10: smaller than the 24 documents"):
        beir.prepare(tiny_beir, params.Data(corpus_limit=10))


def test_path_resolution_order(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    shared = write_beir(tmp_path / "shared" / "data" / "tiny")
    env = write_beir(tmp_path / "env" / "tiny")
    explicit = write_beir(tmp_path / "explicit")
    monkeypatch.delenv("BEIR_DATA_DIR", raising=False)
    assert beir.resolve_path("tiny", None, root, root / "raw") == shared.resolve()
    monkeypatch.setenv("BEIR_DATA_DIR", str(tmp_path / "env"))
    assert beir.resolve_path("tiny", None, root, root / "raw") == env.resolve()
    assert beir.resolve_path("tiny", str(explicit), root, root / "raw") == explicit.resolve()


def test_a_data_path_that_does_not_exist_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    """The fallback chain is for an unset data.path; a typo in a set one is named."""
    root = tmp_path / "repo"
    root.mkdir()
    write_beir(tmp_path / "shared" / "data" / "tiny")  # a fallback that would be found
    monkeypatch.setenv("BEIR_DATA_DIR", str(tmp_path / "shared" / "data"))
    with pytest.raises(SmecError, match=r"^data.path='tinny': no corpus.jsonl in .*/repo/tinny$"):
        beir.resolve_path("tiny", "tinny", root, root / "raw")


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="SciFact is not beside the project")
def test_real_scifact_reads_with_its_published_counts():
    ds = beir.read(SCIFACT)
    beir.check_counts(ds, "scifact")
    prepared = beir.prepare(SCIFACT, params.Data())
    counts = prepared.qrels.groupby("split").query_id.nunique().to_dict()
    assert counts["test"] == 300 and counts["train"] + counts["heldout"] == 809


def _zip_of(folder, path):
    with zipfile.ZipFile(path, "w") as zf:
        for f in folder.rglob("*"):
            if f.is_file():
                zf.write(f, f.relative_to(folder.parent))  # BEIR zips hold one folder
    return path


def test_download_path_fetches_the_zip_and_checks_published_counts(tmp_path, monkeypatch):
    """The real downloader on a real zip, served from a file:// URL instead of the network."""
    _zip_of(write_beir(tmp_path / "src" / "tiny"), tmp_path / "tiny.zip")
    monkeypatch.setattr(beir, "BEIR_URL", f"file://{tmp_path}/{{name}}.zip")
    monkeypatch.setitem(beir.KNOWN_COUNTS, "tiny", (48, 24, {"train": 16, "test": 8}))
    monkeypatch.delenv("BEIR_DATA_DIR", raising=False)
    root = tmp_path / "lonely" / "repo"
    root.mkdir(parents=True)
    folder = beir.resolve_path("tiny", None, root, root / "data/raw")
    assert folder == root / "data/raw/tiny"
    assert len(beir.read(folder).corpus) == 48
    assert not (root / "data/raw/tiny.zip").exists()

    shutil.rmtree(folder)
    monkeypatch.setitem(beir.KNOWN_COUNTS, "tiny", (50, 24, {"train": 16, "test": 8}))
    with pytest.raises(SmecError, match=r"tiny: expected 50 documents and 24 queries, got"):
        beir.resolve_path("tiny", None, root, root / "data/raw")


def test_failed_download_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setattr(beir, "BEIR_URL", f"file://{tmp_path}/missing/{{name}}.zip")
    monkeypatch.delenv("BEIR_DATA_DIR", raising=False)
    root = tmp_path / "lonely" / "repo"
    root.mkdir(parents=True)
    with pytest.raises(
        SmecError,
        match=r"data set 'nope' not found locally and download of "
        r"file://.*failed .*; set data.path or BEIR_DATA_DIR",
    ):
        beir.resolve_path("nope", None, root, root / "data/raw")
    assert not (root / "data/raw/nope").exists()
