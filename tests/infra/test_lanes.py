"""`smec.infra.lanes` on a real DVC repository: two independent stages run at once, the stage
that reads both waits for them, dvc.lock records all three, and a failure stops what depends
on it and names itself."""

import subprocess
import sys
import time
from pathlib import Path

import yaml

from smec.infra import lanes

DVC = str(Path(sys.executable).with_name("dvc"))
SLEEP = 2.0  # seconds each of the two first stages takes

# Writes "<start> <end>" (epoch seconds) of its own run into its output file.
STAMP = (
    "import sys, time; t = time.time(); time.sleep({s}); "
    "open(sys.argv[1], 'w').write(f'{{t}} {{time.time()}}')"
)


def stage(cmd: str, outs: list[str], deps: list[str] = ()) -> dict:
    return {"cmd": cmd, "deps": list(deps), "outs": outs} if deps else {"cmd": cmd, "outs": outs}


def repo(tmp_path: Path, fail: str | None = None) -> Path:
    """A git + DVC repository of stages a and b (independent) and c (reads both)."""
    py = sys.executable
    stamp = STAMP.format(s=SLEEP)
    stages = {
        "a": stage(f'{py} -c "{stamp}" a.txt', ["a.txt"]),
        "b": stage(f'{py} -c "{stamp}" b.txt', ["b.txt"]),
        "c": stage(f'{py} -c "{STAMP.format(s=0)}" c.txt', ["c.txt"], ["a.txt", "b.txt"]),
    }
    if fail:
        stages[fail]["cmd"] = f'{py} -c "raise SystemExit(3)"'
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    for cmd in (
        ["git", "init", "-q"],
        [DVC, "init", "-q"],
        [DVC, "config", "core.analytics", "false"],
    ):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def interval(path: Path) -> tuple[float, float]:
    start, end = path.read_text().split()
    return float(start), float(end)


def locked(root: Path) -> set[str]:
    return set(yaml.safe_load((root / "dvc.lock").read_text())["stages"])


def test_independent_stages_run_side_by_side_and_a_stage_waits_for_its_inputs(tmp_path):
    root = repo(tmp_path)
    assert lanes.run(root, jobs=2) == 0
    (a0, a1), (b0, b1), (c0, _) = (interval(root / f"{s}.txt") for s in "abc")
    assert max(a0, b0) < min(a1, b1), "a and b did not overlap"
    assert c0 >= max(a1, b1), "c started before its inputs were written"
    assert locked(root) == {"a", "b", "c"}
    status = subprocess.run([DVC, "status"], cwd=root, capture_output=True, text=True, check=True)
    assert "up to date" in status.stdout


def test_one_lane_runs_the_stages_one_after_another(tmp_path):
    root = repo(tmp_path)
    started = time.monotonic()
    assert lanes.run(root, jobs=1) == 0
    (a0, a1), (b0, b1) = interval(root / "a.txt"), interval(root / "b.txt")
    assert a1 <= b0 or b1 <= a0
    assert time.monotonic() - started >= 2 * SLEEP


def test_a_failed_stage_stops_what_depends_on_it_and_names_itself(tmp_path, capsys):
    root = repo(tmp_path, fail="b")
    assert lanes.run(root, jobs=2) == 1
    assert not (root / lanes.LOGS / "c.log").exists(), "c was started"
    assert locked(root) == {"a"}  # what finished is recorded: running again resumes
    err = capsys.readouterr().err
    assert err.startswith("error: stage b failed") and "b.log" in err


def test_a_stage_is_ready_once_every_stage_it_reads_is_done(tmp_path):
    p = lanes.plan(repo(tmp_path))
    assert p.order == ["a", "b", "c"] and p.upstream == {"a": set(), "b": set(), "c": {"a", "b"}}
    assert p.ready(done=set(), started=set()) == ["a", "b"]
    assert p.ready(done={"a"}, started={"a", "b"}) == []
    assert p.ready(done={"a", "b"}, started={"a", "b"}) == ["c"]
