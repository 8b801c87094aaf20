"""A stack split across processes against the whole stack in one: would the split pay here?

Issue 21 asks that under torchrun a stack of S members split across processes. On a machine of
P cores, one process runs the S-member stack on P torch threads; the split runs P processes
side by side, one thread each, each on its share of the members (S = 5 on 2 cores: 3 and 2).
This times both on MRL's head with the gradient recorder (`bench/train_step.py`'s `mrl+rec`,
on the real SciFact embeddings when the pipeline has made them), each process warmed up, then
every process of a variant starting its timed runs at one agreed moment; the split's time for a
run is its slowest process's. The variants alternate over rounds (fresh processes each round).

The last stdout line is one JSON object: split_over_one (the split's time / one process's:
below 1, the split is faster), one_s and split_s (median seconds per run), members, processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
import train_step
from harness import emit, machine, medians
from train_step import STACK

from smec.params import Train


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=10, help="epochs per timed run (%(default)s)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per round (%(default)s)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both variants (%(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 2 runs, 1 round")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)  # members threads start
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.repeats, args.rounds = 2, 2, 1
    if min(args.epochs, args.repeats, args.rounds) < 1:
        ap.error("--epochs, --repeats and --rounds must be >= 1")
    return args


def worker(args: argparse.Namespace) -> None:
    """Train `members` (comma-separated seeds) `repeats` times from the agreed start; print
    each run's seconds."""
    members, threads, start = args.worker
    torch.set_num_threads(int(threads))
    seeds = tuple(int(s) for s in members.split(","))
    ns = argparse.Namespace(
        root=train_step.ROOT,
        synthetic=False,
        loss="rank",
        batch_size=Train().batch_size,
        epochs=args.epochs,
    )
    cfg, data, _, _ = train_step.setup(ns)
    epochs = train_step.epochs_of(data, cfg, seeds, args.epochs)
    train_step.run_once("mrl+rec", cfg, data, epochs[:2], seeds)  # warm-up
    if time.time() > float(start):
        print(
            f"worker {members}: ready after the agreed start; its runs began late", file=sys.stderr
        )
    time.sleep(max(0.0, float(start) - time.time()))
    seconds = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        train_step.run_once("mrl+rec", cfg, data, epochs, seeds)
        seconds.append(time.perf_counter() - t0)
    print(json.dumps(seconds))


def variant(args: argparse.Namespace, shares: list[tuple[int, ...]], threads: int) -> list[float]:
    """Each timed run's seconds for one process per share of the members, started together."""
    start = time.time() + 20  # after every process's imports, data and warm-up
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--epochs",
                str(args.epochs),
                "--repeats",
                str(args.repeats),
                "--worker",
                ",".join(map(str, share)),
                str(threads),
                str(start),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    runs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a worker failed")
    return [max(r) for r in zip(*runs, strict=True)]


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    cores = os.cpu_count() or 1
    seeds = list(range(STACK))
    shares = [tuple(seeds[i::cores]) for i in range(cores)]
    print(f"{STACK} members; split {[len(s) for s in shares]} over {cores} processes; {machine()}")
    one, split = [], []
    for r in range(args.rounds):
        pair = [("one", [tuple(seeds)], cores), ("split", shares, 1)]
        for name, parts, threads in pair if r % 2 == 0 else pair[::-1]:
            (one if name == "one" else split).extend(variant(args, parts, threads))
        print(f"round {r + 1}/{args.rounds}: one {one[-1]:.3f}s, split {split[-1]:.3f}s")
    one_s, split_s = medians({"one": one, "split": split}).values()
    print(f"split_over_one {split_s / one_s:.3f} (one process {one_s:.3f}s, split {split_s:.3f}s)")
    emit(
        {
            "split_over_one": round(split_s / one_s, 4),
            "one_s": round(one_s, 4),
            "split_s": round(split_s, 4),
            "members": STACK,
            "processes": cores,
            "epochs_per_run": args.epochs,
            "runs": len(one),
        }
    )


if __name__ == "__main__":
    main()
