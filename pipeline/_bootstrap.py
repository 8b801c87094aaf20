"""Run a stage script on this checkout's code, under an interpreter that has the project's
packages.

DVC runs a stage's `cmd` with whatever `python` comes first on PATH, in the checkout it runs
(a temporary copy under `dvc exp run --temp` or `--queue`). So: import `smec` from this
checkout's `src/`, never from wherever the package happens to be installed; and when `python`
lacks the project's packages (`.venv/bin/dvc repro` without activating the venv), re-run the
script with the repository's `.venv/bin/python`, or stop with one line that says what to do.
"""

import importlib.util
import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
NEEDED = ("torch", "mlflow", "pandas", "pydantic")


def _ensure_environment() -> None:
    sys.path.insert(0, str(CHECKOUT / "src"))
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if not missing:
        return
    for repo in (os.environ.get("DVC_ROOT"), CHECKOUT):
        python = Path(repo) / ".venv" / "bin" / "python" if repo else None
        if python and python.is_file() and not os.environ.get("SMEC_REEXEC"):
            os.environ["SMEC_REEXEC"] = str(python)
            os.execv(python, [str(python), *sys.argv])
    sys.exit(
        f"error: {sys.executable} lacks {', '.join(missing)}: run `make repro` once (it makes "
        f".venv), or activate the project's environment (`source .venv/bin/activate`)"
    )


_ensure_environment()
