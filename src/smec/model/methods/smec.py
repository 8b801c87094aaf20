"""SMEC, the paper's method: SMRL + ADS with the S-XBM term (:mod:`smec.model.xbm`):
L(y ⊙ m) + λ L_sxbm on the kept coordinates."""

from __future__ import annotations

import torch

from smec.model import xbm
from smec.model.methods.base import Style, Tables
from smec.model.methods.smrl_ads import SMRLADS, ADSObjective
from smec.model.nesting import NestedLoss
from smec.params import Methods


class SXBMObjective(ADSObjective):
    """The ADS loss plus λ × S-XBM's term over a memory of the training items, both on the
    coordinates this step's mask keeps."""

    def __init__(self, loss: NestedLoss, opts: Methods, tables: Tables, pair=None):
        super().__init__(loss, opts, pair)
        self.term = xbm.CrossBatchTerm(tables, opts)

    def __call__(self, module, zq, zd, batch, ctx):
        total, mask, yq, yd = self.step_loss(module, zq, zd, batch, ctx)
        kept = mask.detach().nonzero().squeeze(1)
        z_batch = torch.cat([yq, yd])[:, kept]
        return total + self.term(z_batch, lambda x: module.mapped(x)[:, kept], ctx.qi, ctx.di)

    def end_epoch(self, module):
        return super().end_epoch(module) | {"sxbm_active_steps": float(self.term.active_steps)}

    def state(self):
        return super().state() | {"term": self.term.state()}

    def load_state(self, state):
        super().load_state(state)
        self.term.load_state(state["term"])


class SMEC(SMRLADS):
    name = "smec"
    label = "SMEC"
    style = Style("#d62728", "D")

    def objective(self, spec, cfg, opts, tables):
        base = super().objective(spec, cfg, opts, tables)
        return SXBMObjective(base.loss, opts, tables, base.pair)
