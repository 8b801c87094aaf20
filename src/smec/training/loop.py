"""The training loop: device, seeds, optimiser, checkpoints, resume, model selection.

Every method reduces to one loop, planned by its :class:`~smec.model.methods.base.Method`:
train a module on fixed inputs with its step's objective, one step at a time; MRL is one step
with all nested widths, SMRL one per halving on the frozen output of the steps before
(:mod:`smec.model.methods` has the others). The gradient of the module's weight is recorded at
every optimiser step.

A job trains S members at once (its `members`: the seeds of a sweep, the trials of a study, or
one): every module holds them along a leading dimension (:mod:`smec.model.heads`), each member
draws its own initial weights, batch order and noise from its seed and steps at its own
learning rate, and nothing mixes across members: the losses, gradients, records, held-out
scores and kept epochs are each member's own, as if it had been trained alone (the tests hold
the two within float rounding). Under torchrun (`train.processes` > 1), each process runs the
head on its share of every batch's rows and the gradients are summed
(:mod:`smec.infra.distributed`): the same training as one process.

Determinism: every random draw comes from a generator seeded by (seed, step, epoch), so a run
resumed from its checkpoint after epoch e draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from smec.errors import SmecError
from smec.infra import distributed
from smec.measure import gradstats
from smec.model import heads
from smec.model.losses import Batch
from smec.model.methods.base import Context, Method, Objective, StepSpec, Tables
from smec.params import Methods, Train
from smec.training import optim
from smec.training.checkpoint import Checkpoint
from smec.training.data import TrainData, member_batches, steps_per_epoch


@dataclass(frozen=True)
class Member:
    """One model of a stack: its seed (initial weights, batch order, noise) and learning rate."""

    seed: int
    lr: float


@dataclass(frozen=True)
class Job:
    """What one training trains: a method under some training params and method options, for
    each of its members (default: one, `cfg.seed` at `cfg.lr`); with `select_best`, each
    member's modules end on its epoch with the best held-out nDCG@10."""

    method: Method
    cfg: Train
    opts: Methods = field(default_factory=Methods)
    select_best: bool = False
    members: tuple[Member, ...] = ()

    @property
    def stack(self) -> tuple[Member, ...]:
        return self.members or (Member(self.cfg.seed, self.cfg.lr),)

    @property
    def seeds(self) -> list[int]:
        return [m.seed for m in self.stack]


def step_tables(xq: torch.Tensor, xc: torch.Tensor, data: TrainData, members: int) -> Tables:
    """The frozen tables of a step whose inputs are `xq` and `xc` (shared or per member)."""
    return Tables(
        inputs=torch.cat([xq, xc], dim=-2),
        full=F.normalize(torch.cat([data.q, data.c]), dim=-1),
        n_queries=len(data.q),
        universe=torch.unique(torch.cat([data.pairs[:, 0], data.pairs[:, 1] + len(data.q)])),
        members=members,
    )


@dataclass
class StepTrainer:
    """Everything one step's epochs need: its module and objective, its (frozen) inputs, the
    optimiser, and the recorder of the gradient of the module's weight."""

    module: nn.Module
    objective: Objective
    xq: torch.Tensor  # queries as this step sees them: (N, D), or (S, N, D) through frozen steps
    xc: torch.Tensor  # documents likewise
    data: TrainData
    opt: optim.StackedOptimizer
    sched: optim.Schedule
    recorder: gradstats.Recorder | None
    seeds: list[int]
    temperature: float = 0.05
    rank_scale: float = 1.0
    sharded: nn.Module | None = None  # under torchrun: the module run on this process's rows

    @classmethod
    def build(
        cls, job: Job, spec: StepSpec, module: nn.Module, frozen: list[nn.Module], data: TrainData
    ) -> StepTrainer:
        """The trainer of step `spec`, whose input passes through the `frozen` steps first."""
        cfg, n = job.cfg, len(job.stack)
        xq = heads.apply_chain(frozen, data.q, n) if spec.chained else data.q
        xc = heads.apply_chain(frozen, data.c, n) if spec.chained else data.c
        total = spec.epochs * steps_per_epoch(len(data.pairs), cfg.batch_size)
        fixed = job.method.lr_overrides(job.opts)
        opt, sched = optim.optimizer(module, cfg, [m.lr for m in job.stack], fixed, total)
        opt.watched = module.weight
        objective = job.method.objective(spec, cfg, job.opts, step_tables(xq, xc, data, n))
        sharded = None
        if distributed.world() > 1:
            if not job.method.distributable:
                raise SmecError(f"{job.method.name}: only mrl and smrl train in several processes")
            sharded = distributed.RowSharded(module)
        return cls(
            module=module,
            objective=objective,
            xq=xq,
            xc=xc,
            data=data,
            opt=opt,
            sched=sched,
            recorder=gradstats.Recorder() if module.weight is not None else None,
            seeds=job.seeds,
            temperature=cfg.temperature,
            rank_scale=cfg.rank_scale,
            sharded=sharded,
        )

    def epoch(
        self, batch_idx: list[torch.Tensor], progress: tuple[int, int], gens: list
    ) -> list[float]:
        """One pass over the training pairs: `batch_idx` each step's (S, B) pairs, `progress`
        this epoch's index and the step's epoch count; returns each member's mean loss."""
        total = torch.zeros(len(self.seeds))
        data, weight = self.data, self.module.weight
        epoch, epochs = progress
        n = len(batch_idx)
        for b, idx in enumerate(batch_idx):
            idx = idx.to(data.pairs.device)
            qi, di = data.pairs[idx, 0], data.pairs[idx, 1]  # (S, B)
            q_full, d_full = data.q[qi], data.c[di]
            batch = Batch(data.relevance(qi, di), q_full, d_full, self.temperature, self.rank_scale)
            ctx = Context((epoch * n + b) / (epochs * n), gens, qi, di)
            module = self.module if self.sharded is None else self.sharded
            zq = q_full if self.xq is data.q else heads.rows_of(self.xq, qi)  # unchained: the same
            zd = d_full if self.xc is data.c else heads.rows_of(self.xc, di)
            loss = self.objective(module, zq, zd, batch, ctx)
            self.opt.zero_grad()
            loss.sum().backward()  # members are independent: each gets its own gradient
            if self.sharded is not None:
                distributed.all_reduce_grads(self.module)
            if self.recorder is not None:
                self.recorder.record(weight.grad)
            self.opt.step()
            if self.recorder is not None:
                self.recorder.update(self.opt.update)
            self.sched.step()
            total += loss.detach().cpu()
        return (total / max(len(batch_idx), 1)).tolist()

    @torch.no_grad()
    def heldout_ndcg(self, dims: list[int]) -> list[dict[str, float]]:
        """Per member, nDCG@10 of the held-out training queries at each width in `dims`
        (prefixes of the step's evaluation output)."""
        data = self.data
        if len(data.heldout) == 0:
            return [{} for _ in self.seeds]
        self.module.eval()
        xq = self.xq[data.heldout] if self.xq.dim() == 2 else self.xq[:, data.heldout]
        zq = self.module(heads.members(xq, len(self.seeds)))
        zc = self.module(heads.members(self.xc, len(self.seeds)))
        self.module.train()
        scores = {d: data.heldout_set.score_members(zq[..., :d], zc[..., :d]) for d in dims}
        return [
            {f"heldout_d{d}.ndcg_at_10": scores[d][s] for d in dims} for s in range(len(self.seeds))
        ]

    def state(self, epoch: int, best: list[Best | None]) -> StepState:
        return StepState(
            module=copy.deepcopy(self.module.state_dict()),
            opt=copy.deepcopy(self.opt.state_dict()),
            epoch=epoch,
            recorder=self.recorder.state() if self.recorder is not None else {},
            best=best,
            objective=copy.deepcopy(self.objective.state()),
        )

    def load_state(self, state: StepState) -> int:
        """Restore a mid-step state; returns the first epoch still to train."""
        self.module.load_state_dict(state.module)
        self.opt.load_state_dict(state.opt)
        if self.recorder is not None:
            self.recorder.load_state(state.recorder)
        self.objective.load_state(state.objective)
        return state.epoch + 1


@dataclass
class Best:
    """A member's held-out best epoch of a step so far, and its weights."""

    score: float
    epoch: int
    module: dict


@dataclass
class StepState:
    """A step in the middle of its epochs: what resuming it needs."""

    module: dict
    opt: dict
    epoch: int  # the last finished epoch
    recorder: dict
    best: list[Best | None]  # per member
    objective: dict = field(default_factory=dict)  # an objective's own state (a memory)


@dataclass
class Progress:
    """A training's state between epochs, saved in its checkpoint: the finished steps (their
    weights, gradient records and selections), the history so far, and the step under way."""

    run_ids: list[str | None] = field(default_factory=list)  # per member
    done: list[dict] = field(default_factory=list)
    records: list[list[pd.DataFrame]] = field(default_factory=list)  # per step, per member
    history: list[dict] = field(default_factory=list)
    selection: list[dict] = field(default_factory=list)
    current: StepState | None = None


@dataclass
class Result:
    modules: list[nn.Module]  # the stacked modules, one member per seed of the job
    records: list[pd.DataFrame]  # per member, the gradient record of every step
    history: pd.DataFrame  # one row per member, step and epoch (`seed` names the member)
    selection: pd.DataFrame  # per member and step: the epoch whose weights it kept, and why
    run_ids: list[str | None]

    @property
    def record(self) -> pd.DataFrame:
        """A lone member's gradient record."""
        return self.records[0]

    def member(self, seed: int) -> pd.DataFrame:
        """One member's history."""
        return self.history[self.history["seed"] == seed]


def seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")


def _generator(seed: int, step: int, epoch: int) -> torch.Generator:
    """This epoch's draws (ADS's Gumbel noise), apart from the batch order's."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 1009 + epoch + 500_009)


def _member_rows(job: Job, spec: StepSpec, epoch: int, values: dict[str, list]) -> list[dict]:
    """The history rows of one epoch, one per member, from per-member values."""
    rows = []
    for s, seed in enumerate(job.seeds):
        rows.append(
            {
                "method": job.method.name,
                "seed": seed,
                "head": spec.index,
                "epoch": epoch,
                "global_epoch": (spec.index - 1) * spec.epochs + epoch,  # one timeline
                **{k: v[s] for k, v in values.items()},
            }
        )
    return rows


def _better(best: Best | None, row: dict, spec: StepSpec, state: dict) -> Best | None:
    """The new best epoch of a member if this one's held-out nDCG@10 (mean over the step's
    widths) beats it; `state` is that member's weights now."""
    score = sum(row[f"heldout_d{d}.ndcg_at_10"] for d in spec.eval_dims) / len(spec.eval_dims)
    if best is not None and score <= best.score:
        return best
    return Best(score=score, epoch=row["epoch"], module=state)


def member_state(module: nn.Module, s: int) -> dict:
    """Member s of a stacked module, as the state of a one-member module."""
    return {k: v[s : s + 1].clone() for k, v in module.state_dict().items()}


def set_member(module: nn.Module, s: int, state: dict) -> None:
    """Put a one-member state into member s of a stacked module."""
    with torch.no_grad():
        for k, v in module.state_dict().items():
            v[s : s + 1].copy_(state[k])


def _train_epoch(job: Job, spec: StepSpec, trainer: StepTrainer, epoch: int) -> list[dict]:
    """One epoch of a step: per member, its history row (loss, learning rate, time, gradient
    statistics and, with `train.heldout_eval`, held-out nDCG@10)."""
    cfg, t0 = job.cfg, time.perf_counter()
    lrs = trainer.opt.member_lrs()
    n_pairs = len(trainer.data.pairs)
    batch_idx = member_batches(n_pairs, cfg.batch_size, job.seeds, spec.index, epoch)
    gens = [_generator(seed, spec.index, epoch) for seed in job.seeds]
    losses = trainer.epoch(batch_idx, (epoch, spec.epochs), gens)
    for seed, loss in zip(job.seeds, losses, strict=True):
        if math.isnan(loss):
            raise SmecError(
                f"{job.method.name} step {spec.index}: loss is NaN at epoch {epoch} (seed "
                f"{seed}); lower train.lr (now {cfg.lr:g})"
            )
    values = {"loss": losses, "lr": lrs or [cfg.lr] * len(losses)}
    values["seconds"] = [time.perf_counter() - t0] * len(losses)
    values |= trainer.objective.end_epoch(trainer.module)
    if trainer.recorder is not None:
        records = trainer.recorder.end_epoch(epoch)
        cols = trainer.recorder.cols
        stats = [gradstats.epoch_stats(r, cols, spec.split, spec.rows) for r in records]
        values |= {k: [st[k] for st in stats] for k in stats[0] if k != "steps"}
    rows = _member_rows(job, spec, epoch, values)
    if cfg.heldout_eval:
        for row, scores in zip(rows, trainer.heldout_ndcg(spec.eval_dims), strict=True):
            row |= scores
    return rows


def _fit_step(
    job: Job,
    spec: StepSpec,
    trainer: StepTrainer,
    progress: Progress,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None],
) -> None:
    """Train one step epoch by epoch, checkpointing after each; with `job.select_best`, end
    each member on the weights of its epoch with the best held-out nDCG@10 (mean over the
    step's widths)."""
    current = progress.current
    start = trainer.load_state(current) if current is not None else 0
    best = current.best if current is not None else [None] * len(job.stack)
    bar = tqdm(
        range(start, spec.epochs),
        desc=f"{job.method.name} step {spec.index} ({len(job.stack)} members)",
        unit="epoch",
        initial=start,
        total=spec.epochs,
        leave=False,
        disable=None if distributed.is_main() else True,
    )
    for epoch in bar:
        rows = _train_epoch(job, spec, trainer, epoch)
        if job.select_best:
            best = [
                _better(b, row, spec, member_state(trainer.module, s))
                for s, (b, row) in enumerate(zip(best, rows, strict=True))
            ]
        bar.set_postfix(loss=f"{sum(r['loss'] for r in rows) / len(rows):.4f}")
        progress.history += rows
        progress.current = trainer.state(epoch, best)
        for row in rows:
            on_epoch(row)
        checkpoint.save(progress)
    _end_step(job, spec, trainer, progress, best)
    checkpoint.save(progress, force=True)


def _end_step(job: Job, spec: StepSpec, trainer: StepTrainer, progress: Progress, best) -> None:
    """Each member on its kept epoch's weights; the step's selection, records and weights."""
    for s, b in enumerate(best):
        if b is not None:
            set_member(trainer.module, s, b.module)
    if extras := trainer.objective.end_step(trainer.module):
        step_rows = [r for r in progress.history if r["head"] == spec.index]
        epochs = {(r["seed"], r["epoch"]): r for r in step_rows}
        for epoch, extra in zip(sorted({r["epoch"] for r in step_rows}), extras, strict=True):
            for s, seed in enumerate(job.seeds):
                epochs[seed, epoch] |= {k: v[s] for k, v in extra.items()}
    for seed, b in zip(job.seeds, best, strict=True):
        progress.selection.append(
            {
                "seed": seed,
                "step": spec.index,
                "kept_epoch": b.epoch if b else spec.epochs - 1,
                "heldout_ndcg_at_10": b.score if b else math.nan,
                "rule": "best held-out nDCG@10" if b else "last epoch",
            }
        )
    if trainer.recorder is not None:
        name = job.method.name
        progress.records.append(
            [trainer.recorder.table(name, spec.index, s) for s in range(len(job.stack))]
        )
    progress.done.append(copy.deepcopy(trainer.module.state_dict()))
    progress.current = None


def fit(
    job: Job,
    data: TrainData,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None] = lambda row: None,
    run_ids: list[str | None] | None = None,
) -> Result:
    """Train every step of `job.method` for every member, resuming from `checkpoint` where it
    has state."""
    cfg = job.cfg
    if job.select_best and not cfg.heldout_eval:
        raise SmecError("selecting the best epoch needs train.heldout_eval: true")
    seed_everything(job.seeds[0], data.q.device)
    progress = checkpoint.load() or Progress(run_ids=list(run_ids or [None] * len(job.stack)))
    trained: list[nn.Module] = []
    for spec in job.method.plan(cfg, data.q.shape[1]):
        module = job.method.build(spec, cfg, job.opts, job.seeds).to(data.q.device)
        if spec.index <= len(progress.done):
            module.load_state_dict(progress.done[spec.index - 1])
        else:
            trainer = StepTrainer.build(job, spec, module, trained, data)
            _fit_step(job, spec, trainer, progress, checkpoint, on_epoch)
        trained.append(module.requires_grad_(False).eval())
    records = [
        pd.concat([step[s] for step in progress.records], ignore_index=True)
        if progress.records
        else pd.DataFrame(columns=gradstats.RECORD_COLUMNS)
        for s in range(len(job.stack))
    ]
    return Result(
        modules=trained,
        records=records,
        history=pd.DataFrame(progress.history),
        selection=pd.DataFrame(progress.selection),
        run_ids=progress.run_ids,
    )


def metric_names(row: dict) -> dict[str, float]:
    """MLflow metrics of a history row (logged at step `global_epoch`): the same names for
    every method and head, plus log10 of the variances (the UI's axes show 1e-7 as 0)."""
    skip = ("method", "seed", "head", "epoch", "global_epoch")
    out = {k: float(v) for k, v in row.items() if k not in skip}
    for key in gradstats.VARIANCES.values():
        if out.get(key, 0) > 0:
            out[f"log10_{key}"] = math.log10(out[key])
    return out
