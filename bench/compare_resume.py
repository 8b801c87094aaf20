"""A comparison stage killed part-way resumes where it was: how much time does a SIGKILL cost?

Runs `compare@<method>`'s own command from `dvc.yaml` on the workspace's prepared data,
embeddings and committed studies, its outputs, checkpoints and MLflow store in a fresh temporary
folder per run, twice:

- `whole`: start to finish;
- `killed`: SIGKILLed (with its process group) at `--kill-at` of the whole run's time, then the
  same command again in the same folder, which resumes from the checkpoints its trainings left.

`lost_s` is the killed run's seconds before the kill plus its resumed run's, minus the whole
run's: the work redone (the trainings in flight at the kill restart from their last checkpoint)
and the start-up paid twice. `identical`: the resumed run's scores equal the whole run's.

The last stdout line is one JSON object: whole_s, killed_at_s, resumed_s, lost_s,
resumed_over_remaining (the resumed run's seconds / the whole run's seconds left at the kill),
identical, method.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
from harness import emit, machine, moved_stage

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_ROOTS = ("runs/", "models/", "checkpoints/")  # where a comparison stage writes


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="mrl", help="the method compared (%(default)s)")
    ap.add_argument(
        "--kill-at", type=float, default=0.35, help="share of the whole run (%(default)s)"
    )
    args = ap.parse_args()
    if not 0 < args.kill_at < 1:
        ap.error("--kill-at must be between 0 and 1")
    return args


def start(method: str, folder: Path) -> subprocess.Popen:
    """`compare@<method>` with its outputs, checkpoints and MLflow store under `folder`."""
    cmd = moved_stage(ROOT, f"compare@{method}", folder, OUTPUT_ROOTS)
    env = os.environ | {"DVC_ROOT": str(folder)}
    log = (folder / "stage.log").open("a")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)


def finish(proc: subprocess.Popen, folder: Path) -> float:
    """Wait for the run; its seconds from now."""
    begin = time.perf_counter()
    if proc.wait() != 0:
        raise SystemExit(f"compare_resume: the stage exited {proc.returncode}; see {folder}")
    return time.perf_counter() - begin


def scores(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(next(folder.rglob("scores.parquet")))


def main() -> None:
    args = parse_args()
    print(f"compare@{args.method}, killed at {args.kill_at:.0%} of a whole run, {machine()}")
    with tempfile.TemporaryDirectory(prefix="compare-resume-") as tmp:
        whole, killed = Path(tmp, "whole"), Path(tmp, "killed")
        whole.mkdir(), killed.mkdir()
        whole_s = finish(start(args.method, whole), whole)
        print(f"whole: {whole_s:.1f} s")
        proc, kill_at = start(args.method, killed), args.kill_at * whole_s
        time.sleep(kill_at)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        resumed_s = finish(start(args.method, killed), killed)
        print(f"killed at {kill_at:.1f} s, resumed in {resumed_s:.1f} s")
        identical = scores(whole).equals(scores(killed))
    emit(
        {
            "whole_s": round(whole_s, 1),
            "killed_at_s": round(kill_at, 1),
            "resumed_s": round(resumed_s, 1),
            "lost_s": round(kill_at + resumed_s - whole_s, 1),
            "resumed_over_remaining": round(resumed_s / (whole_s - kill_at), 3),
            "identical": identical,
            "method": args.method,
        }
    )


if __name__ == "__main__":
    main()
