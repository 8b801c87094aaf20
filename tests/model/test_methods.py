"""The comparison's parts: ADS, the S-XBM memory and loss, the two adaptors' losses."""

import itertools
import math
import tempfile
from pathlib import Path

import pytest
import torch

from smec.model import adaptors, ads, losses, xbm


def test_ads_keeps_exactly_k_coordinates_and_evaluates_deterministically():
    head = ads.ADSHead(8, 3, torch.nn.Linear(8, 8, bias=False))
    with torch.no_grad():
        head.logits.copy_(torch.tensor([0.1, 2.0, -1.0, 0.5, 3.0, 0.0, 0.2, -0.3]))
    assert head.indices().tolist() == [1, 3, 4]  # the top 3 logits, in coordinate order
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        m = head.mask(tau=0.5, generator=gen)
        assert torch.equal(m.detach().round(), m.detach())  # forward: a hard 0/1 mask
        assert int(m.detach().sum()) == 3
    x = torch.randn(4, 8)
    assert torch.equal(head(x), head(x))


def test_an_ads_head_at_evaluation_is_a_gather_of_its_saved_indices():
    linear = torch.nn.Linear(6, 6, bias=False)
    head = ads.ADSHead(6, 2, linear)
    with torch.no_grad():
        head.logits.copy_(torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 2.0]))
    x = torch.randn(3, 6)
    torch.testing.assert_close(head(x), (x @ linear.weight.T)[:, [1, 5]])


def test_ads_logits_get_gradient_through_the_straight_through_mask():
    head = ads.ADSHead(6, 3, torch.nn.Linear(6, 6, bias=False))
    x = torch.randn(5, 6)
    z = head.train_forward(x, head.mask(tau=1.0, generator=torch.Generator().manual_seed(1)))
    (z.square().sum()).backward()
    assert head.logits.grad is not None and head.logits.grad.abs().sum() > 0
    assert ads.temperature(1.0, 0.1, 0.0) == 1.0
    assert ads.temperature(1.0, 0.1, 1.0) == pytest.approx(0.1)
    assert ads.temperature(1.0, 0.1, 0.5) == pytest.approx(math.sqrt(0.1))


def test_the_memory_keeps_order_and_capacity_and_excludes_self_matches():
    mem = xbm.Memory(capacity=5)
    mem.push(torch.tensor([0, 1, 2]))
    mem.push(torch.tensor([3, 4, 5]))
    assert mem.ids.tolist() == [1, 2, 3, 4, 5]  # oldest (0) dropped, order kept
    mem.push(torch.tensor([2, 6, 6]))
    assert mem.ids.tolist() == [3, 4, 5, 2, 6]  # 2 seen again moves to the end, 6 kept once
    full = torch.nn.functional.normalize(torch.randn(7, 4), dim=-1)
    sims = xbm.Similarities(full, torch.arange(7))
    batch = torch.tensor([2, 4])
    near, frozen = mem.neighbours(sims(batch, mem.ids), batch, k=2)
    assert near.shape == frozen.shape == (2, 2)
    assert 2 not in near[0].tolist() and 4 not in near[1].tolist()
    others = [3, 4, 5, 6]
    top = (full[2] @ full[others].T).topk(2)
    assert near[0].tolist() == [others[i] for i in top.indices.tolist()]
    torch.testing.assert_close(frozen[0], top.values)


def test_similarities_are_looked_up_among_the_training_items():
    full = torch.nn.functional.normalize(torch.randn(10, 4), dim=-1)
    universe = torch.tensor([1, 3, 4, 8])
    sims = xbm.Similarities(full, universe)
    a, b = torch.tensor([3, 8]), torch.tensor([1, 4, 8])
    torch.testing.assert_close(sims(a, b), full[a] @ full[b].T)


def test_the_sxbm_loss_is_zero_when_compressed_and_frozen_similarities_agree():
    x = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    x_n = torch.nn.functional.normalize(torch.randn(3, 2, 8), dim=-1)
    frozen = torch.einsum("bd,bkd->bk", x, x_n)
    rot = torch.linalg.qr(torch.randn(8, 8)).Q  # a rotation keeps every cosine
    assert xbm.loss(x @ rot, x_n @ rot, frozen).item() == pytest.approx(0.0, abs=1e-6)
    assert xbm.loss(x[:, :4], x_n[:, :, :4], frozen).item() > 0


def cos(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


C = [[1.0, 0.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0], [0.0, 0.1, 1.0, 0.0], [0.5, 0.0, 0.5, 0.7]]
A = [[0.0, 0.2, 0.0, 0.0], [0.0, 0.0, 0.0, 0.3], [0.1, 0.0, 0.0, 0.0], [0.0, 0.0, 0.4, 0.0]]


def hand_adapted():
    return [[c[j] + sum(A[j][k] * c[k] for k in range(4)) for j in range(4)] for c in C]


def hand_pairs(items, dims):
    return [
        abs(cos(C[i], C[j]) - cos(items[i][:m], items[j][:m]))
        for m in dims
        for i, j in itertools.permutations(range(4), 2)
    ]


def adaptor():
    a = adaptors.Adaptor(4)
    with torch.no_grad():
        a.f.weight.copy_(torch.tensor(A))
    return a


def test_matryoshka_adaptor_losses_equal_the_hand_computed_four_item_case():
    c, a = torch.tensor(C), adaptor()
    c_hat = a(c)
    adapted = hand_adapted()
    torch.testing.assert_close(c_hat, torch.tensor(adapted))
    pairs = hand_pairs(adapted, [4, 2])
    assert adaptors.pair_loss(c, c_hat, [4, 2]).item() == pytest.approx(sum(pairs) / len(pairs))
    # top-1 neighbour of each item in the original space: 0->1, 1->0, 2->3, 3->0 (0.5025 > 0.5)
    nn = {0: 1, 1: 0, 2: 3, 3: 0}
    top = [
        abs(cos(C[i], C[nn[i]]) - cos(adapted[i][:m], adapted[nn[i]][:m]))
        for m in (4, 2)
        for i in range(4)
    ]
    assert adaptors.topk_loss(c, c_hat, [4, 2], k=1).item() == pytest.approx(sum(top) / len(top))
    f_c = [[sum(A[j][k] * x[k] for k in range(4)) for j in range(4)] for x in C]
    rec = sum(abs(v) for row in f_c for v in row) / 16
    assert adaptors.rec_loss(a.f(c)).item() == pytest.approx(rec)
    total = adaptors.matryoshka_unsupervised(c, a, [4, 2], k=1, alpha=0.5, beta=2.0).item()
    assert total == pytest.approx(sum(top) / len(top) + 0.5 * sum(pairs) / len(pairs) + 2 * rec)


def test_search_adaptor_loss_is_the_rank_loss_of_its_prefix_plus_recovery():
    c, a = torch.tensor(C), adaptor()
    q, d = c[:2], c[2:]
    batch = losses.Batch(torch.eye(2), q, d)
    got = adaptors.search_loss(q, d, a, 2, batch, rec_weight=0.1).item()
    q_hat, d_hat = a(q)[:, :2], a(d)[:, :2]
    expected = (
        losses.rank(q_hat, d_hat, [2], batch)[0] + 0.1 * torch.cat([a.f(q), a.f(d)]).abs().mean()
    )
    assert got == pytest.approx(expected.item())


@pytest.fixture(scope="module")
def trained():
    """Every method trained for two epochs on small synthetic data, keeping its best epoch."""
    from smec.model import methods
    from smec.params import Methods, Train
    from smec.training import loop, synthetic
    from smec.training.checkpoint import Checkpoint

    data = synthetic.latent_factor_data(n_pairs=128, n_docs=256, n_heldout=16)
    cfg = Train(method_dims=[192, 96, 48], epochs=2, batch_size=32)
    opts = Methods(xbm_capacity=64, xbm_k=4, adaptor_topk=4)
    out = {}
    for method in methods.LEARNED:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Checkpoint(Path(tmp) / "s.pt", "k")
            job = loop.Job(methods.get(method), cfg, opts, select_best=True)
            out[method] = loop.fit(job, data, ckpt)
    return data, out


def test_every_methods_48d_embedding_comes_from_its_own_chain(trained):
    from smec.model import methods

    data, results = trained
    x = data.q[:5]
    w = {m: [mod.weight for mod in r.modules] for m, r in results.items()}
    mods = {m: r.modules for m, r in results.items()}
    idx = {m: [mod.indices() for mod in mods[m]] for m in ("smrl_ads", "smec")}
    expected = {
        "mrl": (x @ w["mrl"][0].T)[:, :48],
        "smrl": x @ w["smrl"][0].T @ w["smrl"][1].T @ w["smrl"][2].T,
        "mrl_adaptor": (x + x @ w["mrl_adaptor"][0].T)[:, :48],
        "search_adaptor": (x + x @ w["search_adaptor"][2].T)[:, :48],
    }
    for m in ("smrl_ads", "smec"):
        z = x
        for weight, keep in zip(w[m], idx[m], strict=True):
            z = (z @ weight.T)[:, keep]
        expected[m] = z
    for method, want in expected.items():
        got = methods.get(method).embed_at(mods[method], [192, 96, 48], x, 48)
        assert got.shape == (5, 48), method
        torch.testing.assert_close(got, want, msg=method)
    assert len(set(map(str, idx["smec"][0].tolist()))) == 192  # 192 distinct kept coordinates


def test_every_method_records_which_epoch_it_kept(trained):
    _, results = trained
    steps = {"mrl": 1, "smrl": 3, "smrl_ads": 3, "smec": 3, "mrl_adaptor": 1, "search_adaptor": 3}
    for method, result in results.items():
        sel = result.selection
        assert list(sel.step) == list(range(1, steps[method] + 1)), method
        assert set(sel.kept_epoch) <= {0, 1} and (sel.rule == "best held-out nDCG@10").all()
        assert sel.heldout_ndcg_at_10.between(0, 1).all()


def test_the_ads_loss_is_the_loss_of_the_kept_coordinates_wherever_they_lie():
    """A step's loss must see all of its kept coordinates, not the first k of the width."""
    from smec.model import methods
    from smec.model.methods.base import Context
    from smec.model.nesting import NestedLoss
    from smec.params import Methods, Train

    cfg, method = Train(method_dims=[4, 2]), methods.get("smrl_ads")
    spec = method.plan(cfg, 8)[0]
    module = method.build(spec, cfg)
    objective = method.objective(spec, cfg, Methods(), None)
    gen = torch.Generator().manual_seed(3)
    q, d = torch.randn(5, 8), torch.randn(5, 8)
    batch = losses.Batch(torch.eye(5), q, d)
    ctx = Context(0.5, gen, torch.arange(5), torch.arange(5))
    got = objective(module, q, d, batch, ctx)
    mask = module.mask(ads.temperature(1.0, 0.1, 0.5), torch.Generator().manual_seed(3))
    kept = mask.detach().nonzero().squeeze(1)
    assert kept.tolist() != [0, 1, 2, 3]  # the draw keeps coordinates past the first four
    loss = NestedLoss(losses.LOSSES["rank"], [4])
    want = loss(module.linear(q)[:, kept], module.linear(d)[:, kept], batch)
    torch.testing.assert_close(got, want)
