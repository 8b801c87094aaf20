"""The comparison's statistics against hand-worked cases: seed intervals, per-query means,
the sign-flip test, and the family of differences the results state."""

import numpy as np
import pandas as pd
import pytest

from smec.measure import comparison


def scores_of(ndcg: dict[str, list[list[float]]]) -> pd.DataFrame:
    """A scores table at one start and width: per method, per seed, nDCG@10 of q1, q2, q3."""
    rows = [
        (method, seed, f"q{i + 1}", v)
        for method, per_seed in ndcg.items()
        for seed, values in enumerate(per_seed)
        for i, v in enumerate(values)
    ]
    df = pd.DataFrame(rows, columns=["method", "seed", "query_id", "ndcg_at_10"])
    return df.assign(init="identity", dim=96, recall_at_100=0.5, mrr_at_10=0.25)


SCORES = scores_of(
    {
        "mrl": [[0.2, 0.4, 0.6], [0.4, 0.6, 0.8]],
        "smec": [[0.5, 0.5, 0.9], [0.7, 0.7, 0.9]],
        "truncate": [[0.1, 0.2, 0.3]],
        "pca": [[0.3, 0.3, 0.3]],
    }
)


def test_per_query_means_average_each_query_over_seeds():
    means = comparison.per_query_means(SCORES).set_index(["method", "query_id"]).ndcg_at_10
    assert means["mrl", "q1"] == pytest.approx(0.3)
    assert means["smec", "q3"] == pytest.approx(0.9)
    assert means["pca", "q2"] == pytest.approx(0.3)


def test_the_sign_flip_p_value_is_the_exact_permutation_probability():
    """Three equal differences: of the 8 sign patterns, 2 reach |mean| = 1, so p = 0.25."""
    assert comparison.sign_flip_p(np.ones(3), draws=40_000) == pytest.approx(0.25, abs=0.01)
    assert comparison.sign_flip_p(np.zeros(5)) == 1.0
    big = comparison.sign_flip_p(np.full(12, 0.1), draws=20_000)  # 2 of 4096 patterns
    assert big == pytest.approx((1 + 20_000 * 2 / 4096) / 20_001, abs=0.002)


def test_the_table_holds_seed_intervals_and_the_paired_difference_from_mrl():
    t = comparison.table(SCORES, draws=2_000).set_index("method")
    # MRL: seed means 0.4 and 0.6 -> mean 0.5, t interval 0.5 ± 12.706 · 0.1414 / √2
    assert t.loc["mrl", "ndcg_at_10"] == pytest.approx(0.5)
    assert t.loc["mrl", "ci_high"] == pytest.approx(0.5 + 12.7062 * 0.141421 / 2**0.5, rel=1e-4)
    # SMEC − MRL per query (seeds averaged): 0.3, 0.1, 0.2 -> 0.2
    assert t.loc["smec", "delta_vs_mrl"] == pytest.approx(0.2)
    assert np.isnan(t.loc["truncate", "ci_low"])  # one seed: no interval
    assert list(t.index) == ["truncate", "pca", "mrl", "smec"]  # the registry's order


def test_the_family_is_each_method_against_mrl_smec_against_the_others_and_the_best_baseline():
    t = comparison.table(SCORES, draws=200)
    got = {(a, b, kind) for a, b, *_, kind in comparison.family(t)}
    assert ("smec", "mrl", "vs mrl") in got and ("pca", "mrl", "vs mrl") in got
    assert ("smec", "truncate", "smec vs") in got and ("smec", "pca", "smec vs") in got
    # PCA (0.3) beats truncation (0.2): the best baseline every learned method faces
    best = {(a, b) for a, b, k in got if k == "vs best baseline"}
    assert best == {("mrl", "pca"), ("smec", "pca")}
    pairs = comparison.pairs(SCORES, t, draws=200).set_index(["kind", "a", "b"])
    row = pairs.loc[("vs best baseline", "smec", "pca")]
    assert row["delta"] == pytest.approx(0.7 - 0.3)
    assert row["ndcg_a"] == pytest.approx(0.7) and row["ndcg_b"] == pytest.approx(0.3)


def test_baselines_repeat_under_every_start():
    base = SCORES[SCORES.method == "pca"].drop(columns="init")
    both = comparison.with_starts(base, ["identity", "random"])
    assert sorted(set(both["init"])) == ["identity", "random"] and len(both) == 2 * len(base)


def test_every_pair_has_a_bootstrap_interval_over_seeds_and_queries_and_a_holm_p_value():
    """SMEC − PCA is 0.7 − 0.3 on average; SMEC's seeds (0.633 and 0.767) and its queries put a
    spread around it that excludes 0. Holm multiplies the smallest of the family's m p-values
    by m, and no adjusted p-value is below its raw one."""
    t = comparison.table(SCORES, draws=200)
    pairs = comparison.pairs(SCORES, t, draws=200, boot=4_000)
    row = pairs.set_index(["kind", "a", "b"]).loc[("vs best baseline", "smec", "pca")]
    assert row["boot_low"] < 0.4 < row["boot_high"] and row["boot_low"] > 0
    assert (pairs.p_holm >= pairs.p_boot - 1e-12).all()
    smallest = pairs.p_boot.idxmin()
    assert pairs.p_holm[smallest] == pytest.approx(min(1, len(pairs) * pairs.p_boot[smallest]))


def test_sign_flip_tests_share_one_draw_of_signs_and_get_the_p_value_fresh_signs_give():
    rng = np.random.default_rng(7)
    for _ in range(3):  # other differences over as many queries read the same signs
        diff = rng.normal(0.02, 0.1, size=50)
        signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(4_000, 50))
        null = np.abs(signs @ diff) / 50
        fresh = (1 + np.sum(null >= abs(diff.mean()) - 1e-12)) / 4_001
        assert comparison.sign_flip_p(diff, draws=4_000) == fresh
    with pytest.raises(ValueError, match="read-only"):
        comparison._signs(4_000, 50, 0)[0, 0] = 0
