"""The comparison's statistics: per start, method and width, nDCG@10 over seeds, and paired tests.

A method's nDCG@10 at a width is the mean over the test queries, per seed; its interval is the
t interval over seeds (:mod:`smec.measure.intervals`). A difference between two methods at the
same start and width is paired over queries: each query's nDCG@10 is averaged over seeds for
both methods, and the mean of the per-query differences is compared with its distribution under
random sign flips of those differences (a two-sided randomisation test, `draws` flips drawn
from a fixed seed, p = (1 + #{|flipped mean| ≥ |observed mean|}) / (1 + draws)).

The differences computed (`pairs`): every method against MRL (also in the table's
`delta_vs_mrl`), SMEC against every other method, and every learned method against the best
learning-free baseline at that start and width (the one with the highest mean nDCG@10).
A learning-free baseline has no start: its rows repeat under every start. Each difference
also gets a two-level bootstrap interval and p-value (seeds, then queries resampled: training
variance included, :mod:`smec.measure.significance`), and that p-value Holm-corrected over the
differences of its start, the family the results state.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from smec.measure.intervals import summarise, t_interval
from smec.measure.significance import holm, two_level_bootstrap
from smec.model.methods import BASELINES, LEARNED, REGISTRY

MEASURES = ("ndcg_at_10", "recall_at_100", "mrr_at_10")
ORDER = tuple(REGISTRY)  # the registry's order: baselines, then the learned methods
KEYS = ["init", "method", "dim"]


def with_starts(baselines: pd.DataFrame, inits: list[str]) -> pd.DataFrame:
    """Learning-free baselines' scores repeated under every start of the comparison."""
    return pd.concat([baselines.assign(init=i) for i in inits], ignore_index=True)


def per_query_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Each query's measures averaged over seeds, per start, method and width."""
    return scores.groupby([*KEYS, "query_id"], as_index=False)[list(MEASURES)].mean()


@functools.lru_cache(maxsize=4)
def _signs(draws: int, n: int, seed: int) -> np.ndarray:
    """The random signs of a sign-flip test, (draws, n) as int8: they depend only on the shape
    and the seed, so every difference over the same queries reads one draw (drawing them cost
    ~10x the test's arithmetic). Read-only, so no caller changes what the next one reads."""
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(draws, n)).astype(np.int8)
    signs.setflags(write=False)
    return signs


def sign_flip_p(diff: np.ndarray, draws: int = 10_000, seed: int = 0) -> float:
    """Two-sided randomisation p-value of mean(diff) = 0 under random sign flips."""
    diff = np.asarray(diff, dtype=float)
    if len(diff) == 0 or not np.any(diff):
        return 1.0
    signs = _signs(draws, len(diff), seed).astype(float)
    null = np.abs(signs @ diff) / len(diff)
    return float((1 + np.sum(null >= abs(diff.mean()) - 1e-12)) / (1 + draws))


def paired(means: pd.Series, a: str, b: str, init: str, dim: int, draws: int) -> dict:
    """a − b at one start and width: the mean per-query difference and its p-value."""
    diff = (means.loc[init, a, dim] - means.loc[init, b, dim]).dropna()
    return {"delta": float(diff.mean()), "p": sign_flip_p(diff.to_numpy(), draws)}


def _ordered(out: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(ORDER)}
    out["order"] = out.method.map(order).fillna(len(ORDER))
    starts = {s: i for i, s in enumerate(dict.fromkeys(out["init"]))}
    out["start"] = out["init"].map(starts)
    out = out.sort_values(["start", "dim", "order"], ascending=[True, False, True])
    return out.drop(columns=["order", "start"]).reset_index(drop=True)


def table(scores: pd.DataFrame, reference: str = "mrl", draws: int = 10_000) -> pd.DataFrame:
    """One row per start, method and width: nDCG@10 mean and interval over seeds, Recall@100 and
    MRR@10 means, and the paired difference from `reference` with its p-value."""
    means = per_query_means(scores).set_index([*KEYS, "query_id"]).ndcg_at_10
    present = set(means.index.droplevel(3))
    rows = []
    for (init, method, dim), g in scores.groupby(KEYS, sort=False):
        ci = t_interval(g.groupby("seed").ndcg_at_10.mean())
        row = {
            "init": init,
            "method": method,
            "dim": int(dim),
            "ndcg_at_10": ci.mean,
            "ci_low": ci.low,
            "ci_high": ci.high,
            "n_seeds": ci.n,
            "recall_at_100": g.recall_at_100.mean(),
            "mrr_at_10": g.mrr_at_10.mean(),
        }
        if method != reference and (init, reference, dim) in present:
            d = paired(means, method, reference, init, dim, draws)
            row |= {"delta_vs_mrl": d["delta"], "p_vs_mrl": d["p"]}
        rows.append(row)
    return _ordered(pd.DataFrame(rows))


def family(t: pd.DataFrame) -> list[tuple[str, str, str, int, str]]:
    """The comparisons the results state, as (a, b, start, width, kind): every method against
    MRL, SMEC against every other method, every learned method against the best baseline."""
    out = []
    for (init, dim), g in t.groupby(["init", "dim"], sort=False):
        have = set(g.method)
        base = g[g.method.isin(BASELINES)].sort_values("ndcg_at_10", ascending=False)
        best = base.method.iloc[0] if len(base) else None
        for m in (m for m in ORDER if m in have):
            if m != "mrl" and "mrl" in have:
                out.append((m, "mrl", init, int(dim), "vs mrl"))
            if m != "smec" and "smec" in have:
                out.append(("smec", m, init, int(dim), "smec vs"))
            if best is not None and m in LEARNED:
                out.append((m, best, init, int(dim), "vs best baseline"))
    return out


Matrices = dict[tuple[str, str, int], pd.DataFrame]


def seed_query_matrices(scores: pd.DataFrame) -> Matrices:
    """Per (start, method, width), nDCG@10 as seeds × queries: built once for every pair."""
    return {
        (init, method, int(dim)): g.pivot(index="seed", columns="query_id", values="ndcg_at_10")
        for (init, method, dim), g in scores.groupby(KEYS, sort=False)
    }


def bootstrapped(matrices: Matrices, a: str, b: str, init: str, dim: int, draws: int) -> dict:
    """a − b with training variance in it: the two-level bootstrap's interval and p-value."""
    x, y = matrices[init, a, dim], matrices[init, b, dim]
    queries = x.columns.intersection(y.columns)
    boot = two_level_bootstrap(x[queries].to_numpy(), y[queries].to_numpy(), draws)
    return {"boot_low": boot.low, "boot_high": boot.high, "p_boot": boot.p}


def pairs(scores: pd.DataFrame, t: pd.DataFrame, draws: int = 10_000, boot: int = 10_000):
    """Every difference of :func:`family`: a − b, the two means, the sign-flip p-value (models
    fixed), the two-level bootstrap's interval and p-value (seeds and queries resampled), and
    that p-value Holm-corrected over the family of its start (`p_holm`)."""
    means = per_query_means(scores).set_index([*KEYS, "query_id"]).ndcg_at_10
    level = t.set_index(KEYS).ndcg_at_10
    matrices = seed_query_matrices(scores)
    rows = [
        {
            "kind": kind,
            "init": init,
            "dim": dim,
            "a": a,
            "b": b,
            "ndcg_a": level[init, a, dim],
            "ndcg_b": level[init, b, dim],
            **paired(means, a, b, init, dim, draws),
            **bootstrapped(matrices, a, b, init, dim, boot),
        }
        for a, b, init, dim, kind in family(t)
    ]
    out = pd.DataFrame(rows)
    out["p_holm"] = out.groupby("init", sort=False).p_boot.transform(holm)
    return out


GRADIENT_QUANTITIES = (
    "avg_grad_low",
    "avg_grad_high",
    "low_over_high",
    "grad_var_elements",
    "grad_var_noise",
    "avg_update_low",
    "avg_update_high",
)
ADS_QUANTITIES = ("ads_logit_std", "ads_mask_overlap", "ads_overlap_final", "ads_tau", "ads_sigma")


def gradstats_table(stats: pd.DataFrame, epochs: list[int]) -> pd.DataFrame:
    """The first module's gradient statistics (and an ADS step's diagnostics) per start,
    method and plotted epoch, over seeds."""
    s = stats[stats.epoch.isin(epochs)]
    quantities = [q for q in (*GRADIENT_QUANTITIES, *ADS_QUANTITIES) if q in s]
    return summarise(s, ["init", "method", "epoch"], quantities).dropna(subset=["mean"])


def selection_table(stats: pd.DataFrame) -> pd.DataFrame:
    """An ADS method's selection at the end of its first step, over seeds: the logits' spread
    and the overlap of the last epoch's masks with the kept indices, per start."""
    ads = stats.dropna(subset=["ads_logit_std"]) if "ads_logit_std" in stats else stats.iloc[:0]
    last = ads[ads.epoch == ads.groupby(["init", "method", "seed"]).epoch.transform("max")]
    return summarise(last, ["init", "method"], ["ads_logit_std", "ads_overlap_final"])


def metrics(t: pd.DataFrame) -> dict:
    """Nested DVC metrics: `<method>_d<dim>: {ndcg_at_10, ci_low, ...}` for the headline start,
    `<method>_d<dim>_init_<start>` for the others."""
    keep = (
        "ndcg_at_10",
        "ci_low",
        "ci_high",
        "recall_at_100",
        "mrr_at_10",
        "delta_vs_mrl",
        "p_vs_mrl",
    )
    headline = t["init"].iloc[0]
    out = {}
    for _, r in t.iterrows():
        suffix = "" if r["init"] == headline else f"_init_{r['init']}"
        out[f"{r['method']}_d{r['dim']}{suffix}"] = {
            k: round(float(r[k]), 6) for k in keep if pd.notna(r.get(k))
        }
    return out


def summary(t: pd.DataFrame) -> str:
    """Plain text: one line per start, method and width."""
    lines = []
    for _, r in t.iterrows():
        ci = f"[{r.ci_low:.4f}, {r.ci_high:.4f}]" if pd.notna(r.ci_low) else "(no seeds)"
        vs = (
            f"  vs mrl {r.delta_vs_mrl:+.4f} (p={r.p_vs_mrl:.3g})"
            if pd.notna(r.get("p_vs_mrl"))
            else ""
        )
        head = f"{r.init:8s} {r.method:15s} d={r.dim:<4d}"
        lines.append(f"{head} nDCG@10 {r.ndcg_at_10:.4f} {ci}{vs}")
    return "\n".join(lines)
