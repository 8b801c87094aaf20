"""Exit 1 unless the required claims of reports/claims.json passed (the CI reproduction check)."""

import argparse
import json
import sys
from pathlib import Path

from smec import gradstats
from smec.cli import main

ROOT = Path(__file__).resolve().parents[1]  # the checkout DVC runs (a temp copy under --temp)

KEYS = {1: "claim1_low_rows_gradient", 2: "claim2_variance", 3: "claim3_fall"}


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--require",
        type=int,
        nargs="+",
        choices=sorted(KEYS),
        default=[1, 2],
        help="claims that must pass (default: 1 2); the others are reported",
    )
    args = ap.parse_args()
    report = json.loads((ROOT / "reports/claims.json").read_text())
    print(gradstats.claims_table(report))
    failed = [n for n in args.require if not report[KEYS[n]]["passed"]]
    if failed:
        print(f"required claim(s) {failed} failed", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main(cli)
