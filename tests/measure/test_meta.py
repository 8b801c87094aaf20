"""The verdict across cells (smec.measure.meta) on cells whose true effects are planted."""

import numpy as np
import pandas as pd
import pytest

from smec.measure import meta


def planted(rng, k: int, mu: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """k cells: true effects mu + N(0, tau^2), each estimated with its own standard error."""
    se = rng.uniform(0.01, 0.03, k)
    return mu + rng.normal(0, tau, k) + rng.normal(0, se), se


@pytest.mark.parametrize("tau", [0.0, 0.02])
def test_the_pooled_interval_covers_the_planted_mean_at_least_at_its_level_with_five_cells(tau):
    rng = np.random.default_rng(0)
    hits = [
        (p := meta.random_effects(*planted(rng, 5, 0.05, tau))).low <= 0.05 <= p.high
        for _ in range(2000)
    ]
    assert np.mean(hits) >= 0.94  # at least its level (the floored variance errs wide at tau 0)


def test_with_no_effect_the_pooled_verdict_is_a_difference_at_most_alpha_of_the_time():
    rng = np.random.default_rng(1)
    found = [meta.verdict(meta.random_effects(*planted(rng, 5, 0.0, 0.01))) for _ in range(2000)]
    assert np.mean([v != "no difference" for v in found]) <= 0.06


def test_heterogeneity_is_found_where_it_was_planted_and_not_where_it_was_not():
    rng = np.random.default_rng(2)
    spread = meta.random_effects(*planted(rng, 6, 0.05, 0.1))
    same = meta.random_effects([0.05] * 6, [0.02] * 6)
    assert spread.i2 > 0.8 and spread.p_heterogeneity < 0.01 and spread.tau2 > 0.003
    assert (same.tau2, same.i2, same.estimate) == (0.0, 0.0, pytest.approx(0.05))


def test_one_cell_is_its_own_interval_and_no_verdict_across_cells():
    p = meta.random_effects([0.1], [0.01])
    assert (p.low, p.high) == pytest.approx((0.1 - 1.96 * 0.01, 0.1 + 1.96 * 0.01), abs=1e-4)
    assert meta.verdict(p) == "undecided"


def pairs_row(kind, dim, a, b, ndcg_a, delta, half, df=100.0):
    low, high = delta - half, delta + half
    return dict(
        kind=kind,
        init="tuned",
        dim=dim,
        a=a,
        b=b,
        ndcg_a=ndcg_a,
        delta=delta,
        low=low,
        high=high,
        df=df,
        replicates=3,
    )


def test_a_cells_contrasts_read_its_pairs_at_each_width_as_a_fraction_of_d():
    se = 0.01
    half = se * 1.9839715  # t(0.975, 100)
    rows = [
        pairs_row("smec vs", 128, "smec", "mrl_adaptor", 0.5, -0.02, half),
        pairs_row("smec vs", 64, "smec", "mrl_adaptor", 0.4, 0.03, half),
        pairs_row("smec vs", 128, "smec", "mrl", 0.5, 0.1, half),
        pairs_row("smec vs", 64, "smec", "mrl", 0.4, 0.1, half),
        pairs_row("vs best baseline", 128, "smec", "pca", 0.5, 0.02, half),
        pairs_row("vs best baseline", 128, "mrl_adaptor", "pca", 0.52, 0.04, half),
        pairs_row("vs best baseline", 128, "smrl", "pca", 0.9, 0.4, half),  # not a grid method
        pairs_row("vs best baseline", 64, "smec", "pca", 0.4, 0.05, half),
    ]
    table = meta.cell_contrasts(pd.DataFrame(rows), "tuned", ["mrl", "smec", "mrl_adaptor"])
    assert table["width"].tolist() == ["D/2", "D/4", "D/2", "D/4", "D/2", "D/4"]
    assert table["se"].tolist() == pytest.approx([se] * 6, rel=1e-6)
    best = table[table["contrast"] == meta.CONTRASTS[2][0]]
    assert best[["a", "delta"]].values.tolist() == [["mrl_adaptor", 0.04], ["smec", 0.05]]
