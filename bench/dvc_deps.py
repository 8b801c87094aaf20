"""What `dvc.yaml`'s way of writing code deps costs: stages re-run by an edit to one module.

For every module of `src/smec`, the number of stages whose deps change when it is edited, under
three ways of writing a stage's code deps (foreach stages counted once per item):

- `files`: every file of the script's import closure (the exact baseline);
- `wings`: each wing folder of `src/smec` the closure touches, whole;
- `dvc.yaml`: as `dvc.yaml` writes them (a folder only where every file of it is imported).

Counts, not seconds; nothing is run. The last stdout line is one JSON object: the mean stages
re-run per edited module under each way, `wings_over_files` and `dvc_yaml_over_files` (1 is
no extra re-run), the worst module under `wings`, and the line counts of `dvc.yaml`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import emit

from smec.infra import provenance

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def stages(root: Path) -> list[tuple[str, set[str], set[str]]]:
    """(name, import closure, code deps as written) of every stage of `dvc.yaml`."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    out = []
    with Repo(str(root)) as repo:
        for s in repo.index.stages:
            script = root / s.cmd.split()[1]
            closure = {p.relative_to(root).as_posix() for p in provenance.closure(script, SRC)}
            deps = {d.def_path for d in s.deps if not isinstance(d, ParamsDependency)}
            out.append((s.addressing, closure, deps))
    return out


def wing(path: str) -> str:
    """`src/smec/<wing>` for a module in a wing, else the path itself."""
    parts = path.split("/")
    return "/".join(parts[:3]) if len(parts) > 3 else path


def covers(dep: str, module: str) -> bool:
    return module == dep or module.startswith(dep.rstrip("/") + "/")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (SRC / "smec").rglob("*.py"))
    table = stages(ROOT)
    reruns = {"files": {}, "wings": {}, "dvc.yaml": {}}
    for m in modules:
        reruns["files"][m] = sum(m in closure for _, closure, _ in table)
        reruns["wings"][m] = sum(wing(m) in {wing(p) for p in closure} for _, closure, _ in table)
        reruns["dvc.yaml"][m] = sum(any(covers(d, m) for d in deps) for _, _, deps in table)
    mean = {k: sum(v.values()) / len(v) for k, v in reruns.items()}
    worst = max(modules, key=lambda m: reruns["wings"][m] - reruns["files"][m])
    for m in modules:
        print(
            f"{m:44s} files {reruns['files'][m]:2d}  wings {reruns['wings'][m]:2d}  "
            f"dvc.yaml {reruns['dvc.yaml'][m]:2d}"
        )
    emit(
        {
            "stages": len(table),
            "modules": len(modules),
            "mean_reruns": {k: round(v, 2) for k, v in mean.items()},
            "wings_over_files": round(mean["wings"] / mean["files"], 3),
            "dvc_yaml_over_files": round(mean["dvc.yaml"] / mean["files"], 3),
            "worst_under_wings": {
                "module": worst,
                "files": reruns["files"][worst],
                "wings": reruns["wings"][worst],
            },
            "dvc_yaml_lines": len((ROOT / "dvc.yaml").read_text().splitlines()),
        }
    )


if __name__ == "__main__":
    main()
