"""MRL: one linear head D -> dims[0]; loss Σ_m c_m L(y[:m]) over all nested widths m; the
width-d embedding is head(x)[:d] (Kusupati et al. 2022)."""

from __future__ import annotations

from smec.model import heads
from smec.model.methods.base import (
    NestedObjective,
    Prefixed,
    StepSpec,
    Style,
    module_seeds,
    nested_loss,
)


class MRL(Prefixed):
    name = "mrl"
    label = "MRL"
    style = Style("#e6670d", "o")
    distributable = True

    def plan(self, cfg, in_dim):
        dims = cfg.method_dims
        return [
            StepSpec(
                index=1,
                in_dim=in_dim,
                out_dim=dims[0],
                levels=dims,
                weights=cfg.level_weights,
                epochs=cfg.epochs,
                eval_dims=dims,
                chained=False,
                split=dims[0] // 2,
            )
        ]

    def build(self, spec, cfg, opts, seeds):
        return heads.make_head(
            spec.in_dim, spec.out_dim, cfg.bias, cfg.init, module_seeds(spec, seeds)
        )

    def objective(self, spec, cfg, opts, tables):
        return NestedObjective(nested_loss(spec, cfg))
