"""The comparison stage's statistics: random draws shared by every difference against drawn anew.

`comparison.table` (each method's paired sign-flip test against MRL) and `comparison.pairs`
(every difference the results state: its sign-flip test and its two-level bootstrap), as the
`comparison` stage calls them, on the learned methods' per-query scores:
`runs/compare/*/scores.parquet` under `--root` when the `compare@` stages have run (without the
learning-free baselines, which the stage scores itself, so with fewer differences than the
stage's), else seeded synthetic scores of SciFact's shape (the seven learned methods × 5 seeds
and four baselines, two starts, widths 192/96/48, 300 queries). The draws (the bootstrap's
counts, `significance._draws`; the sign flips, `comparison._signs`) depend only on the shapes
and the seed:

- shared: what the stage does, each shape's draws made once per run (the caches emptied first);
- fresh: the baseline, the same functions unwrapped, so every difference draws its own anew
  (what the stage did before).

Both must give identical tables (`identical`). Alternating timed repeats.

The last stdout line is one JSON object: shared_over_fresh (fresh's seconds / shared's: above 1
is faster), seconds_shared, seconds_fresh, identical, differences, source, ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from harness import alternate, emit, machine, medians

from smec.measure import comparison, significance
from smec.model.methods import BASELINES, LEARNED

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="project root (default: %(default)s)")
    ap.add_argument(
        "--synthetic", action="store_true", help="use synthetic scores even if real ones exist"
    )
    ap.add_argument("--repeats", type=int, default=3, help="default: %(default)s")
    ap.add_argument("--quick", action="store_true", help="smoke run: one start, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 1
    return args


def synthetic_scores() -> pd.DataFrame:
    """Per-query scores of SciFact's comparison shape, seeded."""
    rng = np.random.default_rng(0)
    queries = [f"q{i}" for i in range(300)]
    frames = []
    for init in ("identity", "random"):
        for method in (*BASELINES, *LEARNED):
            for seed in range(5 if method in LEARNED else 1):
                for dim in (192, 96, 48):
                    values = rng.random((len(queries), 3))
                    frame = pd.DataFrame(values, columns=list(comparison.MEASURES))
                    labels = {"method": method, "init": init, "seed": seed, "dim": dim}
                    frames.append(frame.assign(query_id=queries, **labels))
    return pd.concat(frames, ignore_index=True)


def load_scores(args: argparse.Namespace) -> tuple[pd.DataFrame, str]:
    files = sorted((args.root / "runs" / "compare").glob("*/scores.parquet"))
    if files and not args.synthetic:
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True), "compare@"
    return synthetic_scores(), "synthetic"


def statistics(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the comparison stage computes: the table, then every stated difference."""
    t = comparison.table(scores)
    return t, comparison.pairs(scores, t)


def shared(scores: pd.DataFrame):
    significance._draws.cache_clear()
    comparison._signs.cache_clear()
    return statistics(scores)


def fresh(scores: pd.DataFrame):
    """The statistics with every difference drawing its own counts and signs."""
    cached = significance._draws, comparison._signs
    significance._draws, comparison._signs = (f.__wrapped__ for f in cached)
    try:
        return statistics(scores)
    finally:
        significance._draws, comparison._signs = cached


def main() -> None:
    args = parse_args()
    scores, source = load_scores(args)
    if args.quick:
        scores = scores[scores["init"] == scores["init"].iloc[0]]
    print(f"{source} scores, {len(scores):,} rows, {args.repeats} repeats, {machine()}")
    runs = {"shared": lambda: shared(scores), "fresh": lambda: fresh(scores)}
    seconds, last = alternate(runs, args.repeats)
    med = medians(seconds)
    identical = all(a.equals(b) for a, b in zip(last["shared"], last["fresh"], strict=True))
    ratio = med["fresh"] / med["shared"]
    print(f"shared {med['shared']:.1f} s, fresh {med['fresh']:.1f} s: {ratio:.1f}x")
    print(f"identical tables: {identical}")
    emit(
        {
            "shared_over_fresh": round(ratio, 2),
            "seconds_shared": round(med["shared"], 2),
            "seconds_fresh": round(med["fresh"], 2),
            "identical": identical,
            "differences": len(last["shared"][1]),
            "source": source,
            "repeats": args.repeats,
        }
    )


if __name__ == "__main__":
    main()
