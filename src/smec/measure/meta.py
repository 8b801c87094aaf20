"""The verdict across cells: a random-effects meta-analysis of one contrast over the grid.

Each cell (a data set x an encoder) gives an estimate y_i of a contrast (SMEC − Matryoshka-
Adaptor at width D/2, say) with its standard error s_i, from its own comparison. Cells differ
in more than sampling noise (another corpus, another encoder), so the pooled estimate is a
random-effects mean [choice, docs/method.md]: y_i ~ N(mu, s_i^2 + tau^2), tau^2 the between-cell
variance by DerSimonian and Laird's moment estimator, mu the inverse-variance weighted mean with
weights 1 / (s_i^2 + tau^2). Its interval is Hartung and Knapp's (Sidik and Jonkman's): a t
interval on k − 1 degrees of freedom around a weighted residual variance, which keeps its
coverage with the few cells a grid has, where the normal interval of DerSimonian and Laird is
too narrow (IntHout et al. 2014, BMC Med Res Methodol 14:25); that variance is floored at the
plain 1 / sum(w) (the modified form of Röver et al. 2015, BMC Med Res Methodol 15:99), since
with cells that happen to agree it can shrink below what any one cell's error allows.
Heterogeneity is reported as Cochran's Q with its p-value and I^2 = max(0, (Q − (k − 1)) / Q).

    >>> p = random_effects([0.10, 0.12, 0.08], [0.02, 0.02, 0.03])
    >>> round(p.estimate, 3), p.k
    (0.104, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Pooled:
    """A random-effects pooled estimate over k cells, its 95% interval and heterogeneity."""

    estimate: float
    low: float
    high: float
    tau2: float  # between-cell variance
    i2: float  # share of the spread that is between cells, in [0, 1]
    q: float  # Cochran's Q
    p_heterogeneity: float  # of Q against chi2(k − 1)
    k: int


def random_effects(estimates: list[float], ses: list[float], level: float = 0.95) -> Pooled:
    """DerSimonian-Laird tau^2, Hartung-Knapp interval (one cell: its own normal interval)."""
    y, s2 = np.asarray(estimates, float), np.asarray(ses, float) ** 2
    if len(y) == 0 or len(y) != len(s2) or np.any(s2 <= 0) or not np.all(np.isfinite(y)):
        raise ValueError(f"random_effects: needs k >= 1 estimates with positive SEs, got {ses}")
    k = len(y)
    w = 1 / s2
    fixed = np.sum(w * y) / np.sum(w)
    q = float(np.sum(w * (y - fixed) ** 2))
    c = np.sum(w) - np.sum(w**2) / np.sum(w)
    tau2 = max(0.0, (q - (k - 1)) / c) if k > 1 else 0.0
    w_re = 1 / (s2 + tau2)
    mu = float(np.sum(w_re * y) / np.sum(w_re))
    if k == 1:
        half = stats.norm.ppf(0.5 + level / 2) * float(np.sqrt(s2[0]))
    else:
        var_hk = float(np.sum(w_re * (y - mu) ** 2) / ((k - 1) * np.sum(w_re)))
        var = max(var_hk, float(1 / np.sum(w_re)))  # never narrower than the plain interval
        half = stats.t.ppf(0.5 + level / 2, k - 1) * np.sqrt(var)
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    p_het = float(stats.chi2.sf(q, k - 1)) if k > 1 else 1.0
    return Pooled(mu, float(mu - half), float(mu + half), tau2, i2, q, p_het, k)


def standard_error(low: float, high: float, df: float, level: float = 0.95) -> float:
    """The standard error behind a t interval [low, high] on `df` degrees of freedom."""
    return (high - low) / (2 * stats.t.ppf(0.5 + level / 2, df))


# The contrasts the summary states, per cell and width: (name, a, b); b None: a's best learned
# method (of the cells' shared methods) against the best learning-free baseline.
CONTRASTS = (
    ("SMEC − Matryoshka-Adaptor", "smec", "mrl_adaptor"),
    ("SMEC − MRL", "smec", "mrl"),
    ("best learned − best learning-free", None, None),
)


def cell_contrasts(pairs: pd.DataFrame, arm: str, learned: list[str]) -> pd.DataFrame:
    """A cell's contrasts at every width, from its comparison_pairs.csv rows pooled over study
    replicates for `arm`: contrast, dim, share (the width as a fraction of the widest), a, b,
    delta, low, high, se."""
    rows = pairs[(pairs["init"] == arm) & (pairs["replicates"] == pairs["replicates"].max())]
    widest = rows["dim"].max()
    out = []
    for name, a, b in CONTRASTS:
        if a is not None:
            pick = rows[(rows["kind"] == "smec vs") & (rows["a"] == a) & (rows["b"] == b)]
        else:
            base = rows[(rows["kind"] == "vs best baseline") & rows["a"].isin(learned)]
            pick = base.loc[base.groupby("dim")["ndcg_a"].idxmax()]
        for r in pick.sort_values("dim", ascending=False).itertuples():
            se = standard_error(r.low, r.high, r.df)
            share = f"D/{round(2 * widest / r.dim)}"  # the widest is D/2
            out.append((name, r.dim, share, r.a, r.b, r.delta, r.low, r.high, se))
    cols = ["contrast", "dim", "width", "a", "b", "delta", "low", "high", "se"]
    return pd.DataFrame(out, columns=cols)


def pool(cells: pd.DataFrame) -> pd.DataFrame:
    """Per contrast and width (a fraction of D), the random-effects estimate over the cells."""
    out = []
    for (name, width), g in cells.groupby(["contrast", "width"], sort=False):
        p = random_effects(g["delta"].tolist(), g["se"].tolist())
        spread = (float(g["delta"].min()), float(g["delta"].max()))
        out.append(
            (
                name,
                width,
                p.estimate,
                p.low,
                p.high,
                p.tau2,
                p.i2,
                p.p_heterogeneity,
                p.k,
                *spread,
                verdict(p),
            )
        )
    cols = [
        "contrast",
        "width",
        "estimate",
        "low",
        "high",
        "tau2",
        "i2",
        "p_heterogeneity",
        "cells",
        "cell_min",
        "cell_max",
        "verdict",
    ]
    return pd.DataFrame(out, columns=cols)


def verdict(p: Pooled) -> str:
    """`a better` / `b better` where the pooled interval excludes 0, else `no difference`;
    `undecided` with a single cell, which is no verdict across cells."""
    if p.k < 2:
        return "undecided"
    if p.low > 0:
        return "a better"
    return "b better" if p.high < 0 else "no difference"
