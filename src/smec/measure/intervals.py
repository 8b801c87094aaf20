"""Means with 95% intervals over seeds, and the claims decided on them.

The interval of a quantity over n seeds is Student's t interval of the mean,
mean ± t_{0.975, n-1} · s / √n (s the sample standard deviation): seeds are few (five by
default), so the normal approximation would be too narrow. A ratio (MRL's low/high gradient,
MRL/SMRL variance, a fall from the first to the last epoch) is computed per seed first and the
interval taken over those per-seed ratios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import stdtrit  # Student's t quantile; scipy.stats costs 0.5 s to import


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def above(self, x: float) -> bool:
        """The whole interval lies above `x`."""
        return self.low > x

    def inside(self, lo: float, hi: float) -> bool:
        return lo <= self.low and self.high <= hi


def t_interval(values, level: float = 0.95) -> Interval:
    """Mean and two-sided `level` interval of the mean of `values` (NaNs dropped)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = stdtrit(n - 1, 0.5 + level / 2) * x.std(ddof=1) / math.sqrt(n)
    return Interval(mean, float(mean - half), float(mean + half), n)


def as_dict(ci: Interval) -> dict:
    return {"mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high, "n_seeds": ci.n}


# Per-method quantities of a sweep's statistics (reports/gradstats.csv's columns).
QUANTITIES = (
    "avg_grad_low",
    "avg_grad_high",
    "grad_var",
    "low_over_high",
    "grad_var_elements",
    "grad_var_rows",
    "grad_var_noise",
    "avg_update_low",
    "avg_update_high",
    "update_low_over_high",
)
VARIANCE_COLUMNS = ("grad_var", "grad_var_elements", "grad_var_rows", "grad_var_noise")
FALLING = ("avg_grad_low", "avg_grad_high", "grad_var")  # the seed figure's six series


def summarise(df: pd.DataFrame, by: list[str], quantities) -> pd.DataFrame:
    """The long table of means and intervals over the rows of each group of `df` (its seeds):
    columns `by`, `quantity`, `mean`, `ci_low`, `ci_high`, `n_seeds`."""
    rows = [
        {**dict(zip(by, key, strict=True)), "quantity": q, **as_dict(t_interval(g[q]))}
        for key, g in df.groupby(by)
        for q in quantities
    ]
    return pd.DataFrame(rows, columns=[*by, "quantity", "mean", "ci_low", "ci_high", "n_seeds"])


def mrl_over_smrl(stats: pd.DataFrame, columns=VARIANCE_COLUMNS) -> pd.DataFrame:
    """MRL's value over SMRL's, per arm, seed and epoch (the same seed: the same batches)."""
    w = stats.pivot_table(
        index=["arm", "loss", "seed", "epoch"], columns="method", values=list(columns)
    )
    out = pd.DataFrame({c: w[(c, "mrl")] / w[(c, "smrl")] for c in columns})
    return out.reset_index()


def falls(stats: pd.DataFrame, first: int, last: int, columns=FALLING) -> pd.DataFrame:
    """Each series' value at `first` over its value at `last`, per arm, method and seed."""
    idx = ["arm", "loss", "method", "seed"]
    a = stats[stats.epoch == first].set_index(idx)[list(columns)]
    b = stats[stats.epoch == last].set_index(idx)[list(columns)]
    return (a / b).reset_index()


def seed_table(stats: pd.DataFrame, epochs: list[int]) -> pd.DataFrame:
    """The long table of means and intervals over seeds: every quantity per arm, method and
    plotted epoch; MRL/SMRL ratios (method `mrl/smrl`); falls from the first to the last
    plotted epoch (`fall_<quantity>` at the last epoch)."""
    s = stats[stats.epoch.isin(epochs)]
    by = ["arm", "loss", "method", "epoch"]
    per_method = summarise(s, by, [q for q in QUANTITIES if q in s])
    ratios = summarise(mrl_over_smrl(s).assign(method="mrl/smrl"), by, VARIANCE_COLUMNS)
    fell = falls(s, epochs[0], epochs[-1]).assign(epoch=epochs[-1])
    fell = fell.rename(columns={q: f"fall_{q}" for q in FALLING})
    falling = summarise(fell, by, [f"fall_{q}" for q in FALLING])
    return pd.concat([per_method, ratios, falling], ignore_index=True)


def score_table(scores: pd.DataFrame, measures=("ndcg_at_10", "recall_at_100", "mrr_at_10")):
    """Test scores' means and intervals over seeds per arm, method and width, and the paired
    (same seed) difference MRL − SMRL (method `mrl-smrl`)."""
    rows = [
        {"arm": arm, "method": method, "dim": dim, "measure": m, **as_dict(t_interval(g[m]))}
        for (arm, method, dim), g in scores.groupby(["arm", "method", "dim"])
        for m in measures
    ]
    w = scores.pivot_table(index=["arm", "dim", "seed"], columns="method", values=list(measures))
    for m in measures:
        diff = (w[(m, "mrl")] - w[(m, "smrl")]).reset_index(name="d")
        rows += [
            {"arm": arm, "method": "mrl-smrl", "dim": dim, "measure": m, **as_dict(t_interval(g.d))}
            for (arm, dim), g in diff.groupby(["arm", "dim"])
        ]
    return pd.DataFrame(rows)
