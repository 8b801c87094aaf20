"""SMEC, the paper's method: SMRL + ADS with the S-XBM term (:mod:`smec.model.xbm`):
L(y ⊙ m) + λ L_sxbm."""

from __future__ import annotations

import torch

from smec.model import xbm
from smec.model.methods.base import Style, Tables, nested_loss
from smec.model.methods.smrl_ads import SMRLADS, ADSObjective
from smec.model.nesting import NestedLoss
from smec.params import Methods


class SXBMObjective(ADSObjective):
    """The ADS loss plus λ × S-XBM's term over a memory of the training items."""

    def __init__(self, loss: NestedLoss, opts: Methods, tables: Tables):
        super().__init__(loss, opts)
        self.inputs, self.n_queries = tables.inputs, tables.n_queries
        self.sims = xbm.Similarities(tables.full, tables.universe)
        capacity = min(opts.xbm_capacity, len(tables.universe))
        self.memory = xbm.Memory(capacity, self.inputs.device)

    def __call__(self, module, zq, zd, batch, ctx):
        mask, yq, yd = self.masked(module, zq, zd, ctx)
        total = self.loss(yq, yd, batch)
        ids = torch.cat([ctx.qi, ctx.di + self.n_queries])  # rows of the joint frozen table
        k = self.opts.xbm_k
        if len(self.memory) > k:
            near, frozen = self.memory.neighbours(self.sims(ids, self.memory.ids), ids, k)
            kept = mask.detach().nonzero().squeeze(1)
            with torch.no_grad():  # the memory side is a constant, as in XBM
                uniq, inverse = torch.unique(near, return_inverse=True)
                z_near = (self.inputs[uniq] @ module.weight[kept].T)[inverse]
            z_batch = torch.cat([yq, yd])[:, kept]
            total = total + self.opts.xbm_weight * xbm.loss(z_batch, z_near, frozen)
        self.memory.push(ids)
        return total


class SMEC(SMRLADS):
    name = "smec"
    label = "SMEC"
    style = Style("#d62728", "D")

    def objective(self, spec, cfg, opts, tables):
        return SXBMObjective(nested_loss(spec, cfg), opts, tables)
