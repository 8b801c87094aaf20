"""Quantisation: the baseline every compression method is compared with.

Precisions (sentence-transformers' `quantize_embeddings` does the quantising):

- `float32`: the vectors as they are; 4 bytes a dimension.
- `int8`: each dimension mapped to 256 levels between its minimum and maximum over the corpus
  (the calibration embeddings are the corpus's own vectors); 1 byte a dimension; scored by the
  cosine of the int8 vectors **[choice: sentence-transformers' own search uses their inner
  product]**.
- `binary`: the sign of each dimension, packed 8 to a byte (`ubinary`); scored by Hamming
  distance, which for ±1 vectors ranks exactly as their cosine does (used here, with the
  vectors padded so that the cosines are exact: :func:`exact_signs`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

PRECISIONS = ("float32", "int8", "binary")


def bytes_per_vector(dim: int, precision: str) -> int:
    return {"float32": 4 * dim, "int8": dim, "binary": math.ceil(dim / 8)}[precision]


def quantize(x: torch.Tensor, precision: str, calibration: torch.Tensor) -> torch.Tensor:
    """`x` at `precision`, as float32 vectors whose cosines rank as the quantised ones score."""
    if precision == "float32":
        return x
    from sentence_transformers.quantization import quantize_embeddings

    emb = x.detach().cpu().numpy()
    if precision == "int8":
        q = quantize_embeddings(emb, "int8", calibration_embeddings=calibration.cpu().numpy())
        return torch.from_numpy(q.astype(np.float32)).to(x.device)
    bits = np.unpackbits(quantize_embeddings(emb, "ubinary"), axis=1)[:, : x.shape[1]]
    signs = torch.from_numpy(2.0 * bits.astype(np.float32) - 1.0)
    return exact_signs(signs).to(x.device)


def exact_signs(signs: torch.Tensor) -> torch.Tensor:
    """±1 vectors padded with ones to a width that is a power of 4: every vector's norm is then
    a power of 2, so the search's normalised entries (±2^-m) and every dot product between
    them are exact in float32, whatever the order of the sums. Ties in Hamming distance then
    tie exactly, and one process or several, one chunk size or another, rank alike. The pad
    adds the same constant to every query-document score: the ranking is Hamming's."""
    width = 4 ** math.ceil(math.log(signs.shape[1], 4))
    return torch.cat([signs, signs.new_ones(len(signs), width - signs.shape[1])], dim=1)


def variants(plain):
    """Every (labels, queries, corpus) variant at every precision, calibrated on its corpus,
    labelled with `precision` and `bytes_per_vector`."""
    for labels, zq, zc in plain:
        for precision in PRECISIONS:
            size = bytes_per_vector(labels["dim"], precision)
            yield (
                {**labels, "precision": precision, "bytes_per_vector": size},
                quantize(zq, precision, zc),
                quantize(zc, precision, zc),
            )
