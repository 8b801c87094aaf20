"""ADS, adaptive dimension selection: SMEC's learned choice of which dimensions survive a halving.

Step t of the chain turns z_{t-1} (width n) into z_t (width k = n/2) **[src: abstract and
framework figure: "learnable parameter + top-k select", "gumbel_softmax", "dimension pruning"]**:

    y      = W_t z_{t-1}                       a square map n -> n           [choice: square]
    s      = α_t + g,  g ~ Gumbel(0, 1)        training; g = 0 in evaluation  [src]
    hard   = top-k indicator of s                                             [src]
    soft   = softmax(s / τ)                                                   [src: gumbel_softmax]
    m      = hard − stopgrad(soft) + soft      straight-through: forward hard, backward soft
                                                                              [choice]
    z_t    = y ⊙ m        in training (width n, zero off the selection: every cosine equals that
                          of the gathered k coordinates, the form the losses see)
    z_t    = y[:, idx_t]  in evaluation, idx_t the sorted top-k of α_t: a gather of fixed
                          coordinates, saved with the head                     [src: index list]

α_t starts at 0 **[choice]**; τ anneals geometrically from `ads.tau_start` to `ads.tau_end` over
the step's epochs **[choice: 1 -> 0.1]**; W_t starts as `train.init` draws it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def temperature(start: float, end: float, progress: float) -> float:
    """τ at `progress` ∈ [0, 1] of the step: geometric from `start` to `end`."""
    return start * (end / start) ** min(max(progress, 0.0), 1.0)


class ADSHead(nn.Module):
    """A square linear map followed by the selection of `keep` of its `width` outputs."""

    def __init__(self, width: int, keep: int, linear: nn.Linear):
        super().__init__()
        if not 0 < keep <= width or linear.out_features != width:
            raise ValueError(f"ADS keeps {keep} of {width} outputs of a {linear} map")
        self.linear, self.keep = linear, keep
        self.logits = nn.Parameter(torch.zeros(width))

    @property
    def weight(self) -> torch.Tensor:
        """The map's weight: the one the gradient recorder reads."""
        return self.linear.weight

    def mask(self, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """The straight-through top-k mask of one training step (fresh Gumbel noise)."""
        u = torch.rand(self.logits.shape, generator=generator).to(self.logits.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-10)))
        scores = self.logits + gumbel
        soft = F.softmax(scores / tau, dim=0)
        hard = torch.zeros_like(soft).scatter(0, scores.topk(self.keep).indices, 1.0)
        return hard - soft.detach() + soft

    def indices(self) -> torch.Tensor:
        """The kept coordinates at evaluation: the sorted top-k of the logits (ties: lowest
        index first)."""
        order = torch.sort(self.logits.detach(), descending=True, stable=True).indices
        return torch.sort(order[: self.keep]).values

    def train_forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.linear(x) * mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)[:, self.indices()]
