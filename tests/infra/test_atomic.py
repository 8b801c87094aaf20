import pytest

from smec.infra import atomic


def test_failed_directory_write_leaves_the_old_output(tmp_path):
    out = tmp_path / "out"
    with atomic.directory(out) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic.directory(out) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("stage died")
    assert (out / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left behind


def test_failed_file_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic.target(tmp_path / "x.json") as tmp:
        tmp.write_text("{")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    atomic.write_json(tmp_path / "x.json", {"a": 1})
    assert (tmp_path / "x.json").read_text() == '{\n  "a": 1\n}\n'


def test_a_private_file_is_its_owners_alone_even_where_a_readable_one_was(tmp_path):
    path = tmp_path / "secret.json"
    path.write_text("old")
    path.chmod(0o644)
    atomic.write_private(path, "new")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["secret.json"]
