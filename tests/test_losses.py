import pytest
import torch
import torch.nn.functional as F

from smec import losses
from smec.nesting import NestedLoss


def batch(b=6, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, d = torch.randn(b, dim, generator=gen), torch.randn(b, dim, generator=gen)
    return q, d, losses.Batch(torch.eye(b), q, d, temperature=0.1)


def test_nested_loss_equals_the_loop_over_prefixes():
    q, d, bt = batch()
    nested = NestedLoss(losses.rank, [16, 8, 4], [1.0, 0.5, 2.0])
    loop = sum(c * losses.rank(q[:, :m], d[:, :m], bt) for m, c in ((16, 1.0), (8, 0.5), (4, 2.0)))
    assert nested(q, d, bt).item() == pytest.approx(loop.item())


def test_nested_loss_rejects_bad_nesting():
    with pytest.raises(ValueError, match="decreasing"):
        NestedLoss(losses.rank, [4, 8])
    with pytest.raises(ValueError, match="2 weights for 3 dims"):
        NestedLoss(losses.rank, [8, 4, 2], [1.0, 1.0])


def test_ce_is_cross_entropy_over_scaled_cosines():
    q, d, bt = batch()
    logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / 0.1
    assert losses.ce(q, d, bt).item() == pytest.approx(
        F.cross_entropy(logits, torch.arange(6)).item()
    )


def test_ce_leaves_other_positives_out_of_the_denominator():
    q, d, bt = batch()
    bt.rel[0, 1] = 1.0
    logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / 0.1
    logits[0, 1] = float("-inf")
    assert losses.ce(q, d, bt).item() == pytest.approx(
        F.cross_entropy(logits, torch.arange(6)).item()
    )


def test_rank_loss_is_the_mean_softplus_of_negative_minus_positive():
    q, d, bt = batch(b=3)
    s = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T
    expected = torch.stack(
        [F.softplus(s[b, k] - s[b, b]) for b in range(3) for k in range(3) if k != b]
    ).mean()
    assert losses.rank(q, d, bt).item() == pytest.approx(expected.item())


def test_mse_is_zero_when_similarities_are_preserved():
    q, d, bt = batch()
    assert losses.mse(q, d, bt).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.mse(q[:, :4], d[:, :4], bt).item() > 0
