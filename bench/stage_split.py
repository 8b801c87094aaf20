"""Two pipeline stages side by side, one thread each, against one after the other on every
thread: would splitting a stage's work across processes pay in the real stages?

`bench/stack_split.py` times a split of one MRL stack; a `compare@<method>` stage also reads
its inputs, evaluates every member at every width, logs to MLflow and writes its files. This
runs two stages' own commands from `dvc.yaml` (default `compare@mrl` and `compare@smrl`), their
outputs and checkpoints redirected into a fresh temporary folder per run and their MLflow runs
into a scratch store there (the project's store is not touched; the store is made by a first
untimed pair of runs, which also warms the file cache), in two variants, alternating over
rounds:

- `one_after_another`: each stage alone, torch's default threads (as `dvc repro` runs them);
- `side_by_side`: both started together, `OMP_NUM_THREADS=1` each.

Each variant's time is the wall time from the first start to the last finish. The stages'
per-query scores (`--scores`) of the two variants are compared: equal means one thread and
two give the same numbers, so a split would not change results.

The last stdout line is one JSON object: side_by_side_over_one_after_another (below 1, the split
is faster), one_after_another_s, side_by_side_s (medians), scores_equal, stages, rounds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from harness import alternate, emit, machine, medians, stage_words

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_ROOTS = ("runs/", "models/", "checkpoints/")  # where a stage writes (redirected)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--stages",
        nargs=2,
        default=["compare@mrl", "compare@smrl"],
        help="two stages of dvc.yaml whose inputs exist (default: %(default)s)",
    )
    ap.add_argument("--rounds", type=int, default=2, help="rounds of both variants (%(default)s)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    return args


def command(stage: str, folder: Path) -> list[str]:
    """The stage's command with every output path moved under `folder`."""
    words = stage_words(ROOT, stage)
    moved = [str(folder / w) if w.startswith(OUTPUT_ROOTS) else w for w in words]
    return [sys.executable if w == "python" else w for w in moved]


def start(stage: str, folder: Path, threads: int | None) -> subprocess.Popen:
    """Start the stage; its MLflow store and artifacts are the scratch folder's (`DVC_ROOT`:
    the root `smec.infra.tracking` puts the default store under)."""
    env = os.environ | {"DVC_ROOT": str(folder.parent)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with (folder.parent / f"{folder.name}.log").open("w") as log:  # the child keeps its copy
        return subprocess.Popen(command(stage, folder), cwd=ROOT, env=env, stdout=log, stderr=log)


def wait(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"stage_split: {proc.args[1]} exited {proc.returncode}; see its log")


def variant(name: str, stages: list[str], scratch: Path) -> list[pd.DataFrame]:
    """Run both stages as `name` says, in fresh folders; the stages' scores."""
    folders = [Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch)) for _ in stages]
    if name == "side_by_side":
        wait([start(s, f, 1) for s, f in zip(stages, folders, strict=True)])
    else:
        for s, f in zip(stages, folders, strict=True):
            wait([start(s, f, None)])
    return [pd.read_parquet(next(f.rglob("scores.parquet"))) for f in folders]


def main() -> None:
    args = parse_args()
    print(f"stages {args.stages}, {args.rounds} rounds, {machine()}")
    with tempfile.TemporaryDirectory(prefix="stage-split-") as tmp:
        scratch = Path(tmp)
        variant("one_after_another", args.stages, scratch)  # warm-up: the store, the caches
        runs = {
            name: (lambda name=name: variant(name, args.stages, scratch))
            for name in ("one_after_another", "side_by_side")
        }
        seconds, scores = alternate(runs, args.rounds)
    pairs = zip(scores["one_after_another"], scores["side_by_side"], strict=True)
    equal = all(a.equals(b) for a, b in pairs)
    med = medians(seconds)
    ratio = med["side_by_side"] / med["one_after_another"]
    print(f"side_by_side_over_one_after_another {ratio:.3f}; scores equal: {equal}")
    emit(
        {
            "side_by_side_over_one_after_another": round(ratio, 4),
            "one_after_another_s": round(med["one_after_another"], 2),
            "side_by_side_s": round(med["side_by_side"], 2),
            "scores_equal": equal,
            "stages": args.stages,
            "rounds": args.rounds,
        }
    )


if __name__ == "__main__":
    main()
