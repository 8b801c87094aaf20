import pytest
import torch

from smec import gradstats, synthetic, train
from smec.params import Train


@pytest.fixture(scope="module")
def data():
    return synthetic.latent_factor_data(n_pairs=256, n_docs=512, n_heldout=16)


def fit(method, cfg, data, path, **kw):
    return train.fit(method, cfg, data, train.Checkpoint(path / f"{method}.pt", "test"), **kw)


@pytest.mark.parametrize(
    ("loss", "mrl_range"), [("rank", (2.6, 3.6)), ("mse", (2.6, 3.6)), ("ce", (2.0, 6.0))]
)
def test_mrl_low_rows_get_three_times_the_gradient_smrl_equal(data, tmp_path, loss, mrl_range):
    """method.md's structural property at epoch 0: about 1 + 192/96 for MRL under the rank and
    MSE losses (CE's temperature-sharpened softmax bends it), 1 for SMRL under all three."""
    cfg = Train(epochs=1, loss=loss, heldout_eval=False)
    ratios = {}
    for method in ("mrl", "smrl"):
        record = fit(method, cfg, data, tmp_path).record
        stats = gradstats.per_epoch(record[record["head"] == 1], split=96)
        ratios[method] = stats.low_over_high.iloc[0]
    assert mrl_range[0] < ratios["mrl"] < mrl_range[1]
    assert 0.9 < ratios["smrl"] < 1.1


def test_smrl_trains_one_head_per_halving_with_earlier_heads_frozen(data, tmp_path):
    cfg = Train(method_dims=[192, 96, 48], epochs=2, heldout_eval=True)
    result = fit("smrl", cfg, data, tmp_path)
    assert [(h.in_features, h.out_features) for h in result.heads] == [
        (384, 192),
        (192, 96),
        (96, 48),
    ]
    assert sorted(result.record["head"].unique()) == [1, 2, 3]
    hist = result.history.set_index(["head", "epoch"])
    assert hist.loc[(2, 1), "ndcg10_heldout_d96"] > 0
    assert all(not p.requires_grad for h in result.heads for p in h.parameters())


def test_mrl_recorded_gradient_is_the_head_gradient_of_the_summed_loss(data, tmp_path):
    cfg = Train(epochs=1, heldout_eval=False, batch_size=32)
    result = fit("mrl", cfg, data, tmp_path)
    assert result.record.step.nunique() == train.steps_per_epoch(len(data.pairs), 32)
    assert len(result.record) == result.record.step.nunique() * 192


def test_same_seed_same_numbers_other_seed_other_numbers(data, tmp_path):
    cfg = Train(epochs=2, heldout_eval=False)
    a, b = fit("smrl", cfg, data, tmp_path / "a"), fit("smrl", cfg, data, tmp_path / "b")
    assert a.record.equals(b.record)
    for ha, hb in zip(a.heads, b.heads, strict=True):
        assert torch.equal(ha.weight, hb.weight)
    c = fit("smrl", Train(epochs=2, heldout_eval=False, seed=1), data, tmp_path / "c")
    assert not a.record.equals(c.record)


class Stop(Exception):
    pass


@pytest.mark.parametrize(("method", "stop_after"), [("mrl", 1), ("smrl", 3)])
def test_resume_after_interruption_ends_identical(data, tmp_path, method, stop_after):
    cfg = Train(epochs=3, heldout_eval=False, lr_schedule="cosine")
    whole = fit(method, cfg, data, tmp_path / "whole")
    seen = []

    def interrupt(row):
        seen.append(row)
        if len(seen) == stop_after + 1:  # dies after this epoch's checkpoint is not yet written
            raise Stop

    ckpt = train.Checkpoint(tmp_path / "cut" / "state.pt", "digest")
    with pytest.raises(Stop):
        train.fit(method, cfg, data, ckpt, on_epoch=interrupt)
    assert ckpt.path.exists()
    resumed = train.fit(method, cfg, data, ckpt)
    assert resumed.record.equals(whole.record)
    assert resumed.history.drop(columns="seconds").equals(whole.history.drop(columns="seconds"))
    for hw, hr in zip(whole.heads, resumed.heads, strict=True):
        assert torch.equal(hw.weight, hr.weight)


def test_checkpoint_of_other_params_is_ignored(data, tmp_path):
    cfg = Train(epochs=1, heldout_eval=False)
    ckpt = train.Checkpoint(tmp_path / "state.pt", "one")
    ckpt.save({"done": ["junk"], "records": [], "history": [], "current": None})
    other = train.Checkpoint(tmp_path / "state.pt", "two")
    assert other.load() is None
    assert len(train.fit("mrl", cfg, data, other).heads) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_matches_cpu_structure(tmp_path):
    data = synthetic.latent_factor_data(n_pairs=256, n_docs=512, device="cuda")
    result = fit("mrl", Train(epochs=1, heldout_eval=True, device="cuda"), data, tmp_path)
    assert result.heads[0].weight.device.type == "cuda"
    stats = gradstats.per_epoch(result.record, split=96)
    assert 2.6 < stats.low_over_high.iloc[0] < 3.6
