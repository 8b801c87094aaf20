"""Print where the pipeline's results are and how to open them (run after `dvc repro`)."""

import json
from pathlib import Path

from smec import gradstats, tracking
from smec.errors import main


def cli() -> None:
    root = tracking.root()
    claims = json.loads((root / "reports/claims.json").read_text())
    print("\n" + gradstats.claims_table(claims))
    print(
        "\nfigures:   "
        + "  ".join(str(p.relative_to(root)) for p in sorted(Path(root, "figures").glob("*.png")))
    )
    print("tables:    reports/gradstats.csv  reports/claims.json  reports/retrieval.csv")
    print(f"MLflow:    {tracking.tracking_uri()}")
    print(
        f"           open with: .venv/bin/mlflow ui --backend-store-uri {tracking.tracking_uri()}"
    )


if __name__ == "__main__":
    main(cli)
