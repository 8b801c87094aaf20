"""DVC stage `prepare`: read a BEIR-format data set in place, validate and split it.

Writes data/prepared/{corpus,queries,qrels}.parquet.
"""

import argparse

from smec import beir, params, tracking
from smec.errors import main


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = ap.parse_args()
    beir.run(params.load(args.params), tracking.root())


if __name__ == "__main__":
    main(cli)
