"""ADS selects: exactly k kept, a relaxation that sums to k, noise and temperature that anneal,
a selection frozen at the end, a gather at evaluation, and, on a problem whose right answer is
known, the right coordinates."""

import math
import tempfile
from pathlib import Path

import pytest
import torch

from smec.model import ads, heads, methods
from smec.params import Methods, Train
from smec.training import loop, synthetic
from smec.training.checkpoint import Checkpoint

SCHEDULE = ads.Schedule(noise=1.0, tau_start=1.0, tau_end=0.1, freeze=0.25)


def head(width=8, keep=3, linear=True):
    """One member's ADS head (logits (1, width)), a random square map or none."""
    square = heads.make_head(width, width, False, "random", [7]) if linear else None
    return ads.ADSHead(width, keep, square)


def set_logits(h, values):
    with torch.no_grad():
        h.logits.copy_(torch.tensor([values]))


def test_a_training_mask_keeps_exactly_k_and_its_soft_part_sums_to_k():
    h = head()
    set_logits(h, [0.1, 2.0, -1.0, 0.5, 3.0, 0.0, 0.2, -0.3])
    gen = torch.Generator().manual_seed(0)
    for progress in (0.0, 0.3, 0.6):
        m = h.mask(SCHEDULE, progress, [gen])
        assert set(m.detach().unique().tolist()) <= {0.0, 1.0}  # forward: exactly a 0/1 mask
        assert int(m.detach().sum()) == 3
        scores = h.logits.detach()
        tau = SCHEDULE.tau(progress)
        theta = ads.budget_threshold(scores, 3, tau)
        assert torch.sigmoid((scores - theta) / tau).sum().item() == pytest.approx(3, abs=1e-4)


def test_the_accelerators_bisection_finds_the_hosts_threshold():
    """The torch bisection (run on an accelerator; here on the CPU) and the numpy one agree."""
    scores = torch.randn(5, 384, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for tau in (1.0, 0.1):
        host = ads.budget_threshold(scores, 96, tau)
        device = ads._bisect_torch(scores, 96, tau, 50)
        assert device.shape == host.shape == (5, 1)
        assert torch.allclose(device, host, rtol=0, atol=1e-12)


def test_the_noise_anneals_to_zero_and_tau_reaches_its_end_at_the_freeze():
    assert SCHEDULE.sigma(0.0) == 1.0 and SCHEDULE.tau(0.0) == 1.0
    assert SCHEDULE.sigma(0.375) == pytest.approx(0.5)
    assert SCHEDULE.tau(0.375) == pytest.approx(math.sqrt(0.1))
    assert SCHEDULE.sigma(0.75) == 0.0 and SCHEDULE.tau(0.75) == pytest.approx(0.1)
    assert not SCHEDULE.frozen(0.7499) and SCHEDULE.frozen(0.75)


def test_without_noise_the_mask_is_the_top_k_of_the_logits():
    h = head()
    set_logits(h, [0.1, 2.0, -1.0, 0.5, 3.0, 0.0, 0.2, -0.3])
    quiet = ads.Schedule(noise=0.0, freeze=0.0)
    m = h.mask(quiet, 0.2, [torch.Generator().manual_seed(1)])
    assert m[0].detach().nonzero().squeeze(1).tolist() == h.indices()[0].tolist() == [1, 3, 4]


def test_a_frozen_selection_is_the_evaluated_one_and_its_logits_get_no_gradient():
    h = head()
    set_logits(h, [0.1, 2.0, -1.0, 0.5, 3.0, 0.0, 0.2, -0.3])
    x = torch.randn(1, 4, 8)
    m = h.mask(SCHEDULE, 0.9, [torch.Generator().manual_seed(2)])
    assert m[0].nonzero().squeeze(1).tolist() == h.indices()[0].tolist()
    h.train_forward(x, m).square().sum().backward()
    assert h.logits.grad is None
    assert h.linear.weight.grad[0, h.indices()[0]].abs().sum() > 0


def test_the_straight_through_gradient_is_that_of_the_budgeted_soft_gates():
    """d loss / d α_i = (d loss / d m_i) · soft_i (1 − soft_i) / τ, θ held fixed."""
    h = head(linear=False)
    x = torch.randn(1, 5, 8)
    gen = torch.Generator().manual_seed(3)
    m = h.mask(SCHEDULE, 0.2, [gen])
    m.retain_grad()
    (h.train_forward(x, m) @ torch.arange(8.0)).square().sum().backward()
    gumbel_gen = torch.Generator().manual_seed(3)
    u = torch.rand(8, generator=gumbel_gen)
    scores = SCHEDULE.sigma(0.2) * -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-10)))
    tau = SCHEDULE.tau(0.2)
    soft = torch.sigmoid((scores - ads.budget_threshold(scores[None], 3, tau)[0]) / tau)
    torch.testing.assert_close(h.logits.grad[0], m.grad[0] * soft * (1 - soft) / tau)


def test_an_ads_head_at_evaluation_is_a_gather_of_its_saved_indices_whatever_the_rng():
    h = head(width=6, keep=2)
    set_logits(h, [0.0, 1.0, 0.0, 0.0, 0.0, 2.0])
    x = torch.randn(1, 3, 6)
    torch.manual_seed(0)
    first = h(x)
    torch.manual_seed(1)
    torch.testing.assert_close(h(x), first)
    torch.testing.assert_close(first[0], (x[0] @ h.linear.weight[0].T)[:, [1, 5]])
    assert head(width=6, keep=2, linear=False)(x).shape == (1, 3, 2)


def test_each_member_selects_by_its_own_logits_and_noise():
    h = ads.ADSHead(6, 2, None, n_members=2)
    with torch.no_grad():
        h.logits.copy_(
            torch.tensor([[0.0, 5.0, 0.0, 0.0, 0.0, 4.0], [3.0, 0.0, 4.0, 0.0, 0.0, 0.0]])
        )
    assert h.indices().tolist() == [[1, 5], [0, 2]]
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    both = ads.gumbel((2, 6), gens)
    alone = ads.gumbel((1, 6), [torch.Generator().manual_seed(1)])
    assert torch.equal(both[1], alone[0]) and not torch.equal(both[0], both[1])


@pytest.fixture(scope="module")
def planted():
    """A planted problem (32 coordinates, 16 of them carry the relevance) and ADS trained on
    it at the default settings: the comparison's start (identity), budget and options."""
    gen = torch.Generator().manual_seed(5)
    signal = sorted(torch.randperm(32, generator=gen)[:16].tolist())
    data = synthetic.planted_subset_data(signal)
    cfg = Train(method_dims=[16, 8], epochs=20, init="identity")
    with tempfile.TemporaryDirectory() as tmp:
        job = loop.Job(methods.get("smrl_ads"), cfg, Methods())
        result = loop.fit(job, data, Checkpoint(Path(tmp) / "s.pt", "k"))
    return signal, result


def test_ads_keeps_the_planted_coordinates(planted):
    signal, result = planted
    kept = set(result.modules[0].indices()[0].tolist())
    assert len(kept & set(signal)) >= 0.9 * len(signal)


def test_the_trained_coordinates_are_the_evaluated_ones(planted):
    """The masks of the step's last epoch are its final selection; its logits spread out."""
    _, result = planted
    step = result.history[result.history["head"] == 1]
    assert step["ads_overlap_final"].iloc[-1] >= 0.95
    assert step["ads_overlap_final"].iloc[0] < 0.8  # it starts near chance: it learned
    assert step["ads_logit_std"].iloc[-1] > 0.5
    assert step["ads_sigma"].iloc[-1] == 0 and step["ads_tau"].iloc[-1] == pytest.approx(0.1)
