"""The figures: the seed chart of gradient statistics, retrieval per dimension, convergence."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import pandas as pd

from smec import atomic

plt.rcParams["svg.hashsalt"] = "smec"  # byte-identical SVGs across identical runs

BARS = (  # (method, column, colour) in the seed's legend order
    ("smrl", "avg_grad_low", "#9ecae1"),
    ("smrl", "avg_grad_high", "#4a90c8"),
    ("mrl", "avg_grad_low", "#fdc58f"),
    ("mrl", "avg_grad_high", "#e6670d"),
)
LINES = (("smrl", "#1f5fa8", "o"), ("mrl", "#8c4a2f", "s"))
METHOD_COLOURS = {"mrl": "#e6670d", "smrl": "#1f5fa8", "truncate": "#7f7f7f", "pca": "#2ca02c"}


def seed_labels(dims: list[int]) -> dict[str, str]:
    """The legend's labels in the seed's form, index ranges from `train.method_dims`."""
    lo, hi = dims[1], dims[0]
    ranges = {"avg_grad_low": f"ω_i,i∈[0,{lo}]", "avg_grad_high": f"ω_j,j∈[{lo},{hi}]"}
    labels = {f"{m}.{c}": f"Average Gradient ({ranges[c]}, {m.upper()})" for m, c, _ in BARS}
    for m, _, _ in LINES:
        labels[f"{m}.grad_var"] = f"Gradient Variance (ω_k,k∈[0,{hi}], {m.upper()})"
    return labels


def _decades(values) -> tuple[float, float]:
    """Log-axis limits on whole powers of ten around the positive values, as in the seed."""
    v = [float(x) for x in values if x > 0]
    return 10 ** math.floor(math.log10(min(v))), 10 ** math.ceil(math.log10(max(v)))


def gradient_stats(table: pd.DataFrame, epochs: list[int], dims: list[int], caption: str):
    """Grouped bars of average gradient (left log axis) and variance lines (right log axis)."""
    t = table.set_index(["method", "epoch"])
    labels = seed_labels(dims)
    fig, ax = plt.subplots(figsize=(9, 5.6))
    ax.set_yscale("log")
    spacing = min((b - a for a, b in itertools.pairwise(epochs)), default=10)
    width = spacing * 0.18
    for i, (m, col, colour) in enumerate(BARS):
        xs = [e + (i - 1.5) * width for e in epochs]
        ax.bar(
            xs,
            [t.loc[(m, e), col] for e in epochs],
            width=width,
            color=colour,
            edgecolor="white",
            linewidth=0.6,
            label=labels[f"{m}.{col}"],
            zorder=2,
        )
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Gradient Size")
    ax.set_xticks(epochs)
    ax.grid(axis="y", which="major", alpha=0.3, zorder=0)
    var_ax = ax.twinx()
    var_ax.set_yscale("log")
    for m, colour, marker in LINES:
        var_ax.plot(
            epochs,
            [t.loc[(m, e), "grad_var"] for e in epochs],
            color=colour,
            marker=marker,
            linewidth=1.8,
            markersize=6,
            label=labels[f"{m}.grad_var"],
        )
    var_ax.set_ylabel("var")
    ax.set_ylim(*_decades(table[[c for _, c, _ in BARS]].to_numpy().ravel()))
    var_ax.set_ylim(*_decades(table["grad_var"]))
    handles = ax.get_legend_handles_labels()[0] + var_ax.get_legend_handles_labels()[0]
    var_ax.legend(
        handles, [h.get_label() for h in handles], loc="upper right", fontsize=8, framealpha=0.9
    )
    ax.set_title("Gradient size and variance of the head's weights, MRL vs SMRL")
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7.5, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def retrieval(table: pd.DataFrame, caption: str):
    """nDCG@10 against dimension (log2 x) per method."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in table.groupby("method", sort=False):
        rows = rows.sort_values("dim")
        ax.plot(
            rows["dim"],
            rows["ndcg_at_10"],
            marker="o",
            label=method.upper() if method in ("mrl", "smrl") else method,
            color=METHOD_COLOURS.get(method),
        )
    ax.set_xscale("log", base=2)
    dims = sorted(table["dim"].unique())
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("dimension")
    ax.set_ylabel("nDCG@10 (test queries)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7.5, color="#555555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def _heldout_dim(column: str) -> int:
    """96 from `heldout_d96.ndcg_at_10`."""
    return int(column.split(".")[0].removeprefix("heldout_d"))


def convergence(history: pd.DataFrame, caption: str):
    """The paper's three panels over epochs: loss, gradient variance, held-out nDCG@10."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ndcg_cols = sorted(
        (c for c in history.columns if c.startswith("heldout_d")), key=_heldout_dim, reverse=True
    )
    min_dim = min((_heldout_dim(c) for c in ndcg_cols), default=0)
    for (method, head), rows in history.groupby(["method", "head"], sort=False):
        style = {"color": METHOD_COLOURS[method], "linestyle": "-" if head == 1 else "--"}
        name = method.upper() + ("" if method == "mrl" else f" step {head}")
        axes[0].plot(rows["epoch"], rows["loss"], label=name, **style)
        axes[1].plot(rows["epoch"], rows["grad_var"], label=name, **style)
        for col in ndcg_cols:
            if rows[col].notna().any():
                dim = _heldout_dim(col)
                axes[2].plot(
                    rows["epoch"],
                    rows[col],
                    label=f"{name}, d={dim}",
                    marker="o" if dim == min_dim else None,
                    markersize=3,
                    **style,
                )
    axes[1].set_yscale("log")
    for ax, title in zip(
        axes, ("training loss", "gradient variance", "held-out nDCG@10"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("epoch (of each head)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.text(0.5, 0.01, caption, ha="center", va="bottom", fontsize=7.5, color="#555555")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def save(fig, stem: Path, png_metadata: dict[str, str] | None = None) -> list[Path]:
    """Write `<stem>.png` and `<stem>.svg` atomically and byte-reproducibly."""
    paths = [Path(f"{stem}.png"), Path(f"{stem}.svg")]
    atomic.write(
        paths[0], lambda p: fig.savefig(p, format="png", dpi=150, metadata=png_metadata or {})
    )
    atomic.write(paths[1], lambda p: fig.savefig(p, format="svg", metadata={"Date": None}))
    plt.close(fig)
    return paths


def short_commit(commit: str) -> str:
    return commit[:12] + ("-dirty" if commit.endswith("-dirty") else "")


def caption(p, commit: str) -> str:
    return (
        f"data {p.data.name} · encoder {p.encoder.model} · loss {p.train.loss} · "
        f"seed {p.train.seed} · {p.train.optimizer} lr {p.train.lr:g} · variance: "
        f"{p.gradstats.variance} · commit {short_commit(commit)}"
    )
