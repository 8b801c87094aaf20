"""The figures: the seed chart of gradient statistics, retrieval per dimension, convergence."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import pandas as pd

from smec.infra import atomic
from smec.model.methods import REGISTRY

plt.rcParams["svg.hashsalt"] = "smec"  # byte-identical SVGs across identical runs

BARS = (  # (method, column, colour) in the seed's legend order
    ("smrl", "avg_grad_low", "#9ecae1"),
    ("smrl", "avg_grad_high", "#4a90c8"),
    ("mrl", "avg_grad_low", "#fdc58f"),
    ("mrl", "avg_grad_high", "#e6670d"),
)
LINES = (("smrl", "#1f5fa8", "o"), ("mrl", "#8c4a2f", "s"))


def seed_labels(dims: list[int]) -> dict[str, str]:
    """The legend's labels in the seed's form, index ranges from `train.method_dims`."""
    lo, hi = dims[1], dims[0]
    ranges = {"avg_grad_low": f"ω_i,i∈[0,{lo}]", "avg_grad_high": f"ω_j,j∈[{lo},{hi}]"}
    labels = {f"{m}.{c}": f"Average Gradient ({ranges[c]}, {m.upper()})" for m, c, _ in BARS}
    for m, _, _ in LINES:
        labels[f"{m}.grad_var"] = f"Gradient Variance (ω_k,k∈[0,{hi}], {m.upper()})"
    return labels


def _decades(values) -> tuple[float, float]:
    """Log-axis limits on whole powers of ten around the positive values, as in the seed; a
    value just above a power of ten gets the decade below, so its bar stays visible."""
    v = [float(x) for x in values if x > 0]
    return 10 ** math.floor(math.log10(0.8 * min(v))), 10 ** math.ceil(math.log10(max(v)))


def _errors(low: pd.Series | None, mean: pd.Series, high: pd.Series | None):
    """matplotlib's yerr from interval ends, or None without intervals."""
    if low is None:
        return None
    return [(mean - low).clip(lower=0).to_numpy(), (high - mean).clip(lower=0).to_numpy()]


def _captioned(fig, caption: str, bottom: float = 0.04):
    """The provenance caption under the axes (data, encoder, params, commit), wrapped to the
    figure's width (about 17 characters of 7.5 pt text per inch)."""
    lines = textwrap.wrap(caption, width=int(fig.get_figwidth() * 17))
    text = "\n".join(lines)
    fig.text(0.5, 0.01, text, ha="center", va="bottom", fontsize=7.5, color="#555555")
    fig.tight_layout(rect=(0, bottom + 0.025 * (len(lines) - 1), 1, 1))
    return fig


def _ndcg_axes(ax, xlabel: str, title: str, legend_size: float) -> None:
    """A log2 x axis against nDCG@10, as the comparison figures share."""
    ax.set_xscale("log", base=2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("nDCG@10 (test queries)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, ncol=2)
    ax.set_title(title)


def _seed_panel(
    ax,
    t: pd.DataFrame,
    epochs: list[int],
    dims: list[int],
    bars: tuple[str, str] = ("avg_grad_low", "avg_grad_high"),
    var: str | None = "grad_var",
    legend: bool = True,
):
    """The seed chart on `ax`: grouped bars (left log axis) and variance lines (right log axis).

    `t` is indexed by (method, epoch) with a column per quantity, and optionally `<q>_low` /
    `<q>_high` interval columns, drawn as error bars.
    """
    labels = seed_labels(dims)
    cols = dict(zip(("avg_grad_low", "avg_grad_high"), bars, strict=True))
    ax.set_yscale("log")
    spacing = min((b - a for a, b in itertools.pairwise(epochs)), default=10)
    width = spacing * 0.18
    for i, (m, col, colour) in enumerate(BARS):
        q = cols[col]
        rows = t.loc[[(m, e) for e in epochs]]
        ax.bar(
            [e + (i - 1.5) * width for e in epochs],
            rows[q],
            width=width,
            yerr=_errors(rows.get(f"{q}_low"), rows[q], rows.get(f"{q}_high")),
            error_kw={"elinewidth": 0.8, "capsize": 2, "ecolor": "#333333"},
            color=colour,
            edgecolor="white",
            linewidth=0.6,
            label=labels[f"{m}.{col}"].replace("Average Gradient", _BAR_NAMES[bars[0]]),
            zorder=2,
        )
    ax.set_xlabel("Epochs")
    ax.set_ylabel("Gradient Size" if bars[0] == "avg_grad_low" else "Update Size ‖ΔW‖ per row")
    ax.set_xticks(epochs)
    ax.grid(axis="y", which="major", alpha=0.3, zorder=0)
    bar_values = t[list(bars)].to_numpy().ravel()
    ax.set_ylim(*_decades(bar_values))
    handles = ax.get_legend_handles_labels()[0]
    if var is not None:
        var_ax = ax.twinx()
        var_ax.set_yscale("log")
        for m, colour, marker in LINES:
            rows = t.loc[[(m, e) for e in epochs]]
            var_ax.errorbar(
                epochs,
                rows[var],
                yerr=_errors(rows.get(f"{var}_low"), rows[var], rows.get(f"{var}_high")),
                color=colour,
                marker=marker,
                linewidth=1.8,
                markersize=6,
                capsize=3,
                label=labels[f"{m}.grad_var"],
            )
        var_ax.set_ylabel("var")
        var_ax.set_ylim(*_decades(t[var]))
        handles += var_ax.get_legend_handles_labels()[0]
        ax = var_ax
    if legend:
        ax.legend(
            handles, [h.get_label() for h in handles], loc="upper right", fontsize=8, framealpha=0.9
        )
    return handles


_BAR_NAMES = {"avg_grad_low": "Average Gradient", "avg_update_low": "Average Update"}


def gradient_stats(table: pd.DataFrame, epochs: list[int], dims: list[int], caption: str):
    """The seed figure from one run: grouped bars of average gradient and variance lines."""
    fig, ax = plt.subplots(figsize=(9, 5.6))
    _seed_panel(ax, table.set_index(["method", "epoch"]), epochs, dims)
    ax.set_title("Gradient size and variance of the head's weights, MRL vs SMRL")
    return _captioned(fig, caption)


def interval_frame(long: pd.DataFrame, arm: str) -> pd.DataFrame:
    """One arm of reports/gradstats_ci.csv as the panel's (method, epoch) x quantity frame,
    with `<q>_low` / `<q>_high` interval columns."""
    rows = long[(long.arm == arm) & long.method.isin(["mrl", "smrl"])]
    wide = rows.pivot(  # not pivot_table: it would drop the NaN interval of a single seed
        index=["method", "epoch"], columns="quantity", values=["mean", "ci_low", "ci_high"]
    )
    out = wide["mean"].copy()
    for q in out.columns:
        out[f"{q}_low"], out[f"{q}_high"] = wide[("ci_low", q)], wide[("ci_high", q)]
    return out


def gradient_stats_ci(
    long: pd.DataFrame,
    panels: list[tuple[str, str]],
    epochs: list[int],
    dims: list[int],
    caption: str,
    bars: tuple[str, str] = ("avg_grad_low", "avg_grad_high"),
    var: str | None = "grad_var",
    title: str = "Gradient size and variance, mean and 95% interval over seeds",
):
    """The seed chart once per (title, arm) panel, bars and lines with their intervals."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 5.6), squeeze=False)
    for ax, (name, arm) in zip(axes[0], panels, strict=True):
        handles = _seed_panel(ax, interval_frame(long, arm), epochs, dims, bars, var, legend=False)
        n = int(long[long.arm == arm].n_seeds.max())
        ax.set_title(f"{name} ({n} seeds)")
    fig.legend(
        handles,
        [h.get_label() for h in handles],
        loc="lower center",
        ncol=3,
        fontsize=8,
        bbox_to_anchor=(0.5, 0.035),
    )
    fig.suptitle(title)
    return _captioned(fig, caption, bottom=0.13)


def falls(long: pd.DataFrame, panels: list[tuple[str, str]], min_fall: float, caption: str):
    """Each of the six series' fall from the first to the last plotted epoch, per arm, with
    intervals; the dashed line is claim 3's threshold."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    series = [
        (m, q) for m, _, _ in LINES[::-1] for q in ("avg_grad_low", "avg_grad_high", "grad_var")
    ]
    colours = {
        ("mrl", "avg_grad_low"): "#fdc58f",
        ("mrl", "avg_grad_high"): "#e6670d",
        ("mrl", "grad_var"): "#8c4a2f",
        ("smrl", "avg_grad_low"): "#9ecae1",
        ("smrl", "avg_grad_high"): "#4a90c8",
        ("smrl", "grad_var"): "#1f5fa8",
    }
    for j, (m, q) in enumerate(series):
        rows = [
            long[(long.arm == arm) & (long.method == m) & (long.quantity == f"fall_{q}")].iloc[0]
            for _, arm in panels
        ]
        mean = pd.Series([r["mean"] for r in rows])
        xs = [i + (j - 2.5) * 0.1 for i in range(len(panels))]
        ax.errorbar(
            xs,
            mean,
            yerr=_errors(
                pd.Series([r.ci_low for r in rows]), mean, pd.Series([r.ci_high for r in rows])
            ),
            fmt="o" if m == "mrl" else "s",
            color=colours[(m, q)],
            capsize=3,
            label=f"{m.upper()} {q}",
        )
    ax.axhline(
        min_fall, color="#555555", linestyle="--", linewidth=1, label=f"claim 3: {min_fall:g}x"
    )
    ax.set_yscale("log")
    ax.set_xticks(range(len(panels)), [name for name, _ in panels])
    ax.set_ylabel("fall, first / last plotted epoch")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("How far the gradient statistics fall, mean and 95% interval over seeds")
    return _captioned(fig, caption)


def retrieval(table: pd.DataFrame, caption: str):
    """nDCG@10 against dimension (log2 x) per method of the default run and the untrained
    baselines, float32."""
    if "model" in table:
        table = table[table.model.isin(["train", "untrained"]) & (table.precision == "float32")]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in table.groupby("method", sort=False):
        rows = rows.sort_values("dim")
        ax.plot(
            rows["dim"],
            rows["ndcg_at_10"],
            marker="o",
            label=REGISTRY[method].label,
            color=REGISTRY[method].style.colour,
        )
    ax.set_xscale("log", base=2)
    dims = sorted(table["dim"].unique())
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.set_xlabel("dimension")
    ax.set_ylabel("nDCG@10 (test queries)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _captioned(fig, caption)


def _interval_line(ax, method, xs, rows: pd.DataFrame) -> None:
    """A method's nDCG@10 at `xs` in its style, with 95% interval bars where there are any."""
    ax.errorbar(
        xs,
        rows["ndcg_at_10"],
        yerr=_errors(rows["ci_low"], rows["ndcg_at_10"], rows["ci_high"])
        if rows["ci_low"].notna().any()
        else None,
        color=method.style.colour,
        marker=method.style.marker,
        linestyle=method.style.linestyle,
        capsize=3,
        label=method.label,
    )


def _comparison_panel(ax, table: pd.DataFrame, title: str) -> None:
    methods = [m for m in REGISTRY.values() if m.name in set(table.method)]
    for j, method in enumerate(methods):
        rows = table[table.method == method.name].sort_values("dim")
        xs = rows["dim"] * 2 ** ((j - len(methods) / 2) * 0.012)  # a little apart, on log2 x
        _interval_line(ax, method, xs, rows)
    _ndcg_axes(ax, "dimension", title, 7)
    dims = sorted(table["dim"].unique())
    ax.set_xticks(dims, [str(d) for d in dims])  # after the log scale, which resets ticks


def comparison(table: pd.DataFrame, titles: dict[str, str], caption: str):
    """nDCG@10 against width for every method, with 95% intervals over seeds: one panel per arm
    of `titles` (the tables' `init` column: the starts at the default settings, the headline
    first, the tuned settings, the other losses), on one y scale, two panels a row."""
    cols = min(len(titles), 2)
    rows = math.ceil(len(titles) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 5.6 * rows), sharey=True)
    axes = list(getattr(axes, "flat", [axes]))
    for ax, (arm, title) in zip(axes, titles.items(), strict=False):
        _comparison_panel(ax, table[table["init"] == arm], f"{title}: mean and 95% interval")
    for ax in axes[len(titles) :]:
        ax.set_visible(False)
    return _captioned(fig, caption)


def label_scarcity(table: pd.DataFrame, shares: dict[str, float], dim: int, caption: str):
    """nDCG@10 at width `dim` against the share of the training queries each method trained on
    (`shares`: arm -> share), with 95% intervals over seeds, one line per method."""
    rows = table[table["init"].isin(shares) & (table["dim"] == dim)]
    rows = rows.assign(share=rows["init"].map(shares) * 100)
    fig, ax = plt.subplots(figsize=(8, 5.6))
    for method in [m for m in REGISTRY.values() if m.name in set(rows.method)]:
        r = rows[rows.method == method.name].sort_values("share")
        _interval_line(ax, method, r["share"], r)
    shares_seen = sorted(rows["share"].unique())
    title = f"Fewer labels: nDCG@10 at {dim} dimensions against the training queries used"
    _ndcg_axes(ax, "share of the training queries (nested subsets)", title, 8)
    ax.set_xticks(shares_seen, [f"{s:g}%" for s in shares_seen])
    ax.minorticks_off()
    return _captioned(fig, caption)


def tuning(trials: pd.DataFrame, caption: str):
    """Each method's studies, a panel per method: against the trial number, the best held-out
    nDCG@10 so far of every study replicate (a step line each, one line style per loss), every
    completed trial (faint markers), and the default settings' value (trial 0, dotted): whether
    the studies beat the defaults, and how far their replicates agree."""
    shown = [m for m in REGISTRY.values() if m.name in set(trials.method)]
    cols = min(4, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.0 * rows + 1.2), squeeze=False)
    trials = trials if "replicate" in trials else trials.assign(replicate=0)
    losses = list(dict.fromkeys(trials["loss"]))
    for ax, method in zip(axes.flat, shown, strict=False):
        mine = trials[trials.method == method.name]
        for (loss, _), t in mine.groupby(["loss", "replicate"], sort=False):
            t = t.sort_values("trial")
            done = t[t.state == "COMPLETE"]
            line = ("-", "--", ":")[losses.index(loss) % 3]
            style = {"color": method.style.colour}
            ax.plot(done.trial, done.value, method.style.marker, alpha=0.15, ms=3, **style)
            ax.step(t.trial, t.best_so_far, line, where="post", lw=1.4, alpha=0.8, **style)
        first = mine[(mine.trial == 0) & (mine["loss"] == losses[0])].value
        if len(first):
            ax.axhline(first.iloc[0], color="0.3", ls=":", lw=1, label="defaults (trial 0)")
        n = mine.groupby(["loss", "replicate"]).ngroups
        ax.set_title(f"{method.label} ({n} studies)", fontsize=9)
        ax.set_xlabel("trial", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.supylabel("held-out nDCG@10", fontsize=9)
    fig.suptitle(
        "Equal tuning budgets: each study's best held-out nDCG@10 so far (training queries, "
        f"mean over widths and 3 trial seeds; {', '.join(losses)} loss)",
        fontsize=10,
    )
    return _captioned(fig, caption)


def pareto_front(points: pd.DataFrame) -> pd.DataFrame:
    """The points no other beats on both axes (fewer or equal bytes, higher nDCG@10)."""
    best, keep = -1.0, []
    for i, row in points.sort_values(
        ["bytes_per_vector", "ndcg_at_10"], ascending=[True, False]
    ).iterrows():
        if row.ndcg_at_10 > best:
            keep.append(i)
            best = row.ndcg_at_10
    return points.loc[keep]


def quality_bytes(table: pd.DataFrame, caption: str):
    """nDCG@10 against bytes per vector (log x): every compared method and baseline at every
    width (points) and precision (marker), one line per method through its own best points;
    the overall Pareto front in black."""
    rows = table[table.model.isin(["compare", "untrained"])]
    fig, ax = plt.subplots(figsize=(9, 5.6))
    markers = {"float32": "o", "int8": "s", "binary": "^"}
    for method in [m for m in REGISTRY.values() if m.name in set(rows.method)]:
        r = rows[rows.method == method.name]
        own = pareto_front(r)
        colour = method.style.colour
        ax.plot(
            own.bytes_per_vector,
            own.ndcg_at_10,
            color=colour,
            linestyle=method.style.linestyle,
            linewidth=1.2,
            alpha=0.85,
            label=method.label,
        )
        for precision, marker in markers.items():
            pr = r[r.precision == precision]
            ax.scatter(pr.bytes_per_vector, pr.ndcg_at_10, color=colour, marker=marker, s=18)
    front = pareto_front(rows)
    ax.step(
        front.bytes_per_vector,
        front.ndcg_at_10,
        where="post",
        color="black",
        linewidth=1.6,
        alpha=0.6,
        label="Pareto front",
    )
    for _, f in front.iterrows():
        ax.annotate(
            f"{REGISTRY[f.method].label} {f.dim} {f.precision}",
            (f.bytes_per_vector, f.ndcg_at_10),
            fontsize=6,
            xytext=(3, -8),
            textcoords="offset points",
        )
    for precision, marker in markers.items():
        ax.scatter([], [], color="#555555", marker=marker, s=18, label=precision)
    _ndcg_axes(
        ax,
        "bytes per vector",
        "Quality against size: widths and precisions (float32, int8, binary)",
        7,
    )
    return _captioned(fig, caption)


def _heldout_dim(column: str) -> int:
    """96 from `heldout_d96.ndcg_at_10`."""
    return int(column.split(".")[0].removeprefix("heldout_d"))


def convergence(history: pd.DataFrame, caption: str, variance: str = "grad_var_elements"):
    """The paper's three panels over epochs: loss, gradient variance, held-out nDCG@10."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ndcg_cols = sorted(
        (c for c in history.columns if c.startswith("heldout_d")), key=_heldout_dim, reverse=True
    )
    min_dim = min((_heldout_dim(c) for c in ndcg_cols), default=0)
    for (method, head), rows in history.groupby(["method", "head"], sort=False):
        style = {"color": REGISTRY[method].style.colour, "linestyle": "-" if head == 1 else "--"}
        name = method.upper() + ("" if method == "mrl" else f" step {head}")
        axes[0].plot(rows["epoch"], rows["loss"], label=name, **style)
        axes[1].plot(rows["epoch"], rows[variance], label=name, **style)
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
    return _captioned(fig, caption, bottom=0.05)


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


def compare_caption(p, commit: str) -> str:
    c = p.compare
    return (
        f"data {p.data.name} · encoder {p.encoder.model} · loss {c.loss} · {c.epochs} epochs per "
        f"module · {c.seeds} seeds · selection: {c.select} · {p.train.optimizer} lr "
        f"{p.train.lr:g} · commit {short_commit(commit)}"
    )


def sweep_caption(p, report: dict, commit: str) -> str:
    seeds = max(c["seeds"] for c in report["arms"].values())
    return (
        f"data {p.data.name} · encoder {p.encoder.model} · {seeds} seeds (train.seed) · "
        f"{p.train.optimizer} lr {p.train.lr:g} unless stated · variance: "
        f"{report['variance_definition']} · commit {short_commit(commit)}"
    )


def caption(p, commit: str) -> str:
    return (
        f"data {p.data.name} · encoder {p.encoder.model} · loss {p.train.loss} · "
        f"seed {p.train.seed} · {p.train.optimizer} lr {p.train.lr:g} · variance: "
        f"{p.gradstats.variance} · commit {short_commit(commit)}"
    )


def forest(cells: pd.DataFrame, pooled: pd.DataFrame, caption: str):
    """The verdict across cells: a panel per contrast, a block per width (D/2 at the top), in
    each block one row per cell (its estimate and 95% interval) and the pooled random-effects
    estimate as a diamond."""
    contrasts = list(dict.fromkeys(cells["contrast"]))
    widths = sorted(dict.fromkeys(cells["width"]), key=lambda w: int(w.split("/")[1]))
    names = list(dict.fromkeys(cells["cell"]))
    fig, axes = plt.subplots(
        1,
        len(contrasts),
        figsize=(4.6 * len(contrasts), 0.9 + 0.3 * len(widths) * (len(names) + 2)),
        sharey=True,
        squeeze=False,
    )
    colours = dict(zip(names, plt.get_cmap("tab10").colors, strict=False))
    for ax, contrast in zip(axes[0], contrasts, strict=True):
        y, ticks, labels = 0.0, [], []
        for width in widths:
            for name in names:
                r = cells[
                    (cells["contrast"] == contrast)
                    & (cells["width"] == width)
                    & (cells["cell"] == name)
                ]
                if len(r):
                    r = r.iloc[0]
                    ax.errorbar(
                        r["delta"],
                        -y,
                        xerr=[[r["delta"] - r["low"]], [r["high"] - r["delta"]]],
                        fmt="o",
                        color=colours[name],
                        ms=4,
                        capsize=2,
                    )
                ticks.append(-y)
                labels.append(f"{width}  {name}")
                y += 1
            pr = pooled[(pooled["contrast"] == contrast) & (pooled["width"] == width)].iloc[0]
            xs = [pr["low"], pr["estimate"], pr["high"], pr["estimate"]]
            ax.fill(xs, [-y, -y + 0.3, -y, -y - 0.3], color="black")
            ax.annotate(
                f"I² {pr['i2']:.0%}",
                (pr["high"], -y),
                xytext=(4, -3),
                textcoords="offset points",
                fontsize=7,
            )
            ticks.append(-y)
            labels.append(f"{width}  pooled")
            y += 1.6
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(contrast, fontsize=10)
        ax.set_xlabel("difference in nDCG@10")
        ax.set_yticks(ticks, labels, fontsize=7)
    _captioned(fig, caption, bottom=0.12)
    return fig
