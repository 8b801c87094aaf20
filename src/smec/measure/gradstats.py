"""Gradient statistics of a head's weights: the per-step recorder and per-epoch statistics.

At every optimiser step the recorder keeps, per output row k of G = ∂L/∂W (rows × cols, taken
before the update), the sum Σ_c G[k, c] and the sum of squares Σ_c G[k, c]², and of the update
the optimiser then applied, ΔW = W_after − W_before, the sum of squares Σ_c ΔW[k, c]². Over an
epoch it also accumulates, per weight, Σ_t G_t. Everything the figures show derives
from these exactly (the claims are checked in :mod:`smec.measure.claims`):

- row norm g_k = sqrt(Σ_c G[k, c]²); average gradient of rows [a, b) in epoch e = mean of g_k
  over k in [a, b) and the steps of e; likewise the average update ‖ΔW[k]‖;
- gradient variance, three readings the paper leaves open (`gradstats.variance`):
  `elements` (default), the variance of all rows·cols entries of G, per step, averaged over the
  steps of e; `rows`, the variance of g_k across rows, likewise; `noise`, the variance of each
  weight's gradient across the steps of e (mini-batch noise), averaged over the weights: for
  row k that is Σ_t Σ_c G_t[k, c]² / (T · cols) − mean_c (Σ_t G_t[k, c] / T)², so only Σ_t G_t
  is kept per weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from smec.measure.intervals import QUANTITIES

RECORD_COLUMNS = [
    "method",
    "head",
    "epoch",
    "step",
    "row",
    "cols",
    "sum",
    "sumsq",
    "update_sumsq",
    "noise",
]
VARIANCES = {"elements": "grad_var_elements", "rows": "grad_var_rows", "noise": "grad_var_noise"}


@dataclass
class EpochRecord:
    epoch: int
    sums: np.ndarray  # (steps, rows) Σ_c G
    sumsq: np.ndarray  # (steps, rows) Σ_c G²
    update_sumsq: np.ndarray  # (steps, rows) Σ_c ΔW² (NaN where no update was recorded)
    noise: np.ndarray  # (rows,) mean over the row's weights of their variance across steps


class Recorder:
    """Collects the sums of S members' gradients (S, rows, cols) on the training device and
    copies them to the host once per epoch, one :class:`EpochRecord` per member.

    float32 on the device: a float64 copy of the gradient would cost 50x the sums themselves.
    Per step it makes four passes over the gradient (its row sums, its square, their row sums,
    and the per-weight sum across the epoch's steps) and two over the update, which the
    optimiser hands over (:class:`smec.training.optim.StackedOptimizer`), so the weights are
    never copied.
    """

    def __init__(self):
        self._sums: list[torch.Tensor] = []
        self._sumsq: list[torch.Tensor] = []
        self._updates: list[torch.Tensor] = []
        self._wsum: torch.Tensor | None = None  # Σ_t G_t per weight, this epoch
        self.epochs: list[list[EpochRecord]] = []  # per epoch, one record per member
        self.cols = 0

    @torch.no_grad()
    def record(self, grad: torch.Tensor) -> None:
        g = grad.detach()
        self._sums.append(g.sum(dim=2))
        self._sumsq.append(g.square().sum(dim=2))
        if self._wsum is None:
            self._wsum = g.clone()
        else:
            self._wsum += g
        self.cols = g.shape[2]

    @torch.no_grad()
    def update(self, delta: torch.Tensor) -> None:
        """The step the optimiser took, ΔW = W_after − W_before, of the step just recorded."""
        self._updates.append(delta.square().sum(dim=2))

    def end_epoch(self, epoch: int) -> list[EpochRecord]:
        """Move this epoch's sums to the host (float64), one record per member, and start the
        next epoch."""
        steps = len(self._sums)
        host = lambda xs: torch.stack(xs).cpu().double().numpy()  # noqa: E731
        sums, sumsq = host(self._sums), host(self._sumsq)  # (steps, S, rows)
        updates = host(self._updates) if self._updates else np.full_like(sums, np.nan)
        mean_sq = (self._wsum.double() / steps).square().mean(dim=2).cpu().numpy()  # (S, rows)
        noise = sumsq.sum(axis=0) / (steps * self._wsum.shape[2]) - mean_sq
        self._sums, self._sumsq, self._updates = [], [], []
        self._wsum = None
        records = [
            EpochRecord(epoch, sums[:, s], sumsq[:, s], updates[:, s], noise[s])
            for s in range(sums.shape[1])
        ]
        self.epochs.append(records)
        return records

    def table(self, method: str, head: int, member: int = 0) -> pd.DataFrame:
        """One member's whole record, one row per step and weight row (the `gradients.parquet`
        layout); `noise` repeats the row's value for its epoch on each of the epoch's steps."""
        frames, step = [], 0
        for per_member in self.epochs:
            rec = per_member[member]
            n_steps, rows = rec.sums.shape
            frames.append(
                pd.DataFrame(
                    {
                        "method": method,
                        "head": head,
                        "epoch": rec.epoch,
                        "step": np.repeat(np.arange(step, step + n_steps), rows),
                        "row": np.tile(np.arange(rows), n_steps),
                        "cols": self.cols,
                        "sum": rec.sums.ravel(),
                        "sumsq": rec.sumsq.ravel(),
                        "update_sumsq": rec.update_sumsq.ravel(),
                        "noise": np.tile(rec.noise, n_steps),
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


def _mean(a: np.ndarray) -> float:
    """The mean of the entries that are not NaN (NaN if none is)."""
    kept = a[~np.isnan(a)]
    return float(kept.mean()) if kept.size else float("nan")


def _ratio(a: float, b: float) -> float:
    """a / b, NaN where b is 0 (rows that got no gradient: an ADS head's never-selected ones)."""
    return float(a / b) if b > 0 else float("nan")


def epoch_stats(
    rec: EpochRecord, cols: int, split: int, rows: int | None = None
) -> dict[str, float]:
    """The figures' quantities for one epoch of one head.

    `split` is the first row of the high group: rows [0, split) are ω_i, [split, rows) ω_j
    (`rows`: all of them by default; an adaptor's statistics stop at the widest prefix, the
    rows a loss reaches). A NaN entry (a row masked in that step: an ADS head's) counts in no
    mean: each statistic is over the steps in which the row was trained.
    """
    sums, sumsq = rec.sums[:, :rows], rec.sumsq[:, :rows]
    norms = np.sqrt(sumsq)  # g_k per step and row
    updates = np.sqrt(rec.update_sumsq[:, :rows])
    width = np.sum(~np.isnan(sumsq), axis=1) * cols  # the step's trained entries
    low, high = _mean(norms[:, :split]), _mean(norms[:, split:])
    up_low, up_high = _mean(updates[:, :split]), _mean(updates[:, split:])
    element_var = np.nansum(sumsq, 1) / width - (np.nansum(sums, 1) / width) ** 2
    return {
        "avg_grad_low": float(low),
        "avg_grad_high": float(high),
        "low_over_high": _ratio(low, high),
        "grad_var_elements": float(np.mean(element_var)),
        "grad_var_rows": float(np.mean(np.nanvar(norms, axis=1))),
        "grad_var_noise": _mean(rec.noise[:rows]),
        "avg_update_low": float(up_low),
        "avg_update_high": float(up_high),
        "update_low_over_high": _ratio(up_low, up_high),
        "steps": len(rec.sums),
    }


def _epoch_record(g: pd.DataFrame, epoch: int) -> EpochRecord:
    """One epoch of a record table back as (steps, rows) arrays."""
    g = g.sort_values(["step", "row"])
    n_rows = g["row"].nunique()
    shape = (len(g) // n_rows, n_rows)
    sums, sumsq, updates, noise = (
        g[c].to_numpy(dtype=float).reshape(shape) for c in ("sum", "sumsq", "update_sumsq", "noise")
    )
    return EpochRecord(epoch, sums, sumsq, updates, noise[0])


def per_epoch(record: pd.DataFrame, split: int, rows: int | None = None) -> pd.DataFrame:
    """:func:`epoch_stats` per (method, head, epoch) of a gradient record table."""
    out = []
    for (method, head, epoch), g in record.groupby(["method", "head", "epoch"], sort=True):
        stats = epoch_stats(_epoch_record(g, epoch), int(g["cols"].iloc[0]), split, rows)
        out.append({"method": method, "head": head, "epoch": epoch, **stats})
    return pd.DataFrame(out)


def kept_rows(record: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    """The record of the given weight rows only, renumbered 0.. in their order (an ADS head's
    kept rows: the first half of them is its "low" group, the second its "high"), each row's
    entries NaN in the steps where it was masked (its gradient exactly zero: not trained)."""
    position = {r: i for i, r in enumerate(rows)}
    kept = record[record["row"].isin(position)].copy()
    kept["row"] = kept["row"].map(position)
    masked = (kept["sumsq"] == 0) & (kept["sum"] == 0)
    kept.loc[masked, ["sum", "sumsq", "update_sumsq"]] = np.nan
    return kept


FIGURE_COLUMNS = ["method", "epoch", *QUANTITIES, "steps"]


def figure_table(record: pd.DataFrame, dims: list[int], variance: str) -> pd.DataFrame:
    """One row per method and epoch for the head of width dims[0] (MRL's head, SMRL's step 1);
    `grad_var` holds the chosen variance reading, all three stay in their own columns."""
    table = per_epoch(record[record["head"] == 1], split=dims[1])
    table["grad_var"] = table[VARIANCES[variance]]
    return table[FIGURE_COLUMNS].sort_values(["method", "epoch"]).reset_index(drop=True)


SERIES = ("avg_grad_low", "avg_grad_high", "grad_var")


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch curves with one column per method and series, for `dvc plots`."""
    w = table.pivot(index="epoch", columns="method", values=list(SERIES))
    w.columns = [f"{m}_{s}" for s, m in w.columns]
    return w.reset_index()
