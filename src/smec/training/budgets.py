"""Label budgets: training on a share of the training queries, for the label-scarcity curve."""

from __future__ import annotations

import dataclasses
import math

import torch

from smec.training.data import TrainData


def _share(rows: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """The first ceil(fraction * n) of one permutation of `rows` drawn from `seed`: a smaller
    share is always within a larger one."""
    order = rows.cpu()[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))]
    return order[: math.ceil(fraction * len(rows))].to(rows.device)


def query_subset(data: TrainData, fraction: float, seed: int) -> TrainData:
    """`data` with a share `fraction` of its labelled training queries, drawn apart from the
    training and the held-out ones (so at least one of each stays, and each share nests in a
    larger one): a kept training query keeps its pairs, and the model selection reads only the
    kept held-out queries, within the budget. The corpus is unchanged."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction {fraction} is not in (0, 1]")
    trained = _share(torch.unique(data.pairs[:, 0]), fraction, seed)
    held = torch.isin(data.heldout, _share(data.heldout, fraction, seed))
    ids = [qid for qid, kept in zip(data.heldout_ids, held.tolist(), strict=True) if kept]
    return dataclasses.replace(
        data,
        pairs=data.pairs[torch.isin(data.pairs[:, 0], trained)],
        heldout=data.heldout[held],
        heldout_ids=ids,
        heldout_qrels={qid: data.heldout_qrels[qid] for qid in ids},
    )
