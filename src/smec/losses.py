"""The three losses the paper compares, on one level of compressed embeddings.

Each takes the compressed query and document embeddings of a batch of (query, relevant
document) pairs, `q, d: (B, m)` (not normalised; cosine similarity is taken inside), and a
:class:`Batch` with the relevance of every in-batch document to every in-batch query and the
frozen full embeddings. Negatives are the other documents of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Batch:
    rel: torch.Tensor  # (B, B): graded relevance of document c to query b (0 = not relevant)
    q_full: torch.Tensor  # (B, D_in) frozen embeddings
    d_full: torch.Tensor  # (B, D_in)
    temperature: float = 0.05


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T


def rank(q: torch.Tensor, d: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Pairwise ranking loss of Search-Adaptor / Matryoshka-Adaptor.

    L = mean over (b, j, k) with y_bj > y_bk of (y_bj - y_bk) * log(1 + exp(s_bk - s_bj)),
    s = cosine(q_b, d_·), y = graded relevance. (The paper writes a sum; the mean over the
    valid triples keeps the scale independent of the batch size.)
    """
    s = _cos(q, d)
    y = batch.rel
    gain = (y[:, :, None] - y[:, None, :]).clamp(min=0)  # (B, j, k)
    terms = gain * F.softplus(s[:, None, :] - s[:, :, None])
    return terms.sum() / (gain > 0).sum().clamp(min=1)


def ce(q: torch.Tensor, d: torch.Tensor, batch: Batch) -> torch.Tensor:
    """In-batch contrastive cross-entropy (InfoNCE).

    L = -mean_b log( exp(s_bb / τ) / Σ_c exp(s_bc / τ) ), s = cosine; other in-batch documents
    that are also relevant to query b are left out of its denominator.
    """
    logits = _cos(q, d) / batch.temperature
    eye = torch.eye(len(q), dtype=torch.bool, device=q.device)
    logits = logits.masked_fill((batch.rel > 0) & ~eye, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def mse(q: torch.Tensor, d: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Unsupervised similarity preservation (Matryoshka-Adaptor's pairwise loss, squared).

    Over all pairs a != b of the 2B embeddings of the batch (queries and documents together):
    L = mean (cos(z_a, z_b) - cos(x_a, x_b))^2, z compressed, x frozen full.
    """
    z = torch.cat([q, d])
    x = torch.cat([batch.q_full, batch.d_full])
    diff = _cos(z, z) - _cos(x, x)
    off = ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    return diff[off].pow(2).mean()


LOSSES = {"rank": rank, "ce": ce, "mse": mse}
