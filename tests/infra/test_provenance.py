import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from dvc_data.hashfile.hash import file_md5

from smec.infra import provenance


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_closure_follows_imports_inside_functions_relative_imports_and_helpers(tmp_path):
    src = tmp_path / "src"
    pkg = src / "smec"
    write(pkg / "__init__.py")
    write(pkg / "a.py", "def f():\n    from smec import b\n")  # imported where it is used
    write(pkg / "b.py", "from . import c\nfrom .d import x\n")  # relative imports
    write(pkg / "c.py")
    write(pkg / "d.py", "x = 1\n")
    write(pkg / "unused.py")
    write(tmp_path / "pipeline" / "_helper.py")
    script = write(
        tmp_path / "pipeline" / "stage.py",
        "import _helper\nimport json\nfrom smec.a import f\n",
    )
    got = {p.relative_to(tmp_path).as_posix() for p in provenance.closure(script, src)}
    assert got == {
        "pipeline/stage.py",
        "pipeline/_helper.py",
        "src/smec/__init__.py",
        "src/smec/a.py",
        "src/smec/b.py",
        "src/smec/c.py",
        "src/smec/d.py",
    }


def test_md5_is_the_digest_dvc_records(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(1000, dtype=np.float32))
    assert provenance.md5(path) == file_md5(str(path), name="md5")


def test_digest_changes_with_any_file_or_setting_and_only_then(tmp_path):
    files = [write(tmp_path / "a.py", "x = 1\n"), write(tmp_path / "b.npy", "data")]
    key = provenance.digest(files, tmp_path, {"lr": 1})
    assert provenance.digest(files, tmp_path, {"lr": 1}) == key
    assert provenance.digest(files, tmp_path, {"lr": 2}) != key
    write(tmp_path / "other.py", "unrelated")
    assert provenance.digest(files, tmp_path, {"lr": 1}) == key
    write(tmp_path / "a.py", "x = 2\n")
    assert provenance.digest(files, tmp_path, {"lr": 1}) != key


def test_an_execution_is_the_experiment_under_dvc_exp_run(monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "loss-ce")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    assert provenance.execution() == "exp:loss-ce@abc123"


def test_closure_counts_the_init_of_every_package_a_module_lies_in(tmp_path):
    """Importing smec.wing.sub.m runs smec/__init__, smec/wing/__init__ and .../sub/__init__."""
    src = tmp_path / "src"
    for init in ("smec", "smec/wing", "smec/wing/sub"):
        write(src / init / "__init__.py")
    write(src / "smec" / "wing" / "sub" / "m.py")
    script = write(tmp_path / "stage.py", "from smec.wing.sub import m\n")
    got = {p.relative_to(tmp_path).as_posix() for p in provenance.closure(script, src)}
    assert got == {
        "stage.py",
        "src/smec/__init__.py",
        "src/smec/wing/__init__.py",
        "src/smec/wing/sub/__init__.py",
        "src/smec/wing/sub/m.py",
    }


def test_stages_started_by_one_dvc_process_share_its_execution(tmp_path):
    """A stand-in `dvc` starts two `stage` processes through a shell, as DVC does."""
    stage = (
        f"{sys.executable} -c 'from smec.infra import provenance; print(provenance.execution())'"
    )
    fake_dvc = write(
        tmp_path / "dvc",
        f"import subprocess\nfor _ in range(2):\n    subprocess.run({stage!r}, shell=True)\n",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_EXP")}
    out = subprocess.run(
        [sys.executable, str(fake_dvc)], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert len(out) == 2 and out[0] == out[1]
    assert out[0].startswith("dvc:")
    again = subprocess.run(
        [sys.executable, str(fake_dvc)], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert again[0] != out[0]  # another `dvc repro`, another execution


def test_the_host_names_this_machines_cpu_model_and_cores():
    model = next(
        ln.split(":", 1)[1].strip()
        for ln in Path("/proc/cpuinfo").read_text().splitlines()
        if ln.startswith("model name")
    )
    assert provenance.host().startswith(f"{model}, {os.cpu_count()} cores")
