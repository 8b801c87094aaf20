"""DVC stage `law`: MRL's epoch-0 low/high gradient ratio against the 1 + (c₂/c₁)·(D/d) law.

For a head of width D nested at d with loss weights (c₁, c₂), the rows below d receive the
gradient of both losses, the rows above it that of L_D alone; with ∂L_m/∂w ∝ 1/δ(m)² and δ²
growing like m, the ratio of their average gradient norms is 1 + (c₂/c₁)·(D/d): 3 for equal
weights at every halving. Trains MRL for one epoch per nesting and weighting and seed and writes
the measured ratio's mean and 95% interval beside the predicted value.
"""

import tempfile
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter
import mlflow
import pandas as pd

from smec import params
from smec.data import artifacts, inputs
from smec.infra import tracking
from smec.infra.cli import main, parser
from smec.infra.device import resolve
from smec.measure import gradstats, intervals
from smec.model import methods
from smec.training import data as training_data
from smec.training import loop
from smec.training.checkpoint import Checkpoint

NO_EVAL = {"heldout_eval": False}


def predicted(dims: list[int], weights: list[float]) -> float:
    return 1 + (weights[1] / weights[0]) * (dims[0] / dims[1])


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=inputs.OPTIONS, outputs=("table",))
    args = ap.parse_args(argv)
    p = params.load(args.params, args.cell, artifacts.width(args.queries_emb))
    tracking.use_store()
    data = training_data.train_data(inputs.read(args), resolve(p.train.device))
    rows = []
    for dims, weights in p.law.configs():
        changes = {"method_dims": dims, "mrl_weights": weights, "epochs": 1}
        cfg = params.Train.model_validate(p.train.model_dump() | changes | NO_EVAL)
        members = tuple(loop.Member(seed, cfg.lr) for seed in range(p.law.seeds))
        with tempfile.TemporaryDirectory() as tmp:  # one epoch: nothing to resume
            job = loop.Job(methods.learned("mrl"), cfg, members=members)  # the seeds, stacked
            records = loop.fit(job, data, Checkpoint(Path(tmp) / "state.pt", "")).records
        ratios = [
            gradstats.per_epoch(record, split=dims[1]).low_over_high.iloc[0] for record in records
        ]
        ci = intervals.t_interval(ratios)
        rows.append(
            {
                "nesting": "/".join(map(str, dims)),
                "weights": "/".join(f"{w:g}" for w in weights),
                "predicted": predicted(dims, weights),
                "mean": ci.mean,
                "ci_low": ci.low,
                "ci_high": ci.high,
                "n_seeds": ci.n,
            }
        )
    table = pd.DataFrame(rows)
    artifacts.write_csv(args.table, table)
    with tracking.stage_run(p, "law", _bootstrap.CHECKOUT):
        mlflow.log_artifact(str(args.table))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return table


if __name__ == "__main__":
    main(run)
