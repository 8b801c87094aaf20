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

Both train under `train.loss` where the papers write L_rank (the paper's default, `rank`), so
the comparison's other loss (`ce`) changes every method's supervised term alike **[choice]**.
"""

from __future__ import annotations

import torch
from torch import nn

from smec.model import heads
from smec.model.losses import prefix_cosine
from smec.model.nesting import NestedLoss


class Adaptor(nn.Module):
    """ĉ = c + A c for each of S members; A starts at zero (`identity`: the adaptor starts as
    truncation) or, as the ablation of the common start, as PyTorch's default init drawn from
    each member's seed (`random`)."""

    def __init__(self, dim: int, init: str = "identity", seeds: list[int] = (0,)):
        super().__init__()
        start = "zero" if init == "identity" else "random"
        self.f = heads.Linear(torch.stack([_residual(dim, start, s) for s in seeds]))

    @property
    def weight(self) -> torch.Tensor:
        return self.f.weight

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return c + self.f(c)


def _residual(dim: int, start: str, seed: int) -> torch.Tensor:
    return torch.zeros(dim, dim) if start == "zero" else heads.draw_weight(dim, dim, "random", seed)


def as_matrix(adaptor: Adaptor) -> torch.Tensor:
    """The adaptor as one matrix per member, I + A (what an exported model applies)."""
    a = adaptor.weight
    return torch.eye(a.shape[-1], device=a.device) + a


def _off_diagonal(n: int, device) -> torch.Tensor:
    return ~torch.eye(n, dtype=torch.bool, device=device)


def _gaps(c: torch.Tensor, c_hat: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """|cos(c_i, c_j) − cos(ĉ_i[:m], ĉ_j[:m])|, (S, L, N, N), and the frozen cosines."""
    full = prefix_cosine(c, c, [c.shape[-1]])[:, 0]  # (S, N, N)
    return (prefix_cosine(c_hat, c_hat, dims) - full[:, None]).abs(), full


def pair_loss(c: torch.Tensor, c_hat: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """mean over pairs i ≠ j and widths m of |cos(c_i, c_j) − cos(ĉ_i[:m], ĉ_j[:m])|, (S,)."""
    diff, _ = _gaps(c, c_hat, dims)
    return diff[:, :, _off_diagonal(c.shape[1], c.device)].mean(dim=(1, 2))


def topk_loss(c: torch.Tensor, c_hat: torch.Tensor, dims: list[int], k: int) -> torch.Tensor:
    """`pair_loss` restricted to each item's k nearest neighbours in the original space."""
    diff, full = _gaps(c, c_hat, dims)
    n = c.shape[1]
    k = min(k, n - 1)
    near = full.masked_fill(~_off_diagonal(n, c.device), float("-inf")).topk(k, dim=-1).indices
    picked = torch.gather(diff, 3, near[:, None].expand(-1, len(dims), -1, -1))  # (S, L, N, k)
    return picked.mean(dim=(1, 2, 3))


def rec_loss(f_c: torch.Tensor) -> torch.Tensor:
    return f_c.abs().mean(dim=(1, 2))


def matryoshka_unsupervised(
    c: torch.Tensor, adaptor: Adaptor, dims: list[int], k: int, alpha: float, beta: float
) -> torch.Tensor:
    """L_topk + α L_pair + β L_rec over the items `c` (queries and documents together), (S,)."""
    f_c = adaptor.f(c)
    c_hat = c + f_c
    return topk_loss(c, c_hat, dims, k) + alpha * pair_loss(c, c_hat, dims) + beta * rec_loss(f_c)


def search_loss(
    q: torch.Tensor, d: torch.Tensor, adaptor: Adaptor, loss: NestedLoss, batch, rec_weight: float
) -> torch.Tensor:
    """Search-Adaptor's loss for its width m: L(ĉ_q[:m], ĉ_d[:m]) + λ mean|f(c)|, (S,), with L
    `loss` over the one width m (the paper's L_rank, or the comparison's other loss)."""
    fq, fd = adaptor.f(q), adaptor.f(d)
    rank = loss(q + fq, d + fd, batch)
    return rank + rec_weight * rec_loss(torch.cat([fq, fd], dim=1))
