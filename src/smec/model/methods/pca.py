"""PCA fitted on the corpus (centred), components with a deterministic sign."""

from __future__ import annotations

import torch

from smec.model.methods.base import Baseline, Embedder, Style


class Projection(Embedder):
    """(x − mean) projected on the first d components (float64, returned as float32)."""

    def __init__(self, corpus: torch.Tensor):
        x = corpus.double()
        self.mean = x.mean(dim=0)
        _, _, vt = torch.linalg.svd(x - self.mean, full_matrices=False)
        sign = torch.sign(vt[torch.arange(len(vt)), vt.abs().argmax(dim=1)])
        self.components = vt * sign[:, None]

    def __call__(self, x, d):
        return ((x.double() - self.mean) @ self.components[:d].T).float()


class PCA(Baseline):
    name = "pca"
    label = "PCA"
    style = Style("#2ca02c", "+", "--")

    def fit(self, corpus, seed):
        return Projection(corpus)
