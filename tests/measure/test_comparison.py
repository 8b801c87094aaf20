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


def test_the_table_holds_seed_intervals_and_the_pooled_difference_from_mrl():
    t = comparison.table(SCORES).set_index("method")
    # MRL: seed means 0.4 and 0.6 -> mean 0.5, t interval 0.5 ± 12.706 · 0.1414 / √2
    assert t.loc["mrl", "ndcg_at_10"] == pytest.approx(0.5)
    assert t.loc["mrl", "ci_high"] == pytest.approx(0.5 + 12.7062 * 0.141421 / 2**0.5, rel=1e-4)
    # SMEC − MRL per query (seeds averaged): 0.3, 0.1, 0.2 -> 0.2
    assert t.loc["smec", "delta_vs_mrl"] == pytest.approx(0.2)
    assert np.isnan(t.loc["truncate", "ci_low"])  # one seed: no interval
    assert list(t.index) == ["truncate", "pca", "mrl", "smec"]  # the registry's order
    assert (t.n_replicates == 1).all()


def test_the_family_is_smec_against_the_others_and_the_best_baseline_each_pair_once():
    t = comparison.table(SCORES)
    got = [(c.a, c.b, c.kind) for c in comparison.family(t, [], None)]
    # PCA (0.3) beats truncation (0.2): the best baseline every learned method faces
    assert got == [
        ("smec", "mrl", "smec vs"),
        ("mrl", "pca", "vs best baseline"),
        ("smec", "pca", "vs best baseline"),
    ]
    pairs = comparison.pairs(SCORES, t, [], None).set_index(["kind", "a", "b"])
    row = pairs.loc[("vs best baseline", "smec", "pca")]
    assert row["delta"] == pytest.approx(0.7 - 0.3)
    assert row["ndcg_a"] == pytest.approx(0.7) and row["ndcg_b"] == pytest.approx(0.3)
    assert row["low"] < 0.4 < row["high"] and row["low"] > 0
    assert (pairs.p_holm >= pairs.p - 1e-12).all()
    smallest = pairs.p.idxmin()
    assert pairs.p_holm[smallest] == pytest.approx(min(1, len(pairs) * pairs.p[smallest]))


def test_baselines_repeat_under_every_start():
    base = SCORES[SCORES.method == "pca"].drop(columns="init")
    both = comparison.with_starts(base, ["identity", "random"])
    assert sorted(set(both["init"])) == ["identity", "random"] and len(both) == 2 * len(base)


def replicated(deltas: list[float], seeds: int = 5, queries: int = 300) -> pd.DataFrame:
    """A `tuned` arm with one replicate per entry of `deltas`: SMEC leads Matryoshka-Adaptor
    by that much in it (per-seed noise 0.01, per-query noise 0.05, a shared query effect)."""
    rng = np.random.default_rng(5)
    base = rng.uniform(0.2, 0.9, queries)
    rows = []
    for r, d in enumerate(deltas):
        for method, shift in (("smec", d), ("mrl_adaptor", 0.0)):
            for seed in range(seeds):
                v = base + shift + rng.normal(0, 0.01) + rng.normal(0, 0.05, queries)
                rows += [(method, r, seed, f"q{i}", x) for i, x in enumerate(v)]
    df = pd.DataFrame(rows, columns=["method", "replicate", "seed", "query_id", "ndcg_at_10"])
    return df.assign(init="tuned", dim=96, recall_at_100=0.5, mrr_at_10=0.25)


def test_a_verdict_is_stated_only_where_four_of_five_replicates_agree():
    agree = replicated([0.03, 0.04, 0.03, 0.05, 0.035])
    split = replicated([0.04, -0.04, 0.04, -0.04, 0.0])
    for scores, verdict in ((agree, "a better"), (split, "undecided")):
        t = comparison.table(scores)
        assert t.set_index("method").n_replicates["smec"] == 5
        pairs = comparison.pairs(scores, t, [], None)
        (row,) = comparison.verdicts(pairs).itertuples()
        assert (row.a, row.b, row.replicates, row.verdict) == ("smec", "mrl_adaptor", 5, verdict)
    # the split replicates: their spread is in the pooled interval, which holds 0
    (row,) = comparison.pairs(split, comparison.table(split), [], None).itertuples()
    assert row.low < 0 < row.high and (row.delta_min, row.delta_max) == pytest.approx(
        (-0.04, 0.04), abs=0.01
    )


def test_the_label_growth_is_tested_as_a_difference_of_differences():
    full = replicated([0.03, 0.03, 0.03])  # SMEC ahead with every label, behind with a quarter
    scarce = replicated([-0.03, -0.03, -0.03]).assign(init="labels_25")
    scores = pd.concat([full, scarce], ignore_index=True)
    pairs = comparison.pairs(scores, comparison.table(scores), ["labels_25"], "tuned")
    row = pairs[pairs.kind == "label growth"].iloc[0]
    assert row["delta"] == pytest.approx(-0.06, abs=0.01) and row["high"] < 0
    assert row["b_better"] == 3  # each replicate finds the lead of the adaptor grows


def test_the_calibration_splits_the_headline_and_aa_seeds_of_one_method():
    rng = np.random.default_rng(2)
    rows = []
    for arm, seeds in (("identity", range(5)), ("aa", range(5, 10))):
        for seed in seeds:
            v = 0.5 + rng.normal(0, 0.01) + rng.normal(0, 0.05, 100)
            rows += [("mrl", arm, seed, f"q{i}", x) for i, x in enumerate(v)]
    df = pd.DataFrame(rows, columns=["method", "init", "seed", "query_id", "ndcg_at_10"])
    cal = comparison.calibration(df.assign(dim=96), "identity", draws=500)
    assert set(cal.test) == {"seed_query_t", "two_level_bootstrap"}
    assert (cal.splits == 126).all()  # C(10, 5) / 2
