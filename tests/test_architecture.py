"""The package's shape: `src/smec` is wings named by their job, and imports point one way.

Among the wings, a module may import its own wing and the wings after it in `WINGS`, never one
before it; `params` and `errors` serve every wing and import none. `python
tests/test_architecture.py` prints each wing and what it imports.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "smec"
WINGS = ("report", "training", "measure", "model", "data", "infra")  # upper wings first
SHARED = ("params", "errors")


def imported_wings(path: Path) -> set[str]:
    """The wings (and shared modules) of `smec` that one file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "smec" and len(parts) > 1 and parts[1] in (*WINGS, *SHARED):
                found.add(parts[1])
    return found


def wing_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def upward(path: Path) -> set[str]:
    """The wings above `path`'s own that it imports (should be none)."""
    wing = wing_of(path)
    imports = imported_wings(path) - {wing}
    if wing in SHARED:
        return imports - {"errors"} if wing == "params" else imports
    return {w for w in imports if w in WINGS and WINGS.index(w) < WINGS.index(wing)}


def test_the_package_is_wings_and_the_shared_modules():
    top = {p.stem for p in SRC.glob("*.py")} - {"__init__"}
    folders = {p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert top == set(SHARED)
    assert folders == set(WINGS)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_a_wing_above_its_own(path):
    assert not upward(path), f"{path.relative_to(ROOT)} imports the upper wing(s) {upward(path)}"


def wings() -> dict[str, tuple[int, list[str]]]:
    """Each wing (upper first, then the shared modules): its module count and what it imports."""
    out = {}
    for wing in (*WINGS, *SHARED):
        files = sorted(SRC.glob(f"{wing}/**/*.py")) or [SRC / f"{wing}.py"]
        uses = set().union(*(imported_wings(f) for f in files)) - {wing}
        out[wing] = (len(files), [w for w in (*WINGS, *SHARED) if w in uses])
    return out


if __name__ == "__main__":
    for wing, (n, uses) in wings().items():
        print(f"{wing:9s} {n:2d} modules  imports: {', '.join(uses) or '-'}")
