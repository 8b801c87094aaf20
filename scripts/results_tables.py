"""The Markdown tables of docs/results.md from the files the pipeline wrote (`reports/`), so
no number in them is typed: printed, checked against the page, or written into it.

    python scripts/results_tables.py                           # print them
    python scripts/results_tables.py --check docs/results.md   # exit 1 where the page differs
    python scripts/results_tables.py --write docs/results.md   # replace the page's tables

A page quotes a printed table under a marker line with its title, `<!-- table: TITLE -->`
(the titles are this script's `###` headings); a marker naming no printed table is an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from smec import params
from smec.infra import atomic, cli
from smec.model import methods
from smec.report import pages

REPORTS = Path("reports")
LABELS = {
    name: method.label + ("" if method.learned else " (untrained)")
    for name, method in methods.REGISTRY.items()
}


def interval(mean: float, low: float, high: float, digits: int = 3) -> str:
    if pd.isna(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def p_value(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def head(cells: list[str]) -> str:
    return row(cells) + "\n" + row(["---"] * len(cells))


def smallest(falls: dict, kind: str) -> str:
    """The smallest of the falls (epoch 0 over the last plotted epoch) of one kind."""
    f = min((v for k, v in falls.items() if kind in k), key=lambda v: v["mean"])
    return f"{f['mean']:,.1f}x [{f['ci_low']:,.1f}, {f['ci_high']:,.1f}]"


def claims() -> str:
    """Claims 1-3 per arm (`claims.json`): the ratios and the verdicts on their intervals."""
    arms = json.loads((REPORTS / "claims.json").read_text())["arms"]
    cols = ["arm", "MRL low/high e0", "SMRL low/high e0", "MRL/SMRL var e0"]
    lines = [head([*cols, "smallest fall, bars", "... variances", "claims 1 / 2 / 3"])]
    for arm, c in arms.items():
        one, two, three = c["claim1_low_rows_gradient"], c["claim2_variance"], c["claim3_fall"]
        var = two["mrl_over_smrl_var"]
        ratios = (one["mrl_low_over_high"], one["smrl_low_over_high"], var[min(var, key=int)])
        cells = [arm, *(interval(v["mean"], v["ci_low"], v["ci_high"], 2) for v in ratios)]
        falls = three["fall_first_over_last"]
        cells += [smallest(falls, "avg_grad"), smallest(falls, "grad_var")]
        cells.append(" / ".join("✓" if x["passed"] else "✗" for x in (one, two, three)))
        lines.append(row(cells))
    return "\n".join(lines)


def law() -> str:
    t = pd.read_csv(REPORTS / "law.csv")
    lines = [head(["nesting D/d", "weights c₁/c₂", "predicted", "measured (seeds)"])]
    for r in t.itertuples():
        lines.append(
            row(
                [r.nesting, r.weights, f"{r.predicted:g}", interval(r.mean, r.ci_low, r.ci_high, 2)]
            )
        )
    return "\n".join(lines)


def sweep() -> str:
    """MRL and SMRL per arm and width over seeds, and their paired (same seed) difference."""
    t = pd.read_csv(REPORTS / "sweep_scores.csv")
    t = t[t.measure == "ndcg_at_10"].set_index(["arm", "method", "dim"])
    cols = [f"{c}, d{d}" for d in (96, 192) for c in ("MRL", "SMRL", "MRL − SMRL")]
    lines = [head(["arm", *cols])]
    for arm in dict.fromkeys(t.index.get_level_values(0)):
        cells = [arm]
        for dim in (96, 192):
            for method in ("mrl", "smrl", "mrl-smrl"):
                r = t.loc[arm, method, dim]
                cells.append(interval(r["mean"], r.ci_low, r.ci_high))
        lines.append(row(cells))
    return "\n".join(lines)


def variance_readings() -> str:
    """MRL/SMRL gradient variance at epoch 0 under each reading (`claims.json`)."""
    arms = json.loads((REPORTS / "claims.json").read_text())["arms"]
    readings = ("elements", "noise", "rows")
    lines = [head(["arm", *(f"`{r}`" for r in readings)])]
    for arm, c in arms.items():
        by = c["claim2_variance"]["by_reading"]
        cells = [
            interval(by[r]["0"]["mean"], by[r]["0"]["ci_low"], by[r]["0"]["ci_high"], 2)
            for r in readings
        ]
        lines.append(row([arm, *cells]))
    return "\n".join(lines)


def updates() -> str:
    """Gradient and update low/high ratios at epochs 0 and 30 (`gradstats_ci.csv`)."""
    t = pd.read_csv(REPORTS / "gradstats_ci.csv").set_index(["arm", "method", "epoch", "quantity"])
    lines = [
        head(
            [
                "arm",
                "MRL gradient low/high e0",
                "MRL update low/high e0",
                "e30",
                "SMRL update low/high e0",
            ]
        )
    ]
    for arm in ("rank", "rank_sgd"):
        cells = [arm]
        for method, epoch, q in (
            ("mrl", 0, "low_over_high"),
            ("mrl", 0, "update_low_over_high"),
            ("mrl", 30, "update_low_over_high"),
            ("smrl", 0, "update_low_over_high"),
        ):
            if (arm, method, epoch, q) not in t.index:
                cells.append("")
                continue
            r = t.loc[arm, method, epoch, q]
            cells.append(interval(r["mean"], r.ci_low, r.ci_high, 2))
        lines.append(row(cells))
    return "\n".join(lines)


def comparison(init: str) -> str:
    """One start's table: nDCG@10 [interval over seeds] per width, and the paired difference
    from MRL (p)."""
    t = pd.read_csv(REPORTS / "comparison.csv")
    t = t[t["init"] == init]
    dims = sorted(t.dim.unique(), reverse=True)
    lines = [head(["method"] + [c for d in dims for c in (f"d = {d}", "vs MRL (p)")])]
    for method in dict.fromkeys(t.method):
        cells = [LABELS.get(method, method)]
        for d in dims:
            r = t[(t.method == method) & (t.dim == d)].iloc[0]
            cells.append(interval(r.ndcg_at_10, r.ci_low, r.ci_high))
            vs = (
                ""
                if pd.isna(r.get("p_vs_mrl"))
                else f"{r.delta_vs_mrl:+.3f} ({p_value(r.p_vs_mrl)})"
            )
            cells.append(vs)
        lines.append(row(cells))
    return "\n".join(lines)


def outcome(r) -> str:
    """A contrast's replicates: how many find a better, b better, no difference."""
    return f"{r.a_better}/{r.b_better}/{r.no_difference}"


def smec_pairs(init: str) -> str:
    """SMEC − every other learned method, and every learned method − the best baseline: the
    pooled difference, its interval (seeds, queries and, where there are, study replicates),
    the Holm p-value over the one family, and the replicates' outcomes (a / b / none)."""
    t = pd.read_csv(REPORTS / "comparison_pairs.csv")
    t = t[(t["init"] == init) & (t.kind != "label growth")]
    dims = sorted(t.dim.unique(), reverse=True)
    lines = [head(["difference", *(f"d = {d}" for d in dims)])]
    for (kind, a, b), g in t.groupby(["kind", "a", "b"], sort=False):
        name = f"SMEC − {LABELS[b]}" if kind == "smec vs" else f"{LABELS[a]} − best baseline"
        by_dim = g.set_index("dim")
        cells = [name]
        for d in dims:
            if d not in by_dim.index:
                cells.append("")
                continue
            r = by_dim.loc[d]
            extra = f"; {r.b}" if kind != "smec vs" else ""
            reps = f"; replicates {outcome(r)}" if r.replicates > 1 else ""
            pooled = f"{r.delta:+.3f} [{r.low:+.3f}, {r.high:+.3f}]"
            cells.append(f"{pooled} (Holm {p_value(r.p_holm)}{reps}{extra})")
        lines.append(row(cells))
    return "\n".join(lines)


def verdicts() -> str:
    """Every stated contrast of SMEC: with the two adaptors (the paper's question), with MRL,
    and with SMRL + S-XBM (what S-XBM carries), and the label growth: the verdict, the pooled
    difference and interval, Holm's p-value, and the replicates' outcomes and spread."""
    t = pd.read_csv(REPORTS / "verdicts.csv")
    stated = ["mrl_adaptor", "search_adaptor", "mrl", "smrl_sxbm"]
    keep = (t.a == "smec") & t.b.isin(stated) | (t.kind == "label growth")
    lines = [
        head(["arm", "contrast", "d", "verdict", "pooled [95%]", "Holm p", "a/b/none", "spread"])
    ]
    for r in t[keep].itertuples():
        name = f"SMEC − {LABELS[r.b]}" + (" growth" if r.kind == "label growth" else "")
        spread = f"{r.delta_min:+.3f} … {r.delta_max:+.3f}" if r.replicates > 1 else ""
        cells = [
            r.init,
            name,
            str(r.dim),
            r.verdict,
            f"{r.delta:+.3f} [{r.low:+.3f}, {r.high:+.3f}]",
        ]
        lines.append(row([*cells, p_value(r.p_holm), outcome(r), spread]))
    return "\n".join(lines)


def calibration() -> str:
    """The A/A check: per test, the share of splits of one method's seeds (or replicates) that
    reject at α = 0.05, over methods and widths."""
    t = pd.read_csv(REPORTS / "calibration.csv")
    lines = [head(["test", "splits", "rejected (mean over methods × widths)", "max", "MC error"])]
    for test, g in t.groupby("test", sort=False):
        lines.append(
            row(
                [
                    test,
                    f"{g.splits.sum():,}",
                    f"{(g.rate * g.splits).sum() / g.splits.sum():.3f}",
                    f"{g.rate.max():.3f}",
                    f"{g.mc_se.iloc[0]:.3f} per cell",
                ]
            )
        )
    return "\n".join(lines)


def selection() -> str:
    t = pd.read_csv(REPORTS / "comparison_selection.csv")
    lines = [head(["start", "method", "quantity", "mean [interval over seeds]"])]
    for r in t.itertuples():
        lines.append(
            row([r.init, LABELS[r.method], r.quantity, interval(r.mean, r.ci_low, r.ci_high)])
        )
    return "\n".join(lines)


def setting(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def studies() -> str:
    """Each method's study replicates (`reports/tune/<m>/best.json`): the default settings'
    held-out value and its SD over seeds (one seed's, and the 3-seed mean's), the best held-out
    values over the replicates, how many chose the random start, and the test nDCG@10 at the
    default settings against the tuned arm's mean and its range over the replicates."""
    t = pd.read_csv(REPORTS / "comparison.csv").set_index(["init", "method", "dim"])
    headline = t.index.get_level_values("init")[0]
    dims = sorted(t.index.get_level_values("dim").unique(), reverse=True)
    cols = [
        "method",
        "loss",
        "studies × trials",
        "defaults: value (SD 1 seed; mean)",
        "best values",
    ]
    lines = [head(cols + ["random start"] + [f"d = {d}: default → tuned [range]" for d in dims])]
    for name in methods.LEARNED:
        best = json.loads((REPORTS / "tune" / name / "best.json").read_text())
        for loss in dict.fromkeys(s["loss"] for s in best["studies"]):  # none: not studied
            runs = [s for s in best["studies"] if s["loss"] == loss]
            first, sd = runs[0]["default_value"], runs[0]["default_seed_sd"] or float("nan")
            seeds = len(params.load().tune.seeds)  # a trial's value is their mean
            values = [s["value"] for s in runs]
            cells = [
                LABELS[name],
                loss,
                f"{len(runs)} × {runs[0]['trials']}",
                f"{first:.3f} ({sd:.4f}; {sd / seeds**0.5:.4f})",
                f"{min(values):.3f} … {max(values):.3f}",
                f"{sum(s['settings']['init'] == 'random' for s in runs)} of {len(runs)}",
            ]
            default, tuned = (
                (headline, "tuned")
                if loss == best["studies"][0]["loss"]
                else (loss, f"{loss}_tuned")
            )
            for d in dims:
                a, b = t.loc[(default, name, d)], t.loc[(tuned, name, d)]
                spread = f"[{b.replicate_min:.3f}, {b.replicate_max:.3f}]"
                cells.append(f"{a.ndcg_at_10:.3f} → {b.ndcg_at_10:.3f} {spread}")
            lines.append(row(cells))
    return "\n".join(lines)


def scarcity() -> str:
    """nDCG@10 [interval over seeds] at every width and label budget (the `labels_*` arms and
    the tuned arm, trained on every training query), per learned method."""
    t = pd.read_csv(REPORTS / "comparison.csv")
    arms = [a for a in dict.fromkeys(t["init"]) if a.startswith("labels_")] + ["tuned"]
    t = t[t["init"].isin(arms) & t.method.isin(methods.LEARNED)].set_index(
        ["init", "method", "dim"]
    )
    dims = sorted(t.index.get_level_values("dim").unique(), reverse=True)
    share = {a: (a.removeprefix("labels_") + "%" if a != "tuned" else "100%") for a in arms}
    lines = [head(["method", "dim", *(share[a] for a in arms)])]
    studied = set(t.index.get_level_values("method"))  # a method without studies has none
    for name in [m for m in methods.LEARNED if m in studied]:
        for d in dims:
            cells = [LABELS[name], str(d)]
            for a in arms:
                r = t.loc[(a, name, d)]
                cells.append(interval(r.ndcg_at_10, r.ci_low, r.ci_high))
            lines.append(row(cells))
    return "\n".join(lines)


def retrieval() -> str:
    t = pd.read_csv(REPORTS / "retrieval.csv")
    t = t[(t.precision == "float32") & t.model.isin(["untrained", "train"])]
    lines = [head(["method", "dim", "nDCG@10", "Recall@100", "MRR@10"])]
    for r in t.itertuples():
        lines.append(
            row(
                [
                    r.method,
                    str(r.dim),
                    f"{r.ndcg_at_10:.4f}",
                    f"{r.recall_at_100:.4f}",
                    f"{r.mrr_at_10:.4f}",
                ]
            )
        )
    return "\n".join(lines)


def grid_pooled() -> str:
    t = pd.read_csv(REPORTS / "summary/pooled.csv")
    lines = [
        head(["contrast", "width", "pooled (95% HK)", "cells", "cells' range", "I²", "verdict"])
    ]
    for r in t.itertuples():
        spread = f"{r.cell_min:+.3f} … {r.cell_max:+.3f}"
        a, b = r.contrast.split(" − ")
        verdict = {"a better": f"{a} better", "b better": f"{b} better"}.get(r.verdict, r.verdict)
        estimate = f"{r.estimate:+.3f} [{r.low:+.3f}, {r.high:+.3f}]"
        lines.append(
            row([r.contrast, r.width, estimate, str(r.cells), spread, f"{r.i2:.0%}", verdict])
        )
    return "\n".join(lines)


def grid_cells() -> str:
    t = pd.read_csv(REPORTS / "summary/cells.csv")
    cells = list(dict.fromkeys(t["cell"]))
    lines = [head(["contrast", "width", *cells])]
    for (contrast, width), g in t.groupby(["contrast", "width"], sort=False):
        by = g.set_index("cell")
        lines.append(
            row(
                [
                    contrast,
                    width,
                    *(f"{by.delta[c]:+.3f} [{by.low[c]:+.3f}, {by.high[c]:+.3f}]" for c in cells),
                ]
            )
        )
    return "\n".join(lines)


def grid_seed_figure() -> str:
    """The law and claims 1-2 at each encoder's D: the headline's, then each law cell's."""
    p = params.load()
    folders = {f"{p.data.name} (headline)": REPORTS} | {
        cell: REPORTS / "grid" / cell for cell in p.grid.law
    }
    lines = [
        head(["cell", "D", "law: nesting, predicted → measured (seeds)", "claim 1", "claim 2"])
    ]
    for name, folder in folders.items():
        law_table = pd.read_csv(folder / "law.csv")
        equal = law_table[law_table["weights"] == "1/1"]
        measured = "; ".join(
            f"{r.nesting}: {r.predicted:g} → {interval(r.mean, r.ci_low, r.ci_high, 2)}"
            for r in equal.itertuples()
        )
        c = json.loads((folder / "claims_one_run.json").read_text())
        width = 2 * int(equal["nesting"].iloc[0].split("/")[0])
        one = c["claim1_low_rows_gradient"]
        ratio = f"MRL {one['mrl_low_over_high']:.2f}, SMRL {one['smrl_low_over_high']:.2f}"
        claim1 = f"{'pass' if one['passed'] else 'FAIL'}: {ratio}"
        two = c["claim2_variance"]
        ratios = list(two["mrl_over_smrl_var"].values())
        spread = f"MRL/SMRL variance {min(ratios):.1f}–{max(ratios):.1f}"
        claim2 = f"{'pass' if two['passed'] else 'FAIL'}: {spread}"
        lines.append(row([name, str(width), measured, claim1, claim2]))
    return "\n".join(lines)


def sections() -> list[tuple[str, str]]:
    """(title, Markdown table) of every table the page quotes."""
    inits = list(dict.fromkeys(pd.read_csv(REPORTS / "comparison.csv")["init"]))
    out = [
        ("claims (claims.json)", claims()),
        ("law (law.csv)", law()),
        ("sweep (sweep_scores.csv)", sweep()),
        ("variance readings (claims.json)", variance_readings()),
        ("updates (gradstats_ci.csv)", updates()),
    ]
    for init in inits:
        out.append((f"comparison, start {init} (comparison.csv)", comparison(init)))
        out.append((f"pairs, start {init} (comparison_pairs.csv)", smec_pairs(init)))
    return [
        ("verdicts (verdicts.csv)", verdicts()),
        ("calibration (calibration.csv)", calibration()),
        *out,
        ("studies (reports/tune/<method>/best.json, comparison.csv)", studies()),
        ("label budgets (comparison.csv)", scarcity()),
        ("selection (comparison_selection.csv)", selection()),
        ("retrieval, float32 (retrieval.csv)", retrieval()),
        ("grid, pooled (reports/summary/pooled.csv)", grid_pooled()),
        ("grid, cells (reports/summary/cells.csv)", grid_cells()),
        ("grid, seed figure per encoder (law.csv, claims_one_run.json)", grid_seed_figure()),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", type=Path, metavar="PAGE", help="exit 1 if PAGE's tables differ")
    mode.add_argument("--write", type=Path, metavar="PAGE", help="replace PAGE's tables")
    ap.add_argument(
        "--prose",
        type=Path,
        nargs="*",
        default=[],
        metavar="PAGE",
        help="more pages whose prose quotes PAGE's tables (PAGE's own is always read)",
    )
    args = ap.parse_args()
    printed = sections()
    page = args.check or args.write
    if page is None:
        for title, text in printed:
            print(f"### {title}\n\n{text}\n")
        return
    before = page.read_text()
    text, stale = pages.refreshed(before, printed, str(page))
    for title in stale:
        print(f"{page}: table '{title}' differs from reports/")
    old, new = pages.table_values(before), pages.table_values(text)
    for prose in dict.fromkeys([page, *args.prose]):
        for line, number in pages.stale_prose(prose.read_text(), old, new):
            print(f"{prose}:{line}: {number} reads as a value of the old tables only")
    if args.write:
        atomic.write_text(page, text)
    elif stale:
        sys.exit(1)
    else:
        print(f"{page}: all {len(printed)} tables match reports/")


if __name__ == "__main__":
    cli.main(main)
