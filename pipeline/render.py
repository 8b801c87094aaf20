"""DVC stage `render`: figures/{gradient_stats,convergence,retrieval}.{png,svg}.

Logs them with the gradient table and the claims to an MLflow run tagged with the training
runs whose numbers they show; figures/run.json names that run.
"""

from pathlib import Path

from smec import figures, params
from smec.cli import main, parser

ROOT = Path(__file__).resolve().parents[1]  # the checkout DVC runs (a temp copy under --temp)


def cli() -> None:
    args = parser(__doc__, ROOT).parse_args()
    out = figures.run(params.load(args.params), ROOT)
    print(f"MLflow report run {out['report_run']} (training runs {out['train_runs']})")


if __name__ == "__main__":
    main(cli)
