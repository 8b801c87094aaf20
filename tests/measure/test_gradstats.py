import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from smec.measure import gradstats


def test_recorder_sums_equal_those_of_the_gradient():
    rec = gradstats.Recorder()
    grads = [torch.randn(8, 5, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    for g in grads:
        rec.record(g)
    rec.end_epoch(0)
    table = rec.table("mrl", 1)
    assert len(table) == 3 * 8
    for step, g in enumerate(grads):
        rows = table[table.step == step].sort_values("row")
        np.testing.assert_array_equal(rows["sum"], g.sum(1).numpy())
        np.testing.assert_array_equal(rows["sumsq"], (g * g).sum(1).numpy())
        np.testing.assert_allclose(rows["sumsq"], (g.double() ** 2).sum(1).numpy(), rtol=1e-6)
    assert (table.cols == 5).all()


def test_per_epoch_statistics_match_direct_computation():
    rec = gradstats.Recorder()
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(6, 4, generator=gen) * (1 + i) for i in range(4)]
    for g in grads[:2]:
        rec.record(g)
    rec.end_epoch(0)
    for g in grads[2:]:
        rec.record(g)
    rec.end_epoch(1)
    stats = gradstats.per_epoch(rec.table("mrl", 1), split=3).set_index("epoch")
    for epoch, gs in ((0, grads[:2]), (1, grads[2:])):
        g = torch.stack(gs).double()
        norms = g.norm(dim=2)
        assert stats.loc[epoch, "avg_grad_low"] == pytest.approx(norms[:, :3].mean().item())
        assert stats.loc[epoch, "avg_grad_high"] == pytest.approx(norms[:, 3:].mean().item())
        elem_var = np.mean([x.var(unbiased=False).item() for x in g])
        assert stats.loc[epoch, "grad_var_elements"] == pytest.approx(elem_var)
        row_var = np.mean([n.var(unbiased=False).item() for n in norms])
        assert stats.loc[epoch, "grad_var_rows"] == pytest.approx(row_var)


def record(method, head, scale, epochs=2, steps=3, rows=8, cols=5):
    """A gradient record whose every gradient entry is `scale` (so row norms are known)."""
    rec = gradstats.Recorder()
    for e in range(epochs):
        for _ in range(steps):
            rec.record(torch.full((rows, cols), float(scale)))
        rec.end_epoch(e)
    return rec.table(method, head)


def test_figure_table_takes_the_head_of_the_first_width_of_each_method():
    """SMRL's step-2 head (96 rows, other gradients) must not leak into the figure's numbers."""
    rec = pd.concat(
        [record("mrl", 1, 1.0), record("smrl", 1, 2.0), record("smrl", 2, 50.0, rows=4)],
        ignore_index=True,
    )
    table = gradstats.figure_table(rec, [8, 4], "elements").set_index(["method", "epoch"])
    assert table.loc[("smrl", 0), "avg_grad_low"] == pytest.approx(2.0 * np.sqrt(5))
    assert table.loc[("smrl", 1), "avg_grad_high"] == pytest.approx(2.0 * np.sqrt(5))
    assert table.loc[("mrl", 0), "avg_grad_low"] == pytest.approx(np.sqrt(5))
    assert table.loc[("smrl", 0), "steps"] == 3


def test_the_noise_reading_is_each_weights_variance_across_steps_averaged():
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(6, 4, generator=gen) + 0.5 for _ in range(5)]
    rec = gradstats.Recorder()
    for g in grads:
        rec.record(g)
    rec.end_epoch(0)
    stats = gradstats.per_epoch(rec.table("mrl", 1), split=3)
    direct = torch.stack(grads).double().var(dim=0, unbiased=False).mean().item()
    assert stats.grad_var_noise.iloc[0] == pytest.approx(direct)


def test_the_update_record_is_w_after_minus_w_before_at_every_step():
    """Snapshots of W after each Adam step (an optimiser hook), differenced, against the record."""
    from smec.model.losses import LOSSES
    from smec.model.methods.base import NestedObjective
    from smec.model.nesting import NestedLoss
    from smec.params import Train
    from smec.training import loop, synthetic
    from smec.training.data import batches

    data = synthetic.latent_factor_data(n_pairs=64, n_docs=128, dim=12, factors=4, n_heldout=0)
    cfg = Train(method_dims=[8, 4], batch_size=16)
    head = torch.nn.Linear(12, 8, bias=False)
    opt, sched = loop.optimizer(head, cfg, 100)
    snapshots = [head.weight.detach().clone()]
    opt.register_step_post_hook(lambda *_: snapshots.append(head.weight.detach().clone()))
    rec = gradstats.Recorder()
    objective = NestedObjective(NestedLoss(LOSSES["rank"], [8, 4]))
    trainer = loop.StepTrainer(
        module=head,
        objective=objective,
        xq=data.q,
        xc=data.c,
        data=data,
        opt=opt,
        sched=sched,
        recorder=rec,
    )
    trainer.epoch(batches(64, 16, 0, 1, 0), (0, 1), torch.Generator())
    epoch = rec.end_epoch(0)
    deltas = torch.stack([b - a for a, b in itertools.pairwise(snapshots)]).double()
    np.testing.assert_allclose(epoch.update_sumsq, deltas.square().sum(dim=2).numpy(), rtol=1e-5)
    assert len(snapshots) == 5 and np.all(epoch.update_sumsq > 0)
