"""The training loop: device, seeds, optimiser, checkpoints, resume, model selection.

Every method reduces to one loop, planned by its :class:`~smec.model.methods.base.Method`:
train a module on fixed inputs with its step's objective, one step at a time; MRL is one step
with all nested widths, SMRL one per halving on the frozen output of the steps before
(:mod:`smec.model.methods` has the others). The gradient of the module's weight is recorded at
every optimiser step. Under torchrun (`train.processes` > 1), each process runs the head on its
share of every batch and the gradients are summed (:mod:`smec.infra.distributed`): the same
training as one process.

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
from smec.measure import gradstats, retrieval
from smec.model import heads
from smec.model.losses import Batch
from smec.model.methods.base import Context, Method, Objective, StepSpec, Tables
from smec.params import Methods, Train
from smec.training.checkpoint import Checkpoint
from smec.training.data import TrainData, batches, steps_per_epoch


@dataclass(frozen=True)
class Job:
    """What one training trains: a method under some training params and method options;
    with `select_best`, each module ends on its epoch with the best held-out nDCG@10."""

    method: Method
    cfg: Train
    opts: Methods = field(default_factory=Methods)
    select_best: bool = False


def optimizer(head: nn.Module, cfg: Train, total_steps: int, lrs: dict[str, float] | None = None):
    """The optimiser and schedule of one step; parameters named in `lrs` train at their own
    learning rate (ADS's logits), the others at `train.lr`."""
    lrs = lrs or {}
    named = [(n, p) for n, p in head.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if n not in lrs]}]
    groups += [{"params": [p for n, p in named if n == name], "lr": lr} for name, lr in lrs.items()]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def step_tables(xq: torch.Tensor, xc: torch.Tensor, data: TrainData) -> Tables:
    """The frozen tables of a step whose inputs are `xq` and `xc`."""
    return Tables(
        inputs=torch.cat([xq, xc]),
        full=F.normalize(torch.cat([data.q, data.c]), dim=-1),
        n_queries=len(data.q),
        universe=torch.unique(torch.cat([data.pairs[:, 0], data.pairs[:, 1] + len(data.q)])),
    )


@dataclass
class StepTrainer:
    """Everything one step's epochs need: its module and objective, its (frozen) inputs, the
    optimiser, and the recorder of the gradient of the module's weight."""

    module: nn.Module
    objective: Objective
    xq: torch.Tensor  # queries as this step sees them (through the frozen steps before it)
    xc: torch.Tensor  # documents likewise
    data: TrainData
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    recorder: gradstats.Recorder | None
    temperature: float = 0.05
    rank_scale: float = 1.0
    sharded: nn.Module | None = None  # under torchrun: the module run on this process's rows

    @classmethod
    def build(
        cls, job: Job, spec: StepSpec, module: nn.Module, frozen: list[nn.Module], data: TrainData
    ) -> StepTrainer:
        """The trainer of step `spec`, whose input passes through the `frozen` steps first."""
        cfg = job.cfg
        xq = heads.apply_chain(frozen, data.q) if spec.chained else data.q
        xc = heads.apply_chain(frozen, data.c) if spec.chained else data.c
        n_steps = steps_per_epoch(len(data.pairs), cfg.batch_size)
        lrs = job.method.lr_overrides(job.opts)
        opt, sched = optimizer(module, cfg, spec.epochs * n_steps, lrs)
        objective = job.method.objective(spec, cfg, job.opts, step_tables(xq, xc, data))
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
            temperature=cfg.temperature,
            rank_scale=cfg.rank_scale,
            sharded=sharded,
        )

    def epoch(
        self, batch_idx: list[torch.Tensor], progress: tuple[int, int], gen: torch.Generator
    ) -> float:
        """One pass over the training pairs (this epoch's index and the step's epoch count in
        `progress`); returns the mean loss."""
        total = 0.0
        data, weight = self.data, self.module.weight
        epoch, epochs = progress
        n = len(batch_idx)
        for b, idx in enumerate(batch_idx):
            idx = idx.to(data.pairs.device)
            qi, di = data.pairs[idx, 0], data.pairs[idx, 1]
            batch = Batch(
                data.relevance(qi, di), data.q[qi], data.c[di], self.temperature, self.rank_scale
            )
            ctx = Context((epoch * n + b) / (epochs * n), gen, qi, di)
            module = self.module if self.sharded is None else self.sharded
            loss = self.objective(module, self.xq[qi], self.xc[di], batch, ctx)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.sharded is not None:
                distributed.all_reduce_grads(self.module)
            if self.recorder is None:
                self.opt.step()
            else:
                self.recorder.record(weight.grad)
                self.recorder.before_update(weight)
                self.opt.step()
                self.recorder.after_update(weight)
            self.sched.step()
            total += loss.detach()
        return float(total) / max(len(batch_idx), 1)

    @torch.no_grad()
    def heldout_ndcg(self, dims: list[int]) -> dict[str, float]:
        """nDCG@10 of the held-out training queries at each width in `dims` (prefixes of the
        step's evaluation output)."""
        data = self.data
        if len(data.heldout) == 0:
            return {}
        self.module.eval()
        zq, zc = self.module(self.xq[data.heldout]), self.module(self.xc)
        self.module.train()
        return {
            f"heldout_d{d}.ndcg_at_10": retrieval.score(
                zq[:, :d], zc[:, :d], data.heldout_ids, data.corpus_ids, data.heldout_qrels
            )["ndcg_at_10"]
            for d in dims
        }

    def state(self, epoch: int, best: Best | None) -> StepState:
        return StepState(
            module=copy.deepcopy(self.module.state_dict()),
            opt=copy.deepcopy(self.opt.state_dict()),
            sched=self.sched.state_dict(),
            epoch=epoch,
            recorder=self.recorder.state() if self.recorder is not None else {},
            best=best,
            objective=copy.deepcopy(self.objective.state()),
        )

    def load_state(self, state: StepState) -> int:
        """Restore a mid-step state; returns the first epoch still to train."""
        self.module.load_state_dict(state.module)
        self.opt.load_state_dict(state.opt)
        self.sched.load_state_dict(state.sched)
        if self.recorder is not None:
            self.recorder.load_state(state.recorder)
        self.objective.load_state(state.objective)
        return state.epoch + 1


@dataclass
class Best:
    """The held-out best epoch of a step so far, and its weights."""

    score: float
    epoch: int
    module: dict


@dataclass
class StepState:
    """A step in the middle of its epochs: what resuming it needs."""

    module: dict
    opt: dict
    sched: dict
    epoch: int  # the last finished epoch
    recorder: dict
    best: Best | None
    objective: dict = field(default_factory=dict)  # an objective's own state (a memory)


@dataclass
class Progress:
    """A training's state between epochs, saved in its checkpoint: the finished steps (their
    weights, gradient records and selections), the history so far, and the step under way."""

    run_id: str | None = None
    done: list[dict] = field(default_factory=list)
    records: list[pd.DataFrame] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    selection: list[dict] = field(default_factory=list)
    current: StepState | None = None


@dataclass
class Result:
    modules: list[nn.Module]
    record: pd.DataFrame  # the gradient record of every step
    history: pd.DataFrame  # one row per step and epoch
    selection: pd.DataFrame  # per step: the epoch whose weights it kept, and why
    run_id: str | None


def seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")


def _generator(seed: int, step: int, epoch: int) -> torch.Generator:
    """This epoch's draws (ADS's Gumbel noise), apart from the batch order's."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 1009 + epoch + 500_009)


def _history_row(job: Job, spec: StepSpec, epoch: int, loss: float, stats: dict) -> dict:
    return {
        "method": job.method.name,
        "head": spec.index,
        "epoch": epoch,
        "global_epoch": (spec.index - 1) * spec.epochs + epoch,  # one timeline over the steps
        "loss": loss,
        **stats,
    }


def _better(best: Best | None, row: dict, spec: StepSpec, trainer: StepTrainer) -> Best | None:
    """The new best epoch if this one's held-out nDCG@10 (mean over the step's widths) beats it."""
    score = sum(row[f"heldout_d{d}.ndcg_at_10"] for d in spec.eval_dims) / len(spec.eval_dims)
    if best is not None and score <= best.score:
        return best
    return Best(score=score, epoch=row["epoch"], module=copy.deepcopy(trainer.module.state_dict()))


def _train_epoch(job: Job, spec: StepSpec, trainer: StepTrainer, epoch: int) -> dict:
    """One epoch of a step: its history row (loss, learning rate, time, gradient statistics and,
    with `train.heldout_eval`, held-out nDCG@10)."""
    cfg, t0 = job.cfg, time.perf_counter()
    lr = trainer.sched.get_last_lr()[0]
    batch_idx = batches(len(trainer.data.pairs), cfg.batch_size, cfg.seed, spec.index, epoch)
    gen = _generator(cfg.seed, spec.index, epoch)
    loss = trainer.epoch(batch_idx, (epoch, spec.epochs), gen)
    if math.isnan(loss):
        raise SmecError(
            f"{job.method.name} step {spec.index}: loss is NaN at epoch {epoch}; "
            f"lower train.lr (now {cfg.lr:g})"
        )
    stats = trainer.objective.end_epoch(trainer.module)
    if trainer.recorder is not None:
        record = trainer.recorder.end_epoch(epoch)
        stats |= gradstats.epoch_stats(record, trainer.recorder.cols, spec.split, spec.rows)
    timing = {"lr": lr, "seconds": time.perf_counter() - t0}
    row = _history_row(
        job, spec, epoch, loss, timing | {k: v for k, v in stats.items() if k != "steps"}
    )
    if cfg.heldout_eval:
        row |= trainer.heldout_ndcg(spec.eval_dims)
    return row


def _fit_step(
    job: Job,
    spec: StepSpec,
    trainer: StepTrainer,
    progress: Progress,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None],
) -> None:
    """Train one step epoch by epoch, checkpointing after each; with `job.select_best`, end on
    the weights of the epoch with the best held-out nDCG@10 (mean over the step's widths)."""
    current = progress.current
    start = trainer.load_state(current) if current is not None else 0
    best = current.best if current is not None else None
    bar = tqdm(
        range(start, spec.epochs),
        desc=f"{job.method.name} step {spec.index}",
        unit="epoch",
        initial=start,
        total=spec.epochs,
        leave=False,
        disable=None if distributed.is_main() else True,
    )
    for epoch in bar:
        row = _train_epoch(job, spec, trainer, epoch)
        if job.select_best:
            best = _better(best, row, spec, trainer)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        progress.history.append(row)
        progress.current = trainer.state(epoch, best)
        on_epoch(row)
        checkpoint.save(progress)
    if best is not None:
        trainer.module.load_state_dict(best.module)
    if extras := trainer.objective.end_step(trainer.module):
        step_rows = [r for r in progress.history if r["head"] == spec.index]
        for row, extra in zip(step_rows, extras, strict=True):
            row |= extra
    progress.selection.append(
        {
            "step": spec.index,
            "kept_epoch": best.epoch if best else spec.epochs - 1,
            "heldout_ndcg_at_10": best.score if best else math.nan,
            "rule": "best held-out nDCG@10" if best else "last epoch",
        }
    )
    if trainer.recorder is not None:
        progress.records.append(trainer.recorder.table(job.method.name, spec.index))
    progress.done.append(copy.deepcopy(trainer.module.state_dict()))
    progress.current = None
    checkpoint.save(progress, force=True)


def fit(
    job: Job,
    data: TrainData,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None] = lambda row: None,
    run_id: str | None = None,
) -> Result:
    """Train every step of `job.method`, resuming from `checkpoint` where it has state."""
    cfg = job.cfg
    if job.select_best and not cfg.heldout_eval:
        raise SmecError("selecting the best epoch needs train.heldout_eval: true")
    seed_everything(cfg.seed, data.q.device)
    progress = checkpoint.load() or Progress(run_id=run_id)
    trained: list[nn.Module] = []
    for spec in job.method.plan(cfg, data.q.shape[1]):
        module = job.method.build(spec, cfg, job.opts).to(data.q.device)
        if spec.index <= len(progress.done):
            module.load_state_dict(progress.done[spec.index - 1])
        else:
            trainer = StepTrainer.build(job, spec, module, trained, data)
            _fit_step(job, spec, trainer, progress, checkpoint, on_epoch)
        trained.append(module.requires_grad_(False).eval())
    rec = (
        pd.concat(progress.records, ignore_index=True)
        if progress.records
        else pd.DataFrame(columns=gradstats.RECORD_COLUMNS)
    )
    return Result(
        modules=trained,
        record=rec,
        history=pd.DataFrame(progress.history),
        selection=pd.DataFrame(progress.selection),
        run_id=progress.run_id,
    )


def metric_names(row: dict) -> dict[str, float]:
    """MLflow metrics of a history row (logged at step `global_epoch`): the same names for
    every method and head, plus log10 of the variances (the UI's axes show 1e-7 as 0)."""
    skip = ("method", "head", "epoch", "global_epoch")
    out = {k: float(v) for k, v in row.items() if k not in skip}
    for key in gradstats.VARIANCES.values():
        if out.get(key, 0) > 0:
            out[f"log10_{key}"] = math.log10(out[key])
    return out
