"""DVC stage `evaluate`: nDCG@10, Recall@100 and MRR@10 per method and dimension.

Methods: MRL (prefixes of its head), SMRL (the output of each step), and the untrained
baselines `truncate` and `pca` (also at the full dimension). Exact cosine search over the whole
prepared corpus for the test queries; measures named as MTEB names them.
"""

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd
import torch

from smec import artifacts, methods, params, retrieval, tracking
from smec.cli import main, parser
from smec.device import resolve

INPUTS = (
    "corpus",
    "queries",
    "qrels",
    "corpus-emb",
    "queries-emb",
    "mrl-heads",
    "smrl-heads",
    "mrl-run",
    "smrl-run",
)
OUTPUTS = ("table", "metrics")


def run(argv: list[str] | None = None) -> pd.DataFrame:
    args = parser(__doc__, _bootstrap.CHECKOUT, inputs=INPUTS, outputs=OUTPUTS).parse_args(argv)
    p = params.load(args.params)
    device = resolve(p.evaluate.device)
    ds = artifacts.read_prepared(args.corpus, args.queries, args.qrels)
    c = torch.from_numpy(artifacts.read_array(args.corpus_emb)).to(device)
    q_all = torch.from_numpy(artifacts.read_array(args.queries_emb)).to(device)
    qids, q, qrels = retrieval.test_queries(ds, q_all)
    dims = p.train.method_dims
    variants = list(retrieval.baselines(q, c, [c.shape[1], *dims]))
    for method, path in (("mrl", args.mrl_heads), ("smrl", args.smrl_heads)):
        hs = [m.to(device) for m in methods.restore(*artifacts.read_modules(path))]
        for d in dims:
            zq, zc = (
                methods.embed_at(method, hs, dims, q, d),
                methods.embed_at(method, hs, dims, c, d),
            )
            variants.append((method, d, zq, zc))
    table = retrieval.table(variants, qids, list(ds.corpus.corpus_id), qrels, p.evaluate.chunk_size)
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
