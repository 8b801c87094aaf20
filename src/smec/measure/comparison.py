"""The comparison's statistics: per arm, method and width, nDCG@10 over study replicates, seeds
and queries; the contrasts the results state, with tests calibrated for five seeds; verdicts.

An arm trained at a study's best settings (`tuned`, `labels_25`, ...) has one set of seeds per
study replicate; any other arm has one (replicate 0). A method's nDCG@10 at a width is the mean
over the test queries, per seed; its interval is the t interval over seeds, or over replicates'
means where there are several (:mod:`smec.measure.intervals`).

A contrast (:class:`Contrast`) is a weighted sum of methods' mean nDCG@10 at one width: a − b
(two terms), or whether a lead grows with fewer labels, (a − b at `labels_25`) − (a − b at
`tuned`) (four terms). Within a replicate it is tested with the seed-and-query test of
:func:`smec.measure.significance.seed_query_contrast`; over replicates, pooled with
:func:`smec.measure.significance.replicate_contrast` (the replicates' spread carries the study's
outcome). The family the results state (:func:`family`) is, per arm and width, SMEC against every
other learned method and every learned method against the best learning-free baseline, each
unordered pair once, plus SMEC − Matryoshka-Adaptor's growth at each label budget: one Holm
family over every arm (`p_holm`). Each replicate's own tests are corrected the same way, and
:func:`verdicts` states an outcome only where at least `agree` of the replicates reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smec.measure.intervals import summarise, t_interval
from smec.measure.significance import (
    aa_calibration,
    holm,
    replicate_contrast,
    seed_query_contrast,
    two_level_bootstrap,
)
from smec.model.methods import BASELINES, LEARNED, REGISTRY

MEASURES = ("ndcg_at_10", "recall_at_100", "mrr_at_10")
ORDER = tuple(REGISTRY)  # the registry's order: baselines, then the learned methods
KEYS = ["init", "method", "dim"]
HEADLINE, RIVAL = "smec", "mrl_adaptor"  # the question's two methods: SMEC − Matryoshka-Adaptor
ALPHA = 0.05
CALIBRATION_ARM = "aa"  # the headline arm again on other seeds: only the A/A check reads it


def with_starts(baselines: pd.DataFrame, inits: list[str]) -> pd.DataFrame:
    """Learning-free baselines' scores repeated under every arm of the comparison."""
    return pd.concat([baselines.assign(init=i) for i in inits], ignore_index=True)


def per_query_means(scores: pd.DataFrame) -> pd.DataFrame:
    """Each query's measures averaged over replicates and seeds, per arm, method and width."""
    return scores.groupby([*KEYS, "query_id"], as_index=False)[list(MEASURES)].mean()


def with_replicates(scores: pd.DataFrame) -> pd.DataFrame:
    """`scores` with a `replicate` column: 0 where an arm has no study (the baselines' rows)."""
    return scores.assign(replicate=scores.get("replicate", 0)).fillna({"replicate": 0})


class Cube:
    """nDCG@10 as (seeds × queries) arrays per (arm, method, width, replicate), every array over
    the same queries in one order; a method without replicates in an arm reads replicate 0."""

    def __init__(self, scores: pd.DataFrame):
        scores = with_replicates(scores)
        self.queries = sorted(scores.query_id.unique())
        self.arrays = {
            (init, method, int(dim), int(r)): g.pivot(
                index="seed", columns="query_id", values="ndcg_at_10"
            )
            .reindex(columns=self.queries)
            .to_numpy()
            for (init, method, dim, r), g in scores.groupby([*KEYS, "replicate"], sort=False)
        }
        self.replicates = {}
        for init, method, dim, r in self.arrays:
            key = (init, method, dim)
            self.replicates[key] = max(self.replicates.get(key, 0), r + 1)

    def get(self, init: str, method: str, dim: int, replicate: int) -> np.ndarray:
        r = replicate if self.replicates[init, method, dim] > 1 else 0
        return self.arrays[init, method, dim, r]

    def n_replicates(self, terms, dim: int) -> int:
        return max(self.replicates[init, method, dim] for init, method, _ in terms)


@dataclass(frozen=True)
class Contrast:
    """Σ weight · nDCG@10 of (arm, method) at one width: `kind` names what it asks."""

    kind: str
    dim: int
    terms: tuple[tuple[str, str, float], ...]  # (arm, method, weight)

    @property
    def a(self) -> str:
        return self.terms[0][1]

    @property
    def b(self) -> str:
        return self.terms[1][1]

    @property
    def init(self) -> str:
        return self.terms[0][0]


def pair(kind: str, a: str, b: str, init: str, dim: int) -> Contrast:
    return Contrast(kind, dim, ((init, a, 1.0), (init, b, -1.0)))


def growth(a: str, b: str, budget: str, full: str, dim: int) -> Contrast:
    """(a − b with a label budget) − (a − b with all the labels): whether a lead grows."""
    terms = ((budget, a, 1.0), (budget, b, -1.0), (full, a, -1.0), (full, b, 1.0))
    return Contrast("label growth", dim, terms)


def best_baseline(t: pd.DataFrame, init: str, dim: int) -> str | None:
    """The learning-free baseline with the highest mean nDCG@10 at that arm and width."""
    g = t[(t["init"] == init) & (t["dim"] == dim) & t.method.isin(BASELINES)]
    return g.sort_values("ndcg_at_10", ascending=False).method.iloc[0] if len(g) else None


def family(t: pd.DataFrame, label_arms: list[str], full: str | None) -> list[Contrast]:
    """The contrasts the results state, each unordered pair once per arm and width (the two
    kinds never share a pair): SMEC against every other learned method, every learned method
    against the best baseline, and
    (with label arms) SMEC − Matryoshka-Adaptor's growth from the `full` arm to each budget."""
    out = []
    for (init, dim), g in t.groupby(["init", "dim"], sort=False):
        have, dim = set(g.method), int(dim)
        best = best_baseline(t, init, dim)
        candidates = [("smec vs", HEADLINE, m) for m in LEARNED if m != HEADLINE]
        candidates += [("vs best baseline", m, best) for m in LEARNED]  # learned vs not: apart
        out += [pair(kind, a, b, init, dim) for kind, a, b in candidates if {a, b} <= have]
    dims = sorted(set(t.dim), reverse=True)
    if full is not None and {HEADLINE, RIVAL} <= set(t.method):
        out += [growth(HEADLINE, RIVAL, arm, full, d) for arm in label_arms for d in dims]
    return out


def _tested(cube: Cube, c: Contrast) -> dict:
    """One contrast: pooled over replicates (or within the only one), and each replicate's."""
    weights = [w for *_, w in c.terms]
    per_rep, per_query = [], []
    for r in range(cube.n_replicates(c.terms, c.dim)):
        groups = [cube.get(init, m, c.dim, r) for init, m, _ in c.terms]
        per_rep.append(seed_query_contrast(groups, weights))
        per_query.append(sum(w * x.mean(axis=0) for w, x in zip(weights, groups, strict=True)))
    pooled = (
        replicate_contrast([x.delta for x in per_rep], np.mean(per_query, axis=0))
        if len(per_rep) > 1
        else per_rep[0]
    )
    return {"pooled": pooled, "replicates": per_rep}


def pairs(scores: pd.DataFrame, t: pd.DataFrame, label_arms: list[str], full: str | None):
    """Every contrast of :func:`family`: the pooled estimate, its interval, p-value and degrees
    of freedom, Holm over the one family (`p_holm`), and per replicate its estimate and whether
    it finds a or b better after the same correction (`a_better`, `b_better`, `no_difference`:
    how many replicates)."""
    cube, level = Cube(scores), t.set_index(KEYS).ndcg_at_10
    contrasts = family(t, label_arms, full)
    tested = [_tested(cube, c) for c in contrasts]
    pooled_p = np.array([x["pooled"].p for x in tested])
    out = pd.DataFrame(
        [
            {
                "kind": c.kind,
                "init": c.init,
                "dim": c.dim,
                "a": c.a,
                "b": c.b,
                "ndcg_a": level[c.init, c.a, c.dim] if c.kind != "label growth" else np.nan,
                "ndcg_b": level[c.init, c.b, c.dim] if c.kind != "label growth" else np.nan,
                "delta": x["pooled"].delta,
                "low": x["pooled"].low,
                "high": x["pooled"].high,
                "p": x["pooled"].p,
                "df": x["pooled"].df,
                "replicates": len(x["replicates"]),
            }
            for c, x in zip(contrasts, tested, strict=True)
        ]
    )
    out["p_holm"] = holm(pooled_p)
    out = out.join(_replicate_outcomes(tested, pooled_p))
    return out


def _replicate_outcomes(tested: list[dict], pooled_p: np.ndarray) -> pd.DataFrame:
    """Per contrast, how many replicates find a better, b better or no difference after Holm
    over the family as that replicate states it (its own tests where it has them), and the
    spread of their estimates."""
    most = max(len(x["replicates"]) for x in tested)
    outcomes = np.zeros((len(tested), 3), dtype=int)
    deltas = [[y.delta for y in x["replicates"]] for x in tested]
    for r in range(most):
        p = [
            x["replicates"][r].p if len(x["replicates"]) > r else pooled_p[i]
            for i, x in enumerate(tested)
        ]
        adjusted = holm(p)
        for i, x in enumerate(tested):
            if len(x["replicates"]) > r:
                outcomes[i, _outcome(deltas[i][r], adjusted[i])] += 1
    return pd.DataFrame(
        {
            "a_better": outcomes[:, 0],
            "b_better": outcomes[:, 1],
            "no_difference": outcomes[:, 2],
            "delta_min": [min(d) for d in deltas],
            "delta_max": [max(d) for d in deltas],
        }
    )


def _outcome(delta: float, p_holm: float) -> int:
    if p_holm >= ALPHA:
        return 2
    return 0 if delta > 0 else 1


VERDICTS = ("a better", "b better", "no difference")


def verdicts(pairs_table: pd.DataFrame, agree: float = 0.8) -> pd.DataFrame:
    """Every stated contrast's verdict: the outcome at least `agree` of its replicates reach
    (4 of 5), else "undecided"; with one replicate, its own corrected outcome. Beside it the
    pooled estimate, its interval and Holm p-value, and the replicates' counts and spread."""
    counts = pairs_table[["a_better", "b_better", "no_difference"]].to_numpy()
    need = np.ceil(agree * pairs_table.replicates.to_numpy() - 1e-9)
    top = counts.argmax(axis=1)
    reached = counts.max(axis=1) >= need
    verdict = np.where(reached, np.array(VERDICTS)[top], "undecided")
    keep = [
        "kind",
        "init",
        "dim",
        "a",
        "b",
        "delta",
        "low",
        "high",
        "p_holm",
        "replicates",
        "a_better",
        "b_better",
        "no_difference",
        "delta_min",
        "delta_max",
    ]
    return pairs_table[keep].assign(verdict=verdict)


def _level(g: pd.DataFrame) -> dict:
    """Mean nDCG@10 and its interval: over seeds, or over replicates' means where several."""
    by_rep = g.groupby(["replicate", "seed"]).ndcg_at_10.mean().groupby("replicate")
    means = by_rep.mean()
    ci = t_interval(means) if len(means) > 1 else t_interval(by_rep.get_group(means.index[0]))
    return {
        "ndcg_at_10": float(g.ndcg_at_10.mean()) if len(means) == 1 else float(means.mean()),
        "ci_low": ci.low,
        "ci_high": ci.high,
        "n_seeds": int(g.groupby("replicate").seed.nunique().iloc[0]),
        "n_replicates": len(means),
        "replicate_min": float(means.min()),
        "replicate_max": float(means.max()),
    }


def table(scores: pd.DataFrame, reference: str = "mrl") -> pd.DataFrame:
    """One row per arm, method and width: nDCG@10's mean and interval (over seeds, or over
    study replicates), the replicates' spread, Recall@100 and MRR@10 means, and the pooled
    difference from `reference` with its (uncorrected) p-value."""
    scores = with_replicates(scores)
    cube = Cube(scores)
    rows = []
    for (init, method, dim), g in scores.groupby(KEYS, sort=False):
        row = {"init": init, "method": method, "dim": int(dim), **_level(g)}
        row |= {"recall_at_100": g.recall_at_100.mean(), "mrr_at_10": g.mrr_at_10.mean()}
        if method != reference and (init, reference, int(dim)) in cube.replicates:
            d = _tested(cube, pair("vs mrl", method, reference, init, int(dim)))["pooled"]
            row |= {"delta_vs_mrl": d.delta, "p_vs_mrl": d.p}
        rows.append(row)
    return _ordered(pd.DataFrame(rows))


def _ordered(out: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(ORDER)}
    out["order"] = out.method.map(order).fillna(len(ORDER))
    starts = {s: i for i, s in enumerate(dict.fromkeys(out["init"]))}
    out["start"] = out["init"].map(starts)
    out = out.sort_values(["start", "dim", "order"], ascending=[True, False, True])
    return out.drop(columns=["order", "start"]).reset_index(drop=True)


def calibration(scores: pd.DataFrame, headline: str, draws: int) -> pd.DataFrame:
    """The A/A check of the tests on real scores: per learned method (a baseline has nothing
    trained) and width, its headline
    arm and the `aa` arm (the same settings on other seeds) pooled, split into two disjoint
    halves of seeds every way, each split tested as if two methods: how often the calibrated
    test rejects at α = 0.05, and (at the middle width: 126 bootstraps a method take ~10 s)
    the two-level bootstrap; and per replicated arm, the same over splits of its replicates
    (calibrated test only)."""
    cube, rows = Cube(scores), []
    tests: dict[str, Callable] = {
        "seed_query_t": lambda a, b: seed_query_contrast([a, b], [1.0, -1.0]).p,
        "two_level_bootstrap": lambda a, b: two_level_bootstrap(a, b, draws).p,
    }
    dims = sorted({dim for _, _, dim in cube.replicates}, reverse=True)
    trained = [(key, n) for key, n in cube.replicates.items() if key[1] in LEARNED]
    for (init, method, dim), n in trained:
        if init == headline and (CALIBRATION_ARM, method, dim) in cube.replicates:
            both = np.vstack([cube.get(init, method, dim, 0), cube.get("aa", method, dim, 0)])
            for name, test in tests.items():
                if name == "two_level_bootstrap" and dim != dims[len(dims) // 2]:
                    continue
                cal = aa_calibration(both, test, ALPHA)
                rows.append(_calibrated(cal, method, dim, name) | {"init": init})
        if n > 2:
            means = np.vstack([cube.get(init, method, dim, r).mean(axis=0) for r in range(n)])
            row = _calibrated(
                aa_calibration(means, tests["seed_query_t"], ALPHA), method, dim, "replicate_t"
            )
            rows.append(row | {"init": init})
    return pd.DataFrame(rows)


def _calibrated(cal, method: str, dim: int, test: str) -> dict:
    return {
        "test": test,
        "method": method,
        "dim": dim,
        "splits": cal.splits,
        "rate": cal.rate,
        "mc_se": cal.mc_se,
        "alpha": ALPHA,
    }


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


def verdict_lines(verdicts_table: pd.DataFrame, a: str, b: str) -> str:
    """Plain text: the verdicts of a − b (and its label growth), one line per arm and width."""
    rows = verdicts_table[(verdicts_table.a == a) & (verdicts_table.b == b)]
    lines = [f"verdicts, {a} − {b} (4 of 5 study replicates must agree; reports/verdicts.csv):"]
    for r in rows.itertuples():
        kind = " growth" if r.kind == "label growth" else ""
        reps = (
            f", replicates {r.a_better}/{r.b_better}/{r.no_difference}" if r.replicates > 1 else ""
        )
        lines.append(
            f"{r.init:10s}{kind:7s} d={r.dim:<4d} {r.verdict:14s} {r.delta:+.4f} "
            f"[{r.low:+.4f}, {r.high:+.4f}] Holm p {r.p_holm:.3g}{reps}"
        )
    return "\n".join(lines)
