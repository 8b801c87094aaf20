"""The seed figure's three claims (method.md), checked on a per-epoch gradient table.

1. At the first plotted epoch, MRL's average gradient on the low rows is well above that on the
   high rows (ratio >= `mrl_min_ratio`), while SMRL's two are nearly equal.
2. MRL's gradient variance is above SMRL's at every plotted epoch.
3. Every series falls at least `min_fall`-fold from the first to the last plotted epoch.

Only ratios and orderings are compared, never absolute values.
"""

from __future__ import annotations

import pandas as pd

from smec.gradstats import SERIES


def check(
    table: pd.DataFrame,
    epochs: list[int],
    mrl_min_ratio: float = 2.0,
    smrl_max_ratio: float = 1.25,
    min_fall: float = 10.0,
) -> dict:
    """Evaluate the seed figure's three claims on a figure table (see method.md)."""
    t = table.set_index(["method", "epoch"])
    first, last = epochs[0], epochs[-1]
    mrl0, smrl0 = t.loc[("mrl", first)], t.loc[("smrl", first)]
    c1 = {
        "mrl_low_over_high": float(mrl0.low_over_high),
        "smrl_low_over_high": float(smrl0.low_over_high),
        "threshold": f"mrl >= {mrl_min_ratio} and 1/{smrl_max_ratio} <= smrl <= {smrl_max_ratio}",
    }
    c1["passed"] = bool(
        c1["mrl_low_over_high"] >= mrl_min_ratio
        and 1 / smrl_max_ratio <= c1["smrl_low_over_high"] <= smrl_max_ratio
    )
    ratios = {
        int(e): float(t.loc[("mrl", e), "grad_var"] / t.loc[("smrl", e), "grad_var"])
        for e in epochs
    }
    c2 = {"mrl_over_smrl_var": ratios, "passed": all(r > 1 for r in ratios.values())}
    falls = {
        f"{m}.{s}": float(t.loc[(m, first), s] / t.loc[(m, last), s])
        for m in ("mrl", "smrl")
        for s in SERIES
    }
    c3 = {
        "fall_first_over_last": falls,
        "min_fall": min_fall,
        "passed": all(f >= min_fall for f in falls.values()),
    }
    return {
        "epochs": [int(e) for e in epochs],
        "claim1_low_rows_gradient": {
            "text": "epoch 0: MRL low/high gradient well above 1, SMRL's near 1",
            **c1,
        },
        "claim2_variance": {
            "text": "MRL gradient variance above SMRL's at every plotted epoch",
            **c2,
        },
        "claim3_fall": {
            "text": f"all six quantities fall >= {min_fall:g}x from epoch {first} to {last}",
            **c3,
        },
    }


def metrics(claim_report: dict) -> dict:
    """Flat DVC metrics from the claims report."""
    c1, c2, c3 = (
        claim_report[k] for k in ("claim1_low_rows_gradient", "claim2_variance", "claim3_fall")
    )
    out = {
        "epoch0_mrl_low_over_high": c1["mrl_low_over_high"],
        "epoch0_smrl_low_over_high": c1["smrl_low_over_high"],
        **{f"var_ratio_epoch{e}": r for e, r in c2["mrl_over_smrl_var"].items()},
        "min_fall": min(c3["fall_first_over_last"].values()),
    }
    for i, c in enumerate((c1, c2, c3), 1):
        out[f"claim{i}_passed"] = c["passed"]
    return out


def summary(claim_report: dict) -> str:
    """A short plain-text table of the claims, for the stage's output."""
    c1, c2, c3 = (
        claim_report[k] for k in ("claim1_low_rows_gradient", "claim2_variance", "claim3_fall")
    )
    rows = [
        (
            "1",
            f"MRL low/high {c1['mrl_low_over_high']:.2f}, SMRL {c1['smrl_low_over_high']:.2f}",
            c1["passed"],
        ),
        (
            "2",
            "MRL/SMRL var "
            + ", ".join(f"e{e}:{r:.2f}" for e, r in c2["mrl_over_smrl_var"].items()),
            c2["passed"],
        ),
        (
            "3",
            f"smallest fall {min(c3['fall_first_over_last'].values()):.1f}x "
            f"(needs {c3['min_fall']:g}x)",
            c3["passed"],
        ),
    ]
    return "\n".join(f"claim {n}: {'PASS' if ok else 'FAIL'}  {text}" for n, text, ok in rows)
