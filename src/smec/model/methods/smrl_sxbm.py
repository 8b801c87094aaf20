"""SMRL + S-XBM, the ablation's fourth cell: SMRL's linear heads with the S-XBM term
(:mod:`smec.model.xbm`) on each step's whole output: L(y) + λ L_sxbm."""

from __future__ import annotations

import torch

from smec.model import xbm
from smec.model.methods.base import Knob, NestedObjective, Style, Tables
from smec.model.methods.smrl import SMRL
from smec.model.nesting import NestedLoss
from smec.params import Methods


class NestedSXBMObjective(NestedObjective):
    def __init__(self, loss: NestedLoss, opts: Methods, tables: Tables):
        super().__init__(loss)
        self.term = xbm.CrossBatchTerm(tables, opts, tables.members)

    def __call__(self, module, zq, zd, batch, ctx):
        yq, yd = module(zq), module(zd)
        term = self.term(torch.cat([yq, yd], dim=1), module, ctx.qi, ctx.di)
        return self.loss(yq, yd, batch) + term

    def end_epoch(self, module):
        return {"sxbm_active_steps": [float(self.term.active_steps)] * module.weight.shape[0]}

    def state(self):
        return {"term": self.term.state()}

    def load_state(self, state):
        self.term.load_state(state["term"])


# S-XBM's settings a study searches: lambda, the neighbours per item and the memory's size
XBM_KNOBS = (
    Knob("xbm_weight", 0.1, 10.0),
    Knob("xbm_k", 2, 32, integer=True),
    Knob("xbm_capacity", 256, 8192, integer=True, per_item=True),
)


class SMRLSXBM(SMRL):
    name = "smrl_sxbm"
    label = "SMRL + S-XBM"
    style = Style("#ff7f00", "X")
    knobs = XBM_KNOBS
    distributable = False

    def objective(self, spec, cfg, opts, tables):
        return NestedSXBMObjective(super().objective(spec, cfg, opts, tables).loss, opts, tables)
