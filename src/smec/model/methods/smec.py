"""SMEC, the paper's method: SMRL + ADS with the S-XBM term (:mod:`smec.model.xbm`):
L(y ⊙ m) + λ L_sxbm on the kept coordinates."""

from __future__ import annotations

import torch

from smec.model import xbm
from smec.model.methods.base import Style, Tables
from smec.model.methods.smrl_ads import ADS_KNOBS, SMRLADS, ADSObjective, gather_columns, kept
from smec.model.methods.smrl_sxbm import XBM_KNOBS
from smec.model.nesting import NestedLoss
from smec.params import Methods


class SXBMObjective(ADSObjective):
    """The ADS loss plus λ × S-XBM's term over a memory of the training items, both on the
    coordinates this step's mask keeps."""

    def __init__(self, loss: NestedLoss, opts: Methods, tables: Tables, pair=None):
        super().__init__(loss, opts, pair)
        self.term = xbm.CrossBatchTerm(tables, opts, tables.members)

    def __call__(self, module, zq, zd, batch, ctx):
        total, mask, yq, yd = self.step_loss(module, zq, zd, batch, ctx)
        columns = kept(mask)
        z_batch = gather_columns(torch.cat([yq, yd], dim=1), columns)
        return total + self.term(z_batch, kept_map(module, columns), ctx.qi, ctx.di)

    def end_epoch(self, module):
        active = [float(self.term.active_steps)] * len(module.logits)
        return super().end_epoch(module) | {"sxbm_active_steps": active}

    def state(self):
        return super().state() | {"term": self.term.state()}

    def load_state(self, state):
        super().load_state(state)
        self.term.load_state(state["term"])


def kept_map(module, columns: torch.Tensor):
    """x (S, M, n) -> the module's outputs on each member's kept `columns` (S, k), computed
    from those rows of its map only (a selection without a map: the columns themselves)."""
    linear = module.linear
    if linear is None:
        return lambda x: gather_columns(x, columns)
    n = linear.weight.shape[2]
    weight = torch.gather(linear.weight, 1, columns[..., None].expand(-1, -1, n))  # (S, k, n)
    bias = None if linear.bias is None else torch.gather(linear.bias, 1, columns)
    if bias is None:
        return lambda x: torch.bmm(x, weight.transpose(1, 2))
    return lambda x: torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))


class SMEC(SMRLADS):
    name = "smec"
    label = "SMEC"
    style = Style("#d62728", "D")
    knobs = ADS_KNOBS + XBM_KNOBS

    def objective(self, spec, cfg, opts, tables):
        base = super().objective(spec, cfg, opts, tables)
        return SXBMObjective(base.loss, opts, tables, base.pair)
