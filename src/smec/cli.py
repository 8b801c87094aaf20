"""What every stage script shares: its argument parser and its one-line error handling."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from smec.errors import SmecError


def parser(doc: str | None, root: Path) -> argparse.ArgumentParser:
    """A parser whose `--help` is the script's docstring, with `--params` (default: the
    checkout's params.yaml)."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--params",
        type=Path,
        default=root / "params.yaml",
        help="params file (default: params.yaml of this checkout)",
    )
    return ap


def main(fn: Callable[[], None]) -> None:
    """Run a stage's entry point; print a SmecError as one line and exit 1."""
    try:
        fn()
    except SmecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
