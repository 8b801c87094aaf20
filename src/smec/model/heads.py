"""The linear compression heads, as stacks of members.

MRL trains one head `W: D_in -> dims[0]` whose output prefixes are the nested embeddings.
SMRL trains a chain `D_in -> dims[0] -> dims[1] -> ...`, one head per halving, each frozen
before the next is trained; the embedding at level t is the output of the first t+1 heads.

Every module of the project holds S members (the seeds, or the trials, of one method) with a
leading member dimension: a head's weight is (S, out, in) and it maps (S, N, in) to
(S, N, out) with one batched product, so S small models train as one (a single member is
S = 1). Member s is drawn from its own seed exactly as a lone head from that seed would be.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from smec.errors import SmecError


def draw_weight(out_dim: int, in_dim: int, init: str, seed: int) -> torch.Tensor:
    """One member's starting weight: `identity` starts as truncation to the first `out_dim`
    input dimensions; `random` is PyTorch's default init (kaiming_uniform(a=√5)) from `seed`."""
    if init == "identity":
        return torch.eye(out_dim, in_dim)
    bound = 1.0 / in_dim**0.5
    gen = torch.Generator().manual_seed(seed)
    return torch.empty(out_dim, in_dim).uniform_(-bound, bound, generator=gen)


class Linear(nn.Module):
    """S linear maps of the same shape: weight (S, out, in), bias (S, out) or none."""

    def __init__(self, weight: torch.Tensor, bias: bool = False):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(weight.new_zeros(weight.shape[:2])) if bias else None

    @property
    def in_features(self) -> int:
        return self.weight.shape[2]

    @property
    def out_features(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(S, N, in) -> (S, N, out), computed as (W xᵀ)ᵀ: the gradient of W then comes out
        of the product in W's own layout, where x Wᵀ would hand autograd a transposed one to
        copy (a pass over (S, out, in) per step)."""
        xt = x.transpose(1, 2)
        if self.bias is None:
            return torch.bmm(self.weight, xt).transpose(1, 2)
        return torch.baddbmm(self.bias[:, :, None], self.weight, xt).transpose(1, 2)


def make_head(in_dim: int, out_dim: int, bias: bool, init: str, seeds: list[int]) -> Linear:
    """A stack of heads, member s drawn from `seeds[s]` (:func:`draw_weight`)."""
    return Linear(torch.stack([draw_weight(out_dim, in_dim, init, s) for s in seeds]), bias)


def members(x: torch.Tensor, n: int) -> torch.Tensor:
    """`x` as (S, N, D) for S = n members: a shared (N, D) table is viewed once per member."""
    return x.expand(n, *x.shape) if x.dim() == 2 else x


def rows_of(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Each member's rows `idx` (S, B) of `x`, shared (N, D) or per member (S, N, D)."""
    if x.dim() == 2:
        return x[idx]
    # Row indexing, not a gather with an index per element: the same values, 7-14% of SMEC's
    # step (docs/benchmarks.md, bench/smec_step.py).
    return x[torch.arange(len(idx), device=idx.device)[:, None], idx]


def chain_dims(in_dim: int, dims: list[int]) -> list[tuple[int, int]]:
    """(input, output) width of each SMRL step: D_in -> dims[0] -> dims[1] -> ..., each step a
    halving after the first, which must fit in D_in (widths come resolved at the encoder's D:
    :meth:`smec.params.Params.at`)."""
    if not all(isinstance(d, int) for d in dims) or not 0 < dims[0] <= in_dim:
        raise SmecError(f"widths {dims}: the first must be a width in [1, D={in_dim}]")
    if any(big != 2 * small for big, small in itertools.pairwise(dims)):
        raise SmecError(f"widths {dims}: each must be half the one before")
    return list(zip([in_dim, *dims[:-1]], dims, strict=True))


@torch.no_grad()
def apply_chain(heads: list[nn.Module], x: torch.Tensor, n: int = 1) -> torch.Tensor:
    """The chain of (S-member) modules applied to `x`, shared or per member."""
    x = members(x, n)
    for head in heads:
        x = head(x)
    return x
