"""Differences that carry training variance, and a correction for testing many of them.

A paired test over queries alone (each query averaged over seeds first) treats the trained
models as fixed. The two-level bootstrap here resamples both sources of variation: for each
draw, each method's seeds with replacement (its own seeds: the trainings of two methods are
independent), then the test queries with replacement (the same queries for both methods: the
difference stays paired over queries),

    δ* = (1/Q) Σ_q c_q · ( (1/S_a) Σ_s w_s^a A[s, q] − (1/S_b) Σ_s w_s^b B[s, q] ),

with w^a, w^b and c multinomial counts (S_a, S_b and Q draws). The interval is the percentile
interval of δ*; the p-value of δ = 0 is the centred bootstrap's,
p = (1 + #{|δ* − δ̂| ≥ |δ̂|}) / (1 + draws), δ̂ the observed difference.

With five seeds a method the bootstrap is anti-conservative: resampling S seeds with
replacement shrinks their variance by (S − 1)/S, and its percentile tails are a normal's where
the ratio of the difference to its estimated spread has the heavier tails of a t with few
degrees of freedom. It stays as the reference; the tests compare the two on simulated A/A data.

The seed–query contrast is the analytic test instead. Groups g of independently trained models,
X_g a (seeds × queries) array over the same queries, and weights w_g (A − B is (1, −1); a
difference of differences (A₁ − B₁) − (A₂ − B₂), whether a lead grows with fewer labels, is
four groups and (1, −1, −1, 1)) give the contrast δ = Σ_g w_g · mean(X_g) and two variance
sources,

    seed:   v_g = w_g² · var_s(row means of X_g) / S_g,      S_g − 1 degrees of freedom,
    query:  v_Q = var_q(D_q) / Q,  D_q = Σ_g w_g · mean_s X_g[s, q],   Q − 1 degrees of freedom,

var with ddof 1. A group of one seed adds no seed component: its model is then taken as fixed,
as the paired query test takes it. The query component also holds the seed × query interaction
(w_g² σ²_e / (S_g Q) of each group) that the row means of the seed component already
count, so the test is conservative by that amount: small next to the seed variance when seeds
move whole-run means, as they do for retrieval heads trained from different seeds on the same
test queries. It is counted twice on purpose: splitting it out would need a two-way variance
decomposition whose pieces at five seeds are too noisy to trust, and a test that holds its level
at five seeds matters more here than the little power the double count costs.

The components combine by Satterthwaite's approximation: V = Σ v_i, and δ / √V is taken as t
with df = V² / Σ (v_i² / df_i) degrees of freedom (components with no variance left out; for
two components s_i² / n_i with n_i − 1 df this is Welch's test), so p = 2 · P(T_df > |δ| / √V)
and the interval is δ ± t_df(1 − (1 − level)/2) · √V. With the normal quantile in place of t
(df = ∞), an A/A test of five seeds against five (about 8 df) rejects at 5% about 8% of the
time.

Pooled over R study replicates, the contrast is the mean of their R estimates, with
var(estimates) / R on R − 1 df (the spread between replicates carries both the study's and the
seeds' variance) and the query component of the per-query contrast averaged over replicates
and seeds. An A/A check splits one method's seeds into two halves every way and counts how
often a test rejects a difference that is not there.

Holm's step-down correction controls the family-wise error over m tests: with the p-values
sorted, p_(1) ≤ … ≤ p_(m), the adjusted p_(i) is max_{j ≤ i} min(1, (m − j + 1) p_(j)).

Example::

    >>> a = np.array([[0.5, 0.7, 0.2], [0.6, 0.8, 0.1]])  # seeds × queries
    >>> b = np.array([[0.4, 0.7, 0.2]])
    >>> d = two_level_bootstrap(a, b, draws=2000)
    >>> round(d.delta, 3)
    0.05
    >>> c = seed_query_contrast([a, b], [1, -1])  # b's one seed: no seed component for b
    >>> round(c.delta, 3), round(c.df, 2)
    (0.05, 2.32)
    >>> holm([0.01, 0.04, 0.03, 0.005]).tolist()
    [0.03, 0.06, 0.06, 0.02]
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CHUNK = 2048  # draws computed at once (memory ~ CHUNK × queries)


@dataclass(frozen=True)
class Bootstrap:
    delta: float  # the observed difference of means
    low: float
    high: float
    p: float


def _counts(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n draws of k items with replacement from k, as counts per item: (n, k)."""
    counts = rng.multinomial(k, np.full(k, 1 / k), size=n)
    return counts.astype(np.min_scalar_type(k))  # exact, and a quarter of int64's memory


@functools.lru_cache(maxsize=4)
def _draws(s_a: int, s_b: int, q: int, draws: int, seed: int) -> tuple:
    """The resampling counts of a bootstrap, per chunk of draws: (a's seeds, b's seeds, the
    queries), each (n, items). They depend only on the shapes and the seed, so every difference
    of one comparison (the same seeds and queries) reads one set: drawing them cost ~10x the
    arithmetic. Read-only, so no caller changes what the next one reads."""
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, draws, CHUNK):
        n = min(CHUNK, draws - start)
        chunk = (_counts(s_a, n, rng), _counts(s_b, n, rng), _counts(q, n, rng))
        for c in chunk:
            c.setflags(write=False)
        chunks.append(chunk)
    return tuple(chunks)


def two_level_bootstrap(
    a: np.ndarray, b: np.ndarray, draws: int = 10_000, seed: int = 0, level: float = 0.95
) -> Bootstrap:
    """a − b, each a (seeds × queries) array over the same queries: interval and p-value."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise ValueError(f"a and b must score the same queries: {a.shape} against {b.shape}")
    q = a.shape[1]
    out = []
    for seeds_a, seeds_b, queries in _draws(len(a), len(b), q, draws, seed):
        diff = seeds_a @ a / len(a) - seeds_b @ b / len(b)  # (n, queries) resampled means
        out.append((queries * diff).sum(axis=1) / q)
    stars = np.concatenate(out)
    delta = float(a.mean() - b.mean())
    tail = (1 - level) / 2
    low, high = np.quantile(stars, [tail, 1 - tail])
    p = (1 + np.sum(np.abs(stars - delta) >= abs(delta) - 1e-12)) / (1 + draws)
    return Bootstrap(delta, float(low), float(high), float(p) if delta else 1.0)


def holm(p: list[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values, in the input's order."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


@dataclass(frozen=True)
class Contrast:
    delta: float  # the estimate Σ_g w_g · mean(X_g)
    low: float
    high: float
    p: float  # two-sided, of δ = 0
    se: float
    df: float  # Satterthwaite's degrees of freedom


def satterthwaite(
    components: Sequence[tuple[float, float]], delta: float, level: float = 0.95
) -> Contrast:
    """A t test of delta from (variance, degrees of freedom) components of its variance."""
    delta = float(delta)
    parts = [(float(v), float(df)) for v, df in components if v > 0]
    total = sum(v for v, _ in parts)
    if total == 0:
        return Contrast(delta, delta, delta, 1.0 if delta == 0 else 0.0, 0.0, float("inf"))
    df = total**2 / sum(v**2 / df for v, df in parts)
    se = float(np.sqrt(total))
    p = 2 * stats.t.sf(abs(delta) / se, df)
    half = stats.t.ppf(1 - (1 - level) / 2, df) * se
    return Contrast(delta, float(delta - half), float(delta + half), float(p), se, float(df))


def _seed_component(x: np.ndarray, w: float) -> list[tuple[float, float]]:
    """w² · var(row means) / S with S − 1 df; none for one seed (the model taken as fixed)."""
    s = len(x)
    return [(w**2 * float(np.var(x.mean(axis=1), ddof=1)) / s, s - 1)] if s > 1 else []


def _query_component(per_query: np.ndarray) -> tuple[float, float]:
    """var over queries / Q with Q − 1 df."""
    q = len(per_query)
    if q < 2:
        raise ValueError(f"need at least two queries for the query variance, got {q}")
    return float(np.var(per_query, ddof=1)) / q, q - 1


def seed_query_contrast(
    groups: Sequence[np.ndarray], weights: Sequence[float], level: float = 0.95
) -> Contrast:
    """Σ_g w_g · mean(X_g), each X_g (seeds × queries) over the same queries: a t test."""
    xs = [np.atleast_2d(np.asarray(x, float)) for x in groups]
    if len(weights) != len(xs):
        raise ValueError(f"{len(weights)} weights for {len(xs)} groups")
    if len({x.shape[1] for x in xs}) != 1:
        shapes = ", ".join(str(x.shape) for x in xs)
        raise ValueError(f"the groups must score the same queries: {shapes}")
    per_query = sum(w * x.mean(axis=0) for w, x in zip(weights, xs, strict=True))
    delta = float(sum(w * x.mean() for w, x in zip(weights, xs, strict=True)))
    seeds = [c for w, x in zip(weights, xs, strict=True) for c in _seed_component(x, w)]
    return satterthwaite([*seeds, _query_component(per_query)], delta, level)


def replicate_contrast(
    deltas: Sequence[float], per_query: np.ndarray, level: float = 0.95
) -> Contrast:
    """The mean of R replicates' contrasts; per_query the (Q,) contrast over replicates, seeds."""
    deltas = np.asarray(deltas, float)
    r = len(deltas)
    if r < 2:
        raise ValueError(f"need at least two replicates for their variance, got {r}")
    between = (float(np.var(deltas, ddof=1)) / r, r - 1)
    query = _query_component(np.asarray(per_query, float))
    return satterthwaite([between, query], float(deltas.mean()), level)


@dataclass(frozen=True)
class Calibration:
    rate: float  # share of the splits with p < alpha
    splits: int
    mc_se: float  # √(α(1 − α) / splits): splits share seeds, so the real error is larger


def _halves(n: int) -> list[tuple[list[int], list[int]]]:
    """Every split of n seeds into ⌊n/2⌋ and the rest, each unordered split once."""
    if n < 2:
        raise ValueError(f"need at least two seeds to split, got {n}")
    k, seeds = n // 2, range(n)
    firsts = itertools.combinations(seeds, k)
    if n % 2 == 0:  # {S, rest} and {rest, S} are one split: keep the half holding seed 0
        firsts = (c for c in firsts if c[0] == 0)
    return [(list(c), [s for s in seeds if s not in c]) for c in firsts]


def aa_calibration(
    x: np.ndarray, test: Callable[[np.ndarray, np.ndarray], float], alpha: float = 0.05
) -> Calibration:
    """How often test(half_a, half_b) -> p rejects at alpha over every split of one method's
    (seeds × queries) scores into two halves: an A/A check, the truth being no difference.

    The rate is the test's level when the test holds it; mc_se treats the splits as
    independent, which they are not (they share seeds), so it understates the error. For
    example, with the two tests of this module::

        new_p = lambda a, b: seed_query_contrast([a, b], [1, -1]).p
        old_p = lambda a, b: two_level_bootstrap(a, b, draws=1_000).p
        aa_calibration(x, new_p).rate  # x of ten seeds: C(10, 5) / 2 = 126 splits
    """
    x = np.atleast_2d(np.asarray(x, float))
    splits = _halves(len(x))
    rejected = sum(test(x[a], x[b]) < alpha for a, b in splits)
    n = len(splits)
    return Calibration(rejected / n, n, float(np.sqrt(alpha * (1 - alpha) / n)))
