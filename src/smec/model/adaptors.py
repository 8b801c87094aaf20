"""The paper's baselines: Matryoshka-Adaptor and Search-Adaptor (Yoon et al., 2024).

Both adapt the frozen embedding c ∈ R^D with a skip connection, ĉ = c + f(c) **[src]**, and
compress by keeping a prefix ĉ[:m] **[src]**. Here f is linear, f(c) = A c with A ∈ R^{D×D}
starting at zero, so an adaptor starts as the identity (truncation), the start every method of
the comparison gets (`compare.init`) **[choice: the papers allow an MLP; a linear f has the
parameter count of ADS's square heads and exports as one matrix, I + A]**.

Matryoshka-Adaptor: one f shared by queries and documents and by every width m ∈ dims **[src]**,
over the 2B items of a batch (its queries and documents):

    L_pair = mean_{i≠j, m} | cos(c_i, c_j) − cos(ĉ_i[:m], ĉ_j[:m]) |     (the paper sums)
    L_topk = the same, over each item's k nearest neighbours j in the original space
    L_rec  = mean | f(c) |                                               (L1, keeps f small)
    unsupervised:  L_topk + α L_pair + β L_rec                           α = β = 1  [src]
    supervised:    the same + γ Σ_m L_rank(ĉ_q[:m], ĉ_d[:m])            γ = 1      [src]

trained unsupervised first, then supervised **[src; the split of the epochs: choice]**.

Search-Adaptor: one f_m per width, nothing shared **[src]**:

    L_m = L_rank(ĉ_q[:m], ĉ_d[:m]) + λ mean | f_m(c) |        λ small [src]; 0.1 here [choice]
"""

from __future__ import annotations

import torch
from torch import nn

from smec.model import losses
from smec.model.losses import prefix_cosine


class Adaptor(nn.Module):
    """ĉ = c + A c; A starts at zero (`identity`: the adaptor starts as truncation) or, as the
    ablation of the common start, as PyTorch's default init drawn from `seed` (`random`)."""

    def __init__(self, dim: int, init: str = "identity", seed: int = 0):
        super().__init__()
        self.f = nn.Linear(dim, dim, bias=False)
        with torch.no_grad():
            if init == "identity":
                self.f.weight.zero_()
            else:
                bound = 1.0 / dim**0.5  # kaiming_uniform(a=sqrt(5)), as nn.Linear does
                self.f.weight.uniform_(-bound, bound, generator=torch.Generator().manual_seed(seed))

    @property
    def weight(self) -> torch.Tensor:
        return self.f.weight

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return c + self.f(c)


def as_matrix(adaptor: Adaptor) -> torch.Tensor:
    """The adaptor as one matrix, I + A (what an exported model applies)."""
    a = adaptor.weight
    return torch.eye(a.shape[1], device=a.device) + a


def _off_diagonal(n: int, device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def pair_loss(c: torch.Tensor, c_hat: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """mean over pairs i ≠ j and widths m of |cos(c_i, c_j) − cos(ĉ_i[:m], ĉ_j[:m])|."""
    full = prefix_cosine(c, c, [c.shape[1]])[0]
    diff = (prefix_cosine(c_hat, c_hat, dims) - full).abs()  # (L, N, N)
    return diff[:, _off_diagonal(len(c), c.device)].mean()


def topk_loss(c: torch.Tensor, c_hat: torch.Tensor, dims: list[int], k: int) -> torch.Tensor:
    """`pair_loss` restricted to each item's k nearest neighbours in the original space."""
    full = prefix_cosine(c, c, [c.shape[1]])[0]
    k = min(k, len(c) - 1)
    neighbours = full.masked_fill(~_off_diagonal(len(c), c.device), float("-inf")).topk(k).indices
    rows = torch.arange(len(c), device=c.device)[:, None]
    diff = (prefix_cosine(c_hat, c_hat, dims) - full).abs()  # (L, N, N)
    return diff[:, rows, neighbours].mean()


def rec_loss(f_c: torch.Tensor) -> torch.Tensor:
    return f_c.abs().mean()


def matryoshka_unsupervised(
    c: torch.Tensor, adaptor: Adaptor, dims: list[int], k: int, alpha: float, beta: float
) -> torch.Tensor:
    """L_topk + α L_pair + β L_rec over the items `c` (queries and documents together)."""
    f_c = adaptor.f(c)
    c_hat = c + f_c
    return topk_loss(c, c_hat, dims, k) + alpha * pair_loss(c, c_hat, dims) + beta * rec_loss(f_c)


def search_loss(
    q: torch.Tensor, d: torch.Tensor, adaptor: Adaptor, width: int, batch, rec_weight: float
) -> torch.Tensor:
    """Search-Adaptor's loss for its width: L_rank(ĉ_q[:m], ĉ_d[:m]) + λ mean|f(c)|."""
    fq, fd = adaptor.f(q), adaptor.f(d)
    rank = losses.rank(q + fq, d + fd, [width], batch)[0]
    return rank + rec_weight * rec_loss(torch.cat([fq, fd]))
