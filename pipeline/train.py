"""DVC stage `train@<method>`: train MRL's head or SMRL's chain of heads, recording gradients.

Writes the trained heads, the per-step gradient record, the per-epoch history and run.json
(the MLflow run that holds them). A stopped run resumes from its checkpoint, but only if the
checkpoint was made by the same params, code and inputs. With `train.processes` > 1 it re-runs
itself under torchrun (:mod:`smec.distributed`); the first process tracks and writes.
"""

import sys
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow

from smec import artifacts, distributed, params, provenance, tracking, train
from smec.checkpoint import Checkpoint
from smec.cli import main, parser
from smec.device import resolve

INPUTS = ("corpus", "queries", "qrels", "corpus-emb", "queries-emb")
OUTPUTS = ("heads", "gradients", "history", "run-json")


def checkpoint_key(p: params.Params, method: str, inputs: list) -> str:
    """Params, this stage's code (its import closure) and its input files."""
    settings = {"method": method, **{s: getattr(p, s).model_dump() for s in ("data", "train")}}
    return provenance.stage_key(Path(__file__).resolve(), _bootstrap.CHECKOUT, inputs, settings)


def run(argv: list[str] | None = None) -> train.Result | None:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=INPUTS, outputs=OUTPUTS)
    ap.add_argument("--method", required=True, choices=["mrl", "smrl"])
    ap.add_argument(
        "--checkpoint", type=Path, required=True, help="resumable state (not a DVC output)"
    )
    args = ap.parse_args(argv)
    p = params.load(args.params)
    if distributed.relaunch(p.train.processes, __file__, sys.argv[1:] if argv is None else argv):
        return None  # torchrun's processes did the work
    inputs = [args.corpus, args.queries, args.qrels, args.corpus_emb, args.queries_emb]
    ds = artifacts.read_prepared(args.corpus, args.queries, args.qrels)
    device = distributed.init(resolve(p.train.device))
    data = train.train_data(
        ds, artifacts.read_array(args.corpus_emb), artifacts.read_array(args.queries_emb), device
    )
    checkpoint = Checkpoint(args.checkpoint, checkpoint_key(p, args.method, inputs))
    if not distributed.is_main():  # the first process tracks and writes
        return train.fit(args.method, p.train, data, checkpoint)
    resumed = checkpoint.load()
    run_id = resumed["run_id"] if resumed else None
    if resumed:
        print(f"{args.method}: resuming from {checkpoint.path} (MLflow run {run_id})")
    with tracking.stage_run(
        p, f"train@{args.method}", _bootstrap.CHECKOUT, run_id=run_id, tags={"method": args.method}
    ) as mlrun:
        if run_id is None:
            mlflow.log_params({"method": args.method, "device": str(device)})
            tracking.log_prepared(
                ds, args.corpus, args.queries, args.qrels, p.data.name, "training"
            )
        result = train.fit(
            args.method,
            p.train,
            data,
            checkpoint,
            run_id=mlrun.info.run_id,
            on_epoch=lambda row: mlflow.log_metrics(
                train.metric_names(row), step=row["global_epoch"]
            ),
        )
        meta = {"method": args.method, "dims": p.train.method_dims, "in_dim": data.q.shape[1]}
        artifacts.write_modules(args.heads, meta, [m.cpu() for m in result.modules])
        artifacts.write_parquet(args.gradients, result.record)
        artifacts.write_csv(args.history, result.history, float_format="%.8g")
        artifacts.write_json(args.run_json, {**tracking.run_info(mlrun), "method": args.method})
        mlflow.log_artifact(str(args.heads))
        mlflow.log_artifact(str(args.history))
    checkpoint.clear()
    last = result.history.iloc[-1]
    print(
        f"{args.method}: {len(result.modules)} head(s), final loss {last['loss']:.4f}, "
        f"MLflow run {result.run_id}"
    )
    return result


if __name__ == "__main__":
    main(run)
