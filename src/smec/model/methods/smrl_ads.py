"""SMRL + ADS: an ADS head per halving (:mod:`smec.model.ads`), chained; loss L(y ⊙ m) (with
`train.smrl_step_loss: pair`, + L(y), the map's whole output); the width-d embedding is the
chain of gathers up to d.

Diagnostics per epoch (history, MLflow): `ads_tau` and `ads_sigma` at the epoch's end,
`ads_logit_std` (the spread of the logits), `ads_mask_overlap` (the share of the epoch's masks
that the current top-k of the logits keeps) and, once the step ends, `ads_overlap_final` (the
same against the indices the step ends with). A selection that does not learn shows as logits
that stay near 0 and overlaps near k/n."""

from __future__ import annotations

import torch

from smec.model import ads, heads
from smec.model.methods.base import Chained, Objective, Style, module_seed, nested_loss
from smec.model.nesting import NestedLoss
from smec.params import Methods


def schedule(opts: Methods) -> ads.Schedule:
    return ads.Schedule(
        noise=opts.ads_noise,
        tau_start=opts.tau_start,
        tau_end=opts.tau_end,
        freeze=opts.ads_freeze,
    )


def overlap(masks: torch.Tensor, indices: torch.Tensor) -> float:
    """The mean share of `indices` among each mask's kept coordinates (masks: steps × n)."""
    return float(masks[:, indices].float().sum(1).mean() / len(indices))


class ADSObjective(Objective):
    """The loss of the masked outputs of an ADS head (+ that of its whole output, `pair`)."""

    def __init__(self, loss: NestedLoss, opts: Methods, pair: NestedLoss | None = None):
        self.loss, self.pair, self.schedule = loss, pair, schedule(opts)
        self.masks: list[torch.Tensor] = []  # this epoch's
        self.epochs: list[torch.Tensor] = []  # every finished epoch's masks (steps × n)
        self.progress = 0.0

    def masked(self, module, zq, zd, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This step's mask, and the masked outputs of the batch's queries and documents."""
        mask = module.mask(self.schedule, ctx.progress, ctx.generator)
        self.masks.append(mask.detach() > 0.5)
        self.progress = ctx.progress
        return mask, module.train_forward(zq, mask), module.train_forward(zd, mask)

    def step_loss(self, module, zq, zd, batch, ctx) -> tuple[torch.Tensor, ...]:
        """The loss of the masked outputs (and, with `pair`, of the map's whole output), the
        mask, and the masked outputs."""
        mask, yq, yd = self.masked(module, zq, zd, ctx)
        total = self.loss(yq, yd, batch)
        if self.pair is not None:
            total = total + self.pair(module.mapped(zq), module.mapped(zd), batch)
        return total, mask, yq, yd

    def __call__(self, module, zq, zd, batch, ctx):
        return self.step_loss(module, zq, zd, batch, ctx)[0]

    def end_epoch(self, module) -> dict[str, float]:
        masks = torch.stack(self.masks)
        self.epochs.append(masks.cpu())
        self.masks = []
        return {
            "ads_tau": self.schedule.tau(self.progress),
            "ads_sigma": self.schedule.sigma(self.progress),
            "ads_logit_std": float(module.logits.detach().std()),
            "ads_mask_overlap": overlap(masks, module.indices()),
        }

    def end_step(self, module) -> list[dict[str, float]]:
        final = module.indices().cpu()
        return [{"ads_overlap_final": overlap(masks, final)} for masks in self.epochs]

    def state(self) -> dict:
        return {"epochs": list(self.epochs)}

    def load_state(self, state: dict) -> None:
        self.epochs = list(state["epochs"])


class SMRLADS(Chained):
    name = "smrl_ads"
    label = "SMRL + ADS"
    style = Style("#6a3d9a", "^")

    def step_levels(self, cfg, in_dim, out_dim):
        # the loss sees the whole masked output (its kept coordinates may lie anywhere; the
        # others are zero, so the cosines are those of the kept ones)
        return [in_dim]

    def build(self, spec, cfg, opts):
        square = None
        if opts.ads_map == "square":
            seed = module_seed(spec, cfg)
            square = heads.make_head(spec.in_dim, spec.in_dim, cfg.bias, cfg.init, seed)
        return ads.ADSHead(spec.in_dim, spec.out_dim, square)

    def objective(self, spec, cfg, opts, tables):
        pair = None
        if cfg.smrl_step_loss == "pair":
            pair = NestedLoss(nested_loss(spec, cfg).loss, [spec.in_dim])
        return ADSObjective(nested_loss(spec, cfg), opts, pair)

    def lr_overrides(self, opts: Methods) -> dict[str, float]:
        return {"logits": opts.ads_logit_lr}
