"""ADS, adaptive dimension selection: SMEC's learned choice of which dimensions survive a halving.

Step t of the chain turns z_{t-1} (width n) into z_t (width k = n/2) **[src: abstract and
framework figure: "learnable parameter + top-k select", "gumbel_softmax", an index list,
"dimension pruning" D -> D/2]**. Everything below the figure's words is **[choice]**
(docs/method.md, "ADS"):

    y     = W_t z_{t-1}       a square map starting as the identity (`compare.init`), so the
                              selection starts on the step's input coordinates; or no map
                              (`methods.ads_map: none`: pure pruning)
    s     = α_t + σ(p) g      g ~ Gumbel(0, 1); σ anneals linearly from `methods.ads_noise` to 0
                              at p = 1 − `methods.ads_freeze` (p: the fraction of the step's
                              optimiser steps done), so the forward randomness vanishes
    hard  = the top-k indicator of s                      (the forward pass: exactly k kept)
    soft  = sigmoid((s − θ) / τ), θ such that Σ soft = k  (a relaxation that sums to k)
    m     = hard + soft − stopgrad(soft)                  (straight-through)
    z_t   = y ⊙ m in training (zero off the selection: every cosine is that of the k kept
            coordinates); y[:, idx_t] in evaluation, idx_t the sorted top-k of α_t, saved
            with the head **[src: index list]**

τ anneals geometrically from `methods.tau_start` to `methods.tau_end`, reached at the freeze
point. For the last `methods.ads_freeze` of the step the selection is frozen (m = the top-k of
α_t, no noise, no gradient to α_t), so the map trains on exactly the coordinates that are
evaluated. The logits start at 0 and have their own learning rate, `methods.ads_logit_lr`: at
the map's 1e-3 they could move by about 0.26 in a step of 260 optimiser steps, against noise of
standard deviation 1.28, and the masks would stay a random half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import expit
from torch import nn


@dataclass(frozen=True)
class Schedule:
    """The annealing of one ADS step: noise scale, temperature, and when the selection freezes."""

    noise: float = 1.0  # σ at the step's start (Gumbel noise of std 1.28 × σ)
    tau_start: float = 1.0
    tau_end: float = 0.1
    freeze: float = 0.25  # the last share of the step's optimiser steps, selection fixed

    def active(self, progress: float) -> float:
        """The share of the annealing done at `progress`; 1 once the selection is frozen."""
        return min(max(progress, 0.0) / (1.0 - self.freeze), 1.0) if self.freeze < 1 else 1.0

    def sigma(self, progress: float) -> float:
        return self.noise * (1.0 - self.active(progress))

    def tau(self, progress: float) -> float:
        return self.tau_start * (self.tau_end / self.tau_start) ** self.active(progress)

    def frozen(self, progress: float) -> bool:
        return progress >= 1.0 - self.freeze


def budget_threshold(scores: torch.Tensor, k: int, tau: float, iters: int = 50) -> torch.Tensor:
    """θ per row of `scores` (S, n) with Σ sigmoid((scores − θ)/τ) = k, shape (S, 1), in
    float64. On the CPU in numpy, by safeguarded Newton (:func:`_newton_numpy`): a handful of
    numpy operations on (S, n) per iteration, converged in a few, where fifty rounds of torch
    calls would cost more than the step. On an accelerator by bisection in torch, where it
    stays: no copy to the host and back, no wait, per step. Both find the same θ (a test holds
    them within 1e-12)."""
    if scores.device.type != "cpu":
        return _bisect_torch(scores.detach().double(), k, tau, iters).to(scores.dtype)
    theta = _newton_numpy(scores.detach().double().numpy(), k, tau, iters)
    return torch.from_numpy(theta).to(scores.dtype)


def _newton_numpy(s: np.ndarray, k: int, tau: float, iters: int) -> np.ndarray:
    """Newton's method on f(θ) = Σ sigmoid((s − θ)/τ) − k, which falls monotonically in θ,
    from the midpoint of the k-th and (k+1)-th largest scores; a step that leaves the bracket
    [lo, hi] known to hold the root is replaced by bisection, so it never does worse than
    bisection. Stops once no row's θ moves by more than 1e-13 (relative)."""
    lo = s.min(axis=1, keepdims=True) - 20 * tau
    hi = s.max(axis=1, keepdims=True) + 20 * tau
    ordered = np.sort(s, axis=1)
    n = s.shape[1]
    theta = (ordered[:, n - k - 1 : n - k] + ordered[:, n - k :][:, :1]) / 2 if k < n else lo
    for _ in range(iters):
        p = expit((s - theta) / tau)
        f = p.sum(axis=1, keepdims=True) - k
        lo, hi = np.where(f > 0, theta, lo), np.where(f > 0, hi, theta)
        slope = (p * (1 - p)).sum(axis=1, keepdims=True) / tau  # −f'(θ)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = theta + f / slope
        inside = (step >= lo) & (step <= hi)  # lo or hi is θ itself
        new = np.where(f == 0, theta, np.where(inside, step, (lo + hi) / 2))
        done = np.all(np.abs(new - theta) <= 1e-13 * (1 + np.abs(theta)))
        theta = new
        if done:
            break
    return theta


def _bisect_torch(s: torch.Tensor, k: int, tau: float, iters: int) -> torch.Tensor:
    """The same bisection in torch (float64 on the tensor's device)."""
    lo = s.amin(dim=1, keepdim=True) - 20 * tau
    hi = s.amax(dim=1, keepdim=True) + 20 * tau
    for _ in range(iters):
        mid = (lo + hi) / 2
        above = torch.sigmoid((s - mid) / tau).sum(dim=1, keepdim=True) > k
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return (lo + hi) / 2


def gumbel(shape: tuple[int, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """Gumbel(0, 1) noise, one row per member, each from that member's own generator."""
    u = torch.stack([torch.rand(shape[1:], generator=g) for g in generators])
    return -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-10)))


class ADSHead(nn.Module):
    """An optional square map, then the selection of `keep` of its `width` outputs, for each
    of S members (logits (S, width))."""

    def __init__(self, width: int, keep: int, linear: nn.Module | None, n_members: int = 1):
        super().__init__()
        if not 0 < keep <= width or (linear is not None and linear.out_features != width):
            raise ValueError(f"ADS keeps {keep} of {width} outputs of a {linear} map")
        self.linear, self.keep = linear, keep
        self.logits = nn.Parameter(torch.zeros(n_members, width))

    @property
    def weight(self) -> torch.Tensor | None:
        """The map's weight (the one the gradient recorder reads); None without a map."""
        return None if self.linear is None else self.linear.weight

    def mapped(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.linear is None else self.linear(x)

    def mask(
        self, schedule: Schedule, progress: float, generators: list[torch.Generator]
    ) -> torch.Tensor:
        """One training step's masks (S, width): hard top-k forward, the budgeted soft gates
        backward; once frozen, the top-k of the logits with no gradient."""
        if schedule.frozen(progress):
            return torch.zeros_like(self.logits).scatter(1, self.indices(), 1.0)
        noise = gumbel(tuple(self.logits.shape), generators).to(self.logits.device)
        scores = self.logits + schedule.sigma(progress) * noise
        tau = schedule.tau(progress)
        soft = torch.sigmoid((scores - budget_threshold(scores.detach(), self.keep, tau)) / tau)
        hard = torch.zeros_like(soft).scatter(
            1, scores.detach().topk(self.keep, dim=1).indices, 1.0
        )
        return hard + (soft - soft.detach())  # exactly 0/1 forward, soft backward

    def indices(self) -> torch.Tensor:
        """The kept coordinates at evaluation, (S, keep): each member's sorted top-k of its
        logits (ties: lowest index first)."""
        order = torch.sort(self.logits.detach(), dim=1, descending=True, stable=True).indices
        return torch.sort(order[:, : self.keep], dim=1).values

    def train_forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mapped(x) * mask[:, None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mapped(x)
        idx = self.indices()
        return torch.gather(y, 2, idx[:, None, :].expand(-1, y.shape[1], -1))
