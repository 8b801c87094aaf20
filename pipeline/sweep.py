"""DVC stage `sweep@<arm>`: MRL and SMRL trained for every seed of `sweep.seeds`, one process.

An arm is the default training params with a few overridden (dvc.yaml passes them as
`--loss ce`, `--optimizer sgd --lr 1.0`, ...); each seed sets `train.seed` (initialisation and
batch order; the held-out split stays `data.split_seed`'s). One process trains them all, so the
start-up, the imports and MLflow's connection are paid once per arm, not once per training.
Each training is an MLflow run nested under the pipeline's run.

Writes, per training, the per-epoch gradient and update statistics of the head of width
method_dims[0] (`--stats`) and the test queries' nDCG@10, Recall@100 and MRR@10 at every width
(`--retrieval`). A stopped sweep resumes: every training keeps its checkpoint until the whole
arm is done, so finished ones are read back, not trained again.
"""

import json
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import artifacts, gradstats, methods, params, provenance, retrieval, tracking, train
from smec.checkpoint import Checkpoint
from smec.cli import main, parser
from smec.device import resolve
from smec.errors import SmecError

INPUTS = ("corpus", "queries", "qrels", "corpus-emb", "queries-emb")
OUTPUTS = ("stats", "retrieval")
METHODS = ("mrl", "smrl")


def test_scores(method, hs, dims, q, c, qids, cids, qrels) -> list[dict[str, float]]:
    """nDCG@10, Recall@100 and MRR@10 of the test queries at every width."""
    return [
        {
            "dim": d,
            **retrieval.score(
                methods.embed_at(method, hs, dims, q, d),
                methods.embed_at(method, hs, dims, c, d),
                qids,
                cids,
                qrels,
            ),
        }
        for d in dims
    ]


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=INPUTS, outputs=OUTPUTS)
    ap.add_argument("--arm", required=True, help="the arm's name (dvc.yaml's foreach key)")
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of resumable state")
    args, overrides = ap.parse_known_args(argv)
    base, arm_set = params.load(args.params), params.overrides(overrides)
    if missing := [f for f in params.ARM_FIELDS if f not in arm_set]:
        raise SmecError(f"dvc.yaml: sweep arm {args.arm!r} must set {', '.join(missing)}")
    p = params.with_train(base, arm_set, f"sweep arm {args.arm!r}")
    inputs = [args.corpus, args.queries, args.qrels, args.corpus_emb, args.queries_emb]
    ds = artifacts.read_prepared(args.corpus, args.queries, args.qrels)
    device = resolve(p.train.device)
    c_np, q_np = artifacts.read_array(args.corpus_emb), artifacts.read_array(args.queries_emb)
    data = train.train_data(ds, c_np, q_np, device)
    qids, q_test, qrels = retrieval.test_queries(ds, data.q)
    cids, dims = list(ds.corpus.corpus_id), p.train.method_dims
    arm = {"arm": args.arm, **{k: getattr(p.train, k) for k in params.ARM_FIELDS}}
    stats, scores, checkpoints = [], [], []
    for seed in range(p.sweep.seeds):
        ps = params.with_train(p, {"seed": seed, "heldout_eval": False}, "sweep")
        for method in METHODS:
            settings = {
                "method": method,
                "data": ps.data.model_dump(),
                "train": ps.train.model_dump(),
            }
            key = provenance.stage_key(
                Path(__file__).resolve(), _bootstrap.CHECKOUT, inputs, settings
            )
            ckpt = Checkpoint(args.checkpoints / f"{method}-seed{seed}.pt", key)
            checkpoints.append(ckpt)
            done = ckpt.load()
            with tracking.stage_run(
                ps,
                f"sweep@{args.arm}",
                _bootstrap.CHECKOUT,
                run_id=done["run_id"] if done else None,
                label=method,
                tags={"method": method, "sweep.arm": args.arm},
            ) as run:
                result = train.fit(method, ps.train, data, ckpt, run_id=run.info.run_id)
                table = gradstats.figure_table(result.record, dims, p.gradstats.variance)
                test = test_scores(method, result.modules, dims, q_test, data.c, qids, cids, qrels)
                if not mlflow.get_run(run.info.run_id).data.metrics:  # not logged before a stop
                    tracking.log_steps(
                        [(row["global_epoch"], train.metric_names(row)) for row in
                         result.history.to_dict("records")]
                    )  # fmt: skip
                    nested = {
                        f"{method}_d{r['dim']}": {m: r[m] for m in retrieval.MEASURES} for r in test
                    }
                    mlflow.log_metrics(retrieval.flat_metrics(nested))
            stats.append(table.assign(seed=seed, run_id=run.info.run_id, **arm))
            scores += [{**arm, "method": method, "seed": seed, **r} for r in test]
    out = pd.concat(stats, ignore_index=True)
    artifacts.write_parquet(args.stats, out)
    artifacts.write_csv(args.retrieval, pd.DataFrame(scores), float_format="%.6f")
    for ckpt in checkpoints:
        ckpt.clear()
    print(f"sweep@{args.arm}: {len(checkpoints)} trainings ({json.dumps(arm)})")
    return out


if __name__ == "__main__":
    main(run)
