import functools

import pytest
import torch

from smec import params
from smec.measure import gradstats
from smec.model import heads, losses, methods
from smec.model.methods.base import Context
from smec.params import Methods
from smec.training import loop, synthetic
from smec.training.checkpoint import Checkpoint
from smec.training.data import batches

# The synthetic data are 384-d: the widths params.yaml's D/2, D/4 resolve to there
Train = functools.partial(params.Train, method_dims=[192, 96])


@pytest.fixture(scope="module")
def data():
    return synthetic.latent_factor_data(n_pairs=256, n_docs=512, n_heldout=16)


def job(method: str, cfg: Train) -> loop.Job:
    return loop.Job(methods.get(method), cfg)


def fit(method, cfg, data, path, **kw):
    return loop.fit(job(method, cfg), data, Checkpoint(path / f"{method}.pt", "test"), **kw)


@pytest.mark.parametrize(
    ("loss", "mrl_range"), [("rank", (2.6, 3.6)), ("mse", (2.6, 3.6)), ("ce", (2.0, 6.0))]
)
def test_mrl_low_rows_get_three_times_the_gradient_smrl_equal(data, tmp_path, loss, mrl_range):
    """docs/method.md's structural property at epoch 0: about 1 + 192/96 for MRL under the rank and
    MSE losses (CE's temperature-sharpened softmax bends it), 1 for SMRL under all three."""
    cfg = Train(epochs=1, loss=loss, heldout_eval=False)
    ratios = {}
    for method in ("mrl", "smrl"):
        record = fit(method, cfg, data, tmp_path).record
        stats = gradstats.per_epoch(record[record["head"] == 1], split=96)
        ratios[method] = stats.low_over_high.iloc[0]
    assert mrl_range[0] < ratios["mrl"] < mrl_range[1]
    assert 0.9 < ratios["smrl"] < 1.1


def test_smrl_pair_puts_two_losses_on_the_low_rows_again(data, tmp_path):
    """`pair` adds L(y[:96]) to step 1: its low rows get MRL's imbalance back."""
    cfg = Train(epochs=1, heldout_eval=False, smrl_step_loss="pair")
    record = fit("smrl", cfg, data, tmp_path).record
    ratio = gradstats.per_epoch(record[record["head"] == 1], split=96).low_over_high.iloc[0]
    assert 2.6 < ratio < 3.6


def reference_loss(q, d, batch, levels, weights):
    """Σ c_m L(y[:, :m]) written as the plain loop over sliced prefixes (no shared matmul)."""
    return sum(
        c * losses.rank(q[..., :m], d[..., :m], [m], batch)[0, 0]
        for m, c in zip(levels, weights, strict=True)
    )


@pytest.mark.parametrize(
    ("method", "settings", "levels", "weights"),
    [
        ("mrl", {}, [192, 96], [1.0, 1.0]),
        ("mrl", {"mrl_weights": [1.0, 3.0]}, [192, 96], [1.0, 3.0]),
        ("smrl", {}, [192], [1.0]),
        ("smrl", {"smrl_step_loss": "pair"}, [192, 96], [1.0, 1.0]),
    ],
)
def test_recorded_gradient_is_dL_dW_at_every_step(
    data, tmp_path, method, settings, levels, weights
):
    """Replays training with plain SGD and autograd on the loop-written loss; every recorded
    step's row sums and sums of squares must be those of that step's gradient alone."""
    cfg = Train(epochs=2, heldout_eval=False, optimizer="sgd", lr=0.5, **settings)
    record = fit(method, cfg, data, tmp_path).record
    record = record[record["head"] == 1]
    w = heads.draw_weight(192, 384, "random", cfg.seed * 100 + 1)
    step = 0
    for epoch in range(cfg.epochs):
        for idx in batches(len(data.pairs), cfg.batch_size, cfg.seed, 1, epoch):
            qi, di = data.pairs[idx, 0][None], data.pairs[idx, 1][None]  # one member
            batch = losses.Batch(data.relevance(qi, di), data.q[qi], data.c[di])
            w.requires_grad_(True)
            loss = reference_loss(data.q[qi] @ w.T, data.c[di] @ w.T, batch, levels, weights)
            (g,) = torch.autograd.grad(loss, w)
            rows = record[record.step == step].sort_values("row")
            torch.testing.assert_close(torch.tensor(rows["sum"].to_numpy()), g.sum(1).double())
            torch.testing.assert_close(
                torch.tensor(rows["sumsq"].to_numpy()), g.square().sum(1).double()
            )
            w = (w - cfg.lr * g).detach()
            step += 1
    assert step == record.step.nunique()


@pytest.mark.parametrize("name", methods.LEARNED)
def test_every_methods_recorded_gradient_is_that_of_its_own_objective(tmp_path, name):
    """Replays each method's first step with plain SGD (logits at their own rate) and autograd
    on its objective, built afresh (memory and all): each recorded step holds that step's
    gradient of the module's weight."""
    data = synthetic.latent_factor_data(n_pairs=96, n_docs=128, dim=32, factors=8, n_heldout=0)
    cfg = Train(method_dims=[16, 8], epochs=2, heldout_eval=False, optimizer="sgd", lr=0.5)
    method, opts = methods.get(name), Methods(xbm_k=3, adaptor_topk=4)
    record = loop.fit(loop.Job(method, cfg, opts), data, Checkpoint(tmp_path / "c.pt", "k")).record
    record = record[record["head"] == 1]
    spec = method.plan(cfg, 32)[0]
    module = method.build(spec, cfg, opts, [cfg.seed])
    objective = method.objective(spec, cfg, opts, loop.step_tables(data.q, data.c, data, 1))
    lrs = method.lr_overrides(opts)
    step, n = 0, len(batches(len(data.pairs), cfg.batch_size, cfg.seed, 1, 0))
    for epoch in range(cfg.epochs):
        gen = loop._generator(cfg.seed, 1, epoch)
        for b, idx in enumerate(batches(len(data.pairs), cfg.batch_size, cfg.seed, 1, epoch)):
            qi, di = data.pairs[idx, 0][None], data.pairs[idx, 1][None]  # one member
            batch = losses.Batch(data.relevance(qi, di), data.q[qi], data.c[di])
            ctx = Context((epoch * n + b) / (cfg.epochs * n), [gen], qi, di)
            loss = objective(module, data.q[qi], data.c[di], batch, ctx).sum()
            named = [(k, p) for k, p in module.named_parameters()]
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            g = dict(zip([k for k, _ in named], grads, strict=True))
            rows = record[record.step == step].sort_values("row")
            weight_grad = g[next(k for k, p in named if p is module.weight)][0]
            torch.testing.assert_close(
                torch.tensor(rows["sum"].to_numpy()), weight_grad.sum(1).double()
            )
            torch.testing.assert_close(
                torch.tensor(rows["sumsq"].to_numpy()), weight_grad.square().sum(1).double()
            )
            with torch.no_grad():
                for k, p in named:
                    if g[k] is not None:
                        p -= lrs.get(k, cfg.lr) * g[k]
            step += 1
    assert step == record.step.nunique()


class Stop(Exception):
    pass


def test_smrl_later_steps_leave_earlier_heads_untouched(data, tmp_path):
    """W1 at the end of step 1 (read from the checkpoint of an interrupted run) is W1 at the
    end of the whole chain."""
    cfg = Train(method_dims=[192, 96, 48], epochs=2, heldout_eval=False)
    whole = fit("smrl", cfg, data, tmp_path / "whole")
    assert [(h.in_features, h.out_features) for h in whole.modules] == [
        (384, 192),
        (192, 96),
        (96, 48),
    ]

    def stop_in_step_2(row):
        if row["head"] == 2:
            raise Stop

    ckpt = Checkpoint(tmp_path / "cut.pt", "k", every=0)
    with pytest.raises(Stop):
        loop.fit(job("smrl", cfg), data, ckpt, on_epoch=stop_in_step_2)
    after_step_1 = torch.load(ckpt.path, weights_only=False)["state"].done[0]["weight"]
    assert torch.equal(whole.modules[0].weight, after_step_1)
    assert all(not p.requires_grad for h in whole.modules for p in h.parameters())


def test_compressed_embeddings_come_from_each_methods_own_heads():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 384, generator=gen)
    w = [
        heads.make_head(384, 192, False, "random", [1]),
        heads.make_head(192, 96, False, "random", [2]),
    ]
    w1, w2 = w[0].weight[0], w[1].weight[0]
    dims = [192, 96]
    smrl_96 = methods.get("smrl").embed_at(w, dims, x, 96)[0]
    torch.testing.assert_close(smrl_96, x @ w1.T @ w2.T)  # W2·W1·x
    torch.testing.assert_close(
        methods.get("mrl").embed_at(w[:1], dims, x, 96)[0], (x @ w1.T)[:, :96]
    )
    torch.testing.assert_close(methods.get("smrl").embed_at(w, dims, x, 192)[0], x @ w1.T)
    with pytest.raises(ValueError, match="dim 48 is not one of"):
        methods.get("smrl").embed_at(w, dims, x, 48)


def test_smrl_held_out_ndcg_is_named_by_width_alone(data, tmp_path):
    cfg = Train(method_dims=[192, 96], epochs=2, heldout_eval=True)
    hist = fit("smrl", cfg, data, tmp_path).history.set_index(["head", "epoch"])
    assert hist.loc[(2, 1), "heldout_d96.ndcg_at_10"] > 0
    assert hist.loc[(1, 1), "heldout_d192.ndcg_at_10"] > 0
    assert list(hist["global_epoch"]) == [0, 1, 2, 3]


def test_same_seed_same_numbers_other_seed_other_numbers(data, tmp_path):
    cfg = Train(epochs=2, heldout_eval=False)
    a, b = fit("smrl", cfg, data, tmp_path / "a"), fit("smrl", cfg, data, tmp_path / "b")
    assert a.record.equals(b.record)
    for ha, hb in zip(a.modules, b.modules, strict=True):
        assert torch.equal(ha.weight, hb.weight)
    c = fit("smrl", Train(epochs=2, heldout_eval=False, seed=1), data, tmp_path / "c")
    assert not a.record.equals(c.record)


@pytest.mark.parametrize(("method", "stop_after"), [("mrl", 1), ("smrl", 3), ("smec", 1)])
def test_resume_after_interruption_ends_identical(data, tmp_path, method, stop_after):
    """SMEC's too: its memory and its record of masks travel in the checkpoint."""
    cfg = Train(epochs=3, heldout_eval=False, lr_schedule="cosine")
    whole = fit(method, cfg, data, tmp_path / "whole")
    seen = []

    def interrupt(row):
        seen.append(row)
        if len(seen) == stop_after + 1:  # dies after this epoch's checkpoint is not yet written
            raise Stop

    ckpt = Checkpoint(tmp_path / "cut" / "state.pt", "key", every=0)
    with pytest.raises(Stop):
        loop.fit(job(method, cfg), data, ckpt, on_epoch=interrupt)
    assert ckpt.path.exists()
    resumed = loop.fit(job(method, cfg), data, ckpt)
    assert resumed.record.equals(whole.record)
    assert resumed.history.drop(columns="seconds").equals(whole.history.drop(columns="seconds"))
    for hw, hr in zip(whole.modules, resumed.modules, strict=True):
        assert torch.equal(hw.weight, hr.weight)


def test_a_checkpoint_made_under_another_key_is_discarded_with_a_notice(data, tmp_path, capsys):
    cfg = Train(epochs=1, heldout_eval=False)
    Checkpoint(tmp_path / "state.pt", "old").save(loop.Progress(done=["junk"]), force=True)
    other = Checkpoint(tmp_path / "state.pt", "new")
    assert other.load() is None
    assert "discarding checkpoint" in capsys.readouterr().out
    assert not other.path.exists()
    assert len(loop.fit(job("mrl", cfg), data, other).modules) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_matches_cpu_structure(tmp_path):
    data = synthetic.latent_factor_data(n_pairs=256, n_docs=512, device="cuda")
    result = fit("mrl", Train(epochs=1, heldout_eval=True, device="cuda"), data, tmp_path)
    assert result.modules[0].weight.device.type == "cuda"
    stats = gradstats.per_epoch(result.record, split=96)
    assert 2.6 < stats.low_over_high.iloc[0] < 3.6


MEMBERS = (loop.Member(0, 1e-3), loop.Member(1, 3e-3), loop.Member(2, 1e-3))


@pytest.mark.parametrize("name", methods.LEARNED)
def test_a_stack_trains_each_member_as_it_trains_alone(tmp_path, name):
    """Three seeds (one at another learning rate) as one stacked model against each trained
    on its own: the same weights and gradient record (rtol 1e-5) and the same kept epochs."""
    data = synthetic.latent_factor_data(n_pairs=96, n_docs=128, dim=32, factors=8, n_heldout=8)
    cfg = Train(method_dims=[16, 8, 4], epochs=3, batch_size=32)
    method, opts = methods.get(name), Methods(xbm_k=3, adaptor_topk=4)
    fit_ = lambda members, path: loop.fit(  # noqa: E731
        loop.Job(method, cfg, opts, select_best=True, members=members),
        data,
        Checkpoint(tmp_path / path, "k"),
    )
    stack = fit_(MEMBERS, "stack.pt")
    for s, member in enumerate(MEMBERS):
        alone = fit_((member,), f"{s}.pt")
        for stacked, single in zip(stack.modules, alone.modules, strict=True):
            mine = loop.member_state(stacked, s)
            for key, value in single.state_dict().items():
                torch.testing.assert_close(mine[key], value, rtol=1e-5, atol=1e-7, msg=key)
        for col in ("sum", "sumsq", "update_sumsq"):
            torch.testing.assert_close(
                torch.tensor(stack.records[s][col].to_numpy()),
                torch.tensor(alone.record[col].to_numpy()),
                rtol=1e-5,
                atol=1e-9,
            )
        kept = stack.selection[stack.selection.seed == member.seed].kept_epoch
        assert list(kept) == list(alone.selection.kept_epoch)
