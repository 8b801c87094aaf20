"""Artifacts written twice from the same data are the same bytes, whatever their file names."""

import torch

from smec.data import artifacts


def test_saved_modules_are_byte_identical_whatever_file_they_go_to(tmp_path):
    states = [{"weight": torch.arange(6.0).reshape(1, 2, 3)}]
    meta = {"method": "mrl", "dims": [2, 1], "in_dim": 3}
    artifacts.write_modules(tmp_path / "a.pt", meta, states)
    artifacts.write_modules(tmp_path / "other" / "b.pt", meta, states)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other" / "b.pt").read_bytes()
    read_meta, read_states = artifacts.read_modules(tmp_path / "other" / "b.pt")
    assert read_meta == meta and torch.equal(read_states[0]["weight"], states[0]["weight"])
