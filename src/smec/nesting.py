"""Matryoshka nesting: one projection, a weighted loss over its nested prefixes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from smec.losses import Batch


class NestedLoss(nn.Module):
    """L = Σ_m c_m · L(y[:, :m]) over the nested widths m, with y = head(x) computed once.

    MRL uses it with all target widths (`[192, 96]`): rows 0..95 of the head get gradient from
    both terms, rows 96..191 from one. An SMRL step uses it with its own width alone
    (`single`), or with the width and its half (`pair`).
    """

    def __init__(
        self, loss: Callable[..., torch.Tensor], dims: list[int], weights: list[float] | None = None
    ):
        super().__init__()
        if sorted(dims, reverse=True) != list(dims):
            raise ValueError(f"dims must be decreasing, got {dims}")
        self.loss, self.dims = loss, list(dims)
        self.weights = list(weights) if weights is not None else [1.0] * len(dims)
        if len(self.weights) != len(self.dims):
            raise ValueError(f"{len(self.weights)} weights for {len(self.dims)} dims")

    def forward(self, q_out: torch.Tensor, d_out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return sum(
            c * self.loss(q_out[:, :m], d_out[:, :m], batch)
            for m, c in zip(self.dims, self.weights, strict=True)
        )
