"""DVC stage `render`: figures/{gradient_stats,convergence,retrieval}.{png,svg}.

Logs them with the gradient table and the claims to an MLflow run tagged with the training
runs whose numbers they show; figures/run.json names that run.
"""

import argparse

from smec import figures, params, tracking
from smec.errors import main


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = ap.parse_args()
    out = figures.run(params.load(args.params), tracking.root())
    print(f"MLflow report run {out['report_run']} (training runs {out['train_runs']})")


if __name__ == "__main__":
    main(cli)
