"""Exact top-k search: the evaluate stage's chunked search against one full similarity matrix.

Times `smec.retrieval.search(q, c, k=100, chunk_size)` against the reference
`smec.retrieval.search_full(q, c, k=100)` on the same seeded, L2-normalised random float32
vectors (default 1000 queries x 200,000 docs x 192 dims): a warm-up of each on a few queries,
then alternating timed repeats; the medians give queries/s. Peak memory of each is measured
first, each in its own fresh subprocess (this script re-invoked with a hidden flag), as the
growth of `resource.getrusage(RUSAGE_SELF).ru_maxrss` over its value after the data were
created. Both must return identical indices (checked on the last timed repeat).

The last stdout line is one JSON object: speedup_vs_full (chunked qps / full qps), qps_chunked,
qps_full, peak_mb_chunked, peak_mb_full, identical, ...
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Callable

import torch
from harness import alternate, emit, machine, medians

from smec import retrieval

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
    ap.add_argument("--peak-of", choices=["chunked", "full"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.queries, args.docs, args.repeats = 200, 20_000, 2
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


def main() -> None:
    args = parse_args()
    if args.peak_of:
        peak_child(args)
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
    emit(
        {
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
