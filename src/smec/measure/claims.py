"""The seed figure's three claims (docs/method.md), checked on one run's per-epoch gradient table
(:func:`check`) or, over the seeds of each sweep arm, on 95% intervals (:func:`check_arms`).

1. At the first plotted epoch, MRL's average gradient on the low rows is well above that on the
   high rows (ratio >= `mrl_min_ratio`), while SMRL's two are nearly equal.
2. MRL's gradient variance is above SMRL's at every plotted epoch.
3. Every series falls at least `min_fall`-fold from the first to the last plotted epoch.

Only ratios and orderings are compared, never absolute values.
"""

from __future__ import annotations

import pandas as pd

from smec.measure.gradstats import SERIES, VARIANCES
from smec.measure.intervals import as_dict, falls, mrl_over_smrl, t_interval
from smec.params import ARM_FIELDS, Train


def check(
    table: pd.DataFrame,
    epochs: list[int],
    mrl_min_ratio: float = 2.0,
    smrl_max_ratio: float = 1.25,
    min_fall: float = 10.0,
) -> dict:
    """Evaluate the seed figure's three claims on a figure table (see docs/method.md)."""
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


def _arm_claims(s: pd.DataFrame, epochs: list[int], g) -> dict:
    """The three claims of one arm, each decided on its 95% interval over seeds."""
    first, last = epochs[0], epochs[-1]
    at = lambda m: s[(s.method == m) & (s.epoch == first)]  # noqa: E731
    mrl, smrl = t_interval(at("mrl").low_over_high), t_interval(at("smrl").low_over_high)
    x = g.claim1_smrl_max_ratio
    c1 = {
        "text": "epoch 0: MRL low/high gradient well above 1, SMRL's near 1 (95% intervals)",
        "mrl_low_over_high": as_dict(mrl),
        "smrl_low_over_high": as_dict(smrl),
        "threshold": f"mrl > {g.claim1_mrl_min_ratio} and {1 / x:.2f} <= smrl <= {x}",
        "passed": mrl.above(g.claim1_mrl_min_ratio) and smrl.inside(1 / x, x),
    }
    ratios = mrl_over_smrl(s[s.epoch.isin(epochs)])
    by_epoch = {int(e): t_interval(r.grad_var) for e, r in ratios.groupby("epoch")}
    c2 = {
        "text": "MRL gradient variance above SMRL's at every plotted epoch (interval above 1)",
        "mrl_over_smrl_var": {e: as_dict(ci) for e, ci in by_epoch.items()},
        "by_reading": {
            reading: {int(e): as_dict(t_interval(r[col])) for e, r in ratios.groupby("epoch")}
            for reading, col in VARIANCES.items()
        },
        "passed": all(ci.above(1) for ci in by_epoch.values()),
    }
    fell = falls(s, first, last)
    fall_ci = {f"{m}.{q}": t_interval(r[q]) for m, r in fell.groupby("method") for q in SERIES}
    c3 = {
        "text": f"all six quantities fall >= {g.claim3_min_fall:g}x from epoch {first} to {last}",
        "fall_first_over_last": {k: as_dict(ci) for k, ci in fall_ci.items()},
        "min_fall": g.claim3_min_fall,
        "passed": all(ci.above(g.claim3_min_fall) for ci in fall_ci.values()),
    }
    settings = s.iloc[0][list(ARM_FIELDS)].to_dict()
    return {
        "settings": settings,
        "seeds": int(s.seed.nunique()),
        "claim1_low_rows_gradient": c1,
        "claim2_variance": c2,
        "claim3_fall": c3,
    }


def loss_arms(stats: pd.DataFrame) -> dict[str, str]:
    """{loss: arm} for the arms that change nothing but the loss (the per-loss claims)."""
    default = Train()
    out = {}
    for arm, s in stats.groupby("arm", sort=False):
        row = s.iloc[0]
        if all(row[f] == getattr(default, f) for f in ARM_FIELDS if f != "loss"):
            out.setdefault(str(row["loss"]), str(arm))
    return out


def check_arms(stats: pd.DataFrame, epochs: list[int], g) -> dict:
    """The claims of every sweep arm, on intervals over seeds; `per_loss` names the arm of
    each loss (the arms that change only the loss)."""
    return {
        "epochs": [int(e) for e in epochs],
        "variance_definition": g.variance,
        "per_loss": loss_arms(stats),
        "arms": {
            str(arm): _arm_claims(s, epochs, g) for arm, s in stats.groupby("arm", sort=False)
        },
    }


def arm_metrics(report: dict) -> dict:
    """Flat DVC metrics per arm: the verdicts and the decisive interval ends."""
    out = {}
    first = report["epochs"][0]
    for arm, c in report["arms"].items():
        c1, c2, c3 = c["claim1_low_rows_gradient"], c["claim2_variance"], c["claim3_fall"]
        var0 = c2["mrl_over_smrl_var"][first]
        out[arm] = {
            **{f"claim{i}_passed": x["passed"] for i, x in enumerate((c1, c2, c3), 1)},
            "mrl_low_over_high": c1["mrl_low_over_high"]["mean"],
            "mrl_low_over_high_ci_low": c1["mrl_low_over_high"]["ci_low"],
            "smrl_low_over_high": c1["smrl_low_over_high"]["mean"],
            f"var_ratio_epoch{first}": var0["mean"],
            f"var_ratio_epoch{first}_ci_low": var0["ci_low"],
            "min_fall_ci_low": min(f["ci_low"] for f in c3["fall_first_over_last"].values()),
        }
    return out


def _ci(d: dict, fmt: str = ".2f") -> str:
    return f"{d['mean']:{fmt}} [{d['ci_low']:{fmt}}, {d['ci_high']:{fmt}}]"


def arms_summary(report: dict) -> str:
    """Plain text, one block per arm: each claim's verdict and its intervals."""
    verdict = lambda c: "PASS" if c["passed"] else "FAIL"  # noqa: E731
    lines = []
    for arm, c in report["arms"].items():
        c1, c2, c3 = c["claim1_low_rows_gradient"], c["claim2_variance"], c["claim3_fall"]
        smallest = min(c3["fall_first_over_last"].values(), key=lambda f: f["mean"])
        lines += [
            f"{arm} ({c['seeds']} seeds, 95% intervals):",
            f"  claim 1: {verdict(c1)}  MRL low/high {_ci(c1['mrl_low_over_high'])}, "
            f"SMRL {_ci(c1['smrl_low_over_high'])}",
            f"  claim 2: {verdict(c2)}  MRL/SMRL var "
            + ", ".join(f"e{e}: {_ci(v)}" for e, v in c2["mrl_over_smrl_var"].items()),
            f"  claim 3: {verdict(c3)}  smallest fall {_ci(smallest, '.1f')}x "
            f"(needs {c3['min_fall']:g}x)",
        ]
    return "\n".join(lines)
