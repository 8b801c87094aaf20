"""The seed sweep's wall time: one process per arm against one process per seed.

Runs the `sweep@rank` stage's own command (its inputs from dvc.yaml: the prepared SciFact
tables and embeddings, so run `make repro` first) into a temporary folder and a temporary
MLflow store, twice per repeat and alternating: once with `sweep.seeds=N` (what the pipeline
does: one process trains N seeds x {MRL, SMRL}), and as N processes with `sweep.seeds=1`, the
cost of one stage per seed (start-up, imports and MLflow paid N times). Wall time of whole
processes, medians over repeats.

The last stdout line is one JSON object: one_process_seconds, per_seed_processes_seconds,
speedup (per-seed total / one process), seeds, epochs, ...
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from harness import alternate, emit, machine, medians, stage_args, stage_words

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="default: %(default)s")
    ap.add_argument("--epochs", type=int, default=None, help="default: params.yaml's")
    ap.add_argument("--repeats", type=int, default=3, help="default: %(default)s")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 2 epochs, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs, args.repeats = 2, 2, 1
    return args


def command(tmp: Path, params: Path) -> list[str]:
    """`sweep@rank`'s command from dvc.yaml, its outputs moved into `tmp`."""
    words = stage_words(ROOT, "sweep@rank")
    outs = {"--stats", "--retrieval", "--checkpoints"}
    moved = [
        str(tmp / Path(w).name) if prev in outs else w for prev, w in itertools.pairwise(words)
    ]
    return [sys.executable, *moved, "--params", str(params)]


def main() -> None:
    args = parse_args()
    inputs = stage_args(ROOT, "sweep@rank")
    if not inputs["corpus_emb"].exists():
        raise SystemExit(f"{inputs['corpus_emb']}: missing; run `make repro` first")
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    if args.epochs:
        base["train"]["epochs"] = args.epochs
        base["render"]["epochs"] = [0]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}"}

    def sweep(seeds: int, times: int):
        p = tmp / f"params-{seeds}.yaml"
        p.write_text(yaml.safe_dump({**base, "sweep": {"seeds": seeds}}))

        def run():
            for _ in range(times):
                subprocess.run(command(tmp, p), cwd=ROOT, env=env, check=True, capture_output=True)

        return run

    print(f"{args.seeds} seeds, epochs {base['train']['epochs']}, {machine()}")
    sweep(1, 1)()  # warm-up: the MLflow store's migrations, page cache
    runs = {"one_process": sweep(args.seeds, 1), "per_seed": sweep(1, args.seeds)}
    seconds, _ = alternate(runs, args.repeats)
    med = medians(seconds)
    shutil.rmtree(tmp)
    speedup = med["per_seed"] / med["one_process"]
    print(f"one process {med['one_process']:.1f} s, {args.seeds} processes {med['per_seed']:.1f} s")
    emit(
        {
            "one_process_seconds": round(med["one_process"], 2),
            "per_seed_processes_seconds": round(med["per_seed"], 2),
            "speedup": round(speedup, 3),
            "seeds": args.seeds,
            "epochs": base["train"]["epochs"],
            "repeats": args.repeats,
        }
    )


if __name__ == "__main__":
    main()
