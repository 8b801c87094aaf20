"""Training-step cost of the MRL head: nested loss and gradient-recorder overhead.

Runs `StepTrainer.epoch` (`smec.training.loop`) on the 384 -> 192 head over a fixed list of
batches (`smec.training.data.batches`, one list per epoch, shared by every run) on the real
SciFact embeddings when data/prepared and data/embeddings exist, else on
`smec.training.synthetic.latent_factor_data()`.
Three configurations, each with a fresh head, optimiser and scheduler built as train.py builds
them, timed over several epochs per repeat in rotating order after a warm-up:

- single:   NestedLoss(loss, [192]),      recorder=None
- mrl:      NestedLoss(loss, [192, 96]),  recorder=None
- mrl+rec:  NestedLoss(loss, [192, 96]),  gradstats.Recorder (end_epoch once per epoch)

A step is a few milliseconds of small ops, so its timing is very sensitive to other processes
on the CPU (see the load average printed first); run it on an otherwise idle machine.

Then data-parallel training: mrl+rec in two `gloo` processes under torchrun (one thread each,
torchrun's default; `smec.infra.distributed`) at the same global batch, this script re-run as the
workers, timed the same way; against mrl+rec in this one process (all its threads).

Stacking: mrl+rec for 5 seeds as one stacked model against the 5 in turn
(stacked_over_sequential, goal >= 3), and its ceiling on this machine, stacked_ceiling: the
ratio if everything but the work that grows with the members (each step's rows, the head's
product and gradient, the optimiser's step; timed alone for 1 member and for 5) cost the same
for 5 members as for one; and products_bound, the ratio if nothing but the head's two matrix
products per step and the rows they read (the forward bmm and the weight gradient's,
`products_once`) grew with the members, with product_gflops their rate for 5 members: a bound no
stacked step can pass, since every member's rows and products must be computed.

SMEC's bound, smec_products_bound: SMEC's first step over SMRL's if SMEC's cost SMRL's step with
the head's products (`products_once`, one member) replaced by SMEC's own (`smec_products_once`:
the 384 × 384 ADS map on the step's rows and its gradient's product, and the map's kept rows on
the distinct S-XBM neighbour rows of each step, counted by the step's own term and memory,
smec_neighbour_rows their mean): the mask, the noise and the term's loss counted as free, so no
SMEC step as the method is read can be cheaper.

The last stdout line is one JSON object: mrl_over_single (mrl / single, goal <= 1.15),
recorder_overhead (mrl+rec / mrl, goal <= 1.05), samples_per_s (training pairs per second of
mrl+rec), ddp_over_single (two processes / one: time, so above 1 is slower; on 2 cores no
speedup is expected), steps_per_epoch, data, ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from harness import alternate, emit, machine, medians, stage_args, timed
from torch import nn

from smec.data import inputs
from smec.infra import distributed
from smec.measure import gradstats
from smec.model import heads, methods
from smec.model.losses import LOSSES
from smec.model.methods.base import NestedObjective
from smec.model.nesting import NestedLoss
from smec.params import Train
from smec.training import loop, optim, synthetic
from smec.training.data import TrainData, member_batches, train_data

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("single", "mrl", "mrl+rec", "smrl_step1", "smec_step1")
STACK = 5  # members of the stacked-against-sequential measurement
STEP_CONFIGS = {"smrl_step1": "smrl", "smec_step1": "smec"}
DIMS = {"method_dims": [192, 96, 48]}  # the chain SMRL's and SMEC's first steps belong to


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="project root (default: %(default)s)")
    ap.add_argument(
        "--synthetic", action="store_true", help="use synthetic data even if real exists"
    )
    ap.add_argument("--loss", choices=sorted(LOSSES), default="rank", help="default: %(default)s")
    ap.add_argument(
        "--batch-size", type=int, default=Train().batch_size, help="default: %(default)s"
    )
    ap.add_argument(
        "--epochs", type=int, default=10, help="epochs per timed run (default: %(default)s)"
    )
    ap.add_argument(
        "--repeats", type=int, default=21, help="timed runs of each config (default: %(default)s)"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 3 repeats")
    ap.add_argument(
        "--profile",
        choices=CONFIGS,
        help="instead: torch.profiler's table of one run of this config, by self CPU time",
    )
    ap.add_argument("--ddp-repeats", type=int, default=5, help="default: %(default)s")
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.repeats = 2, 3
    if min(args.epochs, args.repeats) < 1 or args.batch_size < 2:
        ap.error("--epochs and --repeats must be >= 1, --batch-size >= 2")
    return args


def load(args: argparse.Namespace) -> tuple[TrainData, str]:
    """The train stage's own inputs when the pipeline has made them, else synthetic data."""
    a = stage_args(args.root, "train@mrl")
    if not args.synthetic and all(a[k].exists() for k in ("qrels", "corpus_emb")):
        stage_in = inputs.read(argparse.Namespace(**a))
        return train_data(stage_in, torch.device("cpu")), f"scifact ({a['corpus_emb']})"
    return synthetic.latent_factor_data(), "synthetic latent_factor_data()"


def run_step(name: str, cfg: Train, data: TrainData, epochs, seeds: list[int]) -> nn.Module:
    """The first step of method `name` exactly as the pipeline trains it (recorder included),
    for the members `seeds` stacked; the trained module."""
    members = tuple(loop.Member(s, cfg.lr) for s in seeds)
    job = loop.Job(methods.get(name), cfg.model_copy(update=DIMS), members=members)
    spec = job.method.plan(job.cfg, data.q.shape[1])[0]
    module = job.method.build(spec, job.cfg, job.opts, job.seeds)
    trainer = loop.StepTrainer.build(job, spec, module, [], data)
    for e, batch_idx in enumerate(epochs):
        gens = [torch.Generator().manual_seed(e * 1000 + s) for s in seeds]
        trainer.epoch(batch_idx, (e, len(epochs)), gens)
        trainer.recorder.end_epoch(e)
    return module


def run_once(config: str, cfg: Train, data: TrainData, epochs, seeds: tuple[int, ...] = (0,)):
    """Train a fresh head (a stack of `seeds`) for len(epochs) epochs (optimiser and recorder
    included); `epochs` holds each epoch's (S, B) batches for those members."""
    if config in STEP_CONFIGS:
        return run_step(STEP_CONFIGS[config], cfg, data, epochs, list(seeds))
    dims = cfg.method_dims
    member_seeds = [s * 100 + 1 for s in seeds]
    head = heads.make_head(data.q.shape[1], dims[0], cfg.bias, cfg.init, member_seeds)
    total = sum(len(b) for b in epochs)
    opt, sched = optim.optimizer(head, cfg, [cfg.lr] * len(seeds), {}, total)
    opt.watched = head.weight
    levels, weights = ([dims[0]], [1.0]) if config == "single" else (dims, cfg.level_weights)
    objective = NestedObjective(NestedLoss(LOSSES[cfg.loss], levels, weights))
    recorder = gradstats.Recorder() if config.startswith("mrl+rec") else None
    sharded = distributed.RowSharded(head) if distributed.world() > 1 else None
    trainer = loop.StepTrainer(
        module=head,
        objective=objective,
        xq=data.q,
        xc=data.c,
        data=data,
        opt=opt,
        sched=sched,
        recorder=recorder,
        seeds=list(seeds),
        sharded=sharded,
    )
    gens = [torch.Generator() for _ in seeds]
    for e, batch_idx in enumerate(epochs):
        trainer.epoch(batch_idx, (e, len(epochs)), gens)
        if recorder is not None:
            recorder.end_epoch(e)


def epochs_of(data: TrainData, cfg: Train, seeds, n: int) -> list[list[torch.Tensor]]:
    """Each epoch's (S, B) batches of the members `seeds`, as the train stage draws them."""
    return [member_batches(len(data.pairs), cfg.batch_size, list(seeds), 1, e) for e in range(n)]


def setup(args: argparse.Namespace):
    cfg = Train(loss=args.loss, batch_size=args.batch_size)
    data, source = load(args)
    loop.seed_everything(cfg.seed, torch.device("cpu"))
    return cfg, data, source, epochs_of(data, cfg, (0,), args.epochs)


def step_pairs(data: TrainData, epochs) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Each step's query and document rows of the members, (S, B) each."""
    for batch_idx in epochs:
        for idx in batch_idx:
            yield data.pairs[idx, 0], data.pairs[idx, 1]


def step_rows(data: TrainData, epochs) -> Iterator[torch.Tensor]:
    """Each step's rows as the stacked head reads them: (S, 2B, in), queries then documents."""
    for qi, di in step_pairs(data, epochs):
        yield torch.cat([data.q[qi], data.c[di]], dim=1)


def floor_once(cfg: Train, data: TrainData, epochs, n_members: int) -> None:
    """Only the work that grows with the members: each step's rows, the head's product and its
    gradient, and the optimiser's step (no loss, no recorder)."""
    head = heads.make_head(data.q.shape[1], cfg.method_dims[0], cfg.bias, cfg.init, [1] * n_members)
    total = sum(len(b) for b in epochs)
    opt, _ = optim.optimizer(head, cfg, [cfg.lr] * n_members, {}, total)
    for x in step_rows(data, epochs):
        head(x).square().sum().backward()
        opt.step()
        opt.zero_grad()


def products_once(cfg: Train, data: TrainData, epochs, n_members: int) -> None:
    """Only the head's two products per step and the rows they read, as the stacked head
    computes them: W xᵀ for the step's 2B rows, and a product of W's gradient's shape and work
    ((∂L/∂y)ᵀ x), for `n_members` members."""
    w = torch.randn(n_members, cfg.method_dims[0], data.q.shape[1])
    for x in step_rows(data, epochs):
        y = torch.bmm(w, x.transpose(1, 2))  # (S, out, 2B)
        torch.bmm(y, x)  # the weight gradient's shape and work: (S, out, in)


def neighbour_widths(cfg: Train, data: TrainData, epochs) -> list[int]:
    """Each step's number of distinct S-XBM neighbour rows SMEC's first step passes through its
    map (0 while the term does not count yet), found by the step's own term and memory over
    `epochs` (one member), with a stand-in `embed` that only counts them."""
    job = loop.Job(
        methods.get("smec"), cfg.model_copy(update=DIMS), members=(loop.Member(0, cfg.lr),)
    )
    spec = job.method.plan(job.cfg, data.q.shape[1])[0]
    module = job.method.build(spec, job.cfg, job.opts, job.seeds)
    term = loop.StepTrainer.build(job, spec, module, [], data).objective.term
    widths: list[int] = []

    def count(x: torch.Tensor) -> torch.Tensor:
        widths[-1] = x.shape[1]
        return x.new_zeros(*x.shape[:2], spec.out_dim)

    for qi, di in step_pairs(data, epochs):
        widths.append(0)
        term(torch.zeros(1, 2 * qi.shape[1], spec.out_dim), count, qi, di)
    return widths


def smec_products_once(cfg: Train, data: TrainData, epochs, widths: list[int]) -> None:
    """Only the products SMEC's first step cannot do without, one member: its square map on
    the step's 2B rows and a product of the map's gradient's shape and work, and the map's kept
    rows (method_dims[0] of them) on the step's `widths` distinct neighbour rows."""
    n, k = data.q.shape[1], cfg.method_dims[0]
    square, kept = torch.randn(1, n, n), torch.randn(1, k, n)
    neighbours = torch.randn(1, max(widths), n)
    for x, width in zip(step_rows(data, epochs), widths, strict=True):
        y = torch.bmm(square, x.transpose(1, 2))  # (1, n, 2B)
        torch.bmm(y, x)  # the map's gradient: (1, n, n)
        if width:
            torch.bmm(neighbours[:, :width], kept.transpose(1, 2))  # (1, width, k)


def stacked_runs(cfg: Train, data: TrainData, args: argparse.Namespace, widths: list[int]) -> dict:
    """mrl+rec for STACK seeds: one stacked model, and one model per seed in turn; the floor
    (:func:`floor_once`) and the products (:func:`products_once`) for one member and for STACK;
    and SMEC's first step's products for one member, `widths` its neighbour rows per step."""
    seeds = tuple(range(STACK))
    stacked = epochs_of(data, cfg, seeds, args.epochs)
    alone = {s: epochs_of(data, cfg, (s,), args.epochs) for s in seeds}

    def sequential():
        for s in seeds:
            run_once("mrl+rec", cfg, data, alone[s], (s,))

    return {
        "stacked": lambda: run_once("mrl+rec", cfg, data, stacked, seeds),
        "sequential": sequential,
        "floor_1": lambda: floor_once(cfg, data, alone[0], 1),
        f"floor_{STACK}": lambda: floor_once(cfg, data, stacked, STACK),
        "products_1": lambda: products_once(cfg, data, alone[0], 1),
        f"products_{STACK}": lambda: products_once(cfg, data, stacked, STACK),
        "smec_products": lambda: smec_products_once(cfg, data, alone[0], widths),
    }


def ddp_worker(args: argparse.Namespace) -> None:
    """One of torchrun's processes: mrl+rec, warmed up, then `--ddp-repeats` timed runs."""
    distributed.init(torch.device("cpu"))
    cfg, data, _, epochs = setup(args)
    run_once("mrl+rec", cfg, data, epochs[:2])
    seconds = [
        timed(lambda: run_once("mrl+rec", cfg, data, epochs))[0] for _ in range(args.ddp_repeats)
    ]
    if distributed.is_main():
        print(json.dumps({"median": statistics.median(seconds)}))


def ddp_median(args: argparse.Namespace) -> float:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        __file__,
        "--ddp-worker",
        *sys.argv[1:],
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["median"]


def profile(config: str, cfg: Train, data: TrainData, epochs) -> None:
    """Print torch.profiler's operators of one (warmed-up) run of `config`, per step."""
    run_once(config, cfg, data, epochs[:2])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run_once(config, cfg, data, epochs)
    steps = sum(len(b) for b in epochs)
    print(f"{config}: {steps} steps; divide the totals by {steps} for a step's")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    args = parse_args()
    if args.ddp_worker:
        ddp_worker(args)
        return
    cfg, data, source, epochs = setup(args)
    if args.profile:
        profile(args.profile, cfg, data, epochs)
        return
    steps = len(epochs[0])
    pairs_per_run = sum(b.shape[-1] for batch_idx in epochs for b in batch_idx)
    print(f"data: {source}; {len(data.pairs)} training pairs, {len(data.c)} docs")
    print(
        f"loss {cfg.loss}, batch {cfg.batch_size}, {steps} steps/epoch, {args.epochs} "
        f"epochs/run, {args.repeats} repeats, dims {cfg.method_dims}, optimizer "
        f"{cfg.optimizer}, {machine()}"
    )

    for config in CONFIGS:  # warm-up
        run_once(config, cfg, data, epochs[:2])
    runs = {c: (lambda c=c: run_once(c, cfg, data, epochs)) for c in CONFIGS}
    seconds, _ = alternate(runs, args.repeats, verbose=False)
    med = medians(seconds)
    widths = neighbour_widths(cfg, data, epochs)
    stack = stacked_runs(cfg, data, args, widths)
    for fn in stack.values():  # warm-up
        fn()
    stack_med = medians(alternate(stack, max(3, args.repeats // 4), verbose=False)[0])
    stacked_over_sequential = stack_med["sequential"] / stack_med["stacked"]
    # the best stacking could do if all but the floor's work were per-step overhead
    one = stack_med["sequential"] / STACK
    grown = stack_med[f"floor_{STACK}"] - stack_med["floor_1"]
    stacked_ceiling = stack_med["sequential"] / (one + grown)
    products_grown = stack_med[f"products_{STACK}"] - stack_med["products_1"]
    products_bound = stack_med["sequential"] / (one + products_grown)
    n_rows = 2 * cfg.batch_size
    flops = 4 * STACK * cfg.method_dims[0] * data.q.shape[1] * n_rows * steps * args.epochs
    product_gflops = flops / stack_med[f"products_{STACK}"] / 1e9
    n_steps = steps * args.epochs
    # SMEC's first step against SMRL's if it cost SMRL's step plus only its extra products
    smrl_rest = med["smrl_step1"] - stack_med["products_1"]
    smec_products_bound = (smrl_rest + stack_med["smec_products"]) / med["smrl_step1"]
    for c in CONFIGS:
        print(
            f"{c:8s} median {med[c]:.4f}s/run, {1e3 * med[c] / n_steps:.3f} ms/step "
            f"(min {min(seconds[c]):.4f}, max {max(seconds[c]):.4f})"
        )
    mrl_over_single = med["mrl"] / med["single"]
    smec_over_smrl = med["smec_step1"] / med["smrl_step1"]
    overhead = med["mrl+rec"] / med["mrl"]
    samples = pairs_per_run / med["mrl+rec"]
    ddp = ddp_median(args)
    print(f"ddp_over_single {ddp / med['mrl+rec']:.3f} (2 gloo processes {ddp:.4f}s/run)")
    print(
        f"mrl_over_single {mrl_over_single:.3f} (goal <= 1.15): "
        f"{'ok' if mrl_over_single <= 1.15 else 'OVER'}"
    )
    print(
        f"recorder_overhead {overhead:.3f} (goal <= 1.05): {'ok' if overhead <= 1.05 else 'OVER'}"
    )
    print(f"samples_per_s {samples:.0f} (mrl with recorder)")
    print(
        f"stacked_over_sequential {stacked_over_sequential:.3f} ({STACK} members, goal >= 3): "
        f"{'ok' if stacked_over_sequential >= 3 else 'UNDER'} (stacked {stack_med['stacked']:.3f}"
        f"s, sequential {stack_med['sequential']:.3f}s)"
    )
    print(
        f"stacked_ceiling {stacked_ceiling:.3f}: one member's run plus the growth of the floor "
        f"(rows, product, gradient, optimiser: {stack_med['floor_1']:.3f}s for 1 member, "
        f"{stack_med[f'floor_{STACK}']:.3f}s for {STACK})"
    )
    print(
        f"products_bound {products_bound:.3f}: one member's run plus the growth of the head's "
        f"two products alone ({stack_med['products_1']:.3f}s for 1 member, "
        f"{stack_med[f'products_{STACK}']:.3f}s for {STACK}: {product_gflops:.0f} GFLOP/s)"
    )
    print(
        f"smec_over_smrl {smec_over_smrl:.3f} (goal <= 1.5): "
        f"{'ok' if smec_over_smrl <= 1.5 else 'OVER'}"
    )
    print(
        f"smec_products_bound {smec_products_bound:.3f}: SMRL's first step with its head's "
        f"products ({stack_med['products_1']:.3f}s) replaced by SMEC's (the square map and the "
        f"neighbour rows through its kept rows, {stack_med['smec_products']:.3f}s)"
    )
    emit(
        {
            "mrl_over_single": round(mrl_over_single, 4),
            "smec_over_smrl": round(smec_over_smrl, 4),
            "smec_products_bound": round(smec_products_bound, 4),
            "smec_neighbour_rows": round(statistics.mean(w for w in widths if w), 1),
            "recorder_overhead": round(overhead, 4),
            "samples_per_s": round(samples, 1),
            "stacked_over_sequential": round(stacked_over_sequential, 4),
            "stack_members": STACK,
            "stacked_ceiling": round(stacked_ceiling, 4),
            "products_bound": round(products_bound, 4),
            "product_gflops": round(product_gflops, 1),
            "ddp_over_single": round(ddp / med["mrl+rec"], 4),
            "ms_per_step": {c: round(1e3 * med[c] / n_steps, 4) for c in CONFIGS},
            "steps_per_epoch": steps,
            "epochs_per_run": args.epochs,
            "repeats": args.repeats,
            "n_pairs": len(data.pairs),
            "loss": cfg.loss,
            "batch_size": cfg.batch_size,
            "data": "synthetic" if source.startswith("synthetic") else "scifact",
        }
    )


if __name__ == "__main__":
    main()
