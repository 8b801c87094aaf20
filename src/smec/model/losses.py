"""The three losses the paper compares, evaluated at every nested width at once.

Each loss takes the compressed query and document embeddings of a batch of (query, relevant
document) pairs for each of S members (:mod:`smec.model.heads`), `q, d: (S, B, D)` (not
normalised), the nested widths `dims`, and a :class:`Batch` with the relevance of every
in-batch document to every in-batch query and the frozen full embeddings, per member. It
returns one loss per member and width, `(S, L)`, where level l sees only the prefix
`[..., :dims[l]]`. Negatives are the other documents of the member's batch; members never mix.

All widths share one call (:func:`prefix_cosine`, a product per width on views of the
prefixes), so nesting adds little work: that keeps MRL's step close to the cost of a single
loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F


@dataclass
class Batch:
    rel: torch.Tensor  # (S, B, B): graded relevance of document c to query b (0: not relevant)
    q_full: torch.Tensor  # (S, B, D_in) frozen embeddings
    d_full: torch.Tensor  # (S, B, D_in)
    temperature: float = 0.05  # ce
    rank_scale: float = 1.0  # rank: s in softplus(s · (s_bk - s_bj)); 1 is the paper's formula

    @cached_property
    def positives(self) -> tuple[torch.Tensor, ...]:
        """(member, b, j) of every relevant in-batch pair off the diagonal (j ≠ b: a query's
        other relevant documents in the batch), and gain[p, k] = max(y_bj − y_bk, 0)."""
        eye = torch.eye(self.rel.shape[1], dtype=torch.bool, device=self.rel.device)
        m, b, j = torch.nonzero((self.rel > 0) & ~eye, as_tuple=True)
        gain = (self.rel[m, b, j][:, None] - self.rel[m, b]).clamp(min=0)
        return m, b, j, gain

    @cached_property
    def full_cosine(self) -> torch.Tensor:
        """(S, 2B, 2B) cosine similarities of the frozen embeddings of queries and documents."""
        x = F.normalize(torch.cat([self.q_full, self.d_full], dim=1), dim=-1)
        return x @ x.transpose(1, 2)


def prefix_cosine(a: torch.Tensor, b: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """cos(a[..., :m], b[..., :m]) for every m in `dims`: a (S, Na, D), b (S, Nb, D) ->
    (S, L, Na, Nb).

    One batched product per width on the prefixes themselves (views, no copies), scaled by the
    inverse prefix norms, which come from one cumulative sum.
    """
    idx = torch.tensor(dims, device=a.device) - 1
    dots = torch.stack([a[..., :m] @ b[..., :m].transpose(1, 2) for m in dims], dim=1)
    inv_a = a.square().cumsum(dim=-1)[..., idx].clamp_min(1e-24).rsqrt()  # (S, Na, L)
    inv_b = b.square().cumsum(dim=-1)[..., idx].clamp_min(1e-24).rsqrt()  # (S, Nb, L)
    return dots * inv_a.transpose(1, 2)[..., :, None] * inv_b.transpose(1, 2)[..., None, :]


def rank(q: torch.Tensor, d: torch.Tensor, dims: list[int], batch: Batch) -> torch.Tensor:
    """Pairwise ranking loss of Search-Adaptor / Matryoshka-Adaptor, per width.

    L = mean over (b, j, k) with y_bj > y_bk of (y_bj - y_bk) * log(1 + exp(σ (s_bk - s_bj))),
    s = cosine(q_b, d_·), y = graded relevance, σ = `batch.rank_scale` (1 in the paper). (The
    paper writes a sum; the mean over the valid triples keeps the scale independent of the batch
    size.) With σ = 1 the softplus argument stays in [-2, 2], so every triple keeps a weight of
    at least sigmoid(-2) = 0.12 however well the batch is ranked; a larger σ lets the loss
    saturate as InfoNCE's 1/τ does.

    Each query's own pair (j = b, the diagonal) is evaluated densely over (S, L, B, B); the few
    other relevant in-batch documents (:attr:`Batch.positives`) are gathered.
    """
    s = prefix_cosine(q, d, dims)  # (S, L, B, B)
    diag = s.diagonal(dim1=2, dim2=3)  # (S, L, B): s_bb
    gain = (batch.rel.diagonal(dim1=1, dim2=2)[..., None] - batch.rel).clamp(min=0)  # (S, B, B)
    terms = gain[:, None] * F.softplus(batch.rank_scale * (s - diag[..., None]))
    total = terms.sum(dim=(2, 3))
    count = (gain > 0).sum(dim=(1, 2)).to(s.dtype)
    m, b, j, gain = batch.positives
    if len(m):
        rows = s[m, :, b, :]  # (P, L, B): each other positive's query row, at every width
        terms = gain[:, None, :] * F.softplus(batch.rank_scale * (rows - s[m, :, b, j][..., None]))
        total = total.index_add(0, m, terms.sum(dim=2))
        count = count.index_add(0, m, (gain > 0).sum(dim=1).to(s.dtype))
    return total / count.clamp(min=1)[:, None]


def ce(q: torch.Tensor, d: torch.Tensor, dims: list[int], batch: Batch) -> torch.Tensor:
    """In-batch contrastive cross-entropy (InfoNCE), per width.

    L = -mean_b log( exp(s_bb / τ) / Σ_c exp(s_bc / τ) ), s = cosine; other in-batch documents
    that are also relevant to query b are left out of its denominator.
    """
    n_members, n = q.shape[:2]
    logits = prefix_cosine(q, d, dims) / batch.temperature  # (S, L, B, B)
    eye = torch.eye(n, dtype=torch.bool, device=q.device)
    logits = logits.masked_fill(((batch.rel > 0) & ~eye)[:, None], float("-inf"))
    target = torch.arange(n, device=q.device).repeat(n_members * len(dims))
    per_query = F.cross_entropy(logits.reshape(-1, n), target, reduction="none")
    return per_query.view(n_members, len(dims), n).mean(2)


def mse(q: torch.Tensor, d: torch.Tensor, dims: list[int], batch: Batch) -> torch.Tensor:
    """Unsupervised similarity preservation (Matryoshka-Adaptor's pairwise loss, squared),
    per width.

    Over all pairs a != b of the 2B embeddings of the batch (queries and documents together):
    L = mean (cos(z_a, z_b) - cos(x_a, x_b))^2, z compressed, x frozen full.
    """
    z = torch.cat([q, d], dim=1)
    diff = prefix_cosine(z, z, dims) - batch.full_cosine[:, None]
    off = ~torch.eye(z.shape[1], dtype=torch.bool, device=z.device)
    return diff[:, :, off].pow(2).mean(dim=2)


LOSSES = {"rank": rank, "ce": ce, "mse": mse}
