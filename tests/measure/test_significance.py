"""The two-level bootstrap, Holm's correction and the seed–query contrast against cases worked
by hand, and the contrast's level on simulated A/A data against the bootstrap's."""

import functools
from collections.abc import Iterator

import numpy as np
import pytest
from scipy import stats

from smec.measure.significance import (
    CHUNK,
    Calibration,
    Contrast,
    _draws,
    aa_calibration,
    holm,
    replicate_contrast,
    satterthwaite,
    seed_query_contrast,
    two_level_bootstrap,
)


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


def test_satterthwaites_degrees_of_freedom_are_welchs():
    """Two equal components of 4 df: df = 2² / (1/4 + 1/4) = 8; one of no variance is left out
    of the sum; and s_i² / n_i with n_i − 1 df is Welch's t test of two samples."""
    assert satterthwaite([(1.0, 4), (1.0, 4)], 1.0).df == pytest.approx(8.0)
    assert satterthwaite([(2.0, 3), (0.0, 7)], 1.0).df == pytest.approx(3.0)
    far = satterthwaite([(1.0, 10)], 10.0)  # analytic: no Monte-Carlo floor under the p-value
    assert far.p == pytest.approx(2 * stats.t.sf(10.0, 10)) and far.p < 1e-5
    rng = np.random.default_rng(4)
    x, y = rng.normal(0.3, 1.0, 6), rng.normal(0.0, 2.0, 9)
    parts = [(np.var(x, ddof=1) / 6, 5), (np.var(y, ddof=1) / 9, 8)]
    got = satterthwaite(parts, x.mean() - y.mean(), level=0.9)
    welch = stats.ttest_ind(x, y, equal_var=False)
    assert (got.p, got.df) == (pytest.approx(welch.pvalue), pytest.approx(welch.df))
    assert (got.low, got.high) == pytest.approx(tuple(welch.confidence_interval(0.9)))


def test_a_constant_difference_has_no_variance_a_point_interval_and_p_zero():
    difficulty = np.array([0.125, 0.875, 0.375, 0.625, 0.25])  # exact in binary
    a, b = np.ones((3, 5)) + difficulty, np.zeros((2, 5)) + difficulty
    assert seed_query_contrast([a, b], [1, -1]) == Contrast(1.0, 1.0, 1.0, 0.0, 0.0, np.inf)
    assert seed_query_contrast([a, a], [1, -1]).p == 1.0  # no difference at all


def test_the_contrast_of_a_two_seed_and_a_one_seed_method_worked_by_hand():
    """a's row means 2 and 4: seed component var / S = 2 / 2 = 1 with 1 df; b has one seed and
    no seed component. D_q = 2, 3, 4: query component 1 / 3 with 2 df. V = 4/3 and
    df = (16/9) / (1/1 + (1/9)/2) = 32/19; δ = 3 − 0, t = 3 / √(4/3)."""
    a, b = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]), np.zeros((1, 3))
    got = seed_query_contrast([a, b], [1, -1])
    half = stats.t.ppf(0.975, 32 / 19) * np.sqrt(4 / 3)
    assert (got.delta, got.se, got.df) == (
        3.0,
        pytest.approx(np.sqrt(4 / 3)),
        pytest.approx(32 / 19),
    )
    assert got.p == pytest.approx(2 * stats.t.sf(3 / np.sqrt(4 / 3), 32 / 19))
    assert (got.low, got.high) == (pytest.approx(3 - half), pytest.approx(3 + half))


def test_one_seed_a_method_is_the_paired_t_test_over_queries():
    rng = np.random.default_rng(6)
    a, b = rng.random((1, 50)), rng.random((1, 50))
    got = seed_query_contrast([a, b], [1, -1])
    assert (got.p, got.df) == (pytest.approx(stats.ttest_rel(a[0], b[0]).pvalue), 49.0)


def test_the_pooled_contrast_of_replicates_worked_by_hand():
    """δ = 0.02; between replicates var 1e-4, / 3 = 1/30000 with 2 df; per query var 8e-4 / 3,
    / 4 = 2/30000 with 3 df: V = 1e-4 (se 0.01, t = 2) and df = 9 / (1/2 + 4/3) = 54/11."""
    got = replicate_contrast([0.01, 0.03, 0.02], np.array([0.0, 0.04, 0.02, 0.02]))
    assert (got.delta, got.se, got.df) == pytest.approx((0.02, 0.01, 54 / 11))
    assert got.p == pytest.approx(2 * stats.t.sf(2.0, 54 / 11))
    half = stats.t.ppf(0.975, 54 / 11) * 0.01
    assert (got.low, got.high) == pytest.approx((0.02 - half, 0.02 + half))


def test_the_contrasts_refuse_unpaired_queries_wrong_weights_and_one_replicate():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"same queries: \(2, 3\), \(2, 4\)"):
        seed_query_contrast([a, np.zeros((2, 4))], [1, -1])
    with pytest.raises(ValueError, match="3 weights for 2 groups"):
        seed_query_contrast([a, a], [1, -1, 1])
    with pytest.raises(ValueError, match="two replicates"):
        replicate_contrast([0.1], np.zeros(3))
    with pytest.raises(ValueError, match="two seeds"):
        aa_calibration(a[:1], lambda x, y: 1.0)


def _splits_seen(n: int) -> tuple[list[frozenset], Calibration]:
    """The splits an A/A check of n seeds tests, each as a set of its two halves; the test
    rejects when the first half holds seed 0."""
    seen = []

    def record(a: np.ndarray, b: np.ndarray) -> float:
        halves = frozenset(a[:, 0]), frozenset(b[:, 0])
        assert not halves[0] & halves[1] and halves[0] | halves[1] == set(range(n))
        seen.append(frozenset(halves))
        return 0.01 if 0 in halves[0] else 0.5

    return seen, aa_calibration(np.arange(n, dtype=float)[:, None] * np.ones((1, 3)), record)


def test_an_aa_check_tests_every_split_into_halves_once():
    """Four seeds: {0,1|2,3}, {0,2|1,3}, {0,3|1,2}, C(4, 2) / 2 = 3; five: C(5, 2) = 10 splits
    of two and three seeds, the two holding seed 0 in C(4, 1) = 4 of them."""
    for n, splits, rate in [(4, 3, 1.0), (5, 10, 0.4)]:
        seen, got = _splits_seen(n)
        assert len(seen) == len(set(seen)) == got.splits == splits
        assert {len(h) for split in seen for h in split} == {n // 2, n - n // 2}
        assert got.rate == pytest.approx(rate)
        assert got.mc_se == pytest.approx(np.sqrt(0.05 * 0.95 / splits))


# Simulated scores: a query's difficulty is shared by every method (SD 0.3, the spread of nDCG@10
# over queries); a trained model shifts its mean over the queries (SD 0.01 between seeds for the
# planted signals, 0.015 for the A/A data); and each (seed, query) adds noise (SD 0.05, the
# seed × query interaction). The seed shift is most of the difference's variance: 2·0.015²/5
# against 2·0.05²/(5·300). Over 4,000 A/A simulations (1,000 draws) the bootstrap rejected in
# 8.7% with seed SD 0.01, 10.4% with 0.015, and 5.3% with 0.01 and noise SD 0.08, where the
# seeds' share of the variance drops to 82%; the contrast in 4.2%, 4.4% and 3.5%.
QUERIES, QUERY_SD, SEED_SD, AA_SEED_SD, NOISE_SD = 300, 0.3, 0.01, 0.015, 0.05
ALPHA = 0.05


def _method(
    rng: np.random.Generator, difficulty: np.ndarray, mean=0.5, seeds=5, seed_sd=SEED_SD
) -> np.ndarray:
    """(seeds × queries) scores of one method's independently trained models."""
    shift = rng.normal(0, seed_sd, (seeds, 1))
    return mean + difficulty + shift + rng.normal(0, NOISE_SD, (seeds, len(difficulty)))


def _bound(simulations: int) -> float:
    """α + 2 Monte-Carlo standard errors of a rejection rate whose truth is α."""
    return ALPHA + 2 * np.sqrt(ALPHA * (1 - ALPHA) / simulations)


def _aa_pairs(simulations: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A/A data sets: two draws of one method, 5 seeds each, on one draw of queries."""
    rng = np.random.default_rng(seed)
    for _ in range(simulations):
        difficulty = rng.normal(0, QUERY_SD, QUERIES)
        yield (
            _method(rng, difficulty, seed_sd=AA_SEED_SD),
            _method(rng, difficulty, seed_sd=AA_SEED_SD),
        )


@functools.cache
def _aa_contrasts(simulations: int = 4_000) -> tuple[Contrast, ...]:
    return tuple(seed_query_contrast([a, b], [1, -1]) for a, b in _aa_pairs(simulations, 11))


def test_a_planted_difference_is_found_and_covered():
    """+0.03 with five seeds a method: t ≈ 0.03 / 0.0068 ≈ 4.4 on about 8.5 df. Measured: found
    in 194 of 200 simulations, covered in 194."""
    rng, found, covered = np.random.default_rng(7), 0, 0
    for _ in range(200):
        difficulty = rng.normal(0, QUERY_SD, QUERIES)
        a, b = _method(rng, difficulty, mean=0.53), _method(rng, difficulty)
        got = seed_query_contrast([a, b], [1, -1])
        found += got.p < ALPHA
        covered += got.low <= 0.03 <= got.high
    assert found >= 0.9 * 200 and covered >= 0.9 * 200


def test_a_planted_growth_of_a_lead_is_found_as_a_difference_of_differences():
    """A leads B by 0.04 with few labels (A₁ − B₁) and not at all with all of them (A₂ − B₂):
    (A₁ − B₁) − (A₂ − B₂) = 0.04, four groups of five seeds on the same queries. Measured: found
    in 98 of 100 simulations, covered in 95."""
    rng, found, covered = np.random.default_rng(8), 0, 0
    for _ in range(100):
        difficulty = rng.normal(0, QUERY_SD, QUERIES)
        means = [0.54, 0.50, 0.51, 0.51]
        groups = [_method(rng, difficulty, mean=m) for m in means]
        got = seed_query_contrast(groups, [1, -1, -1, 1])
        found += got.p < ALPHA
        covered += got.low <= 0.04 <= got.high
    assert found >= 0.9 * 100 and covered >= 0.9 * 100


def test_the_contrast_holds_its_level_on_aa_data_where_the_bootstrap_does_not():
    """Two draws of one method, 5 seeds against 5: the truth is no difference. The contrast
    rejects at α = 0.05 in at most α + 2 MC-SE = 5.7% of 4,000 simulations (measured 4.25%,
    MC-SE 0.34%); the two-level bootstrap (500 draws) in more than α + 2 MC-SE = 6.5% of 800
    (measured 9.4%, MC-SE 0.77%): resampling five seeds with replacement shrinks their variance
    by 4/5, and its tails are too light."""
    new = np.mean([c.p < ALPHA for c in _aa_contrasts()])
    assert new <= _bound(len(_aa_contrasts()))
    old = np.mean([two_level_bootstrap(a, b, draws=500).p < ALPHA for a, b in _aa_pairs(800, 12)])
    assert old > _bound(800)


def test_the_normal_quantile_would_reject_too_often_at_five_seeds():
    """The same estimates and standard errors with z for t (df = ∞) reject in 7.9% of the 4,000
    A/A simulations (bound 5.7%): five seeds a method leave about 8 degrees of freedom (the
    median df), not infinitely many."""
    contrasts = _aa_contrasts()
    z = np.mean([2 * stats.norm.sf(abs(c.delta) / c.se) < ALPHA for c in contrasts])
    t = np.mean([c.p < ALPHA for c in contrasts])
    assert z > _bound(len(contrasts)) >= t


def test_splitting_ten_seeds_of_one_method_every_way_calibrates_the_tests():
    """C(10, 5) / 2 = 126 splits into 5 against 5. The splits share seeds, so one array's rate
    varies: over 30 simulated arrays the contrast's rate was 0 to 6.3% (mean 4.2%) and never
    above α + 2 MC-SE, always below the bootstrap's (5.6 to 12.7%, mean 9.9%, above α + 2 MC-SE
    in 20 of 30); this array is the first of them."""
    rng = np.random.default_rng(0)
    x = _method(rng, rng.normal(0, QUERY_SD, QUERIES), seeds=10, seed_sd=AA_SEED_SD)
    new = aa_calibration(x, lambda a, b: seed_query_contrast([a, b], [1, -1]).p)
    old = aa_calibration(x, lambda a, b: two_level_bootstrap(a, b, draws=500).p)
    assert new.splits == old.splits == 126
    assert new.rate <= ALPHA + 2 * new.mc_se and new.rate < old.rate
