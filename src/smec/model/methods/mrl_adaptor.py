"""Matryoshka-Adaptor (Yoon et al. 2024): one skip adaptor (:mod:`smec.model.adaptors`), its
unsupervised then supervised phases; the width-d embedding is (x + f(x))[:d]."""

from __future__ import annotations

import torch

from smec.model import adaptors
from smec.model.methods.base import (
    Knob,
    Objective,
    Prefixed,
    StepSpec,
    Style,
    module_seeds,
    nested_loss,
)
from smec.model.nesting import NestedLoss
from smec.params import Methods


class MatryoshkaAdaptorObjective(Objective):
    """Unsupervised (top-k + α pair + β reconstruction) for the first phase of the step's
    epochs, then that plus γ × the nested ranking loss."""

    def __init__(self, loss: NestedLoss, dims: list[int], opts: Methods):
        self.loss, self.dims, self.opts = loss, dims, opts

    def __call__(self, module, zq, zd, batch, ctx):
        o = self.opts
        items = torch.cat([zq, zd], dim=1)
        total = adaptors.matryoshka_unsupervised(
            items, module, self.dims, k=o.adaptor_topk, alpha=o.adaptor_alpha, beta=o.adaptor_beta
        )
        if ctx.progress >= o.adaptor_unsupervised:
            total = total + o.adaptor_gamma * self.loss(module(zq), module(zd), batch)
        return total


class MatryoshkaAdaptor(Prefixed):
    name = "mrl_adaptor"
    label = "Matryoshka-Adaptor"
    style = Style("#b15928", "v")
    knobs = (
        Knob("adaptor_alpha", 0.1, 10.0),
        Knob("adaptor_beta", 0.1, 10.0),
        Knob("adaptor_gamma", 0.1, 10.0),
        Knob("adaptor_topk", 2, 32, integer=True),
        Knob("adaptor_unsupervised", 0.0, 0.75, log=False),
    )

    def plan(self, cfg, in_dim):
        dims = cfg.method_dims
        return [
            StepSpec(
                index=1,
                in_dim=in_dim,
                out_dim=in_dim,
                levels=dims,
                weights=[1.0] * len(dims),
                epochs=cfg.epochs,
                eval_dims=dims,
                chained=False,
                split=dims[0] // 2,
                rows=dims[0],  # rows past the widest prefix get no loss but L_rec's
            )
        ]

    def build(self, spec, cfg, opts, seeds):
        return adaptors.Adaptor(spec.in_dim, cfg.init, module_seeds(spec, seeds))

    def objective(self, spec, cfg, opts, tables):
        return MatryoshkaAdaptorObjective(nested_loss(spec, cfg), spec.levels, opts)

    def matrix(self, module):
        return adaptors.as_matrix(module)
