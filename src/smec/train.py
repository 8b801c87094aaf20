"""The training loop for MRL and SMRL heads: device, seeds, optimiser, checkpoints, resume.

Both methods reduce to one loop — train a linear head on fixed inputs with a
:class:`~smec.nesting.NestedLoss` — planned (:func:`plan`) once for MRL (all nested widths on one
head) and once per step for SMRL (each step's width, on the frozen output of the steps before).

Determinism: every random draw comes from a generator seeded by (seed, head, epoch), so a run
resumed from its checkpoint after epoch e draws exactly what an uninterrupted run draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from smec import gradstats, heads, retrieval
from smec.artifacts import Dataset
from smec.checkpoint import Checkpoint
from smec.errors import SmecError
from smec.losses import LOSSES, Batch
from smec.nesting import NestedLoss
from smec.params import Train


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


@dataclass(frozen=True)
class HeadSpec:
    """One head to train: its widths, the nested widths of its loss, and its epochs."""

    index: int  # 1-based: MRL has head 1; SMRL step t trains head t
    in_dim: int
    out_dim: int
    levels: list[int]  # the widths its loss sees (prefixes of its output)
    weights: list[float]  # the loss weight of each level
    epochs: int
    eval_dims: list[int]  # the method's embeddings this head produces (held-out nDCG@10)


def plan(method: str, cfg: Train, in_dim: int) -> list[HeadSpec]:
    """MRL: one head, all nested widths. SMRL: one head per halving, its own width alone
    (`single`) or with its half (`pair`)."""
    dims = cfg.method_dims
    if method == "mrl":
        return [HeadSpec(1, in_dim, dims[0], dims, cfg.level_weights, cfg.epochs, dims)]
    specs = []
    for t, (i, o) in enumerate(heads.chain_dims(in_dim, dims), 1):
        levels = [o] if cfg.smrl_step_loss == "single" else [o, o // 2]
        specs.append(HeadSpec(t, i, o, levels, [1.0] * len(levels), cfg.step_epochs, [o]))
    return specs


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
class HeadTrainer:
    """Everything one head's epochs need: the head, its (frozen) inputs, loss and optimiser."""

    head: nn.Linear
    xq: torch.Tensor  # queries through the frozen heads before this one
    xc: torch.Tensor  # documents likewise
    data: TrainData
    loss_fn: NestedLoss
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    recorder: gradstats.Recorder | None
    temperature: float
    rank_scale: float = 1.0

    @classmethod
    def build(
        cls, head: nn.Linear, frozen: list[nn.Linear], data: TrainData, cfg: Train, spec: HeadSpec
    ) -> HeadTrainer:
        n_steps = steps_per_epoch(len(data.pairs), cfg.batch_size)
        opt, sched = optimizer(head, cfg, spec.epochs * n_steps)
        loss_fn = NestedLoss(LOSSES[cfg.loss], spec.levels, spec.weights).to(data.q.device)
        return cls(
            head,
            heads.apply_chain(frozen, data.q),
            heads.apply_chain(frozen, data.c),
            data,
            loss_fn,
            opt,
            sched,
            gradstats.Recorder(),
            cfg.temperature,
            cfg.rank_scale,
        )

    def epoch(self, batch_idx: list[torch.Tensor]) -> float:
        """One pass over the training pairs; returns the mean loss."""
        total = 0.0
        data = self.data
        for idx in batch_idx:
            idx = idx.to(data.pairs.device)
            qi, di = data.pairs[idx, 0], data.pairs[idx, 1]
            batch = Batch(
                data.relevance(qi, di), data.q[qi], data.c[di], self.temperature, self.rank_scale
            )
            loss = self.loss_fn(self.head(self.xq[qi]), self.head(self.xc[di]), batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.recorder is None:
                self.opt.step()
            else:
                before = self.head.weight.detach().clone()
                self.recorder.record(self.head.weight.grad)
                self.opt.step()
                self.recorder.record_update(self.head.weight.detach() - before)
            self.sched.step()
            total += loss.detach()
        return float(total) / max(len(batch_idx), 1)

    @torch.no_grad()
    def heldout_ndcg(self, dims: list[int]) -> dict[str, float]:
        """nDCG@10 of the held-out training queries at each width in `dims`."""
        data = self.data
        if len(data.heldout) == 0:
            return {}
        zq, zc = self.head(self.xq[data.heldout]), self.head(self.xc)
        return {
            f"heldout_d{d}.ndcg_at_10": retrieval.score(
                zq[:, :d], zc[:, :d], data.heldout_ids, data.corpus_ids, data.heldout_qrels
            )["ndcg_at_10"]
            for d in dims
        }

    def state(self, epoch: int) -> dict:
        return {
            "head": self.head.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "epoch": epoch,
            "recorder": self.recorder.state(),
        }

    def load_state(self, state: dict) -> int:
        """Restore a mid-head state; returns the first epoch still to train."""
        self.head.load_state_dict(state["head"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.recorder.load_state(state["recorder"])
        return state["epoch"] + 1


@dataclass
class Result:
    heads: list[nn.Linear]
    record: pd.DataFrame
    history: pd.DataFrame
    run_id: str | None


def seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")


def _fit_head(
    method: str,
    spec: HeadSpec,
    trainer: HeadTrainer,
    cfg: Train,
    state: dict,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None],
) -> None:
    """Train one head epoch by epoch, checkpointing after each; its record joins `state`."""
    start = trainer.load_state(state["current"]) if state["current"] is not None else 0
    offset = (spec.index - 1) * cfg.step_epochs if method != "mrl" else 0
    bar = tqdm(
        range(start, spec.epochs),
        desc=f"{method} head {spec.index}",
        unit="epoch",
        initial=start,
        total=spec.epochs,
        leave=False,
    )
    for epoch in bar:
        t0 = time.perf_counter()
        lr = trainer.sched.get_last_lr()[0]
        loss = trainer.epoch(
            batches(len(trainer.data.pairs), cfg.batch_size, cfg.seed, spec.index, epoch)
        )
        if math.isnan(loss):
            raise SmecError(
                f"{method} head {spec.index}: loss is NaN at epoch {epoch}; "
                f"lower train.lr (now {cfg.lr:g})"
            )
        stats = gradstats.epoch_stats(
            trainer.recorder.end_epoch(epoch), trainer.recorder.cols, split=spec.out_dim // 2
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
        bar.set_postfix(loss=f"{loss:.4f}")
        state["history"].append(row)
        state["current"] = trainer.state(epoch)
        on_epoch(row)
        checkpoint.save(state)
    state["records"].append(trainer.recorder.table(method, spec.index))
    state["done"].append(trainer.head.state_dict())
    state["current"] = None


def fit(
    method: str,
    cfg: Train,
    data: TrainData,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None] = lambda row: None,
    run_id: str | None = None,
) -> Result:
    """Train every head of `method`, resuming from `checkpoint` where it has state."""
    seed_everything(cfg.seed, data.q.device)
    state = checkpoint.load() or {"done": [], "records": [], "history": [], "current": None}
    state.setdefault("run_id", run_id)
    trained: list[nn.Linear] = []
    for spec in plan(method, cfg, data.q.shape[1]):
        head = heads.make_head(
            spec.in_dim, spec.out_dim, cfg.bias, cfg.init, cfg.seed * 100 + spec.index
        ).to(data.q.device)
        if spec.index <= len(state["done"]):
            head.load_state_dict(state["done"][spec.index - 1])
        else:
            trainer = HeadTrainer.build(head, trained, data, cfg, spec)
            _fit_head(method, spec, trainer, cfg, state, checkpoint, on_epoch)
        trained.append(head.requires_grad_(False))
    rec = (
        pd.concat(state["records"], ignore_index=True)
        if state["records"]
        else pd.DataFrame(columns=gradstats.RECORD_COLUMNS)
    )
    return Result(trained, rec, pd.DataFrame(state["history"]), state["run_id"])


def metric_names(row: dict) -> dict[str, float]:
    """MLflow metrics of a history row (logged at step `global_epoch`): the same names for
    every method and head, plus log10 of the variances (the UI's axes show 1e-7 as 0)."""
    skip = ("method", "head", "epoch", "global_epoch")
    out = {k: float(v) for k, v in row.items() if k not in skip}
    for key in gradstats.VARIANCES.values():
        if out.get(key, 0) > 0:
            out[f"log10_{key}"] = math.log10(out[key])
    return out
