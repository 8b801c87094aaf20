"""What training reads: the frozen embeddings on the training device, the (query, relevant
document) pairs, the held-out queries, and the shuffled batches of each epoch."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from smec.data.inputs import StageInputs
from smec.measure import retrieval


@dataclass
class TrainData:
    q: torch.Tensor  # (n_queries, D_in) frozen query embeddings, on the training device
    c: torch.Tensor  # (n_docs, D_in) frozen corpus embeddings
    pairs: torch.Tensor  # (P, 2) rows of (query, relevant document) training pairs
    keys: torch.Tensor  # sorted query * n_docs + doc of every training pair
    key_scores: torch.Tensor  # graded relevance of each key
    heldout: torch.Tensor  # query rows held out for per-epoch validation
    heldout_ids: list[str]
    heldout_qrels: dict
    corpus_ids: list[str]

    def relevance(self, qi: torch.Tensor, di: torch.Tensor) -> torch.Tensor:
        """(S, B, B) graded relevance of in-batch document c to in-batch query b, for each
        member's batch (qi, di: (S, B))."""
        key = qi[..., :, None] * len(self.c) + di[..., None, :]
        pos = torch.searchsorted(self.keys, key).clamp(max=len(self.keys) - 1)
        return torch.where(self.keys[pos] == key, self.key_scores[pos], 0.0)

    @property
    def n_items(self) -> int:
        """The training items: the distinct queries and documents of the training pairs."""
        return len(torch.unique(self.pairs[:, 0])) + len(torch.unique(self.pairs[:, 1]))

    @functools.cached_property
    def heldout_set(self) -> retrieval.TestSet:
        """The held-out queries as a test set, built once per training data (model selection
        scores it every epoch; its qrels' arrays are :attr:`retrieval.TestSet.judged`)."""
        queries = self.q[self.heldout]
        return retrieval.TestSet(self.heldout_ids, queries, self.heldout_qrels, self.corpus_ids)


def train_data(inputs: StageInputs, device: torch.device) -> TrainData:
    """The training pairs and held-out queries of a stage's inputs, on `device`."""
    ds, corpus_emb, queries_emb = inputs.ds, inputs.corpus_emb, inputs.queries_emb
    q_row = {qid: i for i, qid in enumerate(ds.queries.query_id)}
    c_row = {cid: i for i, cid in enumerate(ds.corpus.corpus_id)}
    train = ds.qrels[ds.qrels.split == "train"]
    pairs = torch.tensor(np.stack([train.query_id.map(q_row), train.corpus_id.map(c_row)], 1))
    keys = pairs[:, 0] * len(corpus_emb) + pairs[:, 1]
    order = torch.argsort(keys)
    held = ds.qrels[ds.qrels.split == "heldout"]
    held_ids = sorted(set(held.query_id))
    return TrainData(
        q=torch.from_numpy(np.asarray(queries_emb)).to(device),
        c=torch.from_numpy(np.asarray(corpus_emb)).to(device),
        pairs=pairs.to(device),
        keys=keys[order].to(device),
        key_scores=torch.tensor(train.score.to_numpy(), dtype=torch.float32)[order].to(device),
        heldout=torch.tensor([q_row[i] for i in held_ids], dtype=torch.long, device=device),
        heldout_ids=held_ids,
        heldout_qrels=retrieval.qrels_dict(held),
        corpus_ids=list(ds.corpus.corpus_id),
    )


def batches(n_pairs: int, batch_size: int, seed: int, head: int, epoch: int):
    """Shuffled batches of pair indices; the last short batch is kept if it has >= 2 pairs."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + head * 1009 + epoch)
    perm = torch.randperm(n_pairs, generator=gen)
    return [b for b in perm.split(batch_size) if len(b) >= 2]


def steps_per_epoch(n_pairs: int, batch_size: int) -> int:
    full, rest = divmod(n_pairs, batch_size)
    return full + (rest >= 2)


def member_batches(n_pairs: int, batch_size: int, seeds: list[int], head: int, epoch: int):
    """Each optimiser step's batch of every member, (S, B): member s draws its own order from
    its seed (:func:`batches`); all members have the same number and sizes of batches."""
    per_member = [batches(n_pairs, batch_size, seed, head, epoch) for seed in seeds]
    return [torch.stack(step) for step in zip(*per_member, strict=True)]
