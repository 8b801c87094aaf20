"""Exact top-k search: the evaluate stage's chunked search against one full similarity matrix.

Times `smec.measure.retrieval.search(q, c, k=100, chunk_size)` against the reference
`smec.measure.retrieval.search_full(q, c, k=100)` on the same seeded, L2-normalised random float32
vectors (default 1000 queries x 200,000 docs x 192 dims): a warm-up of each on a few queries,
then alternating timed repeats; the medians give queries/s. Peak memory of each is measured
first, each in its own fresh subprocess (this script re-invoked with a hidden flag), as the
growth of `resource.getrusage(RUSAGE_SELF).ru_maxrss` over its value after the data were
created. Both must return identical indices (checked on the last timed repeat).

At scale (`--scale-docs`, default one million, at `--scale-dim` 96): the documents are written
to a `.npy` file on disk, and a fresh process searches them memory-mapped for the queries
(exact top-100), reporting its wall time and its peak resident memory (ru_maxrss, everything
included: the interpreter, torch, the mapped pages it read). The baseline is one full
similarity matrix over the slice of the first `--slice-docs` documents that memory holds
easily; `scale_cost_vs_full` is the million-document search's seconds per document over the
baseline's, and the slice must rank identically both ways.

The last stdout line is one JSON object: speedup_vs_full (chunked qps / full qps), qps_chunked,
qps_full, peak_mb_chunked, peak_mb_full, identical, search_1m_seconds, search_1m_peak_mb,
scale_cost_vs_full, ...
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from harness import alternate, emit, machine, medians, timed

from smec.measure import retrieval

K = 100
WARM_QUERIES = 64
Search = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=1000, help="default: %(default)s")
    ap.add_argument("--docs", type=int, default=200_000, help="default: %(default)s")
    ap.add_argument("--dim", type=int, default=192, help="default: %(default)s")
    ap.add_argument("--chunk-size", type=int, default=8192, help="default: %(default)s")
    ap.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    ap.add_argument(
        "--repeats", type=int, default=3, help="timed repeats of each (default: %(default)s)"
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 200 queries x 20,000 docs, 2 repeats"
    )
    ap.add_argument("--scale-docs", type=int, default=1_000_000, help="default: %(default)s")
    ap.add_argument("--scale-dim", type=int, default=96, help="default: %(default)s")
    ap.add_argument("--slice-docs", type=int, default=100_000, help="default: %(default)s")
    ap.add_argument("--peak-of", choices=["chunked", "full"], help=argparse.SUPPRESS)
    ap.add_argument("--scale-of", metavar="NPY", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.queries, args.docs, args.repeats = 200, 20_000, 2
        args.scale_docs, args.slice_docs = 100_000, 10_000
    if min(args.queries, args.docs, args.dim, args.chunk_size, args.repeats) < 1:
        ap.error("sizes and --repeats must be >= 1")
    return args


def make_data(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded unit vectors, made in place (no transient copy raises the memory baseline)."""
    gen = torch.Generator().manual_seed(args.seed)
    out = []
    for n in (args.queries, args.docs):
        x = torch.empty(n, args.dim).normal_(generator=gen)
        out.append(x.div_(x.norm(dim=1, keepdim=True)))
    return out[0], out[1]


def searches(chunk_size: int) -> dict[str, Search]:
    return {
        "chunked": lambda q, c: retrieval.search(q, c, K, chunk_size),
        "full": lambda q, c: retrieval.search_full(q, c, K),
    }


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def rss_mb() -> float:
    """Current resident set (Linux), to check that the ru_maxrss baseline is not inflated."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


def peak_child(args: argparse.Namespace) -> None:
    """In a fresh process: ru_maxrss growth of one search over the baseline after the data."""
    q, c = make_data(args)
    base, rss = max_rss_mb(), rss_mb()
    searches(args.chunk_size)[args.peak_of](q, c)
    print(json.dumps({"peak_mb": max_rss_mb() - base, "baseline_mb": base, "rss_mb": rss}))


def peak_mb(name: str, args: argparse.Namespace) -> float:
    """Run one search in a fresh child. Call before this process grows: a child's ru_maxrss
    starts at its parent's high-water mark (Linux carries it across fork and exec)."""
    cmd = [sys.executable, __file__, "--peak-of", name, "--queries", str(args.queries)]
    cmd += ["--docs", str(args.docs), "--dim", str(args.dim)]
    cmd += ["--chunk-size", str(args.chunk_size), "--seed", str(args.seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    if got["baseline_mb"] > got["rss_mb"] + 16:
        print(
            f"warning: {name}: ru_maxrss baseline {got['baseline_mb']:.0f} MB is above the "
            f"resident {got['rss_mb']:.0f} MB; its peak is understated"
        )
    return float(got["peak_mb"])


def write_corpus(path: Path, n: int, dim: int, seed: int, rows: int = 65_536) -> None:
    """n seeded unit vectors into a `.npy`, a block at a time (never all in memory)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    gen = torch.Generator().manual_seed(seed + 1)
    for start in range(0, n, rows):
        x = torch.empty(min(rows, n - start), dim).normal_(generator=gen)
        out[start : start + len(x)] = x.div_(x.norm(dim=1, keepdim=True)).numpy()
    out.flush()
    del out


def scale_queries(args: argparse.Namespace) -> torch.Tensor:
    x = torch.empty(args.queries, args.scale_dim).normal_(
        generator=torch.Generator().manual_seed(3)
    )
    return x / x.norm(dim=1, keepdim=True)


def hwm_mb() -> float:
    """This process's own peak resident set (VmHWM, Linux): unlike ru_maxrss it does not start
    at the high-water mark of the parent that ran the full matrix before this child."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM")) / 1024


def scale_child(args: argparse.Namespace) -> None:
    """In a fresh process: one search of the memory-mapped corpus, its seconds and peak RSS."""
    corpus = np.load(args.scale_of, mmap_mode="r")
    seconds, _ = timed(lambda: retrieval.search(scale_queries(args), corpus, K, args.chunk_size))
    print(json.dumps({"seconds": seconds, "peak_mb": hwm_mb()}))


def at_scale(args: argparse.Namespace) -> dict:
    """The memory-mapped million-document search against a full matrix on a slice."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.npy"
        write_corpus(path, args.scale_docs, args.scale_dim, args.seed)
        cmd = [
            sys.executable,
            __file__,
            "--scale-of",
            str(path),
            "--queries",
            str(args.queries),
            "--scale-dim",
            str(args.scale_dim),
            "--chunk-size",
            str(args.chunk_size),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        big = json.loads(out.strip().splitlines()[-1])
        q = scale_queries(args)
        corpus = np.load(path, mmap_mode="r")
        part = torch.from_numpy(np.array(corpus[: args.slice_docs]))
        full_s, (_, full_top) = timed(lambda: retrieval.search_full(q, part, K))
        _, (_, chunk_top) = timed(lambda: retrieval.search(q, corpus[: args.slice_docs], K))
    per_doc = (big["seconds"] / args.scale_docs) / (full_s / args.slice_docs)
    print(
        f"{args.scale_docs} docs x {args.scale_dim} dims memory-mapped: {big['seconds']:.2f} s, "
        f"peak RSS {big['peak_mb']:.0f} MB; full matrix on {args.slice_docs} docs {full_s:.2f} s "
        f"({per_doc:.2f}x its cost per document)"
    )
    return {
        "search_1m_seconds": round(big["seconds"], 3),
        "search_1m_peak_mb": round(big["peak_mb"], 1),
        "scale_docs": args.scale_docs,
        "full_slice_seconds": round(full_s, 3),
        "slice_docs": args.slice_docs,
        "scale_cost_vs_full": round(per_doc, 4),
        "slice_identical": bool(torch.equal(chunk_top, full_top)),
    }


def main() -> None:
    args = parse_args()
    if args.peak_of:
        peak_child(args)
        return
    if args.scale_of:
        scale_child(args)
        return
    runs = searches(args.chunk_size)
    print(
        f"{args.queries} queries x {args.docs} docs x {args.dim} dims float32, k={K}, "
        f"chunk {args.chunk_size}, {machine()}"
    )
    peak = {name: peak_mb(name, args) for name in runs}  # first, while this process is small
    print("peak memory over the data: " + ", ".join(f"{n} +{peak[n]:.0f} MB" for n in runs))
    q, c = make_data(args)
    for fn in runs.values():  # warm-up: threads, allocator, first-call paths (a few queries)
        fn(q[:WARM_QUERIES], c)
    seconds, result = alternate(
        {n: (lambda fn=fn: fn(q, c)) for n, fn in runs.items()}, args.repeats
    )
    (s_chunk, i_chunk), (s_full, i_full) = result["chunked"], result["full"]
    identical = bool(torch.equal(i_chunk, i_full))
    rows_differ = int((i_chunk != i_full).any(dim=1).sum())
    score_diff = float((s_chunk - s_full).abs().max())
    del result, s_chunk, i_chunk, s_full, i_full

    qps = {name: args.queries / med for name, med in medians(seconds).items()}
    speedup = qps["chunked"] / qps["full"]
    for name in runs:
        med = medians(seconds)[name]
        print(
            f"{name:8s} {qps[name]:9.1f} queries/s (median {med:.3f}s), peak +{peak[name]:.0f} MB"
        )
    print(f"speedup vs full: {speedup:.3f}x")
    print(
        f"identical indices: {identical} ({rows_differ} of {args.queries} queries differ, "
        f"max score diff {score_diff:.2e})"
    )
    scale = at_scale(args)
    emit(
        {
            **scale,
            "speedup_vs_full": round(speedup, 4),
            "qps_chunked": round(qps["chunked"], 2),
            "qps_full": round(qps["full"], 2),
            "peak_mb_chunked": round(peak["chunked"], 1),
            "peak_mb_full": round(peak["full"], 1),
            "identical": identical,
            "rows_differ": rows_differ,
            "max_score_diff": score_diff,
            "queries": args.queries,
            "docs": args.docs,
            "dim": args.dim,
            "chunk_size": args.chunk_size,
            "k": K,
            "repeats": args.repeats,
        }
    )


if __name__ == "__main__":
    main()
