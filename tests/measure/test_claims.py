import pandas as pd
import pytest

from smec.measure import claims


def table(mrl_low, mrl_high, smrl_low, smrl_high, mrl_var, smrl_var, epochs=(0, 10)):
    rows = []
    for i, e in enumerate(epochs):
        fall = 100.0**i
        rows.append(
            {
                "method": "mrl",
                "epoch": e,
                "avg_grad_low": mrl_low / fall,
                "avg_grad_high": mrl_high / fall,
                "grad_var": mrl_var[i],
            }
        )
        rows.append(
            {
                "method": "smrl",
                "epoch": e,
                "avg_grad_low": smrl_low / fall,
                "avg_grad_high": smrl_high / fall,
                "grad_var": smrl_var[i],
            }
        )
    t = pd.DataFrame(rows)
    t["low_over_high"] = t.avg_grad_low / t.avg_grad_high
    return t


def test_claims_pass_on_the_seed_figure_numbers():
    t = table(3.666, 1.188, 1.198, 1.054, [3.07e-7, 3.07e-9], [8.84e-8, 8.84e-10])
    report = claims.check(t, [0, 10])
    assert report["claim1_low_rows_gradient"]["passed"]
    assert report["claim1_low_rows_gradient"]["mrl_low_over_high"] == pytest.approx(3.086, 1e-3)
    assert report["claim2_variance"]["passed"]
    assert report["claim3_fall"]["passed"]
    m = claims.metrics(report)
    assert m["var_ratio_epoch0"] == pytest.approx(3.47, 1e-2) and m["claim3_passed"] is True


@pytest.mark.parametrize(
    ("kwargs", "failed"),
    [
        ({"mrl_low": 1.5}, "claim1_low_rows_gradient"),  # MRL's rows not well above
        ({"smrl_low": 2.0}, "claim1_low_rows_gradient"),  # SMRL's rows not near equal
        ({"mrl_var": [3e-7, 1e-10]}, "claim2_variance"),  # MRL below SMRL at the last epoch
    ],
)
def test_claims_fail_where_the_numbers_say_so(kwargs, failed):
    base = {
        "mrl_low": 3.6,
        "mrl_high": 1.2,
        "smrl_low": 1.2,
        "smrl_high": 1.1,
        "mrl_var": [3e-7, 3e-9],
        "smrl_var": [9e-8, 9e-10],
    }
    report = claims.check(table(**(base | kwargs)), [0, 10])
    assert {k for k, v in report.items() if isinstance(v, dict) and not v["passed"]} == {failed}


def test_claim3_fails_when_a_series_does_not_fall_enough():
    t = table(3.6, 1.2, 1.2, 1.1, [3e-7, 1e-7], [9e-8, 9e-10])
    report = claims.check(t, [0, 10])
    assert not report["claim3_fall"]["passed"]
    assert report["claim3_fall"]["fall_first_over_last"]["mrl.grad_var"] == pytest.approx(3.0)
    assert "claim 3: FAIL" in claims.summary(report)
