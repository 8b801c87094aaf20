"""DVC stage `compare@<method>`: one method of the comparison, for every seed of compare.seeds.

Every method gets the same frozen embeddings, training queries, loss (`compare.loss`, the
paper's rank loss by default), budget (`compare.epochs` epochs per trained module) and model
selection: each module keeps the weights of its epoch with the best held-out nDCG@10 (mean over
the widths it serves), recorded in `--selection`. The chain goes one level deeper than the seed
figure: `compare.dims` (192, 96, 48).

Writes, per seed, width and test query, nDCG@10, Recall@100 and MRR@10 (`--scores`); the
per-epoch gradient statistics of the method's first module (`--stats`; for an ADS head, over
the rows it keeps); the selection; and the modules of seed 0 (`--modules`) with the MLflow
run that trained them (`--run-json`). A stopped comparison resumes: every training keeps its
checkpoint until the whole method is done.
"""

from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import pandas as pd

from smec import params
from smec.data import artifacts, inputs
from smec.infra import provenance, tracking
from smec.infra.cli import main, parser
from smec.infra.device import resolve
from smec.measure import gradstats, retrieval
from smec.model import methods
from smec.model.methods.base import Method
from smec.params import Train
from smec.training import data as training_data
from smec.training import loop
from smec.training.checkpoint import Checkpoint
from smec.training.tracked import Track, tracked_fit

SCRIPT = Path(__file__).resolve()
OUTPUTS = ("scores", "stats", "selection", "modules", "run-json")


def first_module_stats(result: loop.Result, method: Method, dims: list[int]) -> pd.DataFrame:
    """The seed figure's statistics of the first trained module: for an ADS head over the rows
    it keeps (the first half of them against the second), else over its output rows."""
    record = result.record[result.record["head"] == 1]
    module = result.modules[0]
    if hasattr(module, "indices"):
        record, split = gradstats.kept_rows(record, module.indices().tolist()), dims[0] // 2
    else:
        split = method.plan(Train(method_dims=dims), module.weight.shape[1])[0].split
    return gradstats.per_epoch(record, split).drop(columns="head")


def seed_params(p: params.Params, seed: int) -> params.Params:
    """The comparison's training params for one seed: its widths, loss, budget and selection."""
    c = p.compare
    changes = {
        "method_dims": c.dims,
        "loss": c.loss,
        "epochs": c.epochs,
        "seed": seed,
        "heldout_eval": True,
        "mrl_weights": None,
        "smrl_step_epochs": None,
    }
    return params.with_train(p, changes, "compare", whole=False)


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=inputs.OPTIONS, outputs=OUTPUTS)
    ap.add_argument("--method", required=True, choices=methods.LEARNED)
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of resumable state")
    args = ap.parse_args(argv)
    p, method = params.load(args.params), methods.learned(args.method)
    tracking.use_store()
    c = p.compare
    stage_in = inputs.read(args)
    data = training_data.train_data(stage_in, resolve(p.train.device))
    test = retrieval.TestSet.of(stage_in.ds, data.q)
    scores, stats, selection, checkpoints = [], [], [], []
    for seed in range(c.seeds):
        ps = seed_params(p, seed)
        track = Track(
            ps,
            f"compare@{method.name}",
            _bootstrap.CHECKOUT,
            label=f"seed {seed}",
            tags={"method": method.name},
        )
        settings = {
            "method": method.name,
            "train": ps.train.model_dump(),
            "methods": p.methods.model_dump(),
            "compare": c.model_dump(),
        }
        key = provenance.stage_key(SCRIPT, _bootstrap.CHECKOUT, stage_in.paths, settings)
        ckpt = Checkpoint(args.checkpoints / f"seed{seed}.pt", key)
        checkpoints.append(ckpt)
        job = loop.Job(method, ps.train, p.methods, select_best=c.select == "best_heldout")
        with tracked_fit(job, data, ckpt, track) as fitted:
            result = fitted.result
            for d in c.dims:
                zq = method.embed_at(result.modules, c.dims, test.queries, d)
                zc = method.embed_at(result.modules, c.dims, data.c, d)
                per_query = test.per_query(zq, zc)
                scores.append(per_query.assign(method=method.name, seed=seed, dim=d))
                fitted.metrics[f"{method.name}_d{d}.ndcg_at_10"] = per_query.ndcg_at_10.mean()
        stats.append(first_module_stats(result, method, c.dims).assign(seed=seed))
        selection.append(result.selection.assign(method=method.name, seed=seed))
        if seed == 0:  # the models people take away (pipeline/export.py)
            meta = {"method": method.name, "dims": c.dims, "in_dim": data.q.shape[1]}
            artifacts.write_modules(args.modules, meta, [m.cpu() for m in result.modules])
            artifacts.write_json(args.run_json, {**tracking.run_info(fitted.run), "seed": 0})
    out = pd.concat(scores, ignore_index=True)
    artifacts.write_parquet(args.scores, out)
    artifacts.write_parquet(args.stats, pd.concat(stats, ignore_index=True))
    artifacts.write_csv(args.selection, pd.concat(selection, ignore_index=True))
    for ckpt in checkpoints:
        ckpt.clear()
    means = out.groupby("dim").ndcg_at_10.mean().round(4).to_dict()
    print(f"compare@{method.name}: {c.seeds} seeds, mean nDCG@10 by width {means}")
    return out


if __name__ == "__main__":
    main(run)
