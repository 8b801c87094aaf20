"""DVC stage `evaluate`: nDCG@10, Recall@100 and MRR@10 per method and dimension.

Methods: MRL (prefix of its head), SMRL (output of each step), and the untrained baselines
`truncate` and `pca`. Writes reports/retrieval.csv and metrics/retrieval.json.
"""

import argparse

from smec import params, retrieval, tracking
from smec.errors import main


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = ap.parse_args()
    table = retrieval.run(params.load(args.params), tracking.root())
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main(cli)
