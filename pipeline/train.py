"""DVC stage `train@<method>`: train MRL's head or SMRL's chain of heads, recording gradients.

Writes models/<method>/heads.pt and runs/<method>/{gradients.parquet,history.csv,run.json}.
A stopped run resumes from checkpoints/<method>/state.pt.
"""

import argparse
from pathlib import Path

from smec import params, train
from smec.cli import main

ROOT = Path(__file__).resolve().parents[1]  # the checkout DVC runs (a temp copy under --temp)


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--method", required=True, choices=["mrl", "smrl"])
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="params file")
    args = ap.parse_args()
    result = train.run(params.load(args.params), args.method, ROOT)
    last = result.history.iloc[-1]
    print(
        f"{args.method}: {len(result.heads)} head(s), final loss {last['loss']:.4f}, "
        f"MLflow run {result.run_id}"
    )


if __name__ == "__main__":
    main(cli)
