"""The embed stage's bits under the CPU's own code paths and pinned ones: do they agree across
thread counts, and what does pinning cost?

`dvc.lock` records the embeddings' md5, so a machine whose encoder output differs from the
lock's in its last bits re-runs every stage after `embed`, the studies included
(docs/benchmarks.md). Here the first N SciFact documents are encoded as `embed` encodes them
(`smec.data.encode.encode`, float32, encoder.batch_size) in a fresh process per run, under:

- `default`: torch's own dispatch for this CPU (what `embed` does);
- `pinned`: ATEN_CPU_CAPABILITY=default (ATen's kernels without AVX2 or AVX-512),
  MKL_CBWR=COMPATIBLE (MKL's conditional numerical reproducibility, its SSE2 code paths) and
  ONEDNN_MAX_CPU_ISA=SSE41;

each on 2 threads and on 1, every setting in each of `--rounds` rounds, the order rotating.
Prints each setting's md5 of the float32 output and throughput. The md5s are for comparing
across machines: the same `pinned` md5 on two CPUs is the evidence that pinned embeddings agree
across CPUs; one CPU cannot show it.

The last stdout line is one JSON object: pinned_over_default (texts/s pinned / default, 2
threads; the baseline measured in the same run), default_threads_agree, pinned_threads_agree,
runs_agree (every setting gave one md5 in every round), md5 per setting, texts_per_s per
setting, cpu, n_texts, rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from harness import alternate, emit, medians

from smec import params
from smec.data import beir
from smec.data import encode as enc
from smec.infra import provenance

ROOT = Path(__file__).resolve().parents[1]
PINNED = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
SETTINGS = {
    "default_2": ({}, 2),
    "default_1": ({}, 1),
    "pinned_2": (PINNED, 2),
    "pinned_1": (PINNED, 1),
}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "scifact",
        help="BEIR folder (default: %(default)s)",
    )
    ap.add_argument("--n", type=int, default=128, help="first N documents (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each setting (default: 2)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 texts, 1 round")
    ap.add_argument("--worker", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.rounds = 8, 1
    if min(args.n, args.rounds) < 1:
        ap.error("--n and --rounds must be >= 1")
    return args


def cpu() -> str:
    """The machine as every MLflow run names it (`provenance.host`), with the CPU's widest
    vector extension."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    lines = info.splitlines()
    flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
    isa = next((f for f in ("avx512f", "avx2", "sse4_1") if f in flags), "baseline")
    return f"{provenance.host()} ({isa})"


def worker(args: argparse.Namespace) -> None:
    """One run, in the environment the parent set: encode the texts, print md5 and seconds."""
    torch.set_num_threads(args.worker)
    p = params.load(ROOT / "params.yaml")
    texts = enc.corpus_texts(beir.read(args.data).corpus)[: args.n]
    model = enc.load_model(p.encoder.model, p.encoder.max_seq_length, torch.device("cpu"))
    enc.encode(model, texts[:2], p.encoder.batch_size)  # warm-up
    start = time.perf_counter()
    emb = enc.encode(model, texts, p.encoder.batch_size)
    seconds = time.perf_counter() - start
    md5 = hashlib.md5(emb.astype("float32").tobytes()).hexdigest()
    print(json.dumps({"md5": md5, "seconds": seconds}))


def run(name: str, args: argparse.Namespace) -> dict:
    env, threads = SETTINGS[name]
    cmd = [sys.executable, __file__, "--worker", str(threads), "--n", str(args.n)]
    cmd += ["--data", str(args.data)]
    out = subprocess.run(cmd, env=os.environ | env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        worker(args)
        return
    print(f"{args.n} SciFact documents, {args.rounds} rounds, {cpu()}")
    seconds: dict[str, list[float]] = {n: [] for n in SETTINGS}  # the workers' own timings
    md5s: dict[str, set[str]] = {n: set() for n in SETTINGS}

    def record(name: str) -> None:
        result = run(name, args)
        seconds[name].append(result["seconds"])
        md5s[name].add(result["md5"])
        print(f"{name} {result['seconds']:.2f}s md5 {result['md5']}")

    alternate({n: (lambda n=n: record(n)) for n in SETTINGS}, args.rounds, verbose=False)
    tps = {n: round(args.n / s, 3) for n, s in medians(seconds).items()}
    md5 = {n: sorted(v)[0] if len(v) == 1 else sorted(v) for n, v in md5s.items()}
    agree = lambda a, b: md5[a] == md5[b] and isinstance(md5[a], str)  # noqa: E731
    ratio = tps["pinned_2"] / tps["default_2"]
    print(f"pinned_over_default {ratio:.3f} (texts/s {tps})")
    emit(
        {
            "pinned_over_default": round(ratio, 4),
            "default_threads_agree": agree("default_1", "default_2"),
            "pinned_threads_agree": agree("pinned_1", "pinned_2"),
            "runs_agree": all(len(v) == 1 for v in md5s.values()),
            "md5": md5,
            "texts_per_s": tps,
            "cpu": cpu(),
            "n_texts": args.n,
            "rounds": args.rounds,
        }
    )


if __name__ == "__main__":
    main()
