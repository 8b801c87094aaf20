"""Resumable training state, keyed by everything that made it.

A checkpoint is written atomically at the end of an epoch once `every` seconds have passed since
the last one (30: writing the whole state after each of 40 one-second epochs nearly tripled a
training's time), and at the end of each step; it is removed when training completes. A stop
loses at most the epochs since the last write. Its key digests the params, the code of the
stage (its import closure) and its input files, so a run resumes only into state that the same
code, params and data produced; anything else is discarded with a one-line notice and training
starts over.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from smec.infra import atomic, distributed


class Checkpoint:
    def __init__(self, path: Path, key: str, every: float = 30.0):
        self.path, self.key, self.every = Path(path), key, every
        self._last = time.monotonic()

    def load(self):
        """The saved state if it was made under the same key, else None."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or state.get("key") != self.key:
            print(
                f"discarding checkpoint {self.path}: it was made by other code, params or "
                f"inputs (key {state.get('key')}, now {self.key}); starting over"
            )
            self.clear()
            return None
        return state["state"]

    def save(self, state: object, force: bool = False) -> None:
        """Write `state` if `every` seconds have passed since the last write (or `force`)."""
        if not distributed.is_main() or (not force and time.monotonic() - self._last < self.every):
            return
        with atomic.target(self.path) as tmp:
            torch.save({"key": self.key, "state": state}, tmp)
        self._last = time.monotonic()

    def clear(self) -> None:
        if distributed.is_main():  # under torchrun, every process reads; the first writes
            self.path.unlink(missing_ok=True)
