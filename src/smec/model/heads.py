"""The linear compression heads.

MRL trains one head `W: D_in -> dims[0]` whose output prefixes are the nested embeddings.
SMRL trains a chain `D_in -> dims[0] -> dims[1] -> ...`, one head per halving, each frozen
before the next is trained; the embedding at level t is the output of the first t+1 heads.
"""

from __future__ import annotations

import torch
from torch import nn


def make_head(in_dim: int, out_dim: int, bias: bool, init: str, seed: int) -> nn.Linear:
    """A linear head; `random` is PyTorch's default init drawn from `seed`, `identity` starts
    as truncation to the first `out_dim` input dimensions."""
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(in_dim, out_dim, bias=bias)
    with torch.no_grad():
        if init == "identity":
            head.weight.copy_(torch.eye(out_dim, in_dim))
        else:
            bound = 1.0 / in_dim**0.5  # kaiming_uniform(a=sqrt(5)), as nn.Linear does
            head.weight.uniform_(-bound, bound, generator=gen)
        if bias:
            head.bias.zero_()
    return head


def chain_dims(in_dim: int, dims: list[int]) -> list[tuple[int, int]]:
    """(input, output) width of each SMRL step: D_in -> dims[0] -> dims[1] -> ..."""
    return list(zip([in_dim, *dims[:-1]], dims, strict=True))


@torch.no_grad()
def apply_chain(heads: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    for head in heads:
        x = head(x)
    return x
