"""Truncation: the first d dimensions of the frozen embedding; nothing fitted."""

from __future__ import annotations

from smec.model.methods.base import Baseline, Embedder, Style


class Prefix(Embedder):
    def __call__(self, x, d):
        return x[:, :d]


class Truncate(Baseline):
    name = "truncate"
    label = "truncation"
    style = Style("#7f7f7f", "x", "--")

    def fit(self, corpus, seed):
        return Prefix()
