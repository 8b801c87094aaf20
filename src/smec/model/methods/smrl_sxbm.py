"""SMRL + S-XBM, the ablation's fourth cell: SMRL's linear heads with the S-XBM term
(:mod:`smec.model.xbm`) on each step's whole output: L(y) + λ L_sxbm."""

from __future__ import annotations

import torch

from smec.model import xbm
from smec.model.methods.base import NestedObjective, Style, Tables
from smec.model.methods.smrl import SMRL
from smec.model.nesting import NestedLoss
from smec.params import Methods


class NestedSXBMObjective(NestedObjective):
    def __init__(self, loss: NestedLoss, opts: Methods, tables: Tables):
        super().__init__(loss)
        self.term = xbm.CrossBatchTerm(tables, opts)

    def __call__(self, module, zq, zd, batch, ctx):
        yq, yd = module(zq), module(zd)
        return self.loss(yq, yd, batch) + self.term(torch.cat([yq, yd]), module, ctx.qi, ctx.di)

    def end_epoch(self, module):
        return {"sxbm_active_steps": float(self.term.active_steps)}

    def state(self):
        return {"term": self.term.state()}

    def load_state(self, state):
        self.term.load_state(state["term"])


class SMRLSXBM(SMRL):
    name = "smrl_sxbm"
    label = "SMRL + S-XBM"
    style = Style("#ff7f00", "X")
    distributable = False

    def objective(self, spec, cfg, opts, tables):
        return NestedSXBMObjective(super().objective(spec, cfg, opts, tables).loss, opts, tables)
