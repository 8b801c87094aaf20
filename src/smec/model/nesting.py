"""Matryoshka nesting: one projection, a weighted loss over its nested prefixes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from smec.model.losses import Batch


class NestedLoss(nn.Module):
    """L = Σ_m c_m · L(y[..., :m]) over the nested widths m, with y = head(x) computed once.

    MRL uses it with all target widths (`[192, 96]`): rows 0..95 of the head get gradient from
    both terms, rows 96..191 from one. An SMRL step uses it with its own width alone
    (`single`), or with the width and its half (`pair`). The base loss evaluates all widths in
    one pass (see :mod:`smec.model.losses`) and returns one value per width.
    """

    def __init__(
        self, loss: Callable[..., torch.Tensor], dims: list[int], weights: list[float] | None = None
    ):
        super().__init__()
        if sorted(dims, reverse=True) != list(dims):
            raise ValueError(f"dims must be decreasing, got {dims}")
        weights = list(weights) if weights is not None else [1.0] * len(dims)
        if len(weights) != len(dims):
            raise ValueError(f"{len(weights)} weights for {len(dims)} dims")
        self.loss, self.dims = loss, list(dims)
        self.register_buffer("weights", torch.tensor(weights), persistent=False)

    def per_level(self, q_out: torch.Tensor, d_out: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.loss(q_out, d_out, self.dims, batch)

    def forward(self, q_out: torch.Tensor, d_out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """One loss per member, (S,)."""
        return self.per_level(q_out, d_out, batch) @ self.weights.to(q_out.dtype)
