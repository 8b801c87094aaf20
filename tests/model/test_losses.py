import pytest
import torch
import torch.nn.functional as F

from smec.model import losses
from smec.model.nesting import NestedLoss


def batch(b=6, dim=16, seed=0):
    """One member's batch: q, d (1, b, dim)."""
    gen = torch.Generator().manual_seed(seed)
    q, d = torch.randn(1, b, dim, generator=gen), torch.randn(1, b, dim, generator=gen)
    rel = torch.eye(b)[None]
    rel[0, 0, 2] = 2.0  # a second, more relevant document for query 0
    return q, d, losses.Batch(rel, q.clone(), d.clone(), temperature=0.1)


def cos(a, b):
    return F.normalize(a[0], dim=1) @ F.normalize(b[0], dim=1).T


def test_prefix_cosine_equals_cosine_of_sliced_prefixes():
    q, d, _ = batch()
    s = losses.prefix_cosine(q, d, [16, 8, 3])
    for level, m in enumerate([16, 8, 3]):
        torch.testing.assert_close(s[0, level], cos(q[..., :m], d[..., :m]))


@pytest.mark.parametrize("name", ["rank", "ce", "mse"])
def test_nested_loss_equals_the_loop_over_sliced_prefixes(name):
    q, d, bt = batch()
    q.requires_grad_(True)
    loss = losses.LOSSES[name]
    nested = NestedLoss(loss, [16, 8, 4], [1.0, 0.5, 2.0])(q, d, bt)
    levels = ((16, 1.0), (8, 0.5), (4, 2.0))
    loop = sum(c * loss(q[..., :m], d[..., :m], [m], bt)[:, 0] for m, c in levels)
    torch.testing.assert_close(nested, loop)
    (g_nested,) = torch.autograd.grad(nested.sum(), q)
    (g_loop,) = torch.autograd.grad(loop.sum(), q)
    torch.testing.assert_close(g_nested, g_loop)


def test_nested_loss_rejects_bad_nesting():
    with pytest.raises(ValueError, match="decreasing"):
        NestedLoss(losses.rank, [4, 8])
    with pytest.raises(ValueError, match="2 weights for 3 dims"):
        NestedLoss(losses.rank, [8, 4, 2], [1.0, 1.0])


def test_ce_is_cross_entropy_over_scaled_cosines_without_other_positives():
    q, d, bt = batch()
    logits = cos(q, d) / 0.1
    logits[0, 2] = float("-inf")  # document 2 is also relevant to query 0
    expected = F.cross_entropy(logits, torch.arange(6))
    assert losses.ce(q, d, [16], bt).item() == pytest.approx(expected.item())


def test_rank_loss_is_the_gain_weighted_mean_over_ordered_triples():
    q, d, bt = batch()
    s, y = cos(q, d), bt.rel[0]
    terms = [
        (y[b, j] - y[b, k]) * F.softplus(s[b, k] - s[b, j])
        for b in range(6)
        for j in range(6)
        for k in range(6)
        if y[b, j] > y[b, k]
    ]
    expected = torch.stack(terms).sum() / len(terms)
    assert losses.rank(q, d, [16], bt).item() == pytest.approx(expected.item())


def test_mse_is_zero_when_similarities_are_preserved():
    q, d, bt = batch()
    assert losses.mse(q, d, [16], bt).item() == pytest.approx(0.0, abs=1e-10)
    assert losses.mse(q, d, [4], bt).item() > 0


@pytest.mark.parametrize("name", ["rank", "ce", "mse"])
def test_members_never_mix_each_members_loss_is_its_own_batchs(name):
    """Three members' batches, stacked: each member's loss is that of its batch alone."""
    parts = [batch(seed=s) for s in range(3)]
    q = torch.cat([p[0] for p in parts])
    d = torch.cat([p[1] for p in parts])
    rel = torch.cat([p[2].rel for p in parts])
    rel[1, 3, 4] = 1.0  # member 1 alone has an extra positive
    stacked = losses.Batch(rel, q.clone(), d.clone(), temperature=0.1)
    got = losses.LOSSES[name](q, d, [16, 4], stacked)
    for s, (qs, ds, bs) in enumerate(parts):
        bs.rel = rel[s : s + 1]
        torch.testing.assert_close(got[s], losses.LOSSES[name](qs, ds, [16, 4], bs)[0])
