"""A static word-embedding encoder: WordLlama (`encoder.kind: static`, package `wordllama`).

A text's embedding is the mean of its tokens' rows in one table (no attention), here the
256-d `l2_supercat` table the package ships (`encoder.model: l2_supercat`): thousands of texts
per second on one CPU core. Loaded from the package's own folder with downloads disabled
(`WordLlama.load()` alone fetches its tokenizer from the network). Texts are cut at
`encoder.max_seq_length` tokens, like the transformer's; a text with no tokens embeds to the
zero vector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from smec.data.encoders.base import Encoder, normalise, require
from smec.errors import SmecError

DIM = 256  # the width whose weights the package ships
PACKAGE = "wordllama"


class Static(Encoder):
    kind = "static"

    def __init__(self, name: str, max_seq_length: int):
        wordllama = require(PACKAGE, "encoder.kind", self.kind)
        self.name, self.package_dir = name, Path(wordllama.__file__).parent
        known = sorted(
            p.name.removesuffix(f"_{DIM}.safetensors")
            for p in (self.package_dir / "weights").glob(f"*_{DIM}.safetensors")
        )
        if name not in known:
            raise SmecError(
                f"encoder.model={name!r}: no {DIM}-d WordLlama weights in the package "
                f"(encoder.kind='static'); shipped: {', '.join(known)}"
            )
        try:
            self.model = wordllama.WordLlama.load(
                name, cache_dir=self.package_dir, dim=DIM, disable_download=True
            )
        except FileNotFoundError as exc:
            raise SmecError(f"encoder.model={name!r}: cannot load ({exc})") from None
        self.model.tokenizer.enable_truncation(max_seq_length)

    @classmethod
    def load(cls, cfg, device):
        return cls(cfg.model, cfg.max_seq_length)

    @property
    def dim(self) -> int:
        return int(self.model.embedding.shape[1])

    @property
    def root(self) -> Path:
        return self.package_dir

    def weight_files(self) -> list[Path]:
        return [self.package_dir / "weights" / f"{self.name}_{DIM}.safetensors"]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        return normalise(self.model.embed(list(texts), norm=False, batch_size=batch_size))
