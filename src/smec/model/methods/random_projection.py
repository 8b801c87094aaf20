"""A seeded Gaussian random projection: x R_dᵀ with R_d the first d rows of a D × D matrix of
N(0, 1/d) entries drawn from the seed; nothing fitted (the learning-free floor)."""

from __future__ import annotations

import torch

from smec.model.methods.base import Baseline, Embedder, Style


class Gaussian(Embedder):
    """In float64, returned as float32 (as PCA): the vectors do not depend on how the rows are
    batched, so a sharded evaluation scores what one process scores."""

    def __init__(self, dim: int, seed: int, device: torch.device):
        gen = torch.Generator().manual_seed(seed)
        self.matrix = torch.randn(dim, dim, generator=gen, dtype=torch.float64).to(device)

    def __call__(self, x, d):
        return (x.double() @ self.matrix[:d].T / d**0.5).float()


class RandomProjection(Baseline):
    name = "random_projection"
    label = "random projection"
    style = Style("#bcbd22", "1", "--")
    seeded = True

    def fit(self, corpus, seed):
        return Gaussian(corpus.shape[1], seed, corpus.device)
