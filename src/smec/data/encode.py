"""The frozen encoder's stage logic: embed the corpus and the queries.

The encoder runs once per data set; its output (float32, L2-normalised) is a DVC output, so
changing a training param never re-embeds. The encoders themselves (which kind `encoder.kind`
picks, how each loads and encodes) live in :mod:`smec.data.encoders`; the sentence-transformers
functions stay importable from here.
"""

from __future__ import annotations

import time

import numpy as np

from smec.data.encoders import Encoder
from smec.data.encoders.sentence_transformers import (
    devices,
    encode,
    load_model,
    model_path,
    threads_per_process,
)

__all__ = [
    "corpus_texts",
    "devices",
    "embed",
    "encode",
    "load_model",
    "model_path",
    "threads_per_process",
]


def corpus_texts(corpus) -> list[str]:
    """BEIR convention: title and text joined by a space."""
    return [f"{t} {x}".strip() for t, x in zip(corpus.title, corpus.text, strict=True)]


def embed(encoder: Encoder, corpus, queries, batch_size: int) -> tuple[dict[str, np.ndarray], dict]:
    """Embed corpus and queries; return the arrays and throughput figures."""
    arrays, stats = {}, {}
    for name, texts in (("corpus", corpus_texts(corpus)), ("queries", list(queries.text))):
        start = time.perf_counter()
        print(f"embedding {len(texts)} {name} texts")
        arrays[name] = encoder.encode(texts, batch_size)
        seconds = time.perf_counter() - start
        stats[f"{name}_count"] = len(texts)
        stats[f"{name}_seconds"] = round(seconds, 3)
        stats[f"{name}_texts_per_s"] = round(len(texts) / seconds, 2)
    return arrays, stats
