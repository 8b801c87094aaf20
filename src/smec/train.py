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
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from smec import atomic, beir, encode, gradstats, heads, params, retrieval, tracking
from smec.device import resolve
from smec.errors import SmecError
from smec.losses import LOSSES, Batch
from smec.nesting import NestedLoss
from smec.params import Params, Train


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


def load_data(prepared: Path, embeddings: Path, device: torch.device) -> TrainData:
    ds = beir.load(prepared)
    c, q, _ = encode.load(embeddings)
    q_row = {qid: i for i, qid in enumerate(ds.queries.query_id)}
    c_row = {cid: i for i, cid in enumerate(ds.corpus.corpus_id)}
    train = ds.qrels[ds.qrels.split == "train"]
    pairs = torch.tensor(np.stack([train.query_id.map(q_row), train.corpus_id.map(c_row)], 1))
    keys = pairs[:, 0] * len(c) + pairs[:, 1]
    order = torch.argsort(keys)
    held = ds.qrels[ds.qrels.split == "heldout"]
    held_ids = sorted(set(held.query_id))
    return TrainData(
        q=torch.from_numpy(q).to(device),
        c=torch.from_numpy(c).to(device),
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
    levels: list[int]
    weights: list[float]
    epochs: int


def plan(method: str, cfg: Train, in_dim: int) -> list[HeadSpec]:
    dims = cfg.method_dims
    if method == "mrl":
        return [HeadSpec(1, in_dim, dims[0], dims, cfg.level_weights, cfg.epochs)]
    specs = []
    for t, (i, o) in enumerate(heads.chain_dims(in_dim, dims), 1):
        levels = [o] if cfg.smrl_step_loss == "single" else [o, o // 2]
        specs.append(HeadSpec(t, i, o, levels, [1.0] * len(levels), cfg.step_epochs))
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


def train_epoch(
    head: nn.Linear,
    xq: torch.Tensor,
    xc: torch.Tensor,
    data: TrainData,
    loss_fn: NestedLoss,
    opt,
    sched,
    recorder: gradstats.Recorder | None,
    batch_idx: list[torch.Tensor],
    temperature: float,
) -> float:
    """One pass over the training pairs; returns the mean loss."""
    total = 0.0
    for idx in batch_idx:
        idx = idx.to(data.pairs.device)
        qi, di = data.pairs[idx, 0], data.pairs[idx, 1]
        batch = Batch(data.relevance(qi, di), data.q[qi], data.c[di], temperature)
        loss = loss_fn(head(xq[qi]), head(xc[di]), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recorder is not None:
            recorder.record(head.weight.grad)
        opt.step()
        sched.step()
        total += loss.detach()
    return float(total) / max(len(batch_idx), 1)


@torch.no_grad()
def heldout_ndcg(
    head: nn.Linear, xq: torch.Tensor, xc: torch.Tensor, data: TrainData, dims: list[int]
) -> dict[str, float]:
    if len(data.heldout) == 0:
        return {}
    zq, zc = head(xq[data.heldout]), head(xc)
    return {
        f"ndcg10_heldout_d{d}": retrieval.score(
            zq[:, :d], zc[:, :d], data.heldout_ids, data.corpus_ids, data.heldout_qrels
        )["ndcg@10"]
        for d in dims
    }


class Checkpoint:
    """Training state after each epoch, written atomically; removed when training completes."""

    def __init__(self, path: Path, digest: str):
        self.path, self.digest = Path(path), digest

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("digest") != self.digest:
            print(f"ignoring checkpoint {self.path}: it was made with other params")
            return None
        return state

    def save(self, state: dict) -> None:
        with atomic.target(self.path) as tmp:
            torch.save({**state, "digest": self.digest}, tmp)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Result:
    heads: list[nn.Linear]
    record: pd.DataFrame
    history: pd.DataFrame
    run_id: str | None


def seed_everything(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")


def fit(
    method: str,
    cfg: Train,
    data: TrainData,
    checkpoint: Checkpoint,
    on_epoch: Callable[[dict], None] = lambda row: None,
    run_id: str | None = None,
) -> Result:
    """Train every head of `method`, resuming from `checkpoint` where one matches."""
    device = data.q.device
    seed_everything(cfg.seed, device)
    state = checkpoint.load() or {"done": [], "records": [], "history": [], "current": None}
    run_id = state.get("run_id") or run_id
    trained: list[nn.Linear] = []
    for spec in plan(method, cfg, data.q.shape[1]):
        head = heads.make_head(
            spec.in_dim, spec.out_dim, cfg.bias, cfg.init, cfg.seed * 100 + spec.index
        ).to(device)
        if spec.index <= len(state["done"]):
            head.load_state_dict(state["done"][spec.index - 1])
            trained.append(head.requires_grad_(False))
            continue
        xq, xc = heads.apply_chain(trained, data.q), heads.apply_chain(trained, data.c)
        n_steps = steps_per_epoch(len(data.pairs), cfg.batch_size)
        opt, sched = optimizer(head, cfg, spec.epochs * n_steps)
        loss_fn = NestedLoss(LOSSES[cfg.loss], spec.levels, spec.weights).to(device)
        recorder = gradstats.Recorder(method, spec.index)
        start = 0
        if state["current"] is not None:
            cur = state["current"]
            head.load_state_dict(cur["head"])
            opt.load_state_dict(cur["opt"])
            sched.load_state_dict(cur["sched"])
            recorder.load_state(cur["recorder"])
            start = cur["epoch"] + 1
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
            lr = sched.get_last_lr()[0]
            loss = train_epoch(
                head,
                xq,
                xc,
                data,
                loss_fn,
                opt,
                sched,
                recorder,
                batches(len(data.pairs), cfg.batch_size, cfg.seed, spec.index, epoch),
                cfg.temperature,
            )
            row = {
                "method": method,
                "head": spec.index,
                "epoch": epoch,
                "loss": loss,
                "lr": lr,
                "seconds": time.perf_counter() - t0,
            }
            stats = gradstats.epoch_stats(
                *recorder.end_epoch(epoch), recorder.cols, split=spec.out_dim // 2
            )
            row |= {k: v for k, v in stats.items() if k != "steps"}
            if cfg.heldout_eval:
                row |= heldout_ndcg(head, xq, xc, data, spec.levels)
            bar.set_postfix(loss=f"{loss:.4f}")
            if math.isnan(loss):
                raise SmecError(
                    f"{method} head {spec.index}: loss is NaN at epoch {epoch}; "
                    f"lower train.lr (now {cfg.lr:g})"
                )
            state["history"].append(row)
            state["current"] = {
                "head": head.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "epoch": epoch,
                "recorder": recorder.state(),
            }
            on_epoch(row)
            checkpoint.save({**state, "run_id": run_id})
        state["records"].append(recorder.table())
        state["done"].append(head.state_dict())
        state["current"] = None
        trained.append(head.requires_grad_(False))
    rec = (
        pd.concat(state["records"], ignore_index=True)
        if state["records"]
        else pd.DataFrame(columns=gradstats.RECORD_COLUMNS)
    )
    return Result(trained, rec, pd.DataFrame(state["history"]), run_id)


def metric_names(row: dict) -> dict[str, float]:
    """MLflow metrics of a history row; heads after the first are prefixed `stepN/`."""
    prefix = "" if row["head"] == 1 else f"step{row['head']}/"
    return {
        f"{prefix}{k}": float(v) for k, v in row.items() if k not in ("method", "head", "epoch")
    }


def run(p: Params, method: str, root: Path) -> Result:
    """The train stage: fit `method`, write its outputs atomically, track it in MLflow."""
    import mlflow

    device = resolve(p.train.device)
    data = load_data(root / "data/prepared", root / "data/embeddings", device)
    digest = params.digest(
        {"method": method, **{s: getattr(p, s).model_dump() for s in ("data", "encoder", "train")}}
    )
    checkpoint = Checkpoint(root / "checkpoints" / method / "state.pt", digest)
    resumed = checkpoint.load()
    run_id = resumed["run_id"] if resumed else None
    if resumed:
        print(f"{method}: resuming from {checkpoint.path} (MLflow run {run_id})")
    with tracking.start_run(
        p.tracking.experiment, method, digest, run_id=run_id, tags={"method": method}
    ) as mlrun:
        if run_id is None:
            mlflow.log_params(
                {
                    **params.flat(p, ("data", "encoder", "train")),
                    "method": method,
                    "device": str(device),
                }
            )
        result = fit(
            method,
            p.train,
            data,
            checkpoint,
            run_id=mlrun.info.run_id,
            on_epoch=lambda row: mlflow.log_metrics(metric_names(row), step=row["epoch"]),
        )
        models, runs = root / "models" / method, root / "runs" / method
        with atomic.directory(models) as tmp:
            heads.save(
                tmp / "heads.pt",
                method,
                data.q.shape[1],
                p.train.method_dims,
                [h.cpu() for h in result.heads],
            )
        with atomic.directory(runs) as tmp:
            result.record.to_parquet(tmp / "gradients.parquet", index=False)
            result.history.to_csv(tmp / "history.csv", index=False, float_format="%.8g")
            tracking.write_run_json(tmp / "run.json", mlrun, method=method, params_digest=digest)
        mlflow.log_artifact(str(models / "heads.pt"))
        mlflow.log_artifact(str(runs / "history.csv"))
    checkpoint.clear()
    return result
