"""The timing harness every benchmark shares: alternating repeats, medians, the machine line,
and the JSON object each benchmark prints last.

Alternating the order of the variants from one repeat to the next spreads slow drifts of the
machine (another process, thermal state) over all of them; medians ignore single outliers.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def machine() -> str:
    """Threads and load: a step of a few milliseconds is sensitive to anything else running."""
    return (
        f"torch threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} cores"
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def alternate(
    runs: dict[str, Callable[[], Any]], repeats: int, verbose: bool = True
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time each variant `repeats` times, rotating their order every repeat; return the seconds
    of every run and each variant's last result."""
    names = list(runs)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, Any] = {}
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            s, last[name] = timed(runs[name])
            seconds[name].append(s)
        if verbose:
            print(
                f"repeat {r + 1}/{repeats}: "
                + ", ".join(f"{n} {seconds[n][-1]:.3f}s" for n in names)
            )
    return seconds, last


def medians(seconds: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(v) for name, v in seconds.items()}


def emit(result: dict) -> None:
    """The benchmark's figures, as the one JSON object on its last line."""
    print(json.dumps(result))


def stage_words(root: Path, stage: str) -> list[str]:
    """A stage's command from `dvc.yaml`, split into words."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        (cmd,) = [s.cmd for s in repo.index.stages if s.addressing == stage]
    return shlex.split(cmd)


def moved_stage(root: Path, stage: str, folder: Path, roots: tuple[str, ...]) -> list[str]:
    """A stage's command from `dvc.yaml`, its paths under `roots` moved into `folder` (a
    benchmark's scratch copy of the stage's outputs), run by this interpreter."""
    import sys

    words = [str(folder / w) if w.startswith(roots) else w for w in stage_words(root, stage)]
    return [sys.executable if w == "python" else w for w in words]


def stage_args(root: Path, stage: str) -> dict[str, Path]:
    """The paths `dvc.yaml` passes to a stage (`--corpus data/prepared/corpus.parquet` ...), so
    that a benchmark reads what the stage reads without writing a path twice."""
    words = stage_words(root, stage)
    return {
        w[2:].replace("-", "_"): root / v
        for w, v in itertools.pairwise(words)
        if w.startswith("--") and "/" in v
    }
