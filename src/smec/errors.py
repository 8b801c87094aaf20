"""One exception for bad input: its message is the one line a user sees."""

from __future__ import annotations

import sys
from collections.abc import Callable


class SmecError(Exception):
    """Bad input or state that the user can fix; the message names the file, key or value."""


def main(fn: Callable[[], None]) -> None:
    """Run a stage's entry point; print a SmecError as one line and exit 1."""
    try:
        fn()
    except SmecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
