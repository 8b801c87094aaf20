"""DVC stage `compare@<method>`: one method of the comparison, for every seed of compare.seeds.

Every method gets the same frozen embeddings, training queries, loss (`compare.loss`, the
paper's rank loss by default), budget (`compare.epochs` epochs per trained module) and model
selection: each module keeps the weights of its epoch with the best held-out nDCG@10 (mean over
the widths it serves), recorded in `--selection`. The chain goes one level deeper than the seed
figure: `compare.dims` (192, 96, 48).

Every trained module starts as each of `compare.inits` says (`identity`: the frozen embedding,
truncated, for heads and ADS maps, a zero residual for adaptors; `random`: drawn from the seed),
the first start being the headline and the others its ablation: these arms train at the
default settings (`train.lr`, `compare.epochs`, `methods`). With `compare.tuned`, one more arm,
`tuned`, trains at the best settings of the method's study (`--tuned`, from `tune@<method>`):
its learning rate, epochs, start and own knobs; the `init` column then reads `tuned`. Each of
`compare.losses` (`ce`) is an arm at the headline start's default settings and, with
`compare.tuned`, one more (`ce_tuned`) at the best settings of the method's study under that
loss (`--tuned`'s `losses`); each of
`compare.label_fractions` (`labels_25`, `labels_50`) trains on that share of the training
queries (nested subsets drawn from `data.split_seed`) at the tuned settings: the label-scarcity
curve, whose 100% point is the `tuned` arm.

Writes, per start, seed, width and test query, nDCG@10, Recall@100 and MRR@10 (`--scores`); the
per-epoch gradient statistics of the method's first module with its step's diagnostics
(`--stats`; for an ADS head, over the rows it keeps); the selection; and the modules of the
headline start's seed 0 (`--modules`) with the MLflow run that trained them (`--run-json`). A
stopped comparison resumes: every training keeps its checkpoint until the whole method is done.
"""

from dataclasses import dataclass
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
from smec.model.methods.base import Method, StepSpec
from smec.params import Train
from smec.training import budgets, loop, tuning
from smec.training import data as training_data
from smec.training.checkpoint import Checkpoint
from smec.training.tracked import MemberRun, Track, tracked_fit

SCRIPT = Path(__file__).resolve()
OUTPUTS = ("scores", "stats", "selection", "modules", "run-json")


def first_module_stats(result: loop.Result, spec: StepSpec, dims: list[int]) -> pd.DataFrame:
    """Per member and epoch, the seed figure's statistics of the first trained module (for an
    ADS head over the rows it keeps, the first half of them against the second, each in the
    steps it was kept; an adaptor's over the rows a loss reaches), beside its diagnostics."""
    frames = []
    for s, seed in enumerate(result.history["seed"].unique()):
        history = result.member(seed)
        history = history[history["head"] == 1]
        extra = [c for c in history if c.startswith(("ads_", "sxbm_"))]
        diagnostics = history[["epoch", *extra]].reset_index(drop=True)
        record = result.records[s]
        record = record[record["head"] == 1]
        if record.empty:  # nothing recorded: a selection without a map
            frames.append(diagnostics.assign(seed=seed))
            continue
        module, split = result.modules[0], spec.split
        if hasattr(module, "indices"):
            kept = module.indices()[s].tolist()
            record, split = gradstats.kept_rows(record, kept), dims[0] // 2
        stats = gradstats.per_epoch(record, split, spec.rows).drop(columns=["head", "method"])
        frames.append(stats.merge(diagnostics, on="epoch", how="left").assign(seed=seed))
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class Arm:
    """One arm of the comparison: its name (the tables' `init` column), the study replicate
    whose best settings it trains with (0 for an arm at the defaults), those settings, its
    loss, the share of the training queries it sees and its seeds."""

    label: str
    replicate: int
    settings: tuning.Settings
    loss: str
    fraction: float = 1.0
    seeds: tuple[int, ...] = ()


def studied(p: params.Params, tuned: Path, method: Method) -> dict[tuple, tuning.Settings]:
    """The best settings of each of the method's studies, by (loss, replicate), for every loss
    of `compare.studied_losses` and every replicate of `tune.replicates`, from
    `tune@<method>`'s best.json."""
    best = artifacts.read_json(tuned)
    if best.get("method") != method.name:
        raise SmecError(f"{tuned}: the study of {best.get('method')!r}, not {method.name!r}")
    studies = {(s["loss"], s["replicate"]): s for s in best.get("studies", [])}
    if not studies:  # a method not studied (dvc.yaml's tune foreach): the default arms only
        return {}
    wanted = [(loss, r) for loss in p.compare.studied_losses for r in range(p.tune.replicates)]
    for loss, r in wanted:
        if (loss, r) not in studies:
            raise SmecError(
                f"{tuned}: no study under loss {loss!r}, replicate {r}; "
                f"run `dvc repro tune@{method.name}`"
            )
    return {key: tuning.Settings.of(studies[key]["settings"], p.methods) for key in wanted}


def arms(p: params.Params, tuned: Path, method: Method) -> list[Arm]:
    """The comparison's arms of one method (`compare.arms`, in order): each start at the default
    settings; with `compare.tuned`, the best settings of each study replicate (`--tuned`); each
    other loss at the headline start's default settings, then at its own studies' best; each
    label budget at each replicate's tuned settings (at the headline's without
    `compare.tuned`); then the headline arm on the next `compare.seeds` seeds (`aa`, with
    `compare.calibration`). A method without studies (a best.json whose `studies` is empty:
    dvc.yaml's tune foreach does not list it) has the arms at the default settings only."""
    c = p.compare
    seeds = tuple(range(c.seeds))
    headline = tuning.defaults(p, c.inits[0])
    out = [Arm(init, 0, tuning.defaults(p, init), c.loss, seeds=seeds) for init in c.inits]
    best = studied(p, tuned, method) if c.tuned else {}
    reps = range(p.tune.replicates) if best else range(0)
    out += [Arm("tuned", r, best[c.loss, r], c.loss, seeds=seeds) for r in reps]
    out += [Arm(loss, 0, headline, loss, seeds=seeds) for loss in c.losses]
    for loss in c.tuned_losses if best else []:
        out += [Arm(f"{loss}_tuned", r, best[loss, r], loss, seeds=seeds) for r in reps]
    for f in c.label_fractions if best or not c.tuned else []:
        base = [(r, best[c.loss, r]) for r in reps] if best else [(0, headline)]
        out += [Arm(params.label_arm(f), r, s, c.loss, f, seeds) for r, s in base]
    if c.calibration:
        out.append(Arm("aa", 0, headline, c.loss, seeds=tuple(c.test_seeds[c.seeds :])))
    labels = list(dict.fromkeys(a.label for a in out))
    assert labels == [arm for arm in c.arms if arm in labels]  # compare.arms' order
    return out


def train_arm(args, p: params.Params, method: Method, arm: Arm, stage_in, data) -> tuple:
    """Every seed of one arm trained as one stack (resuming from its checkpoint), scored per
    test query at every width; returns the scores, the result, the runs and the checkpoint."""
    c, label, settings, seeds = p.compare, arm.label, arm.settings, list(arm.seeds)
    per_seed = [tuning.train_params(p, seed, settings, arm.loss) for seed in seeds]
    if arm.fraction < 1:  # the same queries for every seed (a budget nests in larger ones)
        data = budgets.query_subset(data, arm.fraction, p.data.split_seed)
    name = f"{label} r{arm.replicate}" if c.from_studies(label) else label
    track = Track(
        f"compare@{method.name}",
        _bootstrap.CHECKOUT,
        runs=tuple(MemberRun(ps, f"{name} seed {ps.train.seed}") for ps in per_seed),
        tags={
            "method": method.name,
            "compare.init": label,
            "compare.replicate": str(arm.replicate),
            "compare.fraction": str(arm.fraction),
        },
    )
    key_settings = {
        "method": method.name,
        "replicate": arm.replicate,
        "train": [ps.train.model_dump() for ps in per_seed],
        "methods": settings.methods.model_dump(),
        "compare": c.model_dump(),
        "fraction": arm.fraction,
    }
    key = provenance.stage_key(SCRIPT, _bootstrap.CHECKOUT, stage_in.paths, key_settings)
    ckpt = Checkpoint(args.checkpoints / f"{label}-r{arm.replicate}.pt", key)
    members = tuple(loop.Member(ps.train.seed, ps.train.lr) for ps in per_seed)
    select = c.select == "best_heldout"
    job = loop.Job(method, per_seed[0].train, settings.methods, select, members)
    test = retrieval.TestSet.of(stage_in.ds, data.q)
    scores = []
    with tracked_fit(job, data, ckpt, track) as fitted:
        for d in c.dims:
            zq = method.embed_at(fitted.result.modules, c.dims, test.queries, d)
            zc = method.embed_at(fitted.result.modules, c.dims, data.c, d)
            for s, seed in enumerate(seeds):
                per_query = test.per_query(zq[s], zc[s])
                labels = {
                    "method": method.name,
                    "init": label,
                    "replicate": arm.replicate,
                    "seed": seed,
                    "dim": d,
                }
                scores.append(per_query.assign(**labels))
                fitted.metrics[s][f"{method.name}_d{d}.ndcg_at_10"] = per_query.ndcg_at_10.mean()
    return pd.concat(scores), fitted.result, fitted.runs, ckpt


def run(argv: list[str] | None = None) -> pd.DataFrame:
    ap = parser(__doc__, _bootstrap.CHECKOUT, inputs=inputs.OPTIONS, outputs=OUTPUTS)
    ap.add_argument("--method", required=True, choices=methods.LEARNED)
    ap.add_argument("--tuned", type=Path, required=True, help="input: the study's best.json")
    ap.add_argument("--checkpoints", type=Path, required=True, help="folder of resumable state")
    args = ap.parse_args(argv)
    p, method = (
        params.load(args.params, args.cell, artifacts.width(args.queries_emb)),
        methods.learned(args.method),
    )
    tracking.use_store()
    c = p.compare
    stage_in = inputs.read(args)
    data = training_data.train_data(stage_in, resolve(p.train.device))
    first = method.plan(Train(method_dims=c.dims), data.q.shape[1])[0]
    scores, stats, selection, checkpoints = [], [], [], []
    for arm in arms(p, args.tuned, method):
        per_query, result, runs, ckpt = train_arm(args, p, method, arm, stage_in, data)
        checkpoints.append(ckpt)
        scores.append(per_query)
        init = arm.label
        labels = {"method": method.name, "init": init, "replicate": arm.replicate}
        stats.append(first_module_stats(result, first, c.dims).assign(**labels))
        selection.append(result.selection.assign(**labels))
        if init == c.inits[0]:  # seed 0 of the headline start: what people take away (export)
            meta = {
                "method": method.name,
                "dims": c.dims,
                "in_dim": data.q.shape[1],
                "bias": p.train.bias,
                "methods": p.methods.model_dump(),
            }
            states = [loop.member_state(m.cpu(), 0) for m in result.modules]
            artifacts.write_modules(args.modules, meta, states)
            artifacts.write_json(args.run_json, {**tracking.run_info(runs[0]), "seed": 0})
    out = pd.concat(scores, ignore_index=True)
    artifacts.write_parquet(args.scores, out)
    artifacts.write_parquet(args.stats, pd.concat(stats, ignore_index=True))
    artifacts.write_csv(args.selection, pd.concat(selection, ignore_index=True))
    for ckpt in checkpoints:
        ckpt.clear()
    means = out.groupby(["init", "dim"]).ndcg_at_10.mean().round(4).to_dict()
    print(
        f"compare@{method.name}: mean nDCG@10 by arm and width (over replicates and seeds) {means}"
    )
    return out


if __name__ == "__main__":
    main(run)
