"""One study shared by two worker processes against one process alone: does the studies' time
halve when a second worker joins through the Optuna storage?

Runs `tune@<method>`'s own command from `dvc.yaml` on the workspace's prepared data and
embeddings, one study replicate of `--trials` trials under the headline loss (a scratch
params.yaml: the workspace's, with `tune.trials`, `tune.replicates: 1` and no other loss
studied), its outputs, study (sqlite) and MLflow store in a fresh temporary folder per run, in
two variants, alternating over rounds:

- `one_worker`: one process, torch's default threads;
- `two_workers`: two processes on one study (`SMEC_TUNE_WORKER` 0 and 1), one thread each.

Each variant's time is the wall time from the first start to the last finish; both must end
with exactly `--trials` completed trials, each run once (`exact`).

The last stdout line is one JSON object: two_over_one (one worker's seconds / two workers':
above 1, two are faster), one_worker_s, two_workers_s (medians), exact, method, trials, rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

import mlflow
import yaml
from harness import alternate, emit, machine, medians, moved_stage

ROOT = Path(__file__).resolve().parents[1]
OUTPUT_ROOTS = ("reports/", "checkpoints/")  # where a study writes (redirected)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="smrl", help="the learned method (%(default)s)")
    ap.add_argument("--trials", type=int, default=12, help="the study's budget (%(default)s)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of both variants (%(default)s)")
    args = ap.parse_args()
    if args.rounds < 1 or args.trials < 2:
        ap.error("--rounds must be >= 1 and --trials >= 2")
    return args


def scratch_params(folder: Path, trials: int) -> Path:
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["tune"] |= {"trials": trials, "replicates": 1}
    p["compare"]["tuned_losses"] = []
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def start(method: str, folder: Path, worker: int, threads: int | None) -> subprocess.Popen:
    """Worker `worker` of the study in `folder` (its outputs, study and MLflow store there)."""
    cmd = moved_stage(ROOT, f"tune@{method}", folder, OUTPUT_ROOTS)
    cmd += ["--params", str(folder / "params.yaml")]
    env = os.environ | {"DVC_ROOT": str(folder), "SMEC_TUNE_WORKER": str(worker)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    with (folder / f"worker{worker}.log").open("w") as log:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)


def variant(name: str, args: argparse.Namespace, scratch: Path) -> bool:
    """One study run as `name` says, in a fresh folder; whether it ran exactly its budget."""
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=scratch))
    scratch_params(folder, args.trials)
    # a workspace's MLflow store exists before its stages run; two processes creating its
    # tables at once collide (sqlite), so it is made here, as `prepare` makes it
    mlflow.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    workers = [0, 1] if name == "two_workers" else [0]
    procs = [start(args.method, folder, w, 1 if len(workers) > 1 else None) for w in workers]
    for worker, proc in zip(workers, procs, strict=True):
        if proc.wait() != 0:
            log = (folder / f"worker{worker}.log").read_text().splitlines()
            tail = "\n".join(log[-15:])
            raise SystemExit(f"tune_workers: worker {worker} exited {proc.returncode}:\n{tail}")
    best = json.loads(next(folder.rglob("best.json")).read_text())["studies"][0]
    return best["trials"] == args.trials


def main() -> None:
    args = parse_args()
    print(f"tune@{args.method}, {args.trials} trials, {args.rounds} rounds, {machine()}")
    with tempfile.TemporaryDirectory(prefix="tune-workers-") as tmp:
        scratch = Path(tmp)
        runs = {
            name: (lambda name=name: variant(name, args, scratch))
            for name in ("one_worker", "two_workers")
        }
        seconds, exact = alternate(runs, args.rounds)
    med = medians(seconds)
    ratio = med["one_worker"] / med["two_workers"]
    print(f"two_over_one {ratio:.3f}; exact budget: {all(exact.values())}")
    emit(
        {
            "two_over_one": round(ratio, 4),
            "one_worker_s": round(med["one_worker"], 2),
            "two_workers_s": round(med["two_workers"], 2),
            "exact": all(exact.values()),
            "method": args.method,
            "trials": args.trials,
            "rounds": args.rounds,
        }
    )


if __name__ == "__main__":
    main()
