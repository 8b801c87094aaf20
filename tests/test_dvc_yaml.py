"""dvc.yaml against the code: each stage depends on exactly the files its script imports (a
folder only where every file of it is imported), every path a stage is given is one it declares,
the `compare` foreach lists exactly the registry's learned methods, a stage `make repro` keeps
when stale has its outputs in git, and the committed dvc.lock records the hashes of the
committed code."""

import functools
from pathlib import Path

import pytest

from smec.infra import provenance
from smec.model import methods

from .conftest import NOT_PATHS, ROOT, dvc_commands

NOT_DECLARED = {"checkpoint", "checkpoints", "study"}  # resumable state: not DVC outputs


@functools.cache  # DVC builds its index in ~2.5 s; some 60 tests read it
def declared() -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Each stage's (file deps, outs + metrics) as written in dvc.yaml (params aside)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {
            s.addressing: (
                frozenset(d.def_path for d in s.deps if not isinstance(d, ParamsDependency)),
                frozenset(o.def_path for o in s.outs),
            )
            for s in repo.index.stages
        }


def is_code(path: str) -> bool:
    return path.startswith(("pipeline/", "src/"))


def python_files(dep: str) -> set[str]:
    """A code dep as the .py files it covers (a folder: every one under it)."""
    path = ROOT / dep
    if path.is_dir():
        return {p.relative_to(ROOT).as_posix() for p in path.rglob("*.py")}
    return {dep}


@pytest.mark.parametrize("stage", sorted(dvc_commands()))
def test_a_stage_depends_on_exactly_the_code_it_imports(stage):
    script = ROOT / dvc_commands()[stage][1]
    closure = {p.relative_to(ROOT).as_posix() for p in provenance.closure(script, ROOT / "src")}
    code = {dep for dep in declared()[stage][0] if is_code(dep)}
    covered = set().union(*(python_files(dep) for dep in code))
    missing, extra = closure - covered, covered - closure
    assert not missing, f"dvc.yaml: stage {stage} imports but does not depend on {sorted(missing)}"
    assert not extra, f"dvc.yaml: stage {stage} depends on code it does not import {sorted(extra)}"


@pytest.mark.parametrize("stage", sorted(dvc_commands()))
def test_every_path_a_stage_is_given_is_declared_and_the_other_way_round(stage):
    given, option = set(), None
    for word in dvc_commands()[stage][2:]:
        if word.startswith("--"):
            option = word[2:]
        elif option not in NOT_PATHS | NOT_DECLARED:
            given.add(word)
    deps, outs = declared()[stage]
    assert given == {d for d in deps if not is_code(d)} | outs


def test_a_stage_make_repro_keeps_when_stale_has_every_output_in_git():
    """`meta: committed` (the studies, the comparison's arms) means a fresh clone reads the
    outputs instead of running the stage: each must be in git (`cache: false`), not only in a
    DVC cache the clone lacks."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        kept = [s for s in repo.index.stages if "committed" in (s.meta or {})]
        cached = sorted(
            f"{s.addressing}: {o.def_path}" for s in kept for o in s.outs if o.use_cache
        )
    assert kept, "no stage is marked meta: committed"
    assert not cached, f"dvc.yaml: a committed stage's output is in DVC's cache only: {cached}"


def test_the_tuning_figure_reads_every_study():
    words = dvc_commands()["render"]
    start = words.index("--trials") + 1
    end = next((i for i, w in enumerate(words[start:], start) if w.startswith("--")), len(words))
    studied = [s.split("@")[1] for s in dvc_commands() if s.startswith("tune@")]
    assert words[start:end] == [f"reports/tune/{m}/trials.csv" for m in studied]


def test_the_scripts_dvc_runs_are_the_stage_scripts():
    scripts = {Path(words[1]).name for words in dvc_commands().values()}
    stage_files = {p.name for p in (ROOT / "pipeline").glob("*.py")} - {"_bootstrap.py"}
    assert scripts == stage_files - {"where.py"}


def test_the_compare_stages_are_the_registrys_learned_methods():
    compared = [s.split("@")[1] for s in dvc_commands() if s.startswith("compare@")]
    assert compared == list(methods.LEARNED), (
        "dvc.yaml's compare foreach must list the registry's learned methods, in its order "
        f"(src/smec/model/methods/__init__.py): {list(methods.LEARNED)}"
    )


def test_the_committed_lock_records_the_committed_code():
    """Results are committed with the code that made them: `dvc status` finds no stage whose
    code (a script, a module, a wing folder) differs from what dvc.lock recorded."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        status = repo.status()
    stale = sorted(
        f"{stage}: {path} {change}"
        for stage, entries in status.items()
        for entry in entries
        if isinstance(entry, dict)
        for path, change in entry.get("changed deps", {}).items()
        if is_code(path)
    )
    more = f" (+{len(stale) - 5} more)" if len(stale) > 5 else ""
    assert not stale, f"dvc.lock is older than the code (`dvc repro`, commit): {stale[:5]}{more}"
