"""The comparison's statistics: per method and width, nDCG@10 over seeds, and paired tests.

A method's nDCG@10 at a width is the mean over the test queries, per seed; its interval is the
t interval over seeds (:mod:`smec.measure.intervals`). Against the reference method (`mrl`) at
the same width the test is paired over queries: each query's nDCG@10 is averaged over seeds for both
methods, and the mean of the per-query differences is compared with its distribution under
random sign flips of those differences (a two-sided randomisation test, `draws` flips drawn
from a fixed seed, p = (1 + #{|flipped mean| ≥ |observed mean|}) / (1 + draws)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from smec.measure.intervals import summarise, t_interval
from smec.model.methods import REGISTRY

MEASURES = ("ndcg_at_10", "recall_at_100", "mrr_at_10")
ORDER = tuple(REGISTRY)  # the registry's order: baselines, then the learned methods


def per_query_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Each query's measures averaged over seeds, per method and width."""
    return scores.groupby(["method", "dim", "query_id"], as_index=False)[list(MEASURES)].mean()


def sign_flip_p(diff: np.ndarray, draws: int = 10_000, seed: int = 0) -> float:
    """Two-sided randomisation p-value of mean(diff) = 0 under random sign flips."""
    diff = np.asarray(diff, dtype=float)
    if len(diff) == 0 or not np.any(diff):
        return 1.0
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(draws, len(diff)))
    null = np.abs(signs @ diff) / len(diff)
    return float((1 + np.sum(null >= abs(diff.mean()) - 1e-12)) / (1 + draws))


def table(scores: pd.DataFrame, reference: str = "mrl", draws: int = 10_000) -> pd.DataFrame:
    """One row per method and width: nDCG@10 mean and interval over seeds, Recall@100 and
    MRR@10 means, and the paired difference from `reference` with its p-value."""
    means = per_query_means(scores).set_index(["method", "dim", "query_id"]).ndcg_at_10
    rows = []
    for (method, dim), g in scores.groupby(["method", "dim"]):
        ci = t_interval(g.groupby("seed").ndcg_at_10.mean())
        row = {
            "method": method,
            "dim": int(dim),
            "ndcg_at_10": ci.mean,
            "ci_low": ci.low,
            "ci_high": ci.high,
            "n_seeds": ci.n,
            "recall_at_100": g.recall_at_100.mean(),
            "mrr_at_10": g.mrr_at_10.mean(),
        }
        if method != reference and (reference, dim) in means.index.droplevel(2):
            diff = (means.loc[method, dim] - means.loc[reference, dim]).dropna()
            row |= {"delta_vs_mrl": diff.mean(), "p_vs_mrl": sign_flip_p(diff.to_numpy(), draws)}
        rows.append(row)
    out = pd.DataFrame(rows)
    out["order"] = out.method.map({m: i for i, m in enumerate(ORDER)}).fillna(len(ORDER))
    return out.sort_values(["dim", "order"], ascending=[False, True]).drop(columns="order")


GRADIENT_QUANTITIES = (
    "avg_grad_low",
    "avg_grad_high",
    "low_over_high",
    "grad_var_elements",
    "grad_var_noise",
    "avg_update_low",
    "avg_update_high",
)


def gradstats_table(stats: pd.DataFrame, epochs: list[int]) -> pd.DataFrame:
    """The first module's gradient statistics per method and plotted epoch, over seeds."""
    s = stats[stats.epoch.isin(epochs)]
    return summarise(s, ["method", "epoch"], [q for q in GRADIENT_QUANTITIES if q in s])


def metrics(t: pd.DataFrame) -> dict:
    """Nested DVC metrics: `<method>_d<dim>: {ndcg_at_10, ci_low, ci_high, p_vs_mrl, ...}`."""
    keep = (
        "ndcg_at_10",
        "ci_low",
        "ci_high",
        "recall_at_100",
        "mrr_at_10",
        "delta_vs_mrl",
        "p_vs_mrl",
    )
    return {
        f"{r['method']}_d{r['dim']}": {k: round(float(r[k]), 6) for k in keep if pd.notna(r.get(k))}
        for _, r in t.iterrows()
    }


def summary(t: pd.DataFrame) -> str:
    """Plain text: one line per method and width."""
    lines = []
    for _, r in t.iterrows():
        ci = f"[{r.ci_low:.4f}, {r.ci_high:.4f}]" if pd.notna(r.ci_low) else "(no seeds)"
        vs = (
            f"  vs mrl {r.delta_vs_mrl:+.4f} (p={r.p_vs_mrl:.3g})"
            if pd.notna(r.get("p_vs_mrl"))
            else ""
        )
        lines.append(f"{r.method:15s} d={r.dim:<4d} nDCG@10 {r.ndcg_at_10:.4f} {ci}{vs}")
    return "\n".join(lines)
