"""DVC stage `gradstats`: per-epoch gradient statistics of both methods and the seed's claims.

Writes reports/gradstats.csv, reports/gradstats_curves.csv, reports/claims.json and
metrics/gradstats.json. A failed claim is a result, not an error: the stage still succeeds.
"""

import argparse

from smec import gradstats, params, tracking
from smec.errors import main


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = ap.parse_args()
    report = gradstats.run(params.load(args.params), tracking.root())
    print(gradstats.claims_table(report))


if __name__ == "__main__":
    main(cli)
