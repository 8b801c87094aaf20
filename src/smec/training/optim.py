"""The optimiser of a stack of members: Adam or SGD with a learning rate per member.

`torch.optim` gives a tensor one learning rate; a stack of S members (weights (S, ...)) needs
one per member (trials of a study differ in it). This is `torch.optim.Adam` / `SGD` (default
betas, eps, no weight decay; SGD's momentum without dampening) written once for a leading
member dimension, with the learning-rate schedule (`constant`, or `cosine` to 0 over the
step's optimiser steps) as a factor on every member's rate. A parameter named in `fixed` (ADS's
logits) trains at that rate for every member.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BETAS, EPS = (0.9, 0.999), 1e-8


class StackedOptimizer:
    def __init__(self, module: nn.Module, kind: str, lrs: list[float], fixed: dict[str, float]):
        self.kind, self.momentum = kind, 0.0
        self.params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        device = self.params[0][1].device if self.params else torch.device("cpu")
        member_lr = self.member_lr = torch.tensor(lrs, dtype=torch.float32, device=device)
        self.lr = {
            n: member_lr if n not in fixed else member_lr.new_full((len(lrs),), fixed[n])
            for n, _ in self.params
        }
        self.state: dict[str, dict] = {n: {} for n, _ in self.params}
        self.factor = 1.0  # the schedule's factor on every rate
        self.steps = 0
        self.watched: torch.Tensor | None = None  # the parameter whose update is kept
        self.update: torch.Tensor | None = None  # its last update, W_after − W_before (negated)

    def zero_grad(self) -> None:
        for _, p in self.params:
            p.grad = None

    def member_lrs(self) -> list[float]:
        """The members' current learning rates (of their main parameters)."""
        return (self.member_lr * self.factor).tolist()

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        for name, p in self.params:
            if p.grad is None:
                continue
            lr = (self.lr[name] * self.factor).view(-1, *([1] * (p.dim() - 1)))
            if self.kind == "adam":
                update = self._adam(p, self.state[name], lr)
            else:
                update = self._sgd(p, self.state[name], lr)
            p.sub_(update)
            if p is self.watched:
                self.update = update

    def _adam(self, p: torch.Tensor, state: dict, lr: torch.Tensor) -> torch.Tensor:
        """The step to subtract from `p`."""
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m.lerp_(p.grad, 1 - BETAS[0])
        v.mul_(BETAS[1]).addcmul_(p.grad, p.grad, value=1 - BETAS[1])
        # in place: a fresh (S, out, in) temporary costs more than the pass that fills it
        denom = torch.sqrt(v).div_(math.sqrt(1 - BETAS[1] ** t)).add_(EPS)
        return torch.div(m, denom, out=denom).mul_(lr / (1 - BETAS[0] ** t))

    def _sgd(self, p: torch.Tensor, state: dict, lr: torch.Tensor) -> torch.Tensor:
        grad = p.grad
        if self.momentum:
            if "buf" not in state:
                state["buf"] = grad.clone()
            else:
                state["buf"].mul_(self.momentum).add_(grad)
            grad = state["buf"]
        return grad * lr

    def state_dict(self) -> dict:
        return {"state": self.state, "factor": self.factor, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.state, self.factor, self.steps = state["state"], state["factor"], state["steps"]


class Schedule:
    """`constant`, or `cosine` from 1 to 0 over `total` optimiser steps, as a rate factor."""

    def __init__(self, opt: StackedOptimizer, kind: str, total: int):
        self.opt, self.kind, self.total = opt, kind, total

    def step(self) -> None:
        if self.kind == "cosine":
            self.opt.factor = (1 + math.cos(math.pi * self.opt.steps / self.total)) / 2


def optimizer(module: nn.Module, cfg, lrs: list[float], fixed: dict[str, float], total: int):
    """The stacked optimiser and schedule of one step (`cfg`: the Train section)."""
    opt = StackedOptimizer(module, cfg.optimizer, lrs, fixed)
    opt.momentum = cfg.momentum if cfg.optimizer == "sgd" else 0.0
    return opt, Schedule(opt, cfg.lr_schedule, total)
