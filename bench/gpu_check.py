"""The prepared GPU check: MRL and SMRL trained on CUDA and on the CPU, same data, params and
seed; samples per second of each, and whether their gradient statistics agree.

Installs nothing. It needs the CUDA build of torch (README, "Running on a GPU") and stops with
one line where `torch.cuda.is_available()` is false. Data: the train stage's SciFact inputs when
the pipeline has made them (data/prepared, data/embeddings), else
`smec.training.synthetic.latent_factor_data()`. Each method trains `--epochs` epochs with the
train stage's code (`smec.training.loop.fit`, recorder included; checkpoints in a temporary
folder) once per device, TF32 off. Agreement: every per-epoch gradient statistic of the
history (`grad_*`) and the loss within `--rtol` (relative, default 1e-3) of the CPU's.
`--device cpu` runs the same comparison CPU against CPU, a smoke test of the script where no
GPU is lent.

    .venv/bin/python bench/gpu_check.py            # on the GPU machine, after `make`

The last stdout line is one JSON object: per method `<m>_samples_per_s_cuda`,
`<m>_samples_per_s_cpu`, `<m>_cuda_speedup`, `<m>_max_rel_diff`; `agree` (all within rtol),
`rtol`, `epochs`, `data`, `device_name`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from harness import emit, machine, timed
from train_step import load

from smec.model import methods
from smec.params import Train
from smec.training import loop
from smec.training.checkpoint import Checkpoint
from smec.training.data import TrainData

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="project root (default: %(default)s)")
    ap.add_argument("--synthetic", action="store_true", help="synthetic data even if real exists")
    ap.add_argument("--epochs", type=int, default=5, help="default: %(default)s")
    ap.add_argument("--rtol", type=float, default=1e-3, help="default: %(default)s")
    ap.add_argument("--device", default="cuda", help="the device to check (default: cuda)")
    args = ap.parse_args()
    if args.epochs < 1 or args.rtol <= 0:
        ap.error("--epochs must be >= 1 and --rtol > 0")
    return args


def fit(method: str, data: TrainData, epochs: int) -> tuple[float, pd.DataFrame]:
    """Seconds and history of training `method` on the device `data` lives on."""
    cfg = Train(epochs=epochs, heldout_eval=False)
    device = data.q.device
    loop.seed_everything(cfg.seed, device)
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Checkpoint(Path(tmp) / "ckpt.pt", "gpu-check", every=float("inf"))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds, result = timed(
            lambda: loop.fit(loop.Job(methods.get(method), cfg), data, checkpoint)
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
    return seconds, result.history


def on(data: TrainData, device: torch.device) -> TrainData:
    fields = {k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(data).items()}
    return TrainData(**fields)


def max_rel_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    cols = [c for c in a if c.startswith("grad_") or c == "loss"]
    x, y = a[cols].to_numpy(float), b[cols].to_numpy(float)
    return float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), 1e-30)))


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(
            f"error: no CUDA device (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}); install torch's CUDA build (README, 'Running on a GPU')"
        )
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cpu_data, source = load(argparse.Namespace(root=args.root, synthetic=args.synthetic))
    dev_data = on(cpu_data, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"data: {source}; {len(cpu_data.pairs)} pairs; {name}; {machine()}")
    out: dict = {}
    for method in ("mrl", "smrl"):
        fit(method, dev_data, 1)  # warm-up: kernels, allocator
        dev_s, dev_hist = fit(method, dev_data, args.epochs)
        cpu_s, cpu_hist = fit(method, cpu_data, args.epochs)
        pairs = len(cpu_data.pairs) * len(dev_hist)  # every step of every epoch sees each pair
        diff = max_rel_diff(dev_hist, cpu_hist)
        out |= {
            f"{method}_samples_per_s_{device.type}": round(pairs / dev_s, 1),
            f"{method}_samples_per_s_cpu": round(pairs / cpu_s, 1),
            f"{method}_{device.type}_speedup": round(cpu_s / dev_s, 3),
            f"{method}_max_rel_diff": diff,
        }
        print(
            f"{method}: {device.type} {pairs / dev_s:.0f} samples/s, cpu {pairs / cpu_s:.0f} "
            f"samples/s ({cpu_s / dev_s:.2f}x); gradient statistics max rel diff {diff:.2e} "
            f"({'ok' if diff <= args.rtol else 'OVER'} rtol {args.rtol:g})"
        )
    agree = all(v <= args.rtol for k, v in out.items() if k.endswith("max_rel_diff"))
    emit(
        {
            **out,
            "agree": agree,
            "rtol": args.rtol,
            "epochs": args.epochs,
            "data": source.split()[0],
            "device_name": name,
        }
    )
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
