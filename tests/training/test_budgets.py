"""Label budgets: nested subsets of the training and held-out queries, every pair of a kept
query kept, the model selection reading only the kept held-out queries."""

import torch

from smec.training import budgets
from smec.training.data import TrainData


def toy_data() -> TrainData:
    pairs = torch.tensor(
        [[q, d] for q in range(20) for d in (q, q + 20, q + 40) if q % 3 or d < 40]
    )
    return TrainData(
        q=torch.zeros(25, 4),
        c=torch.zeros(60, 4),
        pairs=pairs,
        keys=pairs[:, 0] * 60 + pairs[:, 1],
        key_scores=torch.ones(len(pairs)),
        heldout=torch.tensor([20, 21, 22, 23]),
        heldout_ids=["q20", "q21", "q22", "q23"],
        heldout_qrels={f"q{i}": {f"d{i}": 1} for i in range(20, 24)},
        corpus_ids=[f"d{i}" for i in range(60)],
    )


def queries(data: TrainData) -> set[int]:
    return set(data.pairs[:, 0].tolist())


def test_smaller_budgets_nest_in_larger_ones_and_keep_every_pair_of_their_queries():
    data = toy_data()
    small, half = (budgets.query_subset(data, f, seed=0) for f in (0.25, 0.5))
    assert len(queries(small)) == 5 and len(queries(half)) == 10
    assert queries(small) < queries(half) < queries(data)
    for sub in (small, half):
        kept = torch.isin(data.pairs[:, 0], torch.tensor(sorted(queries(sub))))
        assert torch.equal(sub.pairs, data.pairs[kept])  # all their pairs, in order
        assert sub.c is data.c
    # the held-out queries are budgeted too, nested, with their ids and qrels
    assert len(small.heldout) == 1 and len(half.heldout) == 2
    assert set(small.heldout.tolist()) < set(half.heldout.tolist())
    assert small.heldout_ids == [f"q{i}" for i in small.heldout.tolist()]
    assert set(small.heldout_qrels) == set(small.heldout_ids)


def test_the_subset_is_drawn_from_the_seed():
    data = toy_data()
    again = budgets.query_subset(data, 0.25, seed=0)
    assert queries(again) == queries(budgets.query_subset(data, 0.25, seed=0))
    assert queries(again) != queries(budgets.query_subset(data, 0.25, seed=1))
    assert torch.equal(budgets.query_subset(data, 1.0, seed=3).pairs, data.pairs)
