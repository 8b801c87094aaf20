"""Differences that carry training variance, and a correction for testing many of them.

The sign-flip test of :mod:`smec.measure.comparison` averages each query over seeds first, so
it treats the trained models as fixed. The two-level bootstrap here resamples both sources of
variation: for each draw, each method's seeds with replacement (its own seeds: the trainings of
two methods are independent), then the test queries with replacement (the same queries for both
methods: the difference stays paired over queries),

    δ* = (1/Q) Σ_q c_q · ( (1/S_a) Σ_s w_s^a A[s, q] − (1/S_b) Σ_s w_s^b B[s, q] ),

with w^a, w^b and c multinomial counts (S_a, S_b and Q draws). The interval is the percentile
interval of δ*; the p-value of δ = 0 is the centred bootstrap's,
p = (1 + #{|δ* − δ̂| ≥ |δ̂|}) / (1 + draws), δ̂ the observed difference.

Holm's step-down correction controls the family-wise error over m tests: with the p-values
sorted, p_(1) ≤ … ≤ p_(m), the adjusted p_(i) is max_{j ≤ i} min(1, (m − j + 1) p_(j)).

Example::

    >>> a = np.array([[0.5, 0.7, 0.2], [0.6, 0.8, 0.1]])  # seeds × queries
    >>> b = np.array([[0.4, 0.7, 0.2]])
    >>> d = two_level_bootstrap(a, b, draws=2000)
    >>> round(d.delta, 3)
    0.05
    >>> holm([0.01, 0.04, 0.03, 0.005]).tolist()
    [0.03, 0.06, 0.06, 0.02]
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

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
