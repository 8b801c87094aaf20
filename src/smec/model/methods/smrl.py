"""SMRL, the paper's sequential MRL: a linear head per halving, chained, each frozen before the
next; a step's loss is L(y) (`train.smrl_step_loss: pair`: + L(y[:half])); the width-d
embedding is the chain up to d."""

from __future__ import annotations

from smec.model import heads
from smec.model.methods.base import Chained, NestedObjective, Style, module_seed, nested_loss


class SMRL(Chained):
    name = "smrl"
    label = "SMRL"
    style = Style("#1f5fa8", "s")
    distributable = True

    def build(self, spec, cfg, opts):
        return heads.make_head(
            spec.in_dim, spec.out_dim, cfg.bias, cfg.init, module_seed(spec, cfg)
        )

    def objective(self, spec, cfg, opts, tables):
        return NestedObjective(nested_loss(spec, cfg))
