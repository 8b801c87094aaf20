"""The registry of frozen encoders, by `encoder.kind`: one class per kind. Adding an encoder is
one file in this folder (an :class:`~smec.data.encoders.base.Encoder`) and one line here, plus
its name in the `encoder.kind` Literal of :mod:`smec.params` (tests/data/test_encoders.py keeps
the two equal); see docs/encoders.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from smec.data.encoders.base import Encoder, Identity
from smec.data.encoders.sentence_transformers import SentenceTransformers
from smec.data.encoders.static import Static
from smec.errors import SmecError

if TYPE_CHECKING:
    import torch

    from smec.params import Encoder as EncoderParams

__all__ = ["REGISTRY", "Encoder", "Identity", "get", "load"]

REGISTRY: dict[str, type[Encoder]] = {e.kind: e for e in (SentenceTransformers, Static)}


def get(kind: str) -> type[Encoder]:
    """The encoder class of `kind` (one line naming the known kinds otherwise)."""
    try:
        return REGISTRY[kind]
    except KeyError:
        raise SmecError(f"encoder.kind={kind!r}: unknown; known: {', '.join(REGISTRY)}") from None


def load(cfg: EncoderParams, device: torch.device) -> Encoder:
    """The encoder the `encoder` params name, on `device`."""
    return get(cfg.kind).load(cfg, device)
