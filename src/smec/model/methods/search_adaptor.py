"""Search-Adaptor (Yoon et al. 2024): one skip adaptor per width, each on x; loss
L(ĉ[:m]) + λ L_rec with L `train.loss`; the width-d embedding is (x + f_d(x))[:d]."""

from __future__ import annotations

import torch

from smec.model import adaptors, heads
from smec.model.methods.base import (
    Knob,
    Method,
    Objective,
    StepSpec,
    Style,
    module_seeds,
    n_members,
    nested_loss,
    width_index,
)
from smec.model.nesting import NestedLoss
from smec.params import Methods


class SearchAdaptorObjective(Objective):
    def __init__(self, loss: NestedLoss, opts: Methods):
        self.loss, self.opts = loss, opts

    def __call__(self, module, zq, zd, batch, ctx):
        return adaptors.search_loss(zq, zd, module, self.loss, batch, self.opts.search_rec_weight)


class SearchAdaptor(Method):
    name = "search_adaptor"
    label = "Search-Adaptor"
    style = Style("#17becf", "P")
    knobs = (Knob("search_rec_weight", 0.01, 1.0),)

    def plan(self, cfg, in_dim):
        return [
            StepSpec(
                index=t,
                in_dim=in_dim,
                out_dim=in_dim,
                levels=[d],
                weights=[1.0],
                epochs=cfg.epochs,
                eval_dims=[d],
                chained=False,
                split=d // 2,
                rows=d,
            )
            for t, d in enumerate(cfg.method_dims, 1)
        ]

    def build(self, spec, cfg, opts, seeds):
        return adaptors.Adaptor(spec.in_dim, cfg.init, module_seeds(spec, seeds))

    def objective(self, spec, cfg, opts, tables):
        return SearchAdaptorObjective(nested_loss(spec, cfg), opts)

    @torch.no_grad()
    def embed_at(self, modules, dims, x, d):
        module = modules[width_index(dims, d)]
        return module(heads.members(x, n_members(module)))[..., :d]

    @torch.no_grad()
    def linear_maps(self, modules, dims, d):
        return [adaptors.as_matrix(modules[width_index(dims, d)])[:, :d].clone()]
