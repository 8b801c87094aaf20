"""SMEC's first step under `src`'s row lookups, against the expanded-index gathers they replaced.

`bench/train_step.py` found SMEC's step at ~3x SMRL's, and its products bound at ~1.4x: the
rest is per-operation work. This bench finds where it goes and times exact rewrites of the
lookups: the first steps of SMRL, SMEC's two parts (SMRL + ADS, SMRL + S-XBM:
`parts_over_smrl`) and SMEC, each under each variant, all in one rotation:

- gather:    the lookups as `src` had them before issue 21's rewrite (1dc78a2): `heads.rows_of`
             on per-member tables (the batch's inputs, the S-XBM neighbours' inputs, and each
             neighbour among the distinct rows the map computed) as a `torch.gather` with an
             index per element
- current:   `src` as it is: those lookups as row indexing, the same values copied by rows
- select:    current, with `heads.rows_of` as `index_select` on the table seen as one (S·N, D)
             matrix (a shared table viewed per member read as the one table), which an
             ad-hoc timing of the neighbours' lookup alone found several times faster than
             row indexing (a candidate; exact)

Every run trains the same fresh module on the same batches and generators; `max_abs_diff` is
the largest difference of a variant's trained weights and logits from gather's for the same
method (0.0: the same bits), `replaced` how many lookups of its last SMEC run the variant's
patch served (a patch that never ran would show as the same bits). Then, untimed,
`fits_equal`: every learned method fitted in full (every step, three members stacked, two
epochs) under each variant, whether its modules and gradient records are the same bits under
all of them. The last stdout line is one JSON object: `smec_over_smrl` per variant (SMEC over
SMRL under the same variant, goal <= 1.5), `smec_current_over_gather`, `select_over_current`
per method, `parts_over_smrl`, `max_abs_diff`, `replaced`, `fits_equal`, ms_per_step.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from harness import alternate, emit, machine, medians
from train_step import ROOT, epochs_of, load, run_step

from smec.model import heads, methods
from smec.params import Train
from smec.training import loop
from smec.training.checkpoint import Checkpoint

VARIANTS = ("gather", "current", "select")
METHODS = ("smrl", "smrl_ads", "smrl_sxbm", "smec")  # SMEC's parts' first steps, and SMEC's
SRC_ROWS_OF = heads.rows_of  # `src`'s, kept before any variant replaces it


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=ROOT, help="project root (default: %(default)s)")
    ap.add_argument("--synthetic", action="store_true", help="synthetic data even if real exists")
    ap.add_argument("--epochs", type=int, default=10, help="epochs per run (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=21, help="runs of each (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 3 repeats")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.repeats = 2, 3
    return args


def selected_rows(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """`heads.rows_of` by `index_select` on the table as one matrix of rows (the candidate)."""
    if x.dim() == 3 and x.stride(0) == 0:  # a shared table viewed per member
        x = x[0]
    if x.dim() == 2:
        flat, at = x, ids
    elif x.is_contiguous():
        flat = x.flatten(0, 1)
        at = ids + torch.arange(len(ids), device=ids.device)[:, None] * x.shape[1]
    else:  # flattening would copy the whole table: `src`'s row indexing
        return SRC_ROWS_OF(x, ids)
    return flat.index_select(0, at.flatten()).view(*ids.shape, x.shape[-1])


def gather_rows(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """`heads.rows_of` as it was before the rewrite: a gather with an index per element."""
    if x.dim() == 2:
        return x[ids]
    return torch.gather(x, 1, ids[..., None].expand(-1, -1, x.shape[-1]))


@contextlib.contextmanager
def variant(name: str) -> Iterator[list[int]]:
    """`src`'s row lookups replaced by variant `name` for the duration; yields a list that
    counts the lookups the replacement served."""
    calls = [0]
    replacement = {"gather": gather_rows, "select": selected_rows}.get(name)

    def rows_of(x, ids):
        calls[0] += 1
        return replacement(x, ids)

    if replacement is not None:
        heads.rows_of = rows_of
    try:
        yield calls
    finally:
        heads.rows_of = SRC_ROWS_OF


def run(method: str, name: str, cfg: Train, data, epochs) -> tuple[torch.Tensor, int]:
    """The trained parameters of `method` under variant `name`, and the replaced calls."""
    with variant(name) as calls:
        module = run_step(method, cfg, data, epochs, [0])
    return torch.cat([p.detach().flatten() for p in module.parameters()]), calls[0]


def fits_equal(cfg: Train, data) -> dict[str, bool]:
    """Every learned method fitted in full (every step, three members stacked, two epochs)
    under each variant: whether its modules and gradient records are the same bits under all
    of them."""
    job_cfg = cfg.model_copy(update={"epochs": 2})
    members = tuple(loop.Member(s, cfg.lr) for s in (0, 1, 2))
    equal = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in methods.LEARNED:
            results = []
            for v in VARIANTS:
                job = loop.Job(methods.get(name), job_cfg, members=members)
                with variant(v):
                    results.append(loop.fit(job, data, Checkpoint(Path(tmp) / f"{name}-{v}", v)))
            equal[name] = all(same_fit(results[0], r) for r in results[1:])
    return equal


def same_fit(a: loop.Result, b: loop.Result) -> bool:
    """Whether two fits' modules and gradient records are the same bits."""
    tensors = [
        (x, y)
        for ma, mb in zip(a.modules, b.modules, strict=True)
        for x, y in zip(ma.state_dict().values(), mb.state_dict().values(), strict=True)
    ]
    return all(torch.equal(x, y) for x, y in tensors) and all(
        ra.equals(rb) for ra, rb in zip(a.records, b.records, strict=True)
    )


def main() -> None:
    args = parse_args()
    cfg = Train()
    data, source = load(args)
    loop.seed_everything(cfg.seed, torch.device("cpu"))
    epochs = epochs_of(data, cfg, (0,), args.epochs)
    n_steps = sum(len(b) for b in epochs)
    print(f"data: {source}; {n_steps} steps per run, {args.repeats} repeats, {machine()}")
    configs = [(m, v) for v in VARIANTS for m in METHODS]
    for m, v in configs:  # warm-up
        run(m, v, cfg, data, epochs[:2])
    runs = {f"{m}/{v}": (lambda m=m, v=v: run(m, v, cfg, data, epochs)) for m, v in configs}
    seconds, last = alternate(runs, args.repeats, verbose=False)
    ms = {c: 1e3 * t / n_steps for c, t in medians(seconds).items()}
    over = {c: ms[c] / ms[f"smrl/{c.split('/')[1]}"] for c in ms}
    diff = {c: float((last[c][0] - last[f"{c.split('/')[0]}/gather"][0]).abs().max()) for c in ms}
    equal = fits_equal(cfg, data)
    print(f"full fits, 3 members, under every variant: the same bits {equal}")
    for c in runs:
        print(f"{c:19s} {ms[c]:.3f} ms/step, over smrl {over[c]:.3f}, max |diff| {diff[c]:.3g}")
    emit(
        {
            "smec_over_smrl": {v: round(over[f"smec/{v}"], 4) for v in VARIANTS},
            "smec_current_over_gather": round(ms["smec/current"] / ms["smec/gather"], 4),
            "select_over_current": {
                m: round(ms[f"{m}/select"] / ms[f"{m}/current"], 4) for m in METHODS
            },
            "parts_over_smrl": {m: round(over[f"{m}/current"], 4) for m in METHODS[1:3]},
            "max_abs_diff": diff,
            "replaced": {v: last[f"smec/{v}"][1] for v in VARIANTS},
            "fits_equal": equal,
            "ms_per_step": {c: round(ms[c], 4) for c in ms},
            "steps_per_run": n_steps,
            "repeats": args.repeats,
            "data": "synthetic" if source.startswith("synthetic") else "scifact",
        }
    )


if __name__ == "__main__":
    main()
