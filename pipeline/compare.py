"""DVC stage `compare@<method>`: one method of the comparison, for every seed of compare.seeds.

Every method gets the same frozen embeddings, training queries, loss (`compare.loss`, the
paper's rank loss by default), budget (`compare.epochs` epochs per trained module) and model
selection: each module keeps the weights of its epoch with the best held-out nDCG@10 (mean over
the widths it serves), recorded in `--selection`. The chain goes one level deeper than the seed
figure: `compare.dims` (192, 96, 48).

Writes, per seed, width and test query, nDCG@10, Recall@100 and MRR@10 (`--scores`); the
per-epoch gradient statistics of the method's first module (`--stats`; for an ADS head, over
the rows it keeps); the selection; and the modules of seed 0 (`--modules`) with the MLflow
run that trained them (`--run-json`). A stopped
comparison resumes: every training keeps its checkpoint until the whole method is done.
"""

from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import artifacts, gradstats, methods, params, provenance, retrieval, tracking, train
from smec.checkpoint import Checkpoint
from smec.cli import main, parser
from smec.device import resolve

INPUTS = ("corpus", "queries", "qrels", "corpus-emb", "queries-emb")
OUTPUTS = ("scores", "stats", "selection", "modules", "run-json")


def first_module_stats(result: train.Result, method: str, dims: list[int]) -> pd.DataFrame:
    """The seed figure's statistics of the first trained module: for an ADS head over the rows
    it keeps (the first half of them against the second), else over its output rows."""
    record = result.record[result.record["head"] == 1]
    module = result.modules[0]
    if hasattr(module, "indices"):
        record, split = gradstats.kept_rows(record, module.indices().tolist()), dims[0] // 2
    else:
        split = methods.plan(method, train.Train(method_dims=dims), module.weight.shape[1])[0].split
    return gradstats.per_epoch(record, split).drop(columns="head")


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=INPUTS, outputs=OUTPUTS)
    ap.add_argument("--method", required=True, choices=methods.ALL)
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of resumable state")
    args = ap.parse_args(argv)
    p = params.load(args.params)
    c = p.compare
    ds = artifacts.read_prepared(args.corpus, args.queries, args.qrels)
    data = train.train_data(
        ds,
        artifacts.read_array(args.corpus_emb),
        artifacts.read_array(args.queries_emb),
        resolve(p.train.device),
    )
    qids, q_test, qrels = retrieval.test_queries(ds, data.q)
    cids = list(ds.corpus.corpus_id)
    scores, stats, selection, checkpoints = [], [], [], []
    inputs = [args.corpus, args.queries, args.qrels, args.corpus_emb, args.queries_emb]
    for seed in range(c.seeds):
        changes = {"method_dims": c.dims, "loss": c.loss, "epochs": c.epochs, "seed": seed,
                   "heldout_eval": True, "mrl_weights": None, "smrl_step_epochs": None}  # fmt: skip
        ps = params.with_train(p, changes, "compare", whole=False)
        settings = {"method": args.method, "train": ps.train.model_dump(),
                    "methods": p.methods.model_dump(), "compare": c.model_dump()}  # fmt: skip
        key = provenance.stage_key(Path(__file__).resolve(), _bootstrap.CHECKOUT, inputs, settings)
        ckpt = Checkpoint(args.checkpoints / f"seed{seed}.pt", key)
        checkpoints.append(ckpt)
        done = ckpt.load()
        with tracking.stage_run(ps, f"compare@{args.method}", _bootstrap.CHECKOUT,
                                run_id=done["run_id"] if done else None, label=f"seed {seed}",
                                tags={"method": args.method}) as run:  # fmt: skip
            result = train.fit(args.method, ps.train, data, ckpt, run_id=run.info.run_id,
                               opts=p.methods, select_best=c.select == "best_heldout")  # fmt: skip
            test = {}
            for d in c.dims:
                zq = methods.embed_at(args.method, result.modules, c.dims, q_test, d)
                zc = methods.embed_at(args.method, result.modules, c.dims, data.c, d)
                per_query = retrieval.per_query(zq, zc, qids, cids, qrels)
                scores.append(per_query.assign(method=args.method, seed=seed, dim=d))
                test[f"{args.method}_d{d}.ndcg_at_10"] = per_query.ndcg_at_10.mean()
            if not mlflow.get_run(run.info.run_id).data.metrics:  # not logged before a stop
                rows = result.history.to_dict("records")
                tracking.log_steps([(r["global_epoch"], train.metric_names(r)) for r in rows])
                kept = {
                    f"step{r.step}.kept_epoch": r.kept_epoch for r in result.selection.itertuples()
                }
                mlflow.log_metrics(test | kept)
        stats.append(first_module_stats(result, args.method, c.dims).assign(seed=seed))
        selection.append(result.selection.assign(method=args.method, seed=seed))
        if seed == 0:  # the models people take away (pipeline/export.py)
            meta = {"method": args.method, "dims": c.dims, "in_dim": data.q.shape[1]}
            artifacts.write_modules(args.modules, meta, [m.cpu() for m in result.modules])
            artifacts.write_json(args.run_json, {**tracking.run_info(run), "seed": 0})
    out = pd.concat(scores, ignore_index=True)
    artifacts.write_parquet(args.scores, out)
    artifacts.write_parquet(args.stats, pd.concat(stats, ignore_index=True))
    artifacts.write_csv(args.selection, pd.concat(selection, ignore_index=True))
    for ckpt in checkpoints:
        ckpt.clear()
    means = out.groupby("dim").ndcg_at_10.mean().round(4).to_dict()
    print(f"compare@{args.method}: {c.seeds} seeds, mean nDCG@10 by width {means}")
    return out


if __name__ == "__main__":
    main(run)
