"""What a frozen encoder is: the `Encoder` object the embed stage loads by `encoder.kind`.

An encoder turns texts into float32, L2-normalised rows of a fixed width (`dim`) and names
itself (:meth:`Encoder.identity`: its name, kind, width and the sha256 of its weights), so that
an embedding can be traced to the exact weights that wrote it. One file per kind under
:mod:`smec.data.encoders`, one line in its registry.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from smec.errors import SmecError

if TYPE_CHECKING:
    import torch

    from smec.params import Encoder as EncoderParams


@dataclass(frozen=True)
class Identity:
    """Which encoder wrote an embedding: `sha256` is the weight file's own digest (several
    files: the digest of their sorted `relative-path digest` lines)."""

    name: str
    kind: str
    dim: int
    sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(files: list[Path], root: Path) -> str:
    """One file: its sha256; several: the sha256 of their sorted `path sha256` lines."""
    if not files:
        raise SmecError(f"{root}: no weight files")
    if len(files) == 1:
        return file_sha256(files[0])
    lines = sorted(f"{f.relative_to(root).as_posix()} {file_sha256(f)}\n" for f in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def require(module: str, key: str, value: object) -> ModuleType:
    """Import the optional package an encoder needs (one line naming the param otherwise)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SmecError(f"{key}={value!r}: needs the package {module!r}, not installed") from None


def normalise(x: np.ndarray) -> np.ndarray:
    """Float32 rows scaled to unit length; a zero row (a text with no tokens) stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class Encoder(ABC):
    """A frozen text encoder of one kind."""

    kind: ClassVar[str]
    name: str  # the `encoder.model` it was loaded from

    @classmethod
    @abstractmethod
    def load(cls, cfg: EncoderParams, device: torch.device) -> Encoder:
        """The encoder the `encoder` params name, ready to encode on `device`."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """The width of its embeddings."""

    @property
    @abstractmethod
    def root(self) -> Path:
        """The folder its weight files are named relative to."""

    @abstractmethod
    def weight_files(self) -> list[Path]:
        """The files that hold its weights."""

    @abstractmethod
    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """`texts` as float32, L2-normalised rows, in input order."""

    @functools.cached_property
    def _identity(self) -> Identity:
        sha = weights_sha256(self.weight_files(), self.root)
        return Identity(self.name, self.kind, self.dim, sha)

    def identity(self) -> Identity:
        """Name, kind, width and weights' sha256 (hashed once per object)."""
        return self._identity
