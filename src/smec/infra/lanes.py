"""`dvc repro` with independent stages side by side: `make repro JOBS=2`'s driver.

DVC runs one stage at a time, but it releases its repository lock while a stage's command runs
(`dvc repro`'s "parallel stage execution"), so separate `dvc repro --single-item <stage>`
processes can run independent stages at once; each waits for the lock (`dvc --wait-for-lock`)
to check its stage and to record it in dvc.lock. This runs the DAG of dvc.yaml that way on
`jobs` lanes: a stage starts once every stage it depends on has finished (ready stages in
dvc.yaml's order), with the cores shared among it and the stages beside it as torch threads
(`OMP_NUM_THREADS`): on 2 cores two one-thread stages share the machine, and a stage that runs
alone (`embed`) has both. A stage whose numbers depend on its thread count is marked
`meta: {alone: true}` in dvc.yaml and runs by itself on every core; on a 2-core EPYC every other
stage wrote the same outputs on one thread as on two (docs/benchmarks.md). Each stage's output
goes to `.dvc/tmp/repro/<stage>.log`.

A stage marked `meta: {committed: "<how to re-run it, and how long it took>"}` (the studies)
has its outputs in git: where `dvc status` finds it stale (another CPU's embeddings differ in
their last bits, say), it is not run unasked; one line says so and how to re-run it, and the
stages after it read the committed outputs.

A stage that fails stops new starts; the running ones finish, and the driver exits 1 naming the
stage and its log (DVC keeps every stage that finished recorded in dvc.lock, so running again
resumes). Each `dvc repro` process is one pipeline execution to MLflow
(:func:`smec.infra.provenance.execution`), so every stage's run starts under a pipeline run of
its own; once the stages are done, :func:`regroup` nests them all under the first, as a plain
`dvc repro` nests them, copies the others' metrics onto it and deletes them.

    python -m smec.infra.lanes --jobs 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from smec import params
from smec.infra import tracking

LOGS = Path(".dvc/tmp/repro")  # under the repository root


@dataclass(frozen=True)
class Plan:
    """The stages in dvc.yaml's order, for each the stages it depends on, and the stages that
    run alone (`meta: {alone: true}` in dvc.yaml: what they compute depends on their thread
    count, so they run by themselves on every core, as under `dvc repro`)."""

    order: list[str]
    upstream: dict[str, set[str]]
    alone: frozenset[str] = frozenset()
    committed: dict[str, str] = field(default_factory=dict)  # stage -> how to re-run it

    def ready(self, done: set[str], started: set[str]) -> list[str]:
        return [s for s in self.order if s not in started and self.upstream[s] <= done]


def plan(root: Path, grid: bool = False) -> Plan:
    """The DAG of the repository's dvc.yaml (DVC's own reading of it); the grid's stages
    (`meta: {grid: true}`: the benchmark's other cells) only with `grid`."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # an edge runs from a stage to one it depends on
        wanted = {s for s in repo.index.stages if grid or not (s.meta or {}).get("grid")}
        order = [s.name for s in repo.index.stages if s in wanted]  # addressing: cwd-relative
        upstream = {s.name: {d.name for d in graph.successors(s)} for s in wanted}
        alone = frozenset(s.name for s in repo.index.stages if (s.meta or {}).get("alone"))
        committed = {  # a stage never run has no outputs to use: it runs
            s.name: s.meta["committed"]
            for s in repo.index.stages
            if "committed" in (s.meta or {}) and all((root / o.def_path).exists() for o in s.outs)
        }
    return Plan(order, upstream, alone, committed)


def stale(stage: str, root: Path) -> str | None:
    """What changed for `stage` by `dvc status` (None when it is up to date)."""
    import json

    dvc = Path(sys.executable).with_name("dvc")
    cmd = [str(dvc), "--wait-for-lock", "status", "--json", stage]
    out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=True).stdout
    changes = json.loads(out or "{}").get(stage)
    if not changes:
        return None
    changed = [k for c in changes if isinstance(c, dict) for k in c.get("changed deps", {})]
    return ", ".join(changed[:2]) or "changed"


@dataclass
class Lane:
    """One stage running in its own `dvc repro` process, and the execution id its stage's runs
    carry: that process's pid and start time, as :func:`smec.infra.provenance.execution` reads
    them (a test holds the two equal)."""

    stage: str
    proc: subprocess.Popen
    log: Path
    start: float
    execution: str


def start(stage: str, root: Path, threads: int) -> Lane:
    import psutil

    log = root / LOGS / f"{stage}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    dvc = Path(sys.executable).with_name("dvc")
    cmd = [str(dvc), "--wait-for-lock", "repro", "--single-item", stage]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        execution = f"dvc:{proc.pid}:{psutil.Process(proc.pid).create_time():.3f}"
    except psutil.NoSuchProcess:  # gone already: it ran no stage
        execution = ""
    print(f"{stage}: started ({threads} torch thread{'s' if threads > 1 else ''})")
    return Lane(stage, proc, log, time.monotonic(), execution)


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Scheduler:
    """The DAG run on `jobs` lanes: what started, what runs, what is done, the first failure."""

    plan: Plan
    root: Path
    jobs: int
    rerun: bool = False  # run a stale committed stage too (`--rerun-committed`)
    lanes: list[Lane] = field(default_factory=list)
    kept: set[str] = field(default_factory=set)  # stale committed stages not run
    running: list[Lane] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    failed: Lane | None = None

    def run(self) -> None:
        print(f"{len(self.plan.order)} stages, up to {self.jobs} at a time")
        while True:
            started = {lane.stage for lane in self.lanes} | self.kept
            while self.failed is None and len(self.running) < self.jobs:
                ready = self.plan.ready(self.done, started)
                if (stage := self.pick(ready)) is None:
                    break
                committed = stage in self.plan.committed and not self.rerun
                if committed and (why := stale(stage, self.root)):
                    self.keep(stage, why)
                    started.add(stage)
                    continue
                beside = [s for s in ready if s not in self.plan.alone]  # could run with it
                threads = self.threads(1 if stage in self.plan.alone else len(beside))
                self.lanes.append(start(stage, self.root, threads))
                self.running.append(self.lanes[-1])
                started.add(stage)
            if not self.running:
                return
            time.sleep(0.2)
            for lane in [lane for lane in self.running if lane.proc.poll() is not None]:
                self.finished(lane)

    def pick(self, ready: list[str]) -> str | None:
        """The next stage to start: the first ready one, except that a stage that runs alone
        starts only when nothing runs, and nothing starts beside it."""
        if any(lane.stage in self.plan.alone for lane in self.running):
            return None
        return next((s for s in ready if s not in self.plan.alone or not self.running), None)

    def threads(self, ready: int) -> int:
        """A new stage's torch threads: the cores shared by it and the stages that run beside
        it (the running ones and, up to `jobs`, the `ready` ones that may run with it, itself
        included), so a stage that runs alone (`embed`) gets them all."""
        beside = min(self.jobs, len(self.running) + ready)
        return max(1, (os.cpu_count() or 1) // beside)

    def keep(self, stage: str, why: str) -> None:
        """A stale stage whose outputs are committed: not run, its outputs read as they are."""
        self.kept.add(stage)
        self.done.add(stage)
        print(
            f"[{len(self.done)}/{len(self.plan.order)}] {stage}: stale here ({why}); "
            f"its committed outputs are used, not re-run: {self.plan.committed[stage]}"
        )

    def finished(self, lane: Lane) -> None:
        self.running.remove(lane)
        took = time.monotonic() - lane.start
        if lane.proc.returncode != 0:
            self.failed = self.failed or lane
            print(f"{lane.stage} failed after {took:.0f} s; its log, {lane.log}:")
            print(tail(lane.log))
            return
        self.done.add(lane.stage)
        print(f"[{len(self.done)}/{len(self.plan.order)}] {lane.stage} ({took:.0f} s)")


def schedule(
    root: Path, jobs: int, rerun: bool = False, grid: bool = False
) -> tuple[list[Lane], Lane | None]:
    """Run every stage of `root`'s pipeline (with `grid`, the grid's too), `jobs` at a time
    (with `rerun`, a stale committed stage too): every lane started, and the first that failed
    (None if none did)."""
    scheduler = Scheduler(plan(root, grid), root, jobs, rerun)
    try:
        scheduler.run()
    except KeyboardInterrupt:  # the terminal stopped the dvc processes too: let them finish
        for lane in scheduler.running:
            lane.proc.wait()
        raise
    return scheduler.lanes, scheduler.failed


def regroup(experiment: str, executions: list[str], failed: bool) -> str | None:
    """Nest every run of `executions` under the first pipeline run among them, as one `dvc
    repro` nests its stages' runs, give them its execution id, copy the other pipeline runs'
    metrics onto it and delete those: returns its id (None when no stage logged a run)."""
    import mlflow
    from mlflow.entities import Metric, RunTag

    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None  # no stage made the store: nothing to regroup (and no store to create)
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    found = [
        run
        for execution in executions
        for run in client.search_runs(
            [exp.experiment_id],
            f"tags.`{tracking.TAG_EXECUTION}` = '{execution}'",
            max_results=50_000,  # MLflow's most per call
        )
    ]
    pipelines = [r for r in found if r.data.tags.get(tracking.TAG_ROLE) == "pipeline"]
    if not pipelines:
        return None
    keep, *rest = sorted(pipelines, key=lambda r: r.info.start_time)
    gone = {r.info.run_id for r in rest}
    for run in found:
        if run.info.run_id in gone:
            continue
        tags = [RunTag(tracking.TAG_EXECUTION, keep.data.tags[tracking.TAG_EXECUTION])]
        if run.data.tags.get(tracking.TAG_PARENT) in gone:
            tags.append(RunTag(tracking.TAG_PARENT, keep.info.run_id))
        client.log_batch(run.info.run_id, tags=tags)
    now = int(time.time() * 1000)
    for run in rest:
        if metrics := [Metric(k, v, now, 0) for k, v in run.data.metrics.items()]:
            client.log_batch(keep.info.run_id, metrics=metrics)
        client.delete_run(run.info.run_id)
    client.set_terminated(keep.info.run_id, "FAILED" if failed else "FINISHED")
    return keep.info.run_id


def run(root: Path, jobs: int, rerun: bool = False, grid: bool = False) -> int:
    """Run every stage of `root`'s pipeline, `jobs` at a time, then regroup its MLflow runs;
    0, or 1 once a stage failed."""
    lanes, failed = schedule(root, jobs, rerun, grid)
    experiment = params.load(root / "params.yaml").tracking.experiment
    regroup(experiment, [lane.execution for lane in lanes if lane.execution], failed is not None)
    if failed is not None:
        print(f"error: stage {failed.stage} failed (log: {failed.log})", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m smec.infra.lanes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--jobs", type=int, default=2, help="stages at a time (default: %(default)s)")
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="repository (default: here)")
    ap.add_argument(
        "--rerun-committed",
        action="store_true",
        help="run stale stages whose outputs are committed (the studies) instead of using them",
    )
    ap.add_argument(
        "--grid",
        action="store_true",
        help="also the grid's cells and the summary (`make benchmark`; dvc.yaml's meta: grid)",
    )
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs {args.jobs}: must be at least 1")
    if not (args.root / "dvc.yaml").is_file():
        ap.error(f"{args.root / 'dvc.yaml'}: no such file (run from the repository root)")
    try:
        code = run(args.root.resolve(), args.jobs, args.rerun_committed, args.grid)
    except KeyboardInterrupt:
        print("stopped; running it again resumes (finished stages are recorded)", file=sys.stderr)
        code = 130
    raise SystemExit(code)


if __name__ == "__main__":
    main()
