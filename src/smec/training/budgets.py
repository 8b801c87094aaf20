"""Label budgets: training on a share of the training queries, for the label-scarcity curve."""

from __future__ import annotations

import dataclasses
import math

import torch

from smec.training.data import TrainData


def query_subset(data: TrainData, fraction: float, seed: int) -> TrainData:
    """`data` with the pairs of a share `fraction` of its training queries: the first
    ceil(fraction * n) of one permutation of them drawn from `seed`, so a smaller budget's
    queries are always among a larger one's. Every pair of a kept query stays; the held-out
    queries and the corpus are unchanged."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    queries = torch.unique(data.pairs[:, 0]).cpu()
    order = queries[torch.randperm(len(queries), generator=torch.Generator().manual_seed(seed))]
    keep = order[: math.ceil(fraction * len(queries))].to(data.pairs.device)
    return dataclasses.replace(data, pairs=data.pairs[torch.isin(data.pairs[:, 0], keep)])
