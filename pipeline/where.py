"""After `dvc repro`: print the claims, where the figures and tables are, and the MLflow store.

The claims are those decided on 95% intervals over seeds, per sweep arm. With `--require N
...`, exit 1 unless those claims passed for every loss (or for the `--losses` named) and every
compared method is in the comparison table at every width (the CI reproduction's checks). The
paths are those `dvc.yaml` declares as outputs, so they are never written twice.
"""

import argparse
import sys
from pathlib import Path

import _bootstrap  # first: this checkout's code, under the project's interpreter

from smec import params
from smec.data import artifacts
from smec.infra import tracking
from smec.infra.cli import main
from smec.measure import claims, comparison

KEYS = {1: "claim1_low_rows_gradient", 2: "claim2_variance", 3: "claim3_fall"}


def declared(root: Path) -> tuple[list[str], list[str]]:
    """Every output path `dvc.yaml` declares, in stage order, and the compared methods."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = repo.index.stages
        outs = [str(out) for stage in stages for out in stage.outs]
        compared = [
            s.addressing.split("@")[1] for s in stages if s.addressing.startswith("compare@")
        ]
    return outs, compared


def missing_from_comparison(table, methods: list[str]) -> list[str]:
    """`method@dim` of every compared method absent from the comparison table at some width."""
    dims = sorted(set(table["dim"]))
    have = set(zip(table["method"], table["dim"], strict=True))
    return [f"{m}@{d}" for m in methods for d in dims if (m, d) not in have]


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--require",
        type=int,
        nargs="+",
        choices=sorted(KEYS),
        default=[],
        help="claims that must pass (e.g. 1 2); the others are reported",
    )
    ap.add_argument(
        "--losses",
        nargs="+",
        metavar="LOSS",
        help="the losses whose claims --require checks (default: every loss of the sweep)",
    )
    args = ap.parse_args(argv)
    root = _bootstrap.CHECKOUT
    outs, compared = declared(root)
    report = artifacts.read_json(root / next(o for o in outs if Path(o).name == "claims.json"))
    print("\n" + claims.arms_summary(report))
    table = artifacts.read_csv(root / next(o for o in outs if Path(o).name == "comparison.csv"))
    print("\n" + comparison.summary(table))
    verdicts = artifacts.read_csv(root / next(o for o in outs if Path(o).name == "verdicts.csv"))
    print("\n" + comparison.verdict_lines(verdicts, comparison.HEADLINE, comparison.RIVAL))
    shown = [o for o in outs if o.startswith(("reports", "figures"))]
    print("\nresults:   " + "  ".join(shown))
    uri = tracking.tracking_uri()
    print(f"MLflow:    {uri}")
    if uri.startswith("sqlite:"):
        print(f"           open with: .venv/bin/mlflow ui --backend-store-uri {uri} --workers 1")
    experiment = params.load(root / "params.yaml").tracking.experiment
    print(f"           runs at:   {tracking.ui_url(experiment)}")
    unknown = sorted(set(args.losses or []) - set(report["per_loss"]))
    if unknown:
        known = ", ".join(report["per_loss"])
        ap.error(f"--losses {' '.join(unknown)}: not a loss of the sweep ({known})")
    failed = [
        f"claim {n} ({loss})"
        for loss, arm in report["per_loss"].items()
        if args.losses is None or loss in args.losses
        for n in args.require
        if not report["arms"][arm][KEYS[n]]["passed"]
    ]
    if args.require:
        failed += [f"{x} in the comparison" for x in missing_from_comparison(table, compared)]
    if failed:
        print(f"required checks failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main(run)
