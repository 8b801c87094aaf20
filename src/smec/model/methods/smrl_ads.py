"""SMRL + ADS: an ADS head per halving (:mod:`smec.model.ads`), chained; loss L(y ⊙ m); the
width-d embedding is the chain of gathers up to d."""

from __future__ import annotations

import torch

from smec.model import ads, heads
from smec.model.methods.base import Chained, Objective, Style, module_seed, nested_loss
from smec.model.nesting import NestedLoss
from smec.params import Methods


class ADSObjective(Objective):
    """The loss of the masked outputs of an ADS head."""

    def __init__(self, loss: NestedLoss, opts: Methods):
        self.loss, self.opts = loss, opts

    def masked(self, module, zq, zd, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This step's mask, and the masked outputs of the batch's queries and documents."""
        tau = ads.temperature(self.opts.tau_start, self.opts.tau_end, ctx.progress)
        mask = module.mask(tau, ctx.generator)
        return mask, module.train_forward(zq, mask), module.train_forward(zd, mask)

    def __call__(self, module, zq, zd, batch, ctx):
        _, yq, yd = self.masked(module, zq, zd, ctx)
        return self.loss(yq, yd, batch)


class SMRLADS(Chained):
    name = "smrl_ads"
    label = "SMRL + ADS"
    style = Style("#6a3d9a", "^")

    def step_levels(self, cfg, in_dim, out_dim):
        # the loss sees the whole masked output (its kept coordinates may lie anywhere; the
        # others are zero, so the cosines are those of the kept ones)
        return [in_dim]

    def build(self, spec, cfg):
        square = heads.make_head(
            spec.in_dim, spec.in_dim, cfg.bias, cfg.init, module_seed(spec, cfg)
        )
        return ads.ADSHead(spec.in_dim, spec.out_dim, square)

    def objective(self, spec, cfg, opts, tables):
        return ADSObjective(nested_loss(spec, cfg), opts)
