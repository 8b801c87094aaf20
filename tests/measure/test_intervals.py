import math

import pandas as pd
import pytest

from smec.measure import claims, intervals
from smec.params import Gradstats, Train


def test_t_interval_matches_the_hand_worked_case():
    """[1, 2, 3, 4, 5]: mean 3, s = 1.5811, t(0.975, 4) = 2.7764, half-width 1.9632."""
    ci = intervals.t_interval([1, 2, 3, 4, 5])
    assert (ci.mean, ci.n) == (3.0, 5)
    assert ci.low == pytest.approx(1.0367568, abs=1e-6)
    assert ci.high == pytest.approx(4.9632432, abs=1e-6)
    assert ci.above(1.0) and not ci.above(1.1)
    one = intervals.t_interval([2.0])
    assert one.mean == 2.0 and math.isnan(one.low)  # one seed decides nothing


def stats(mrl_ratio, smrl_ratio=(1.0,) * 5, var_ratio=(5.0,) * 5, fall=100.0, arm="rank"):
    """A sweep arm's per-seed table: epochs 0 and 10, MRL and SMRL, given per-seed ratios."""
    d = Train()
    rows = []
    for seed, (rm, rs, rv) in enumerate(zip(mrl_ratio, smrl_ratio, var_ratio, strict=True)):
        for epoch, scale in ((0, 1.0), (10, 1 / fall)):
            for method, ratio, var in (("mrl", rm, rv), ("smrl", rs, 1.0)):
                rows.append(
                    {
                        "arm": arm,
                        "loss": "rank",
                        "optimizer": d.optimizer,
                        "lr": d.lr,
                        "momentum": d.momentum,
                        "rank_scale": d.rank_scale,
                        "method": method,
                        "seed": seed,
                        "epoch": epoch,
                        "avg_grad_low": ratio * scale,
                        "avg_grad_high": scale,
                        "low_over_high": ratio,
                        "grad_var": var * 1e-7 * scale,
                        "grad_var_elements": var * 1e-7 * scale,
                        "grad_var_rows": var * 1e-8 * scale,
                        "grad_var_noise": var * 1e-9 * scale,
                    }
                )
    return pd.DataFrame(rows)


def test_a_claim_that_passes_on_the_mean_fails_on_its_interval():
    noisy = stats(mrl_ratio=(1.5, 3.5, 1.5, 3.5, 3.0))  # mean 2.6 > 2, interval [1.33, 3.87]
    report = claims.check_arms(noisy, [0, 10], Gradstats())
    c1 = report["arms"]["rank"]["claim1_low_rows_gradient"]
    assert c1["mrl_low_over_high"]["mean"] == pytest.approx(2.6)
    assert c1["mrl_low_over_high"]["ci_low"] == pytest.approx(1.3276, abs=1e-3)
    assert not c1["passed"]
    tight = claims.check_arms(stats(mrl_ratio=(2.9, 3.1, 3.0, 3.05, 2.95)), [0, 10], Gradstats())
    assert tight["arms"]["rank"]["claim1_low_rows_gradient"]["passed"]


def test_claims_2_and_3_are_decided_on_their_intervals():
    ok = claims.check_arms(stats(mrl_ratio=(3.0,) * 5), [0, 10], Gradstats())["arms"]["rank"]
    assert ok["claim2_variance"]["passed"] and ok["claim3_fall"]["passed"]
    assert ok["claim2_variance"]["mrl_over_smrl_var"][0]["mean"] == pytest.approx(5.0)
    assert set(ok["claim2_variance"]["by_reading"]) == {"elements", "rows", "noise"}
    below = stats(mrl_ratio=(3.0,) * 5, var_ratio=(3.0, 0.5, 2.5, 0.6, 1.4))  # mean 1.6
    assert not claims.check_arms(below, [0, 10], Gradstats())["arms"]["rank"]["claim2_variance"][
        "passed"
    ]
    flat = claims.check_arms(stats(mrl_ratio=(3.0,) * 5, fall=4.0), [0, 10], Gradstats())
    assert not flat["arms"]["rank"]["claim3_fall"]["passed"]


def test_the_per_loss_arms_are_those_that_change_only_the_loss():
    both = pd.concat([stats((3.0,) * 5), stats((3.0,) * 5, arm="rank_sgd").assign(lr=1.0)])
    assert claims.loss_arms(both) == {"rank": "rank"}


def test_the_long_table_has_the_columns_the_figures_read():
    table = intervals.seed_table(stats(mrl_ratio=(3.0,) * 5), [0, 10])
    assert list(table.columns) == [
        "arm",
        "loss",
        "method",
        "epoch",
        "quantity",
        "mean",
        "ci_low",
        "ci_high",
        "n_seeds",
    ]
    ratio = table[
        (table.method == "mrl/smrl") & (table.quantity == "grad_var") & (table.epoch == 0)
    ]
    assert ratio["mean"].item() == pytest.approx(5.0) and ratio["n_seeds"].item() == 5
    fall = table[(table.quantity == "fall_avg_grad_high") & (table.method == "smrl")]
    assert fall["mean"].item() == pytest.approx(100.0) and fall["epoch"].item() == 10
