"""The comparison's parts: the S-XBM memory, loss and term, the two adaptors' losses and
phases, every method's start and embedding, and model selection by held-out nDCG@10."""

import itertools
import math
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from smec.model import adaptors, losses, methods, xbm
from smec.model.methods.base import Context, Tables
from smec.model.nesting import NestedLoss
from smec.params import Methods, Train
from smec.training import loop, synthetic
from smec.training.checkpoint import Checkpoint


def test_the_memory_keeps_order_and_capacity_and_excludes_self_matches():
    mem = xbm.Memory(capacity=5, n_items=7)
    mem.push(torch.tensor([[0, 1, 2]]))
    mem.push(torch.tensor([[3, 4, 5]]))
    assert mem.ids(0).tolist() == [1, 2, 3, 4, 5]  # oldest (0) dropped, order kept
    mem.push(torch.tensor([[2, 6, 6]]))
    assert mem.ids(0).tolist() == [3, 4, 5, 2, 6]  # 2 seen again moves to the end, 6 kept once
    full = torch.nn.functional.normalize(torch.randn(7, 4), dim=-1)
    sims = xbm.Similarities(full, torch.arange(7))
    batch = torch.tensor([2, 4])
    near, frozen = sims.search(batch, mem.ids(0), k=2)
    assert near.shape == frozen.shape == (2, 2)
    assert 2 not in near[0].tolist() and 4 not in near[1].tolist()
    others = [3, 4, 5, 6]
    top = (full[2] @ full[others].T).topk(2)
    assert near[0].tolist() == [others[i] for i in top.indices.tolist()]
    torch.testing.assert_close(frozen[0], top.values)


def test_each_member_keeps_its_own_queue_and_a_restored_one_goes_on_the_same():
    batches = [torch.tensor([[0, 1, 2], [5, 5, 4]]), torch.tensor([[3, 0, 6], [1, 1, 3]])]
    both = xbm.Memory(capacity=4, n_items=7, n_members=2)
    alone = [xbm.Memory(capacity=4, n_items=7) for _ in range(2)]
    for ids in batches:
        both.push(ids)
        for s, mem in enumerate(alone):
            mem.push(ids[s : s + 1])
    assert [both.ids(s).tolist() for s in range(2)] == [m.ids(0).tolist() for m in alone]
    assert both.ids(0).tolist() == [2, 3, 0, 6] and both.ids(1).tolist() == [5, 4, 1, 3]
    restored = xbm.Memory(capacity=4, n_items=7, n_members=2)
    restored.load_state(both.state())
    for mem in (both, restored):
        mem.push(torch.tensor([[5, 2, 1], [0, 3, 6]]))
    assert [restored.ids(s).tolist() for s in range(2)] == [both.ids(s).tolist() for s in range(2)]


def test_similarities_are_looked_up_among_the_training_items():
    full = torch.nn.functional.normalize(torch.randn(10, 4), dim=-1)
    universe = torch.tensor([1, 3, 4, 8])
    sims = xbm.Similarities(full, universe)
    a, b = torch.tensor([3, 8]), torch.tensor([1, 4, 8])
    torch.testing.assert_close(sims(sims.local[a], sims.local[b]), full[a] @ full[b].T)


def test_a_memory_of_every_item_finds_by_lookup_what_the_search_finds():
    """Once a queue holds every training item, each item's neighbours are looked up in the
    universe's top-k: the same numbers and cosines as searching the queue, in any order."""
    gen = torch.Generator().manual_seed(3)
    full = torch.nn.functional.normalize(torch.randn(30, 6, generator=gen), dim=-1)
    universe = torch.randperm(30, generator=gen)[:20]
    sims = xbm.Similarities(full, universe)
    queue = torch.randperm(20, generator=gen)  # every item, in the order they last came
    batch = torch.tensor([[4, 0, 19], [7, 7, 12]])
    near, frozen = sims.nearest(batch, 3)
    assert near.shape == frozen.shape == (2, 3, 3)
    for s in range(2):
        want_near, want_frozen = sims.search(batch[s], queue, 3)
        assert near[s].tolist() == want_near.tolist()
        torch.testing.assert_close(frozen[s], want_frozen)


def test_the_sxbm_loss_is_zero_when_compressed_and_frozen_similarities_agree():
    x = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    x_n = torch.nn.functional.normalize(torch.randn(3, 2, 8), dim=-1)
    frozen = torch.einsum("bd,bkd->bk", x, x_n)
    rot = torch.linalg.qr(torch.randn(8, 8)).Q  # a rotation keeps every cosine
    one = lambda *ts: [t[None] for t in ts]  # noqa: E731  (one member)
    assert xbm.loss(*one(x @ rot, x_n @ rot, frozen)).item() == pytest.approx(0.0, abs=1e-6)
    assert xbm.loss(*one(x[:, :4], x_n[:, :, :4], frozen)).item() > 0


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
        a.f.weight.copy_(torch.tensor([A]))
    return a


def test_matryoshka_adaptor_losses_equal_the_hand_computed_four_item_case():
    c, a = torch.tensor([C]), adaptor()  # one member
    c_hat = a(c)
    adapted = hand_adapted()
    torch.testing.assert_close(c_hat[0], torch.tensor(adapted))
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
    c, a = torch.tensor([C]), adaptor()
    q, d = c[:, :2], c[:, 2:]
    batch = losses.Batch(torch.eye(2)[None], q, d)
    rank = NestedLoss(losses.rank, [2])
    got = adaptors.search_loss(q, d, a, rank, batch, rec_weight=0.1).item()
    q_hat, d_hat = a(q)[..., :2], a(d)[..., :2]
    recovery = torch.cat([a.f(q), a.f(d)], dim=1).abs().mean()
    expected = losses.rank(q_hat, d_hat, [2], batch)[0, 0] + 0.1 * recovery
    assert got == pytest.approx(expected.item())


@pytest.fixture(scope="module")
def trained():
    """Every method trained for two epochs on small synthetic data, keeping its best epoch."""
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
    data, results = trained
    x = data.q[:5]
    w = {m: [mod.weight[0] for mod in r.modules] for m, r in results.items()}
    mods = {m: r.modules for m, r in results.items()}
    idx = {m: [mod.indices()[0] for mod in mods[m]] for m in ("smrl_ads", "smec")}
    chain = {m: x @ w[m][0].T @ w[m][1].T @ w[m][2].T for m in ("smrl", "smrl_sxbm")}
    expected = {
        "mrl": (x @ w["mrl"][0].T)[:, :48],
        **chain,
        "mrl_adaptor": (x + x @ w["mrl_adaptor"][0].T)[:, :48],
        "search_adaptor": (x + x @ w["search_adaptor"][2].T)[:, :48],
    }
    for m in ("smrl_ads", "smec"):
        z = x
        for weight, keep in zip(w[m], idx[m], strict=True):
            z = (z @ weight.T)[:, keep]
        expected[m] = z
    assert set(expected) == set(methods.LEARNED)
    for method, want in expected.items():
        got = methods.get(method).embed_at(mods[method], [192, 96, 48], x, 48)
        assert got.shape == (1, 5, 48), method
        torch.testing.assert_close(got[0], want, msg=method)


def test_every_method_records_which_epoch_it_kept(trained):
    _, results = trained
    for method, result in results.items():
        sel = result.selection
        steps = len(methods.get(method).plan(Train(method_dims=[192, 96, 48]), 384))
        assert list(sel.step) == list(range(1, steps + 1)), method
        assert (sel.rule == "best held-out nDCG@10").all()


def test_the_kept_weights_are_those_of_the_best_held_out_epoch(tmp_path):
    """Each step ends on the epoch whose held-out nDCG@10 is highest, with that epoch's own
    weights: a run stopped after that epoch (constant lr: the same first epochs) has them."""
    data = synthetic.latent_factor_data(n_pairs=128, n_docs=256, n_heldout=16)
    cfg = Train(method_dims=[192, 96], epochs=6, batch_size=32, lr=0.05)
    job = loop.Job(methods.get("mrl"), cfg, select_best=True)
    result = loop.fit(job, data, Checkpoint(tmp_path / "a.pt", "k"))
    hist = result.history
    score = (hist["heldout_d192.ndcg_at_10"] + hist["heldout_d96.ndcg_at_10"]) / 2
    best = int(hist.epoch[score.idxmax()])
    assert result.selection.kept_epoch.iloc[0] == best
    assert best < 5  # this lr overfits: the kept epoch is not the last
    short = loop.fit(
        loop.Job(methods.get("mrl"), cfg.model_copy(update={"epochs": best + 1})),
        data,
        Checkpoint(tmp_path / "b.pt", "k"),
    )
    assert torch.equal(result.modules[0].weight, short.modules[0].weight)


def test_members_of_a_stack_each_keep_their_own_best_epoch(tmp_path):
    """Two members at different learning rates: each keeps the epoch its own held-out
    nDCG@10 picks, and its weights are those it has trained alone."""
    data = synthetic.latent_factor_data(n_pairs=128, n_docs=256, n_heldout=16)
    cfg = Train(method_dims=[192, 96], epochs=6, batch_size=32)
    members = (loop.Member(0, 0.05), loop.Member(1, 0.002))
    stack = loop.fit(
        loop.Job(methods.get("mrl"), cfg, select_best=True, members=members),
        data,
        Checkpoint(tmp_path / "s.pt", "k"),
    )
    for s, member in enumerate(members):
        alone = loop.fit(
            loop.Job(methods.get("mrl"), cfg, select_best=True, members=(member,)),
            data,
            Checkpoint(tmp_path / f"{s}.pt", "k"),
        )
        mine = stack.selection[stack.selection.seed == member.seed]
        assert list(mine.kept_epoch) == list(alone.selection.kept_epoch)
        torch.testing.assert_close(stack.modules[0].weight[s], alone.modules[0].weight[0])
    assert stack.selection.kept_epoch.nunique() == 2  # the two did pick different epochs


@pytest.mark.parametrize("name", methods.LEARNED)
def test_every_method_starts_as_truncation_under_the_identity_start(name):
    """`compare.inits`' identity start: heads and ADS maps the identity, adaptors a zero
    residual, so every method's untrained embedding is the frozen one truncated."""
    method, x = methods.get(name), torch.randn(6, 32)
    dims = [16, 8, 4]
    for init, same in (("identity", True), ("random", False)):
        cfg = Train(method_dims=dims, init=init)
        modules = [method.build(s, cfg, Methods(), [0]).eval() for s in method.plan(cfg, 32)]
        for d in dims:
            z = method.embed_at(modules, dims, x, d)[0]
            assert torch.allclose(z, x[:, :d]) == same, (name, init, d)


def batch_of(n=6, width=8, seed=0):
    """One member's batch: q, d (1, n, width)."""
    gen = torch.Generator().manual_seed(seed)
    q, d = torch.randn(1, n, width, generator=gen), torch.randn(1, n, width, generator=gen)
    return q, d, losses.Batch(torch.eye(n)[None], q, d)


def ctx(progress: float, seed: int = 0) -> Context:
    return Context(progress, [torch.Generator().manual_seed(seed)], *IDS)


def test_the_ads_loss_is_the_loss_of_the_kept_coordinates_wherever_they_lie():
    """A step's loss sees all of its kept coordinates, not the first k of the width; with
    `pair` it adds the loss of the map's whole output."""
    method = methods.get("smrl_ads")
    for step_loss in ("single", "pair"):
        cfg = Train(method_dims=[4, 2], smrl_step_loss=step_loss)
        spec = method.plan(cfg, 8)[0]
        module = method.build(spec, cfg, Methods(), [0])
        objective = method.objective(spec, cfg, Methods(), None)
        q, d, batch = batch_of()
        got = objective(module, q, d, batch, ctx(0.3, seed=3))
        mask = module.mask(objective.schedule, 0.3, [torch.Generator().manual_seed(3)])
        kept = mask[0].detach().nonzero().squeeze(1)
        assert kept.tolist() != [0, 1, 2, 3]  # the draw keeps coordinates past the first four
        rank = losses.LOSSES["rank"]
        want = NestedLoss(rank, [4])(
            module.linear(q)[..., kept], module.linear(d)[..., kept], batch
        )
        if step_loss == "pair":
            want = want + NestedLoss(rank, [8])(module.linear(q), module.linear(d), batch)
        torch.testing.assert_close(got, want)


IDS = (torch.arange(6)[None], torch.arange(6)[None])


def tables(n_items=12, width=8, seed=1):
    """A step's frozen tables over 6 queries and 6 documents (all training items)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_items, width, generator=gen)
    return Tables(x, F.normalize(x, dim=-1), n_items // 2, torch.arange(n_items), members=1)


def top_neighbours(t: Tables, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's k most similar other items among all of `t` (every one a training item)."""
    sims = (t.full[ids] @ t.full.T).masked_fill(ids[:, None] == torch.arange(len(t.full)), -2)
    top = sims.topk(k, dim=1)
    return top.indices, top.values


def sxbm_objective(name: str, weight: float, bias: bool = False):
    method = methods.get(name)
    cfg = Train(method_dims=[4, 2], bias=bias)  # the first step keeps 4 of the 8 inputs
    opts = Methods(xbm_k=2, xbm_weight=weight, xbm_capacity=12)
    spec = method.plan(cfg, 8)[0]
    module = method.build(spec, cfg, opts, [0])
    if bias:
        with torch.no_grad():
            (module.linear if hasattr(module, "linear") else module).bias.normal_()
    return module, method.objective(spec, cfg, opts, tables())


@pytest.mark.parametrize("name", ["smec", "smrl_sxbm"])
def test_the_sxbm_term_counts_once_the_memory_is_full_and_equals_its_definition(name):
    """After a first batch fills the memory, λ · L_sxbm of the second batch: the batch's
    compressed items against their frozen-space neighbours, compressed on the same rows, the
    memory side through the module (bias included)."""
    q, d, batch = batch_of()
    with_term, objective = sxbm_objective(name, 1.0, bias=True)
    without, plain = sxbm_objective(name, 0.0, bias=True)
    without.load_state_dict(with_term.state_dict())
    for o, m in ((objective, with_term), (plain, without)):
        o(m, q, d, batch, ctx(0.0, seed=4))  # fills the memory
    got = objective(with_term, q, d, batch, ctx(0.1, seed=4))
    base = plain(without, q, d, batch, ctx(0.1, seed=4))
    assert objective.term.active_steps == 1 and got > base
    t = tables()
    ids = torch.cat([IDS[0][0], IDS[1][0] + 6])
    near, frozen = top_neighbours(t, ids, 2)
    assert objective.term.neighbours(ids[None])[0].tolist() == [near.tolist()]
    if name == "smec":
        kept = objective.masks[-1][0].nonzero().squeeze(1)
        assert kept.tolist() != [0, 1, 2, 3]
        compress = lambda x: with_term.linear(x[None])[0][:, kept]  # noqa: E731
    else:
        compress = lambda x: with_term(x[None])[0]  # noqa: E731
    z = compress(torch.cat([q[0], d[0]]))
    want = xbm.loss(z[None], compress(t.inputs)[near][None], frozen[None])
    torch.testing.assert_close(got - base, want)


def test_the_sxbm_memory_side_is_a_constant():
    """The term's gradient flows through the batch's items only."""
    q, d, batch = batch_of()
    module, objective = sxbm_objective("smrl_sxbm", 1.0)
    objective(module, q, d, batch, ctx(0.0))
    term = objective.term(module(torch.cat([q, d], dim=1)), module, *IDS)
    (grad,) = torch.autograd.grad(term.sum(), module.weight)
    t = tables()
    ids = torch.cat([IDS[0][0], IDS[1][0] + 6])
    near, frozen = top_neighbours(t, ids, 2)
    z = lambda: module(torch.cat([q, d], dim=1))  # noqa: E731
    memory_side = lambda: module(t.inputs[None])[0][near][None]  # noqa: E731
    through_both = xbm.loss(z(), memory_side(), frozen[None]).sum()
    (both,) = torch.autograd.grad(through_both, module.weight)
    constant = xbm.loss(z(), memory_side().detach(), frozen[None]).sum()
    (batch_only,) = torch.autograd.grad(constant, module.weight)
    torch.testing.assert_close(grad, batch_only)
    assert not torch.allclose(grad, both)


def test_the_matryoshka_adaptor_adds_the_ranking_loss_after_its_unsupervised_share():
    method, opts = methods.get("mrl_adaptor"), Methods(adaptor_unsupervised=0.5)
    cfg = Train(method_dims=[4, 2], init="random")
    spec = method.plan(cfg, 8)[0]
    module = method.build(spec, cfg, opts, [0])
    objective = method.objective(spec, cfg, opts, None)
    q, d, batch = batch_of()
    items = torch.cat([q, d], dim=1)
    unsup = adaptors.matryoshka_unsupervised(items, module, [4, 2], k=10, alpha=1.0, beta=1.0)
    rank = NestedLoss(losses.LOSSES["rank"], [4, 2])(module(q), module(d), batch)
    at = lambda p: objective(module, q, d, batch, ctx(p))  # noqa: E731
    torch.testing.assert_close(at(0.49), unsup)
    torch.testing.assert_close(at(0.5), unsup + rank)


@pytest.mark.parametrize("loss", ["rank", "ce"])
@pytest.mark.parametrize("name", ["search_adaptor", "mrl_adaptor"])
def test_the_adaptors_supervised_term_is_the_comparisons_loss(name, loss):
    """Under `ce` an adaptor trains with ce where its paper writes L_rank, like every method;
    its loss there is not the rank loss's."""
    method, opts = methods.get(name), Methods(adaptor_unsupervised=0.0, search_rec_weight=0.0)
    cfg = Train(method_dims=[4, 2], init="random", loss=loss)
    spec = method.plan(cfg, 8)[0]
    module = method.build(spec, cfg, opts, [0])
    q, d, batch = batch_of()
    got = method.objective(spec, cfg, opts, None)(module, q, d, batch, ctx(1.0))
    unsup = 0.0
    if name == "mrl_adaptor":
        items = torch.cat([q, d], dim=1)
        unsup = adaptors.matryoshka_unsupervised(items, module, [4, 2], k=10, alpha=1.0, beta=1.0)
    supervised = NestedLoss(losses.LOSSES[loss], spec.levels)(module(q), module(d), batch)
    torch.testing.assert_close(got, unsup + supervised)
