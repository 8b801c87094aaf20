"""The training loop: device, seeds, optimiser, checkpoints, resume, model selection.

Every method reduces to one loop, planned by :func:`smec.methods.plan`: train a module on fixed
inputs with its step's objective, one step at a time; MRL is one step with all nested widths,
SMRL one per halving on the frozen output of the steps before (:mod:`smec.methods` has the
others). The gradient of the module's weight is recorded at every optimiser step. Under torchrun
(`train.processes` > 1), each process runs the head on its share of every batch and the
gradients are summed (:mod:`smec.distributed`): the same training as one process.

Determinism: every random draw comes from a generator seeded by (seed, step, epoch), so a run
resumed from its checkpoint after epoch e draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from smec import distributed, gradstats, heads, methods, retrieval
from smec.artifacts import Dataset
from smec.checkpoint import Checkpoint
from smec.errors import SmecError
from smec.losses import Batch
from smec.params import Methods, Train


@dataclass
class TrainData:
    q: torch.Tensor  # (n_queries, D_in) frozen query embeddings, on the training device
    c: torch.Tensor  # (n_docs, D_in) frozen corpus embeddings
    pairs: torch.Tensor  # (P, 2) rows of (query, relevant document) training pairs
    keys: torch.Tensor  # sorted query * n_docs + doc of every training pair
    key_scores: torch.Tensor  # graded relevance of each key
    heldout: torch.Tensor  # query rows held out for per-epoch validation
    heldout_ids: list[str]
    heldout_qrels: dict
    corpus_ids: list[str]

    def relevance(self, qi: torch.Tensor, di: torch.Tensor) -> torch.Tensor:
        """(B, B) graded relevance of in-batch document c to in-batch query b."""
        key = qi[:, None] * len(self.c) + di[None, :]
        pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        return torch.where(self.keys[pos] == key, self.key_scores[pos], 0.0)


def train_data(
    ds: Dataset, corpus_emb: np.ndarray, queries_emb: np.ndarray, device: torch.device
) -> TrainData:
    """The training pairs and held-out queries of a prepared data set, on `device`."""
    q_row = {qid: i for i, qid in enumerate(ds.queries.query_id)}
    c_row = {cid: i for i, cid in enumerate(ds.corpus.corpus_id)}
    train = ds.qrels[ds.qrels.split == "train"]
    pairs = torch.tensor(np.stack([train.query_id.map(q_row), train.corpus_id.map(c_row)], 1))
    keys = pairs[:, 0] * len(corpus_emb) + pairs[:, 1]
    order = torch.argsort(keys)
    held = ds.qrels[ds.qrels.split == "heldout"]
    held_ids = sorted(set(held.query_id))
    return TrainData(
        q=torch.from_numpy(np.asarray(queries_emb)).to(device),
        c=torch.from_numpy(np.asarray(corpus_emb)).to(device),
        pairs=pairs.to(device),
        keys=keys[order].to(device),
        key_scores=torch.tensor(train.score.to_numpy(), dtype=torch.float32)[order].to(device),
        heldout=torch.tensor([q_row[i] for i in held_ids], dtype=torch.long, device=device),
        heldout_ids=held_ids,
        heldout_qrels=retrieval.qrels_dict(held),
        corpus_ids=list(ds.corpus.corpus_id),
    )


def optimizer(head: nn.Module, cfg: Train, total_steps: int):
    params = [p for p in head.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def batches(n_pairs: int, batch_size: int, seed: int, head: int, epoch: int):
    """Shuffled batches of pair indices; the last short batch is kept if it has >= 2 pairs."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + head * 1009 + epoch)
    perm = torch.randperm(n_pairs, generator=gen)
    return [b for b in perm.split(batch_size) if len(b) >= 2]


def steps_per_epoch(n_pairs: int, batch_size: int) -> int:
    full, rest = divmod(n_pairs, batch_size)
    return full + (rest >= 2)


@dataclass
class StepTrainer:
    """Everything one step's epochs need: its module and objective, its (frozen) inputs, the
    optimiser, and the recorder of the gradient of the module's weight."""

    module: nn.Module
    objective: methods.Objective
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
        cls,
        method: str,
        spec: methods.StepSpec,
        module: nn.Module,
        frozen: list[nn.Module],
        data: TrainData,
        cfg: Train,
        opts: Methods,
    ) -> StepTrainer:
        xq = heads.apply_chain(frozen, data.q) if spec.chained else data.q
        xc = heads.apply_chain(frozen, data.c) if spec.chained else data.c
        tables = {
            "inputs": torch.cat([xq, xc]),
            "full": F.normalize(torch.cat([data.q, data.c]), dim=-1),
            "n_queries": len(data.q),
            "universe": torch.unique(torch.cat([data.pairs[:, 0], data.pairs[:, 1] + len(data.q)])),
        }
        n_steps = steps_per_epoch(len(data.pairs), cfg.batch_size)
        opt, sched = optimizer(module, cfg, spec.epochs * n_steps)
        objective = methods.objective(method, spec, cfg, opts, tables)
        sharded = None
        if distributed.world() > 1:
            if not isinstance(objective, methods.NestedObjective):
                raise SmecError(f"{method}: only mrl and smrl train in several processes")
            sharded = distributed.RowSharded(module)
        return cls(module, objective, xq, xc, data, opt, sched, gradstats.Recorder(),
                   cfg.temperature, cfg.rank_scale, sharded)  # fmt: skip

    def epoch(self, batch_idx: list[torch.Tensor], progress: float, gen: torch.Generator) -> float:
        """One pass over the training pairs; returns the mean loss."""
        total = 0.0
        data, weight = self.data, self.module.weight
        for idx in batch_idx:
            idx = idx.to(data.pairs.device)
            qi, di = data.pairs[idx, 0], data.pairs[idx, 1]
            batch = Batch(
                data.relevance(qi, di), data.q[qi], data.c[di], self.temperature, self.rank_scale
            )
            ctx = methods.Context(progress, gen, qi, di)
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

    def state(self, epoch: int) -> dict:
        return {
            "module": copy.deepcopy(self.module.state_dict()),
            "opt": copy.deepcopy(self.opt.state_dict()),
            "sched": self.sched.state_dict(),
            "epoch": epoch,
            "recorder": self.recorder.state(),
        }

    def load_state(self, state: dict) -> int:
        """Restore a mid-step state; returns the first epoch still to train."""
        self.module.load_state_dict(state["module"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.recorder.load_state(state["recorder"])
        return state["epoch"] + 1


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


def _fit_step(
    method: str,
    spec: methods.StepSpec,
    trainer: StepTrainer,
    cfg: Train,
    state: dict,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None],
    select_best: bool,
) -> None:
    """Train one step epoch by epoch, checkpointing after each; with `select_best`, end on the
    weights of the epoch with the best held-out nDCG@10 (mean over the step's widths)."""
    current = state["current"]
    start = trainer.load_state(current) if current is not None else 0
    best = current["best"] if current is not None else None
    offset = (spec.index - 1) * spec.epochs  # one timeline over the steps, for MLflow
    bar = tqdm(range(start, spec.epochs), desc=f"{method} step {spec.index}", unit="epoch",
               initial=start, total=spec.epochs, leave=False,
               disable=None if distributed.is_main() else True)  # fmt: skip
    for epoch in bar:
        t0 = time.perf_counter()
        lr = trainer.sched.get_last_lr()[0]
        batch_idx = batches(len(trainer.data.pairs), cfg.batch_size, cfg.seed, spec.index, epoch)
        gen = _generator(cfg.seed, spec.index, epoch)
        loss = trainer.epoch(batch_idx, epoch / spec.epochs, gen)
        if math.isnan(loss):
            raise SmecError(
                f"{method} step {spec.index}: loss is NaN at epoch {epoch}; "
                f"lower train.lr (now {cfg.lr:g})"
            )
        stats = gradstats.epoch_stats(
            trainer.recorder.end_epoch(epoch), trainer.recorder.cols, split=spec.split
        )
        row = {
            "method": method,
            "head": spec.index,
            "epoch": epoch,
            "global_epoch": offset + epoch,
            "loss": loss,
            "lr": lr,
            "seconds": time.perf_counter() - t0,
            **{k: v for k, v in stats.items() if k != "steps"},
        }
        if cfg.heldout_eval:
            row |= trainer.heldout_ndcg(spec.eval_dims)
        if select_best:
            score = sum(row[f"heldout_d{d}.ndcg_at_10"] for d in spec.eval_dims) / len(
                spec.eval_dims
            )
            if best is None or score > best["score"]:
                best = {"score": score, "epoch": epoch, "module": copy.deepcopy(
                    trainer.module.state_dict())}  # fmt: skip
        bar.set_postfix(loss=f"{loss:.4f}")
        state["history"].append(row)
        state["current"] = trainer.state(epoch) | {"best": best}
        on_epoch(row)
        checkpoint.save(state)
    last = spec.epochs - 1
    if best is not None:
        trainer.module.load_state_dict(best["module"])
    state["selection"].append(
        {
            "step": spec.index,
            "kept_epoch": best["epoch"] if best else last,
            "heldout_ndcg_at_10": best["score"] if best else math.nan,
            "rule": "best held-out nDCG@10" if best else "last epoch",
        }
    )
    state["records"].append(trainer.recorder.table(method, spec.index))
    state["done"].append(copy.deepcopy(trainer.module.state_dict()))
    state["current"] = None
    checkpoint.save(state, force=True)


def fit(
    method: str,
    cfg: Train,
    data: TrainData,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None] = lambda row: None,
    run_id: str | None = None,
    opts: Methods | None = None,
    select_best: bool = False,
) -> Result:
    """Train every step of `method`, resuming from `checkpoint` where it has state."""
    if select_best and not cfg.heldout_eval:
        raise SmecError("selecting the best epoch needs train.heldout_eval: true")
    opts = opts or Methods()
    seed_everything(cfg.seed, data.q.device)
    empty = {"done": [], "records": [], "history": [], "selection": [], "current": None}
    state = checkpoint.load() or empty
    state.setdefault("run_id", run_id)
    trained: list[nn.Module] = []
    for spec in methods.plan(method, cfg, data.q.shape[1]):
        module = methods.build(spec, cfg).to(data.q.device)
        if spec.index <= len(state["done"]):
            module.load_state_dict(state["done"][spec.index - 1])
        else:
            trainer = StepTrainer.build(method, spec, module, trained, data, cfg, opts)
            _fit_step(method, spec, trainer, cfg, state, checkpoint, on_epoch, select_best)
        trained.append(module.requires_grad_(False).eval())
    rec = (
        pd.concat(state["records"], ignore_index=True)
        if state["records"]
        else pd.DataFrame(columns=gradstats.RECORD_COLUMNS)
    )
    return Result(trained, rec, pd.DataFrame(state["history"]), pd.DataFrame(state["selection"]),
                  state["run_id"])  # fmt: skip


def metric_names(row: dict) -> dict[str, float]:
    """MLflow metrics of a history row (logged at step `global_epoch`): the same names for
    every method and head, plus log10 of the variances (the UI's axes show 1e-7 as 0)."""
    skip = ("method", "head", "epoch", "global_epoch")
    out = {k: float(v) for k, v in row.items() if k not in skip}
    for key in gradstats.VARIANCES.values():
        if out.get(key, 0) > 0:
            out[f"log10_{key}"] = math.log10(out[key])
    return out
