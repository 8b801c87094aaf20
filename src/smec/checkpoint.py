"""Resumable training state, keyed by everything that made it.

A checkpoint is written atomically after every epoch and removed when training completes. Its
key digests the params, the code of the stage (its import closure) and its input files, so a
run resumes only into state that the same code, params and data produced; anything else is
discarded with a one-line notice and training starts over.
"""

from __future__ import annotations

from pathlib import Path

import torch

from smec import atomic


class Checkpoint:
    def __init__(self, path: Path, key: str):
        self.path, self.key = Path(path), key

    def load(self) -> dict | None:
        """The saved state if it was made under the same key, else None."""
        if not self.path.exists():
            return None
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("key") != self.key:
            print(
                f"discarding checkpoint {self.path}: it was made by other code, params or "
                f"inputs (key {state.get('key')}, now {self.key}); starting over"
            )
            self.clear()
            return None
        return state

    def save(self, state: dict) -> None:
        with atomic.target(self.path) as tmp:
            torch.save({**state, "key": self.key}, tmp)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
