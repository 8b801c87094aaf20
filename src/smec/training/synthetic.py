"""Synthetic embeddings with known answers, fast stand-ins for real data in tests and
benchmarks: latent-factor data (docs/method.md, "The claims") and a planted subset of
relevant coordinates (the known answer ADS must find)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from smec.measure import retrieval
from smec.training.data import TrainData


def latent_factor_data(
    n_pairs: int = 512,
    n_docs: int = 1024,
    dim: int = 384,
    factors: int = 32,
    n_heldout: int = 32,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> TrainData:
    """Documents x = norm(A z + noise); query i is a noisy view of document i (its only
    relevant one). Queries past `n_pairs` (up to `n_pairs + n_heldout`) are held out."""
    gen = torch.Generator().manual_seed(seed)
    n_q = n_pairs + n_heldout
    mix = torch.randn(dim, factors, generator=gen)
    z = torch.randn(n_docs, factors, generator=gen)
    docs = F.normalize(z @ mix.T + 0.3 * torch.randn(n_docs, dim, generator=gen), dim=-1)
    zq = z[:n_q] + 0.5 * torch.randn(n_q, factors, generator=gen)
    queries = F.normalize(zq @ mix.T + 0.3 * torch.randn(n_q, dim, generator=gen), dim=-1)
    pairs = torch.stack([torch.arange(n_pairs), torch.arange(n_pairs)], 1)
    keys = pairs[:, 0] * n_docs + pairs[:, 1]
    held = list(range(n_pairs, n_q))
    corpus_ids = [f"d{i}" for i in range(n_docs)]
    return TrainData(
        q=queries.to(device),
        c=docs.to(device),
        pairs=pairs.to(device),
        keys=keys.to(device),
        key_scores=torch.ones(n_pairs, device=device),
        heldout=torch.tensor(held, dtype=torch.long, device=device),
        heldout_ids=[f"q{i}" for i in held],
        heldout_qrels=retrieval.qrels_dict_from_pairs([(f"q{i}", f"d{i}", 1) for i in held]),
        corpus_ids=corpus_ids,
    )


def planted_subset_data(
    signal: list[int],
    dim: int = 32,
    n_pairs: int = 384,
    n_docs: int = 512,
    n_heldout: int = 32,
    seed: int = 0,
) -> TrainData:
    """Only the coordinates `signal` carry relevance; the others are noise of the same size.

    A document is a random vector on `signal` and independent noise elsewhere; query i shares
    document i's signal coordinates (plus a little noise) and draws its own noise elsewhere.
    Every coordinate has the same variance, so nothing but relevance tells the signal ones
    apart: the right selection of len(signal) coordinates is known. Queries past `n_pairs`
    are held out."""
    gen = torch.Generator().manual_seed(seed)
    n_q = n_pairs + n_heldout
    keep = torch.tensor(signal)
    docs = torch.randn(n_docs, dim, generator=gen)
    queries = torch.randn(n_q, dim, generator=gen)
    queries[:, keep] = docs[:n_q][:, keep] + 0.3 * torch.randn(n_q, len(signal), generator=gen)
    queries[:, keep] /= (1 + 0.3**2) ** 0.5  # the same variance as the noise coordinates
    pairs = torch.stack([torch.arange(n_pairs), torch.arange(n_pairs)], 1)
    held = list(range(n_pairs, n_q))
    return TrainData(
        q=F.normalize(queries, dim=-1),
        c=F.normalize(docs, dim=-1),
        pairs=pairs,
        keys=pairs[:, 0] * n_docs + pairs[:, 1],
        key_scores=torch.ones(n_pairs),
        heldout=torch.tensor(held, dtype=torch.long),
        heldout_ids=[f"q{i}" for i in held],
        heldout_qrels=retrieval.qrels_dict_from_pairs([(f"q{i}", f"d{i}", 1) for i in held]),
        corpus_ids=[f"d{i}" for i in range(n_docs)],
    )
