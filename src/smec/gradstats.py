"""Gradient statistics of a head's weights: the per-step recorder, per-epoch statistics, claims.

At every optimiser step, before the update, the recorder keeps per output row k of
G = ∂L/∂W (shape rows × cols) the sum Σ_c G[k, c] and the sum of squares Σ_c G[k, c]².
Everything the seed figure shows derives from these two vectors exactly (the claims it makes
are checked in :mod:`smec.claims`):

- row norm g_k = sqrt(Σ_c G[k, c]²);
- average gradient of rows [a, b) in epoch e = mean of g_k over k in [a, b) and the steps of e;
- gradient variance (`elements`, the default) = variance of all rows·cols elements of G,
  from the sums per step, averaged over the steps of e; `rows` = variance of g_k across rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

RECORD_COLUMNS = ["method", "head", "epoch", "step", "row", "cols", "sum", "sumsq"]


class Recorder:
    """Collects per-row gradient sums on the training device; copies to the host once per epoch."""

    def __init__(self):
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

    def table(self, method: str, head: int) -> pd.DataFrame:
        """The whole record, one row per step and weight row (the `gradients.parquet` layout)."""
        frames, step = [], 0
        for epoch, sums, sumsq in self.epochs:
            n_steps, rows = sums.shape
            frames.append(
                pd.DataFrame(
                    {
                        "method": method,
                        "head": head,
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


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch curves with one column per method and series, for `dvc plots`."""
    w = table.pivot(index="epoch", columns="method", values=list(SERIES))
    w.columns = [f"{m}_{s}" for s, m in w.columns]
    return w.reset_index()
