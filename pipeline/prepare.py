"""DVC stage `prepare`: read a BEIR-format data set in place, validate and split it.

Writes data/prepared/{corpus,queries,qrels}.parquet.
"""

from pathlib import Path

from smec import beir, params
from smec.cli import main, parser

ROOT = Path(__file__).resolve().parents[1]  # the checkout DVC runs (a temp copy under --temp)


def cli() -> None:
    args = parser(__doc__, ROOT).parse_args()
    beir.run(params.load(args.params), ROOT)


if __name__ == "__main__":
    main(cli)
