"""What every stage script shares: its argument parser and its one-line error handling."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from smec.errors import SmecError


def parser(
    doc: str | None,
    root: Path,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    many: Iterable[str] = (),
) -> argparse.ArgumentParser:
    """A parser whose `--help` is the script's docstring, with one required path option per
    input and output (`dvc.yaml` passes them: it is the one place paths are written), options
    taking one or more input paths (`many`), and `--params` (default: the checkout's
    params.yaml)."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for kind, names in (("input", inputs), ("output", outputs)):
        for name in names:
            ap.add_argument(f"--{name}", type=Path, required=True, metavar="PATH", help=kind)
    for name in many:
        ap.add_argument(
            f"--{name}", type=Path, nargs="+", required=True, metavar="PATH", help="inputs"
        )
    ap.add_argument(
        "--cell",
        metavar="DATA-ENCODER",
        help="a grid cell of params.yaml's grid (its data set, encoder and protocol size)",
    )
    ap.add_argument(
        "--params",
        type=Path,
        default=root / "params.yaml",
        help="params file (default: params.yaml of this checkout)",
    )
    return ap


def main(fn: Callable[[], object]) -> None:
    """Run a stage's entry point; print a SmecError as one line and exit 1."""
    try:
        fn()
    except SmecError as exc:
        stage = os.environ.get("DVC_STAGE")
        hint = (
            f" (DVC removed this stage's old outputs before running it; "
            f"`dvc checkout {stage}` restores the last good ones)"
            if stage
            else ""
        )
        print(f"error: {exc}{hint}", file=sys.stderr)
        raise SystemExit(1) from None
