"""The A/A check on the committed scores (`reports/calibration.csv`, written by the
`comparison` stage): one method against itself, over every split of ten seeds at identical
settings into two halves of five, must come out "significant" at α = 0.05 no more often than α
allows, under the test every verdict reads."""

import math

import pandas as pd

from ..conftest import ROOT

ALPHA = 0.05


def pooled(table: pd.DataFrame, test: str) -> tuple[float, int]:
    """The share of every method's and width's splits that rejected, and how many splits."""
    rows = table[table.test == test]
    splits = int(rows.splits.sum())
    return float((rows.rate * rows.splits).sum() / splits), splits


def test_the_calibrated_test_holds_its_level_on_the_committed_scores():
    table = pd.read_csv(ROOT / "reports/calibration.csv")
    rate, splits = pooled(table, "seed_query_t")
    # the splits share seeds, so this Monte Carlo error understates the real one
    assert rate <= ALPHA + 2 * math.sqrt(ALPHA * (1 - ALPHA) / splits), (rate, splits)
    assert set(table.method) >= {"smec", "mrl_adaptor", "mrl"}
    assert "two_level_bootstrap" in set(table.test)  # the old test's rate, beside it
