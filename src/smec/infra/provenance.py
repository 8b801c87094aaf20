"""What a result depends on: the code a stage runs, the bytes of its inputs, and the pipeline
execution it belongs to.

- :func:`closure` follows a stage script's imports through the `smec` package (imports inside
  functions included), so `dvc.yaml` can be checked against it and a checkpoint can be keyed
  by the code that wrote it.
- :func:`md5` is the digest DVC 3 records for a file in `dvc.lock` (plain MD5 of its bytes).
- :func:`execution` names one `dvc repro` or `dvc exp run`: every stage it runs sees the same
  value, so their MLflow runs can share a parent.
- :func:`host` names the machine a stage ran on (CPU model, cores, GPU): the last digits of
  SMEC's numbers move with the CPU, and two result sets are told apart by it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import platform
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "smec"


def _module_file(src: Path, dotted: str) -> Path | None:
    """The file of module `dotted` under `src`, if it is part of the package."""
    base = src.joinpath(*dotted.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path, src: Path) -> set[Path]:
    """The package modules one file imports (any depth in the file, relative imports too)."""
    found: set[Path] = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    here = ".".join(path.relative_to(src).with_suffix("").parts) if path.is_relative_to(src) else ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = here.split(".")[: -node.level]
                module = ".".join([*parts, module] if module else parts)
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                module_file = _module_file(src, name)
            elif not here:  # a script's helper module beside it (pipeline/_bootstrap.py)
                module_file = path.parent / f"{name}.py"
                module_file = module_file if module_file.is_file() else None
            else:
                module_file = None
            if module_file is not None:
                found.add(module_file)
    for module_file in [f for f in found if f.is_relative_to(src)]:
        for package in module_file.parents:  # importing a module runs its packages' __init__
            if package == src:
                break
            found.add(package / "__init__.py")
    return found


def closure(script: Path, src: Path) -> list[Path]:
    """`script` and every module of the package under `src` it imports, directly or not."""
    seen: set[Path] = set()
    todo = [Path(script)]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path, src) - seen)
    return sorted(seen)


def md5(path: Path, block: int = 1 << 20) -> str:
    """The MD5 of a file's bytes, as DVC 3 records it for an output in `dvc.lock`."""
    h = hashlib.md5()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def digest(files: Iterable[Path], root: Path, extra: object = None) -> str:
    """One short digest of some files' contents (named relative to `root`) and of `extra`."""
    h = hashlib.sha256(repr(extra).encode())
    for path in sorted(Path(f).resolve() for f in files):
        name = path.relative_to(root.resolve()) if path.is_relative_to(root.resolve()) else path
        h.update(f"{name}\0{md5(path)}\0".encode())
    return h.hexdigest()[:16]


def stage_key(script: Path, checkout: Path, inputs: Iterable[Path], settings: object) -> str:
    """The key of a stage's resumable state: the stage's code (`script`'s import closure in the
    checkout's `src/`), the contents of its input files, and `settings` (its params)."""
    code = closure(script, checkout / "src")
    return digest([*code, *inputs], checkout, settings)


def _dvc_process():
    """The `dvc` process that runs this stage (the nearest ancestor named like it), if any."""
    import psutil

    try:
        for proc in psutil.Process().parents():
            cmd = proc.cmdline()
            if any(Path(part).name in ("dvc", "dvc.exe") for part in cmd[:2]) or (
                len(cmd) > 2 and cmd[1] == "-m" and cmd[2] == "dvc"
            ):
                return proc
    except psutil.Error:
        return None
    return None


def execution() -> str:
    """An id shared by every stage of one pipeline execution.

    Under `dvc exp run` (workspace, `--temp` or `--queue`) DVC names the experiment in
    `DVC_EXP_NAME`, with the commit it started from in `DVC_EXP_BASELINE_REV`. Under a plain
    `dvc repro` no such name exists, so the DVC process itself (pid and start time) identifies
    the execution; a stage script run by hand is an execution of its own.
    """
    if os.environ.get("DVC_EXP_NAME"):
        return f"exp:{os.environ['DVC_EXP_NAME']}@{os.environ.get('DVC_EXP_BASELINE_REV', '')}"
    import psutil

    proc = _dvc_process()
    kind = "dvc" if proc is not None else "manual"
    proc = proc or psutil.Process()
    return f"{kind}:{proc.pid}:{proc.create_time():.3f}"


@functools.cache
def host() -> str:
    """The CPU model and logical cores of this machine, and its first CUDA device if any (read
    once per process: every run's tags carry it)."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    import torch

    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}"
