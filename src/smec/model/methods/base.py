"""What a compression method is: the `Method` object every stage, figure and export reads.

A method trained on the frozen embeddings is a plan of steps (:class:`StepSpec`), each a module
trained on fixed inputs with its own objective, one after another; its width-d embedding is a
function of the trained modules (`embed_at`) that is also a product of linear maps
(`linear_maps`, what the export writes). A learning-free baseline (truncation, PCA, ...) is a
:class:`Baseline`: fitted on the corpus, nothing trained. One file per method under
:mod:`smec.model.methods`, one line in its registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from smec.model import heads
from smec.model.losses import LOSSES, Batch
from smec.model.nesting import NestedLoss
from smec.params import Methods, Train


@dataclass(frozen=True)
class Style:
    """How a method is drawn in the figures."""

    colour: str
    marker: str
    linestyle: str = "-"


@dataclass(frozen=True)
class Knob:
    """One of a method's own settings (a `methods.<name>` param) that a study searches, over
    [low, high]: log-uniform if `log`, integers if `integer`."""

    name: str
    low: float
    high: float
    log: bool = True
    integer: bool = False
    per_item: bool = False  # a count of training items: its range ends at the items there are

    def bounds(self, n_items: int) -> tuple[float, float]:
        """[low, high], a per-item knob's cut at `n_items` (beyond it a value changes nothing)."""
        if not self.per_item:
            return self.low, self.high
        high = min(self.high, n_items)
        return min(self.low, high), high


@dataclass(frozen=True)
class StepSpec:
    """One module to train: its widths, the nested widths of its loss, and its epochs."""

    index: int  # 1-based: MRL has step 1; SMRL step t trains head t
    in_dim: int
    out_dim: int  # the step's output width (ADS: the kept width; an adaptor: D)
    levels: list[int]  # the widths its loss sees (prefixes of its output)
    weights: list[float]  # the loss weight of each level
    epochs: int
    eval_dims: list[int]  # the method's embeddings this step produces (held-out nDCG@10)
    chained: bool  # its input is the frozen output of the steps before it (else x)
    split: int  # the recorder's statistics: rows [0, split) low, [split, rows) high
    rows: int | None = None  # the rows a loss reaches (the statistics' rows); None: all


@dataclass
class Context:
    """What a step's loss needs beyond the batch: where training is, and which rows, for each
    of the S members being trained together."""

    progress: float  # fraction of the step's optimiser steps done before this one, in [0, 1)
    generators: list[torch.Generator]  # this epoch's draws (Gumbel noise), one per member
    qi: torch.Tensor  # (S, B) each member's batch of query rows
    di: torch.Tensor  # (S, B) its document rows


@dataclass(frozen=True)
class Tables:
    """The frozen tables a step's objective may read beyond its batch: `inputs` (queries then
    documents as the step sees them, (S, N, D) per member or (N, D) shared), `full` (the same,
    frozen full and L2-normalised), `n_queries`, `universe` (the rows of the training items),
    and `members`, the S members trained together."""

    inputs: torch.Tensor
    full: torch.Tensor
    n_queries: int
    universe: torch.Tensor
    members: int = 1


class Objective:
    """A step's training loss for one batch of each member, (S,); `module` is the step being
    trained (S members). An objective with state of its own (a memory, a record of its masks)
    saves it with the checkpoint, and may report diagnostics per epoch and, once the step ends,
    per epoch again: each as {name: one value per member}."""

    def __call__(self, module, zq, zd, batch: Batch, ctx: Context) -> torch.Tensor:
        raise NotImplementedError

    def end_epoch(self, module) -> dict[str, list[float]]:
        """Diagnostics of the epoch just trained (MLflow metrics, history columns)."""
        return {}

    def end_step(self, module) -> list[dict[str, list[float]]]:
        """Diagnostics of each epoch of the step, known only once it ends."""
        return []

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        """Restore what `state` saved (nothing, for a stateless objective)."""


class NestedObjective(Objective):
    """MRL and SMRL: the nested loss of the head's outputs."""

    def __init__(self, loss: NestedLoss):
        self.loss = loss

    def __call__(self, module, zq, zd, batch, ctx):
        y = module(torch.cat([zq, zd], dim=1))  # one product for queries and documents
        return self.loss(y[:, : zq.shape[1]], y[:, zq.shape[1] :], batch)


def nested_loss(spec: StepSpec, cfg: Train) -> NestedLoss:
    """`train.loss` over the step's levels with their weights."""
    return NestedLoss(LOSSES[cfg.loss], spec.levels, spec.weights)


def module_seeds(spec: StepSpec, seeds: list[int]) -> list[int]:
    """The seed of each member's initial weights for this step (member seeds `seeds`)."""
    return [seed * 100 + spec.index for seed in seeds]


def n_members(module: nn.Module) -> int:
    """How many members a trained module holds."""
    weight = getattr(module, "weight", None)
    return (weight if weight is not None else module.logits).shape[0]


class Method:
    """A trained compression method (subclasses fill in each part)."""

    name: ClassVar[str]
    label: ClassVar[str]  # the name people read in figures and tables
    style: ClassVar[Style]
    learned: ClassVar[bool] = True
    distributable: ClassVar[bool] = False  # trains under torchrun (row-sharded batches)
    knobs: ClassVar[tuple[Knob, ...]] = ()  # its own settings a study searches (tune@<name>)

    def plan(self, cfg: Train, in_dim: int) -> list[StepSpec]:
        """The steps for the nested widths `cfg.method_dims`."""
        raise NotImplementedError

    def build(self, spec: StepSpec, cfg: Train, opts: Methods, seeds: list[int]) -> nn.Module:
        """A fresh module for `spec` with one member per seed: it starts as `cfg.init` says
        (`identity`: the frozen embedding, truncated; `random`: drawn from the seed)."""
        raise NotImplementedError

    def lr_overrides(self, opts: Methods) -> dict[str, float]:
        """Learning rates of the module's parameters that do not train at `train.lr`, by name."""
        return {}

    def objective(self, spec: StepSpec, cfg: Train, opts: Methods, tables: Tables) -> Objective:
        """The loss of one step."""
        raise NotImplementedError

    def embed_at(self, modules: list[nn.Module], dims: list[int], x: torch.Tensor, d: int):
        """The width-d embedding of `x` (N, D) by each member of the trained modules, (S, N, d)."""
        raise NotImplementedError

    def linear_maps(self, modules: list[nn.Module], dims: list[int], d: int) -> list[torch.Tensor]:
        """The matrices, (S, out, in) each, whose product, applied in order to the frozen
        embedding, gives each member's width-d embedding (what an exported model computes)."""
        raise NotImplementedError


class Chained(Method):
    """A head per halving, each trained on the frozen output of the ones before (SMRL and the
    methods built on it); the width-d embedding is the chain up to d."""

    def step_levels(self, cfg: Train, in_dim: int, out_dim: int) -> list[int]:
        return [out_dim] if cfg.smrl_step_loss == "single" else [out_dim, out_dim // 2]

    def plan(self, cfg, in_dim):
        specs = []
        for t, (i, o) in enumerate(heads.chain_dims(in_dim, cfg.method_dims), 1):
            levels = self.step_levels(cfg, i, o)
            specs.append(
                StepSpec(
                    index=t,
                    in_dim=i,
                    out_dim=o,
                    levels=levels,
                    weights=[1.0] * len(levels),
                    epochs=cfg.step_epochs,
                    eval_dims=[o],
                    chained=True,
                    split=o // 2,
                )
            )
        return specs

    @torch.no_grad()
    def embed_at(self, modules, dims, x, d):
        return heads.apply_chain(modules[: width_index(dims, d) + 1], x, n_members(modules[0]))

    @torch.no_grad()
    def linear_maps(self, modules, dims, d):
        maps = []
        for module in modules[: width_index(dims, d) + 1]:
            weight = module.weight
            if weight is None:  # a selection without a map: rows of the identity
                n, width = module.logits.shape
                weight = torch.eye(width, device=module.logits.device).expand(n, -1, -1)
            if hasattr(module, "indices"):  # the kept rows of each member's map
                idx = module.indices()
                weight = torch.gather(weight, 1, idx[..., None].expand(-1, -1, weight.shape[2]))
            maps.append(weight.clone())
        return maps


class Prefixed(Method):
    """One module whose width-d embedding is the first d coordinates of its output (MRL and
    Matryoshka-Adaptor)."""

    def matrix(self, module: nn.Module) -> torch.Tensor:
        """The module as one linear map, (S, out, in)."""
        return module.weight

    @torch.no_grad()
    def embed_at(self, modules, dims, x, d):
        width_index(dims, d)
        return modules[0](heads.members(x, n_members(modules[0])))[..., :d]

    @torch.no_grad()
    def linear_maps(self, modules, dims, d):
        width_index(dims, d)
        return [self.matrix(modules[0])[:, :d].clone()]


def width_index(dims: list[int], d: int) -> int:
    """The position of width `d` among a method's nested widths."""
    if d not in dims:
        raise ValueError(f"dim {d} is not one of {dims}")
    return dims.index(d)


class Baseline:
    """A learning-free compression: fitted on the corpus, then a map of the frozen embedding."""

    name: ClassVar[str]
    label: ClassVar[str]
    style: ClassVar[Style]
    learned: ClassVar[bool] = False
    seeded: ClassVar[bool] = False  # draws something from the seed (else one fit serves all)

    def fit(self, corpus: torch.Tensor, seed: int) -> Embedder:
        raise NotImplementedError


class Embedder:
    """A fitted baseline: the width-d embedding of any frozen embeddings."""

    def __call__(self, x: torch.Tensor, d: int) -> torch.Tensor:
        raise NotImplementedError
