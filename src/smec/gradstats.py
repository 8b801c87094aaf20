"""Gradient statistics of a head's weights: the per-step recorder, per-epoch statistics, claims.

At every optimiser step, before the update, the recorder keeps per output row k of
G = ∂L/∂W (shape rows × cols) the sum Σ_c G[k, c] and the sum of squares Σ_c G[k, c]².
Everything the seed figure shows derives from these two vectors exactly:

- row norm g_k = sqrt(Σ_c G[k, c]²);
- average gradient of rows [a, b) in epoch e = mean of g_k over k in [a, b) and the steps of e;
- gradient variance (`elements`, the default) = variance of all rows·cols elements of G,
  from the sums per step, averaged over the steps of e; `rows` = variance of g_k across rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from smec import atomic

RECORD_COLUMNS = ["method", "head", "epoch", "step", "row", "cols", "sum", "sumsq"]


class Recorder:
    """Collects per-row gradient sums on the training device; copies to the host once per epoch."""

    def __init__(self, method: str, head: int):
        self.method, self.head = method, head
        self._sums: list[torch.Tensor] = []
        self._sumsq: list[torch.Tensor] = []
        self.epochs: list[tuple[int, np.ndarray, np.ndarray]] = []  # (epoch, sums, sumsq)
        self.cols = 0

    @torch.no_grad()
    def record(self, grad: torch.Tensor) -> None:
        g = grad.detach()  # float32 sums: a float64 copy would cost 50x more per step
        self._sums.append(g.sum(dim=1))
        self._sumsq.append(g.square().sum(dim=1))
        self.cols = g.shape[1]

    def end_epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Move this epoch's sums to the host as (steps, rows) float64 arrays and return them."""
        sums = torch.stack(self._sums).cpu().double().numpy()
        sumsq = torch.stack(self._sumsq).cpu().double().numpy()
        self._sums, self._sumsq = [], []
        self.epochs.append((epoch, sums, sumsq))
        return sums, sumsq

    def table(self) -> pd.DataFrame:
        """The whole record, one row per step and weight row (the `gradients.parquet` layout)."""
        frames, step = [], 0
        for epoch, sums, sumsq in self.epochs:
            n_steps, rows = sums.shape
            frames.append(
                pd.DataFrame(
                    {
                        "method": self.method,
                        "head": self.head,
                        "epoch": epoch,
                        "step": np.repeat(np.arange(step, step + n_steps), rows),
                        "row": np.tile(np.arange(rows), n_steps),
                        "cols": self.cols,
                        "sum": sums.ravel(),
                        "sumsq": sumsq.ravel(),
                    }
                )
            )
            step += n_steps
        return (
            pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RECORD_COLUMNS)
        )

    def state(self) -> dict:
        return {"epochs": self.epochs, "cols": self.cols}

    def load_state(self, state: dict) -> None:
        self.epochs, self.cols = list(state["epochs"]), state["cols"]


def epoch_stats(sums: np.ndarray, sumsq: np.ndarray, cols: int, split: int) -> dict[str, float]:
    """The seed figure's quantities for one epoch of one head, from (steps, rows) sums.

    `split` is the first row of the high group: rows [0, split) are ω_i, [split, rows) ω_j.
    """
    norms = np.sqrt(sumsq)  # g_k per step and row
    n = sums.shape[1] * cols
    low, high = norms[:, :split].mean(), norms[:, split:].mean()
    return {
        "avg_grad_low": float(low),
        "avg_grad_high": float(high),
        "grad_var": float(np.mean(sumsq.sum(1) / n - (sums.sum(1) / n) ** 2)),
        "grad_var_rows": float(np.mean(norms.var(axis=1))),
        "low_over_high": float(low / high),
        "steps": len(sums),
    }


def per_epoch(record: pd.DataFrame, split: int) -> pd.DataFrame:
    """:func:`epoch_stats` per (method, head, epoch) of a gradient record table."""
    rows = []
    for (method, head, epoch), g in record.groupby(["method", "head", "epoch"], sort=True):
        g = g.sort_values(["step", "row"])
        n_rows = g["row"].nunique()
        shape = (len(g) // n_rows, n_rows)
        stats = epoch_stats(
            g["sum"].to_numpy().reshape(shape),
            g["sumsq"].to_numpy().reshape(shape),
            int(g["cols"].iloc[0]),
            split,
        )
        rows.append({"method": method, "head": head, "epoch": epoch, **stats})
    return pd.DataFrame(rows)


def figure_table(record: pd.DataFrame, dims: list[int], variance: str) -> pd.DataFrame:
    """One row per method and epoch for the head of width dims[0] (MRL's head, SMRL's step 1);
    `grad_var` holds the chosen variance definition, both definitions stay in their columns."""
    table = per_epoch(record[record["head"] == 1], split=dims[1])
    table = table.rename(columns={"grad_var": "grad_var_elements"})
    table["grad_var"] = table["grad_var_rows" if variance == "rows" else "grad_var_elements"]
    cols = [
        "method",
        "epoch",
        "avg_grad_low",
        "avg_grad_high",
        "grad_var",
        "low_over_high",
        "grad_var_elements",
        "grad_var_rows",
        "steps",
    ]
    return table[cols].sort_values(["method", "epoch"]).reset_index(drop=True)


SERIES = ("avg_grad_low", "avg_grad_high", "grad_var")


def claims(
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


def claims_table(claim_report: dict) -> str:
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


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch curves with one column per method and series, for `dvc plots`."""
    w = table.pivot(index="epoch", columns="method", values=list(SERIES))
    w.columns = [f"{m}_{s}" for s, m in w.columns]
    return w.reset_index()


def run(p, root: Path) -> dict:
    """The gradstats stage: per-epoch table, claims and metrics from both gradient records."""
    record = pd.concat(
        [pd.read_parquet(root / "runs" / m / "gradients.parquet") for m in ("mrl", "smrl")],
        ignore_index=True,
    )
    table = figure_table(record, p.train.method_dims, p.gradstats.variance)
    report = claims(
        table,
        p.render.epochs,
        p.gradstats.claim1_mrl_min_ratio,
        p.gradstats.claim1_smrl_max_ratio,
        p.gradstats.claim3_min_fall,
    )
    report["variance_definition"] = p.gradstats.variance
    atomic.write(
        root / "reports/gradstats.csv", lambda f: table.to_csv(f, index=False, float_format="%.6g")
    )
    atomic.write(
        root / "reports/gradstats_curves.csv",
        lambda f: wide(table).to_csv(f, index=False, float_format="%.6g"),
    )
    atomic.write_json(root / "reports/claims.json", report)
    atomic.write_json(root / "metrics/gradstats.json", metrics(report))
    return report
