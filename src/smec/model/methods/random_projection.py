"""A seeded Gaussian random projection: x R_dᵀ with R_d the first d rows of a D × D matrix of
N(0, 1/d) entries drawn from the seed; nothing fitted (the learning-free floor)."""

from __future__ import annotations

import torch

from smec.model.methods.base import Baseline, Embedder, Style


class Gaussian(Embedder):
    def __init__(self, dim: int, seed: int, device: torch.device):
        gen = torch.Generator().manual_seed(seed)
        self.matrix = torch.randn(dim, dim, generator=gen).to(device)

    def __call__(self, x, d):
        return x @ self.matrix[:d].T / d**0.5


class RandomProjection(Baseline):
    name = "random_projection"
    label = "random projection"
    style = Style("#bcbd22", "1", "--")
    seeded = True

    def fit(self, corpus, seed):
        return Gaussian(corpus.shape[1], seed, corpus.device)
