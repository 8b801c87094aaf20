"""dvc.yaml against the code: each stage depends on exactly the files its script imports, and
every path a stage is given is one it declares (so paths cannot drift between the two)."""

from pathlib import Path

import pytest

from smec import provenance

from .conftest import NOT_PATHS, ROOT, dvc_commands

NOT_DECLARED = {"checkpoint", "checkpoints"}  # resumable state, deliberately not DVC outputs


def declared() -> dict[str, tuple[set[str], set[str]]]:
    """Each stage's (file deps, outs + metrics) as written in dvc.yaml (params aside)."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {
            s.addressing: (
                {d.def_path for d in s.deps if not isinstance(d, ParamsDependency)},
                {o.def_path for o in s.outs},
            )
            for s in repo.index.stages
        }


def code(paths: set[str]) -> set[str]:
    return {p for p in paths if p.startswith(("pipeline/", "src/"))}


@pytest.mark.parametrize("stage", sorted(dvc_commands()))
def test_a_stage_depends_on_exactly_the_code_it_imports(stage):
    script = ROOT / dvc_commands()[stage][1]
    closure = {p.relative_to(ROOT).as_posix() for p in provenance.closure(script, ROOT / "src")}
    deps, _ = declared()[stage]
    missing, extra = closure - code(deps), code(deps) - closure
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
    assert given == (deps - code(deps)) | outs


def test_the_scripts_dvc_runs_are_the_stage_scripts():
    scripts = {Path(words[1]).name for words in dvc_commands().values()}
    stage_files = {p.name for p in (ROOT / "pipeline").glob("*.py")} - {"_bootstrap.py"}
    assert scripts == stage_files - {"where.py"}
