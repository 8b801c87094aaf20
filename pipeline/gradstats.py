"""DVC stage `gradstats`: per-epoch gradient statistics of both methods and the seed's claims.

Writes reports/gradstats.csv, reports/gradstats_curves.csv, reports/claims.json and
metrics/gradstats.json. A failed claim is a result, not an error: the stage still succeeds.
"""

from pathlib import Path

from smec import gradstats, params
from smec.cli import main, parser

ROOT = Path(__file__).resolve().parents[1]  # the checkout DVC runs (a temp copy under --temp)


def cli() -> None:
    args = parser(__doc__, ROOT).parse_args()
    report = gradstats.run(params.load(args.params), ROOT)
    print(gradstats.claims_table(report))


if __name__ == "__main__":
    main(cli)
