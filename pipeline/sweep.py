"""DVC stage `sweep@<arm>`: MRL and SMRL trained for every seed of `sweep.seeds`, one process.

An arm is the default training params with a few overridden (dvc.yaml passes them as
`--loss ce`, `--optimizer sgd --lr 1.0`, ...); each seed sets `train.seed` (initialisation and
batch order; the held-out split stays `data.split_seed`'s). One process trains them all, so the
start-up, the imports and MLflow's connection are paid once per arm, not once per training.
The seeds of a method train as one stack (:mod:`smec.training.loop`); each is an MLflow run
nested under the pipeline's run.

Writes, per training, the per-epoch gradient and update statistics of the head of width
method_dims[0] (`--stats`) and the test queries' nDCG@10, Recall@100 and MRR@10 at every width
(`--retrieval`). A stopped sweep resumes: every stack keeps its checkpoint until the whole arm
is done, so finished ones are read back, not trained again.
"""

import json
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import pandas as pd

from smec import params
from smec.data import artifacts, inputs
from smec.errors import SmecError
from smec.infra import provenance, tracking
from smec.infra.cli import main, parser
from smec.infra.device import resolve
from smec.measure import gradstats, retrieval
from smec.model import methods
from smec.training import data as training_data
from smec.training import loop
from smec.training.checkpoint import Checkpoint
from smec.training.tracked import MemberRun, Track, tracked_fit

SCRIPT = Path(__file__).resolve()
OUTPUTS = ("stats", "retrieval")
METHODS = ("mrl", "smrl")


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=inputs.OPTIONS, outputs=OUTPUTS)
    ap.add_argument("--arm", required=True, help="the arm's name (dvc.yaml's foreach key)")
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of resumable state")
    args, overrides = ap.parse_known_args(argv)
    base, arm_set = (
        params.load(args.params, args.cell, artifacts.width(args.queries_emb)),
        params.overrides(overrides),
    )
    tracking.use_store()
    if missing := [f for f in params.ARM_FIELDS if f not in arm_set]:
        raise SmecError(f"dvc.yaml: sweep arm {args.arm!r} must set {', '.join(missing)}")
    p = params.with_train(base, arm_set, f"sweep arm {args.arm!r}")
    stage_in = inputs.read(args)
    data = training_data.train_data(stage_in, resolve(p.train.device))
    test = retrieval.TestSet.of(stage_in.ds, data.q)
    dims = p.train.method_dims
    arm = {"arm": args.arm, **{k: getattr(p.train, k) for k in params.ARM_FIELDS}}
    stats, scores, checkpoints = [], [], []
    per_seed = [
        params.with_train(p, {"seed": seed, "heldout_eval": False}, "sweep")
        for seed in range(p.sweep.seeds)
    ]
    for name in METHODS:  # every seed of a method trained as one stack
        method = methods.learned(name)
        track = Track(
            f"sweep@{args.arm}",
            _bootstrap.CHECKOUT,
            runs=tuple(MemberRun(ps, name) for ps in per_seed),
            tags={"method": name, "sweep.arm": args.arm},
        )
        settings = {
            "method": name,
            "data": p.data.model_dump(),
            "train": [ps.train.model_dump() for ps in per_seed],
        }
        key = provenance.stage_key(SCRIPT, _bootstrap.CHECKOUT, stage_in.paths, settings)
        ckpt = Checkpoint(args.checkpoints / f"{name}.pt", key)
        checkpoints.append(ckpt)
        members = tuple(loop.Member(ps.train.seed, ps.train.lr) for ps in per_seed)
        with tracked_fit(
            loop.Job(method, per_seed[0].train, members=members), data, ckpt, track
        ) as fitted:
            result = fitted.result
            per_dim = test.scores(method, result.modules, dims, data.c)  # per member
            for s, rows in enumerate(per_dim):
                nested = {
                    f"{name}_d{r['dim']}": {m: r[m] for m in retrieval.MEASURES} for r in rows
                }
                fitted.metrics[s] = retrieval.flat_metrics(nested)
        for s, ps in enumerate(per_seed):
            seed, run_id = ps.train.seed, fitted.runs[s].info.run_id
            table = gradstats.figure_table(result.records[s], dims, p.gradstats.variance)
            stats.append(table.assign(seed=seed, run_id=run_id, **arm))
            scores += [{**arm, "method": name, "seed": seed, **r} for r in per_dim[s]]
    out = pd.concat(stats, ignore_index=True)
    artifacts.write_parquet(args.stats, out)
    artifacts.write_csv(args.retrieval, pd.DataFrame(scores), float_format="%.6f")
    for ckpt in checkpoints:
        ckpt.clear()
    print(f"sweep@{args.arm}: {len(checkpoints)} trainings ({json.dumps(arm)})")
    return out


if __name__ == "__main__":
    main(run)
