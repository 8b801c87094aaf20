"""The two-level bootstrap and Holm's correction against cases worked by hand."""

import numpy as np
import pytest

from smec.measure.significance import CHUNK, _draws, holm, two_level_bootstrap


def test_a_constant_difference_has_a_point_interval_and_the_smallest_p_value():
    got = two_level_bootstrap(np.ones((3, 5)), np.zeros((2, 5)), draws=999)
    assert (got.delta, got.low, got.high) == (1.0, 1.0, 1.0)
    assert got.p == pytest.approx(1 / 1000)


def test_the_seed_level_resamples_each_methods_seeds():
    """Seeds scoring 0 and 1 on every query against 0: the resampled mean is k/2 with k ~
    Binomial(2, 1/2), so δ* is 0, ½ or 1 with chances ¼, ½, ¼ whatever the queries drawn."""
    a = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    got = two_level_bootstrap(a, np.zeros((1, 3)), draws=20_000)
    assert (got.delta, got.low, got.high) == (0.5, 0.0, 1.0)
    # |δ* − ½| ≥ ½ exactly when δ* is 0 or 1: half the draws
    assert got.p == pytest.approx(0.5, abs=0.015)


def test_the_query_level_resamples_queries_paired_across_methods():
    """One seed each; a − b is 1 on two of four queries and 0 on the others, so δ* is
    Binomial(4, 1/2) / 4: δ* = 0 (or 1) with chance 1/16 each, and the 95% interval is [0, 1]
    (P(δ* ≤ 0) = 1/16 > 2.5%). A query that scores alike for both methods adds no variance."""
    a = np.array([[0.9, 0.8, 0.3, 0.2]])
    b = np.array([[-0.1, -0.2, 0.3, 0.2]])
    got = two_level_bootstrap(a, b, draws=20_000)
    assert got.delta == pytest.approx(0.5)
    assert (got.low, got.high) == (pytest.approx(0.0), pytest.approx(1.0))
    assert got.p == pytest.approx(2 / 16, abs=0.01)
    same = two_level_bootstrap(a, a, draws=100)
    assert (same.low, same.high, same.p) == (0.0, 0.0, 1.0)


def test_the_bootstrap_is_deterministic_in_its_seed_and_refuses_unpaired_queries():
    rng = np.random.default_rng(3)
    a, b = rng.random((5, 40)), rng.random((5, 40))
    assert two_level_bootstrap(a, b, seed=1) == two_level_bootstrap(a, b, seed=1)
    with pytest.raises(ValueError, match="same queries"):
        two_level_bootstrap(a, b[:, :39])


def test_holm_adjusts_step_down_in_the_inputs_order():
    """Sorted: .005·4 = .02, .01·3 = .03, .03·2 = .06, .04·1 = .04 → max so far .06."""
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([0.2]).tolist() == [0.2]  # a family of one is not corrected


def _fresh_draws(a: np.ndarray, b: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """δ* of the module docstring's formula, every count drawn anew from the seed (chunk by
    chunk: a's seeds, b's seeds, then the queries, as the bootstrap draws them)."""
    rng, q, stars = np.random.default_rng(seed), a.shape[1], []
    for start in range(0, draws, CHUNK):
        n = min(CHUNK, draws - start)
        wa = rng.multinomial(len(a), np.full(len(a), 1 / len(a)), size=n)
        wb = rng.multinomial(len(b), np.full(len(b), 1 / len(b)), size=n)
        c = rng.multinomial(q, np.full(q, 1 / q), size=n)
        stars.append((c * (wa @ a / len(a) - wb @ b / len(b))).sum(axis=1) / q)
    return np.concatenate(stars)


def test_differences_share_one_draw_of_counts_and_get_the_numbers_fresh_draws_give():
    """The counts depend only on the shapes and the seed, so they are drawn once for every
    difference of a comparison; each difference still gets exactly what drawing them anew
    gives, and none can change what the next one reads."""
    rng = np.random.default_rng(5)
    for _ in range(3):  # the same shapes, other scores: the shared counts are read again
        a, b = rng.random((5, 60)), rng.random((3, 60))
        got = two_level_bootstrap(a, b, draws=5_000, seed=2)
        stars = _fresh_draws(a, b, 5_000, 2)
        tail = (1 - 0.95) / 2
        assert (got.low, got.high) == tuple(np.quantile(stars, [tail, 1 - tail]))
        p = (1 + np.sum(np.abs(stars - got.delta) >= abs(got.delta) - 1e-12)) / 5_001
        assert got.p == p
    queries = _draws(5, 3, 60, 5_000, 2)[0][2]
    with pytest.raises(ValueError, match="read-only"):
        queries[0, 0] = 99
