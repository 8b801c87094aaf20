"""DVC stage `evaluate`: nDCG@10, Recall@100 and MRR@10 per model, width and precision.

Models: the default run's MRL and SMRL (`model` = train), every compared method's seed-0
modules (`model` = compare), and the registry's learning-free baselines (also at the full
dimension; `model` = untrained). Each at float32 and quantised to int8 and binary
(:mod:`smec.measure.quantize`), with its bytes per vector. Exact cosine search over the whole
prepared corpus for the test queries; measures named as MTEB names them. With
`evaluate.processes` > 1 it re-runs itself under torchrun: each process searches a shard of the
corpus, the first writes.
"""

import sys

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd
import torch

from smec import params
from smec.data import artifacts, inputs
from smec.infra import distributed, tracking
from smec.infra.cli import main, parser
from smec.infra.device import resolve
from smec.measure import quantize, retrieval
from smec.model import methods

INPUTS = (*inputs.OPTIONS, "mrl-heads", "smrl-heads", "mrl-run", "smrl-run")
OUTPUTS = ("table", "metrics")


def run(argv: list[str] | None = None) -> pd.DataFrame | None:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=INPUTS, outputs=OUTPUTS, many=("compared",))
    args = ap.parse_args(argv)
    p = params.load(args.params, args.cell, artifacts.width(args.queries_emb))
    tracking.use_store()
    if distributed.relaunch(p.evaluate.processes, __file__, sys.argv[1:] if argv is None else argv):
        return None  # torchrun's processes did the work
    device = distributed.init(resolve(p.evaluate.device))
    stage_in = inputs.read(args)
    ds = stage_in.ds
    c = torch.from_numpy(stage_in.corpus_emb).to(device)
    test = retrieval.TestSet.of(ds, torch.from_numpy(stage_in.queries_emb).to(device))
    widths = sorted({c.shape[1], *p.train.method_dims, *p.compare.dims}, reverse=True)
    variants = [
        ({"model": "untrained", "method": labels["method"], "dim": labels["dim"]}, zq, zc)
        for labels, zq, zc in methods.baselines(test.queries, c, widths)
    ]
    trained = [("train", args.mrl_heads), ("train", args.smrl_heads)]
    trained += [("compare", path) for path in args.compared]
    for model, path in trained:
        meta, states = artifacts.read_modules(path)
        mods = [m.to(device) for m in methods.restore(meta, states)]
        method, dims = methods.learned(meta["method"]), meta["dims"]
        for d in dims:
            zq = method.embed_at(mods, dims, test.queries, d)[0]
            zc = method.embed_at(mods, dims, c, d)[0]
            variants.append(({"model": model, "method": method.name, "dim": d}, zq, zc))
    table = retrieval.table(quantize.variants(variants), test, p.evaluate.chunk_size)
    table = table[["model", "method", "dim", "precision", "bytes_per_vector", *retrieval.MEASURES]]
    if not distributed.is_main():  # the first process tracks and writes
        return table
    nested = retrieval.metrics(table)
    artifacts.write_csv(args.table, table, float_format="%.6f")
    artifacts.write_json(args.metrics, nested)
    train_runs = {
        m: artifacts.read_json(path)["run_id"]
        for m, path in (("mrl", args.mrl_run), ("smrl", args.smrl_run))
    }
    with tracking.stage_run(
        p,
        "evaluate",
        _bootstrap.CHECKOUT,
        tags={f"train_run.{m}": r for m, r in train_runs.items()},
    ) as run:
        tracking.log_prepared(ds, args.corpus, args.queries, args.qrels, p.data.name, "evaluation")
        flat = retrieval.flat_metrics(nested)
        mlflow.log_metrics(flat)
        tracking.log_to_parent(run, flat)
        mlflow.log_artifact(str(args.table))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return table


if __name__ == "__main__":
    main(run)
