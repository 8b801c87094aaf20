"""DVC stage `train@<method>`: train MRL's head or SMRL's chain of heads, recording gradients.

Writes the trained heads, the per-step gradient record, the per-epoch history and run.json
(the MLflow run that holds them). A stopped run resumes from its checkpoint, but only if the
checkpoint was made by the same params, code and inputs. With `train.processes` > 1 it re-runs
itself under torchrun (:mod:`smec.infra.distributed`); the first process tracks and writes.
"""

import sys
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow

from smec import params
from smec.data import artifacts, inputs
from smec.infra import distributed, provenance, tracking
from smec.infra.cli import main, parser
from smec.infra.device import resolve
from smec.model import methods
from smec.training import data as training_data
from smec.training import loop
from smec.training.checkpoint import Checkpoint
from smec.training.tracked import MemberRun, Track, tracked_fit

OUTPUTS = ("heads", "gradients", "history", "run-json")


def checkpoint_key(p: params.Params, method: str, paths) -> str:
    """Params, this stage's code (its import closure) and its input files."""
    settings = {"method": method, **{s: getattr(p, s).model_dump() for s in ("data", "train")}}
    return provenance.stage_key(Path(__file__).resolve(), _bootstrap.CHECKOUT, paths, settings)


def run(argv: list[str] | None = None) -> loop.Result | None:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=inputs.OPTIONS, outputs=OUTPUTS)
    ap.add_argument("--method", required=True, choices=["mrl", "smrl"])
    ap.add_argument(
        "--checkpoint", type=Path, required=True, help="resumable state (not a DVC output)"
    )
    args = ap.parse_args(argv)
    p = params.load(args.params, args.cell, artifacts.width(args.queries_emb))
    tracking.use_store()
    if distributed.relaunch(p.train.processes, __file__, sys.argv[1:] if argv is None else argv):
        return None  # torchrun's processes did the work
    stage_in = inputs.read(args)
    device = distributed.init(resolve(p.train.device))
    data = training_data.train_data(stage_in, device)
    job = loop.Job(methods.learned(args.method), p.train)
    track = Track(
        f"train@{args.method}",
        _bootstrap.CHECKOUT,
        runs=(MemberRun(p),),
        tags={"method": args.method},
        live=True,
    )
    ckpt = Checkpoint(args.checkpoint, checkpoint_key(p, args.method, stage_in.paths))
    if not distributed.is_main():  # the first process tracks and writes
        return loop.fit(job, data, ckpt)
    with tracked_fit(job, data, ckpt, track) as fitted:
        result = fitted.result
        run = fitted.runs[0]
        meta = {"method": args.method, "dims": p.train.method_dims, "in_dim": data.q.shape[1]}
        states = [loop.member_state(m.cpu(), 0) for m in result.modules]
        artifacts.write_modules(args.heads, meta, states)
        artifacts.write_parquet(args.gradients, result.record)
        artifacts.write_csv(args.history, result.history, float_format="%.8g")
        artifacts.write_json(args.run_json, {**tracking.run_info(run), "method": args.method})
        with mlflow.start_run(run_id=run.info.run_id):
            if fitted.fresh[0]:
                mlflow.log_params({"method": args.method, "device": str(device)})
                tracking.log_prepared(
                    stage_in.ds, args.corpus, args.queries, args.qrels, p.data.name, "training"
                )
            mlflow.log_artifact(str(args.heads))
            mlflow.log_artifact(str(args.history))
    ckpt.clear()
    last = result.history.iloc[-1]
    print(
        f"{args.method}: {len(result.modules)} head(s), final loss {last['loss']:.4f}, "
        f"MLflow run {result.run_ids[0]}"
    )
    return result


if __name__ == "__main__":
    main(run)
