"""Several processes, one result: torchrun's process group, row-sharded heads, sharded search.

A stage whose `processes` param is above 1 re-runs itself under torchrun (:func:`relaunch`);
every process then holds the same frozen embeddings and draws the same batches, and joins the
group (:func:`init`: `gloo` on CPUs, `nccl` on GPUs, one GPU per process) and leaves it as
the interpreter exits: a process that exits inside the group can abort (SIGABRT, "terminate
called without an active exception") when gloo's threads still hold work at finalization.

Training (data-parallel, as DDP): each process runs the head on its share of a batch's rows;
the outputs are gathered (:class:`RowSharded`), so every process evaluates the loss of the whole
global batch, with in-batch negatives from every process; backward then reaches the weights
through the process's own rows only, and :func:`all_reduce_grads` sums the gradients. The sum is
the gradient of the one-process loss at the global batch. (DDP's own wrapper averages, and
expects one forward per backward; a step here calls the head twice, on queries and documents.)

Search: each process scores a contiguous shard of the corpus; the per-shard top-k are gathered
and merged in shard order, so ties keep the one-process order (score, then corpus row).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from itertools import pairwise

import torch
import torch.distributed as dist
from torch import nn

from smec.errors import SmecError


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def relaunch(processes: int, script: str, argv: list[str]) -> bool:
    """Run `script argv` under torchrun with `processes` processes, unless that is 1 or this is
    already a torchrun worker; True when it ran (the caller then has nothing left to do)."""
    if processes <= 1 or "LOCAL_RANK" in os.environ:
        return False
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        script,
        *argv,
    ]
    code = subprocess.run(cmd).returncode
    if code:
        raise SmecError(f"{script}: {processes} torchrun processes failed (exit {code}); see above")
    return True


def init(device: torch.device) -> torch.device:
    """Join torchrun's process group when run by torchrun; returns this process's device."""
    if "LOCAL_RANK" not in os.environ or world() > 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    atexit.register(leave)
    return device


def leave() -> None:
    """Destroy the process group (once; registered by :func:`init` to run at exit, while the
    interpreter is whole)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def bounds(n: int, parts: int | None = None) -> list[int]:
    """Row boundaries of `parts` (default: the world) contiguous shards of n rows."""
    parts = parts or world()
    return [n * r // parts for r in range(parts + 1)]


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The concatenation along dim 1 of every process's rows (:func:`bounds` of n), for
    (S, rows, ...) tensors; no gradient."""
    edges = bounds(n)
    size = max(b - a for a, b in pairwise(edges))
    padded = local.new_zeros((local.shape[0], size, *local.shape[2:]))
    padded[:, : local.shape[1]] = local
    parts = [torch.empty_like(padded) for _ in range(world())]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:, : b - a] for p, (a, b) in zip(parts, pairwise(edges), strict=True)], 1)


class _GatherRows(torch.autograd.Function):
    """Forward: all processes' rows. Backward: the gradient of this process's rows only."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, n: int) -> torch.Tensor:
        ctx.lo, ctx.hi = bounds(n)[rank()], bounds(n)[rank() + 1]
        return gather_rows(local, n)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad[:, ctx.lo : ctx.hi], None


class RowSharded(nn.Module):
    """`module(x)` for x (S, N, D) with each process computing its own rows of x (dim 1) and
    gathering the others'."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        edges = bounds(n)
        return _GatherRows.apply(self.module(x[:, edges[rank()] : edges[rank() + 1]]), n)


def all_reduce_grads(module: nn.Module) -> None:
    """Sum each parameter's gradient over the processes."""
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)


def merge_topk(scores: list[torch.Tensor], idx: list[torch.Tensor], k: int):
    """Top-k of the union of per-shard top-k lists given in corpus order: by score descending,
    then (a stable sort over shards in order) corpus row ascending."""
    s, i = torch.cat(scores, dim=1), torch.cat(idx, dim=1)
    order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
    return s.gather(1, order), i.gather(1, order)


def search(search_shard, queries: torch.Tensor, corpus, k: int):
    """`search_shard(queries, corpus_rows, k, offset)` on this process's shard of the corpus,
    merged over the processes (every process gets the merged top-k)."""
    edges = bounds(len(corpus))
    lo, hi = edges[rank()], edges[rank() + 1]
    s, i = search_shard(queries, corpus, k, lo, hi)
    width = min(k, max(b - a for a, b in pairwise(edges)))
    pad = width - s.shape[1]  # a shard shorter than k: pad with -inf, dropped by the merge
    s = torch.nn.functional.pad(s, (0, pad), value=-torch.inf)
    i = torch.nn.functional.pad(i, (0, pad), value=-1)
    all_s = [torch.empty_like(s) for _ in range(world())]
    all_i = [torch.empty_like(i) for _ in range(world())]
    dist.all_gather(all_s, s.contiguous())
    dist.all_gather(all_i, i.contiguous())
    return merge_topk(all_s, all_i, min(k, len(corpus)))
