"""`smec.infra.lanes` on a real DVC repository: two independent stages run at once, the stage
that reads both waits for them, dvc.lock records all three, and a failure stops what depends
on it and names itself."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from smec.infra import lanes, tracking

from ..conftest import ROOT

DVC = str(Path(sys.executable).with_name("dvc"))
SLEEP = 2.0  # seconds each of the two first stages takes

# Writes "<start> <end>" (epoch seconds) of its own run into its output file.
STAMP = (
    "import sys, time; t = time.time(); time.sleep({s}); "
    "open(sys.argv[1], 'w').write(f'{{t}} {{time.time()}}')"
)


def stage(cmd: str, outs: list[str], deps: list[str] = ()) -> dict:
    return {"cmd": cmd, "deps": list(deps), "outs": outs} if deps else {"cmd": cmd, "outs": outs}


# A stage that logs an MLflow run as the pipeline's stages do, with a metric for its pipeline
# run, and writes the execution id it ran under.
TRACKED = """
import sys, time
from pathlib import Path
from smec import params
from smec.infra import provenance, tracking
name, seconds = sys.argv[1], float(sys.argv[2])
tracking.use_store()
with tracking.stage_run(params.load(Path("params.yaml")), name, Path.cwd()) as run:
    tracking.log_to_parent(run, {f"{name}_seconds": seconds})
    time.sleep(seconds)
Path(f"{name}.txt").write_text(provenance.execution())
"""


def repo(
    tmp_path: Path, fail: str | None = None, tracked: bool = False, alone: str | None = None
) -> Path:
    """A git + DVC repository of stages a and b (independent) and c (reads both); `tracked`:
    each logs an MLflow run (the store: the test's); `alone`: that stage runs by itself."""
    py = sys.executable
    if tracked:
        (tmp_path / "stage.py").write_text(TRACKED)
        cmds = {s: f"{py} stage.py {s} {SLEEP if s != 'c' else 0}" for s in "abc"}
    else:
        cmds = {s: f'{py} -c "{STAMP.format(s=SLEEP if s != "c" else 0)}" {s}.txt' for s in "abc"}
    stages = {
        "a": stage(cmds["a"], ["a.txt"]),
        "b": stage(cmds["b"], ["b.txt"]),
        "c": stage(cmds["c"], ["c.txt"], ["a.txt", "b.txt"]),
    }
    if fail:
        stages[fail]["cmd"] = f'{py} -c "raise SystemExit(3)"'
    if alone:
        stages[alone]["meta"] = {"alone": True}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
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


def test_make_repro_leaves_the_grids_stages_and_make_benchmark_runs_them(tmp_path):
    root = repo(tmp_path)
    config = yaml.safe_load((root / "dvc.yaml").read_text())
    config["stages"]["c"]["meta"] = {"grid": True}
    (root / "dvc.yaml").write_text(yaml.safe_dump(config))
    assert lanes.plan(root).order == ["a", "b"]
    assert lanes.plan(root, grid=True).order == ["a", "b", "c"]
    assert lanes.run(root, jobs=2) == 0
    assert locked(root) == {"a", "b"}


def test_a_stage_is_ready_once_every_stage_it_reads_is_done(tmp_path):
    p = lanes.plan(repo(tmp_path))
    assert p.order == ["a", "b", "c"] and p.upstream == {"a": set(), "b": set(), "c": {"a", "b"}}
    assert p.ready(done=set(), started=set()) == ["a", "b"]
    assert p.ready(done={"a"}, started={"a", "b"}) == []
    assert p.ready(done={"a", "b"}, started={"a", "b"}) == ["c"]


def test_every_stages_run_nests_under_one_pipeline_run_as_under_one_dvc_repro(tmp_path, mlflow_uri):
    root = repo(tmp_path, tracked=True)
    assert lanes.run(root, jobs=2) == 0
    client = mlflow.MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("smec").experiment_id])
    role = lambda r: r.data.tags[tracking.TAG_ROLE]  # noqa: E731
    (pipeline,) = [r for r in runs if role(r) == "pipeline"]
    stages = {r.data.tags[tracking.TAG_STAGE]: r for r in runs if role(r) == "stage"}
    assert set(stages) == {"a", "b", "c"}
    assert {r.data.tags[tracking.TAG_PARENT] for r in stages.values()} == {pipeline.info.run_id}
    execution = pipeline.data.tags[tracking.TAG_EXECUTION]
    assert {r.data.tags[tracking.TAG_EXECUTION] for r in runs} == {execution}
    assert execution in {(root / f"{s}.txt").read_text() for s in "abc"}
    assert set(pipeline.data.metrics) == {"a_seconds", "b_seconds", "c_seconds"}
    assert pipeline.info.status == "FINISHED"


def test_a_stage_that_runs_alone_gets_every_core_and_stages_side_by_side_share_them(tmp_path):
    scheduler = lanes.Scheduler(lanes.plan(repo(tmp_path)), tmp_path, jobs=2)
    cores = os.cpu_count()
    assert scheduler.threads(ready=1) == cores
    assert scheduler.threads(ready=3) == max(1, cores // 2)


@pytest.mark.parametrize("alone", ["a", "b"])
def test_a_stage_marked_alone_runs_by_itself_and_neither_shares_the_cores(tmp_path, capsys, alone):
    root = repo(tmp_path, alone=alone)
    plan = lanes.plan(root)
    assert plan.alone == {alone}
    lanes.Scheduler(plan, root, jobs=2).run()
    (a0, a1), (b0, b1) = interval(root / "a.txt"), interval(root / "b.txt")
    assert a1 <= b0 or b1 <= a0, "a ran beside b"
    out = capsys.readouterr().out
    assert f"a: started ({os.cpu_count()} torch thread" in out
    assert f"b: started ({os.cpu_count()} torch thread" in out


def test_a_stale_committed_stage_is_used_as_it_is_and_said_so_unless_asked_to_rerun(
    tmp_path, capsys
):
    """`make repro` on another CPU: the studies (`meta: committed`) are stale against this
    machine's inputs; they are not re-run unasked, one line says so and how to re-run them, and
    the stages after them read their outputs. `make tune` (`--rerun-committed`) re-runs them."""
    root = repo(tmp_path)
    (root / "input.txt").write_text("this CPU's embeddings")
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text())
    pipeline["stages"]["b"] |= {"deps": ["input.txt"], "meta": {"committed": "`make tune`: 9 min"}}
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    assert lanes.run(root, jobs=2) == 0
    first = interval(root / "b.txt")
    (root / "input.txt").write_text("another CPU's embeddings")
    capsys.readouterr()
    assert lanes.run(root, jobs=2) == 0
    assert interval(root / "b.txt") == first  # not re-run
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("[") and " b: " in x)
    assert "b: stale here (input.txt)" in line and line.endswith("`make tune`: 9 min")
    assert "b: started" not in out
    assert lanes.run(root, jobs=2, rerun=True) == 0
    assert interval(root / "b.txt") != first
