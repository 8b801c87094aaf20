"""PCA fitted on the corpus (centred), components with a deterministic sign; and the same
projection whitened (each component divided by its standard deviation on the corpus)."""

from __future__ import annotations

import torch

from smec.model.methods.base import Baseline, Embedder, Style


class Projection(Embedder):
    """(x − mean) projected on the first d components (float64, returned as float32); with
    `whiten`, component i is divided by its corpus standard deviation s_i / √(n − 1), so the
    corpus's projected covariance is the identity (cosine then weighs every kept direction
    alike instead of by its variance)."""

    def __init__(self, corpus: torch.Tensor, whiten: bool = False):
        x = corpus.double()
        self.mean = x.mean(dim=0)
        _, s, vt = torch.linalg.svd(x - self.mean, full_matrices=False)
        sign = torch.sign(vt[torch.arange(len(vt)), vt.abs().argmax(dim=1)])
        self.components = vt * sign[:, None]
        if whiten:
            std = (s / max(len(x) - 1, 1) ** 0.5).clamp_min(1e-12)
            self.components = self.components / std[:, None]

    def __call__(self, x, d):
        return ((x.double() - self.mean) @ self.components[:d].T).float()


class PCA(Baseline):
    name = "pca"
    label = "PCA"
    style = Style("#2ca02c", "+", "--")

    def fit(self, corpus, seed):
        return Projection(corpus)


class WhitenedPCA(Baseline):
    name = "pca_whiten"
    label = "PCA, whitened"
    style = Style("#e377c2", "*", "--")

    def fit(self, corpus, seed):
        return Projection(corpus, whiten=True)
