"""DVC stage `evaluate`: nDCG@10, Recall@100 and MRR@10 per method and dimension.

Methods: MRL (prefix of its head), SMRL (output of each step), and the untrained baselines
`truncate` and `pca`. Writes reports/retrieval.csv and metrics/retrieval.json.
"""

from pathlib import Path

from smec import params, retrieval
from smec.cli import main, parser

ROOT = Path(__file__).resolve().parents[1]  # the checkout DVC runs (a temp copy under --temp)


def cli() -> None:
    args = parser(__doc__, ROOT).parse_args()
    table = retrieval.run(params.load(args.params), ROOT)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main(cli)
