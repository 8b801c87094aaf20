"""The compression methods: how each one's steps are built and trained, and how it embeds.

- `mrl`: one linear head D -> dims[0]; loss Σ_m c_m L(y[:m]) over all widths; the width-d
  embedding is head(x)[:d].
- `smrl`: a linear head per halving, chained, each frozen before the next; a step's loss is
  L(y) (`pair`: + L(y[:half])); the width-d embedding is the chain up to d.
- `smrl_ads`: an ADS head per halving (:mod:`smec.ads`), chained; loss L(y ⊙ m); the width-d
  embedding is the chain of gathers up to d.
- `smec`: `smrl_ads` with the S-XBM term (:mod:`smec.xbm`): L(y ⊙ m) + λ L_sxbm.
- `mrl_adaptor`: one skip adaptor (:mod:`smec.adaptors`), Matryoshka-Adaptor's unsupervised
  then supervised phases; the width-d embedding is (x + f(x))[:d].
- `search_adaptor`: one skip adaptor per width, each on x; loss L(ĉ[:m]) + λ L_rec; the
  width-d embedding is (x + f_d(x))[:d].

L is `train.loss` (the paper's rank loss by default). A step trains on fixed inputs: x itself,
or the frozen output of the steps before it (`chained`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smec import adaptors, ads, heads, xbm
from smec.losses import LOSSES, Batch
from smec.nesting import NestedLoss
from smec.params import Methods, Train

CHAINED = ("smrl", "smrl_ads", "smec")
ALL = ("mrl", "smrl", "smrl_ads", "smec", "mrl_adaptor", "search_adaptor")


@dataclass(frozen=True)
class StepSpec:
    """One module to train: its widths, the nested widths of its loss, and its epochs."""

    index: int  # 1-based: MRL has step 1; SMRL step t trains head t
    kind: str  # linear | ads | adaptor
    in_dim: int
    out_dim: int  # the step's output width (ADS: the kept width; an adaptor: D)
    levels: list[int]  # the widths its loss sees (prefixes of its output)
    weights: list[float]  # the loss weight of each level
    epochs: int
    eval_dims: list[int]  # the method's embeddings this step produces (held-out nDCG@10)
    chained: bool  # its input is the frozen output of the steps before it (else x)
    split: int  # the recorder's statistics: rows [0, split) low, [split, rows) high


def plan(method: str, cfg: Train, in_dim: int) -> list[StepSpec]:
    """The steps of `method` for the nested widths `cfg.method_dims`."""
    dims, epochs = cfg.method_dims, cfg.epochs
    if method == "mrl":
        return [StepSpec(1, "linear", in_dim, dims[0], dims, cfg.level_weights, epochs, dims,
                         False, dims[0] // 2)]  # fmt: skip
    if method == "mrl_adaptor":
        return [StepSpec(1, "adaptor", in_dim, in_dim, dims, [1.0] * len(dims), epochs, dims,
                         False, dims[0] // 2)]  # fmt: skip
    if method == "search_adaptor":
        return [
            StepSpec(t, "adaptor", in_dim, in_dim, [d], [1.0], epochs, [d], False, d // 2)
            for t, d in enumerate(dims, 1)
        ]
    if method not in CHAINED:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(ALL)}")
    kind = "linear" if method == "smrl" else "ads"
    specs = []
    for t, (i, o) in enumerate(heads.chain_dims(in_dim, dims), 1):
        # ADS: the loss sees the whole masked output (its kept coordinates may lie anywhere;
        # the others are zero, so the cosines are those of the kept ones)
        levels = [o] if cfg.smrl_step_loss == "single" else [o, o // 2]
        levels = [i] if kind == "ads" else levels
        epochs_t = cfg.step_epochs
        specs.append(
            StepSpec(t, kind, i, o, levels, [1.0] * len(levels), epochs_t, [o], True, o // 2)
        )
    return specs


def build(spec: StepSpec, cfg: Train) -> nn.Module:
    """A fresh module for `spec`, its weights drawn from the seed."""
    seed = cfg.seed * 100 + spec.index
    if spec.kind == "linear":
        return heads.make_head(spec.in_dim, spec.out_dim, cfg.bias, cfg.init, seed)
    if spec.kind == "ads":
        square = heads.make_head(spec.in_dim, spec.in_dim, cfg.bias, cfg.init, seed)
        return ads.ADSHead(spec.in_dim, spec.out_dim, square)
    return adaptors.Adaptor(spec.in_dim)


@dataclass
class Context:
    """What a step's loss needs beyond the batch: where training is, and which rows."""

    progress: float  # fraction of the step's epochs done
    generator: torch.Generator  # this epoch's draws (Gumbel noise)
    qi: torch.Tensor  # the batch's query rows
    di: torch.Tensor  # the batch's document rows


class Objective:
    """A step's training loss for one batch; `module` is the step being trained."""

    def __call__(self, module, zq, zd, batch: Batch, ctx: Context) -> torch.Tensor:
        raise NotImplementedError


class NestedObjective(Objective):
    """MRL and SMRL: the nested loss of the head's outputs."""

    def __init__(self, loss: NestedLoss):
        self.loss = loss

    def __call__(self, module, zq, zd, batch, ctx):
        return self.loss(module(zq), module(zd), batch)


class ADSObjective(Objective):
    """SMRL with ADS, and SMEC: the loss of the masked outputs (+ λ L_sxbm with a memory)."""

    def __init__(self, loss: NestedLoss, opts: Methods, tables: dict | None = None):
        self.loss, self.opts = loss, opts
        self.memory = self.sims = None
        if tables is not None:  # SMEC: the S-XBM memory over the training items
            self.inputs, self.n_queries = tables["inputs"], tables["n_queries"]
            self.sims = xbm.Similarities(tables["full"], tables["universe"])
            capacity = min(opts.xbm_capacity, len(tables["universe"]))
            self.memory = xbm.Memory(capacity, self.inputs.device)

    def __call__(self, module, zq, zd, batch, ctx):
        tau = ads.temperature(self.opts.tau_start, self.opts.tau_end, ctx.progress)
        mask = module.mask(tau, ctx.generator)
        yq, yd = module.train_forward(zq, mask), module.train_forward(zd, mask)
        total = self.loss(yq, yd, batch)
        if self.memory is None:
            return total
        ids = torch.cat([ctx.qi, ctx.di + self.n_queries])  # rows of the joint frozen table
        k = self.opts.xbm_k
        if len(self.memory) > k:
            near, frozen = self.memory.neighbours(self.sims(ids, self.memory.ids), ids, k)
            kept = mask.detach().nonzero().squeeze(1)
            with torch.no_grad():  # the memory side is a constant, as in XBM
                uniq, inverse = torch.unique(near, return_inverse=True)
                z_near = (self.inputs[uniq] @ module.weight[kept].T)[inverse]
            z_batch = torch.cat([yq, yd])[:, kept]
            total = total + self.opts.xbm_weight * xbm.loss(z_batch, z_near, frozen)
        self.memory.push(ids)
        return total


class MatryoshkaAdaptorObjective(Objective):
    """Unsupervised (top-k + α pair + β reconstruction) for the first phase of the step's
    epochs, then that plus γ × the nested ranking loss."""

    def __init__(self, loss: NestedLoss, dims: list[int], opts: Methods):
        self.loss, self.dims, self.opts = loss, dims, opts

    def __call__(self, module, zq, zd, batch, ctx):
        o = self.opts
        items = torch.cat([zq, zd])
        total = adaptors.matryoshka_unsupervised(items, module, self.dims, o.adaptor_topk,
                                                 o.adaptor_alpha, o.adaptor_beta)  # fmt: skip
        if ctx.progress >= o.adaptor_unsupervised:
            total = total + o.adaptor_gamma * self.loss(module(zq), module(zd), batch)
        return total


class SearchAdaptorObjective(Objective):
    def __init__(self, width: int, opts: Methods):
        self.width, self.opts = width, opts

    def __call__(self, module, zq, zd, batch, ctx):
        return adaptors.search_loss(zq, zd, module, self.width, batch, self.opts.search_rec_weight)


def objective(method: str, spec: StepSpec, cfg: Train, opts: Methods, frozen: dict) -> Objective:
    """The loss of one step of `method`; `frozen` has the step's inputs and the full tables
    (`inputs`: queries then documents through the frozen steps; `full`: the same, frozen full
    and L2-normalised; `n_queries`; `universe`: the rows of the training items)."""
    nested = NestedLoss(LOSSES[cfg.loss], spec.levels, spec.weights)
    if method in ("mrl", "smrl"):
        return NestedObjective(nested)
    if method == "smrl_ads":
        return ADSObjective(nested, opts)
    if method == "smec":
        return ADSObjective(nested, opts, frozen)
    if method == "mrl_adaptor":
        return MatryoshkaAdaptorObjective(nested, spec.levels, opts)
    return SearchAdaptorObjective(spec.levels[0], opts)


def restore(meta: dict, states: list[dict]) -> list[nn.Module]:
    """A method's trained modules from `artifacts.read_modules`, in evaluation mode."""
    specs = plan(meta["method"], Train(method_dims=meta["dims"]), meta["in_dim"])
    modules = []
    for spec, state in zip(specs, states, strict=True):
        module = build(spec, Train(method_dims=meta["dims"]))
        module.load_state_dict(state)
        modules.append(module.requires_grad_(False).eval())
    return modules


@torch.no_grad()
def embed_at(method: str, modules: list[nn.Module], dims: list[int], x: torch.Tensor, d: int):
    """The width-d embedding of `x` by a trained method (see the table above)."""
    if d not in dims:
        raise ValueError(f"dim {d} is not one of {dims}")
    i = dims.index(d)
    if method in CHAINED:
        return heads.apply_chain(modules[: i + 1], x)
    if method == "search_adaptor":
        return modules[i](x)[:, :d]
    return modules[0](x)[:, :d]
