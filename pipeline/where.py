"""Print where the pipeline's results are and how to open them (run after `dvc repro`)."""

import argparse
import json
from pathlib import Path

from smec import gradstats, tracking
from smec.cli import main
from smec.errors import SmecError

ROOT = Path(__file__).resolve().parents[1]  # the checkout DVC runs (a temp copy under --temp)


def cli() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    path = ROOT / "reports/claims.json"
    if not path.exists():
        raise SmecError(f"{path}: not found; run `dvc repro` first")
    claims = json.loads(path.read_text())
    print("\n" + gradstats.claims_table(claims))
    print(
        "\nfigures:   "
        + "  ".join(str(p.relative_to(ROOT)) for p in sorted(Path(ROOT, "figures").glob("*.png")))
    )
    print("tables:    reports/gradstats.csv  reports/claims.json  reports/retrieval.csv")
    print(f"MLflow:    {tracking.tracking_uri()}")
    print(
        f"           open with: .venv/bin/mlflow ui --backend-store-uri {tracking.tracking_uri()}"
    )


if __name__ == "__main__":
    main(cli)
