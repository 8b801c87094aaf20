"""DVC stage `embed`: embed the prepared corpus and queries with the frozen encoder, once.

Writes float32, L2-normalised embeddings (`.npy`, one row per prepared document or query, in
their order) and a meta.json (model, dimension, counts); logs throughput to MLflow.
"""

import dataclasses

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow

from smec import params
from smec.data import artifacts, encode, encoders
from smec.infra import tracking
from smec.infra.cli import main, parser
from smec.infra.device import resolve


def run(argv: list[str] | None = None) -> dict:
    ap = parser(
        __doc__,
        _bootstrap.CHECKOUT,
        inputs=("corpus", "queries"),
        outputs=("corpus-emb", "queries-emb", "meta"),
    )
    args = ap.parse_args(argv)
    p = params.load(args.params, args.cell)
    tracking.use_store()
    corpus, queries = artifacts.read_texts(args.corpus, args.queries)
    device = resolve(p.encoder.device)
    encoder = encoders.load(p.encoder, device)
    arrays, stats = encode.embed(encoder, corpus, queries, p.encoder.batch_size)
    identity = dataclasses.asdict(encoder.identity())
    meta = {
        "encoder": identity,
        "model": p.encoder.model,
        "dim": int(arrays["corpus"].shape[1]),
        "corpus_count": len(corpus),
        "queries_count": len(queries),
        "normalized": True,
        "max_seq_length": p.encoder.max_seq_length,
        "compute_dtype": p.encoder.dtype,
    }
    artifacts.write_array(args.corpus_emb, arrays["corpus"])
    artifacts.write_array(args.queries_emb, arrays["queries"])
    artifacts.write_json(args.meta, meta)
    with tracking.stage_run(p, "embed", _bootstrap.CHECKOUT):
        mlflow.log_param("device", str(device))
        mlflow.log_params({f"encoder.identity.{k}": v for k, v in identity.items()})
        mlflow.log_metrics({k: float(v) for k, v in stats.items()} | {"dim": meta["dim"]})
    print(f"embedded {stats['corpus_count']} documents at {stats['corpus_texts_per_s']} texts/s")
    return stats


if __name__ == "__main__":
    main(run)
