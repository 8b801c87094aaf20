import numpy as np
import pandas as pd
import pytest
import torch

from smec import gradstats


def test_recorder_sums_equal_those_of_the_gradient():
    rec = gradstats.Recorder("mrl", 1)
    grads = [torch.randn(8, 5, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    for g in grads:
        rec.record(g)
    rec.end_epoch(0)
    table = rec.table()
    assert len(table) == 3 * 8
    for step, g in enumerate(grads):
        rows = table[table.step == step].sort_values("row")
        np.testing.assert_array_equal(rows["sum"], g.sum(1).numpy())
        np.testing.assert_array_equal(rows["sumsq"], (g * g).sum(1).numpy())
        np.testing.assert_allclose(rows["sumsq"], (g.double() ** 2).sum(1).numpy(), rtol=1e-6)
    assert (table.cols == 5).all()


def test_per_epoch_statistics_match_direct_computation():
    rec = gradstats.Recorder("mrl", 1)
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(6, 4, generator=gen) * (1 + i) for i in range(4)]
    for g in grads[:2]:
        rec.record(g)
    rec.end_epoch(0)
    for g in grads[2:]:
        rec.record(g)
    rec.end_epoch(1)
    stats = gradstats.per_epoch(rec.table(), split=3).set_index("epoch")
    for epoch, gs in ((0, grads[:2]), (1, grads[2:])):
        g = torch.stack(gs).double()
        norms = g.norm(dim=2)
        assert stats.loc[epoch, "avg_grad_low"] == pytest.approx(norms[:, :3].mean().item())
        assert stats.loc[epoch, "avg_grad_high"] == pytest.approx(norms[:, 3:].mean().item())
        elem_var = np.mean([x.var(unbiased=False).item() for x in g])
        assert stats.loc[epoch, "grad_var"] == pytest.approx(elem_var)
        row_var = np.mean([n.var(unbiased=False).item() for n in norms])
        assert stats.loc[epoch, "grad_var_rows"] == pytest.approx(row_var)


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
    report = gradstats.claims(t, [0, 10])
    assert report["claim1_low_rows_gradient"]["passed"]
    assert report["claim1_low_rows_gradient"]["mrl_low_over_high"] == pytest.approx(3.086, 1e-3)
    assert report["claim2_variance"]["passed"]
    assert report["claim3_fall"]["passed"]
    m = gradstats.metrics(report)
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
    report = gradstats.claims(table(**(base | kwargs)), [0, 10])
    assert {k for k, v in report.items() if isinstance(v, dict) and not v["passed"]} == {failed}


def test_claim3_fails_when_a_series_does_not_fall_enough():
    t = table(3.6, 1.2, 1.2, 1.1, [3e-7, 1e-7], [9e-8, 9e-10])
    report = gradstats.claims(t, [0, 10])
    assert not report["claim3_fall"]["passed"]
    assert report["claim3_fall"]["fall_first_over_last"]["mrl.grad_var"] == pytest.approx(3.0)
    assert "claim 3: FAIL" in gradstats.claims_table(report)
