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
from smec.model.methods.base import Chained, Knob, Objective, Style, module_seeds, nested_loss
from smec.model.nesting import NestedLoss
from smec.params import Methods


def schedule(opts: Methods) -> ads.Schedule:
    return ads.Schedule(
        noise=opts.ads_noise,
        tau_start=opts.tau_start,
        tau_end=opts.tau_end,
        freeze=opts.ads_freeze,
    )


def overlap(masks: torch.Tensor, indices: torch.Tensor) -> list[float]:
    """Per member, the mean share of its `indices` (S, k) among the coordinates each of its
    masks keeps (masks: steps × S × n)."""
    picked = torch.gather(masks, 2, indices[None].expand(len(masks), -1, -1).to(masks.device))
    return (picked.float().sum(2).mean(0) / indices.shape[1]).tolist()


def kept(mask: torch.Tensor) -> torch.Tensor:
    """(S, k): each member's kept coordinates in this step's mask, in coordinate order."""
    hard = mask.detach() > 0.5
    return hard.nonzero()[:, 1].view(len(hard), -1)


def gather_columns(y: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """y (S, N, n) at each member's columns (S, k): (S, N, k)."""
    return torch.gather(y, 2, columns[:, None, :].expand(-1, y.shape[1], -1))


class ADSObjective(Objective):
    """The loss of the masked outputs of an ADS head (+ that of its whole output, `pair`)."""

    def __init__(self, loss: NestedLoss, opts: Methods, pair: NestedLoss | None = None):
        self.loss, self.pair, self.schedule = loss, pair, schedule(opts)
        self.masks: list[torch.Tensor] = []  # this epoch's
        self.epochs: list[torch.Tensor] = []  # every finished epoch's masks (steps × n)
        self.progress = 0.0

    def masked(self, module, zq, zd, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This step's masks, and the masked outputs of the batch's queries and documents."""
        mask = module.mask(self.schedule, ctx.progress, ctx.generators)
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

    def end_epoch(self, module) -> dict[str, list[float]]:
        masks = torch.stack(self.masks)  # (steps, S, n)
        self.epochs.append(masks.cpu())
        self.masks = []
        n = masks.shape[1]
        return {
            "ads_tau": [self.schedule.tau(self.progress)] * n,
            "ads_sigma": [self.schedule.sigma(self.progress)] * n,
            "ads_logit_std": module.logits.detach().std(dim=1).tolist(),
            "ads_mask_overlap": overlap(masks, module.indices()),
        }

    def end_step(self, module) -> list[dict[str, list[float]]]:
        final = module.indices().cpu()
        return [{"ads_overlap_final": overlap(masks, final)} for masks in self.epochs]

    def state(self) -> dict:
        return {"epochs": list(self.epochs)}

    def load_state(self, state: dict) -> None:
        self.epochs = list(state["epochs"])


# ADS's settings a study searches: the selection's noise, its temperatures and logit step size
ADS_KNOBS = (
    Knob("ads_noise", 0.25, 4.0),
    Knob("tau_start", 0.3, 3.0),
    Knob("tau_end", 0.02, 0.3),
    Knob("ads_logit_lr", 0.005, 0.5),
)


class SMRLADS(Chained):
    name = "smrl_ads"
    label = "SMRL + ADS"
    style = Style("#6a3d9a", "^")
    knobs = ADS_KNOBS

    def step_levels(self, cfg, in_dim, out_dim):
        # the loss sees the whole masked output (its kept coordinates may lie anywhere; the
        # others are zero, so the cosines are those of the kept ones)
        return [in_dim]

    def build(self, spec, cfg, opts, seeds):
        square = None
        if opts.ads_map == "square":
            member_seeds = module_seeds(spec, seeds)
            square = heads.make_head(spec.in_dim, spec.in_dim, cfg.bias, cfg.init, member_seeds)
        return ads.ADSHead(spec.in_dim, spec.out_dim, square, len(seeds))

    def objective(self, spec, cfg, opts, tables):
        pair = None
        if cfg.smrl_step_loss == "pair":
            pair = NestedLoss(nested_loss(spec, cfg).loss, [spec.in_dim])
        return ADSObjective(nested_loss(spec, cfg), opts, pair)

    def lr_overrides(self, opts: Methods) -> dict[str, float]:
        return {"logits": opts.ads_logit_lr}
