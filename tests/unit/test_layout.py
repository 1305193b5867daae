"""The layout's rules, read from the source: no import cycles, and tasks/ stages import only what
docs/ARCHITECTURE.md says they may. Imports inside functions count too (a lazy import is still a dependency);
imports under `if TYPE_CHECKING:` do not (they never run)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("flows", "tasks", "config", "gkesim")
MAY_IMPORT = {  # tasks/ stage -> the stages it may import (itself always)
    "access": set(),
    "inventory": {"access"},
    "usage": {"access", "inventory", "reporting"},
    "change": {"access", "inventory", "usage", "reporting"},
    "reporting": set(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(name: str) -> set[str]:
    """Our modules `name` imports (`from a import b` counts `a.b` when that is a module, else `a`)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    type_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in type_only:  # annotations only: no import at run time
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


def cycles() -> list[list[str]]:
    graph = {m: imports(m) for m in MODULES}
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                found.append(stack[stack.index(n) :] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_no_import_cycles() -> None:
    assert cycles() == []


def test_tasks_stages_import_only_what_the_architecture_allows() -> None:
    wrong = []
    for name in MODULES:
        parts = name.split(".")
        if parts[0] != "tasks" or len(parts) < 2:
            continue
        for target in imports(name):
            tparts = target.split(".")
            other_stage = tparts[0] == "tasks" and len(tparts) > 1 and tparts[1] != parts[1]
            if other_stage and tparts[1] not in MAY_IMPORT[parts[1]]:
                wrong.append(f"{name} imports {target}")
            if tparts[0] in ("flows", "gkesim"):
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_every_tasks_module_is_in_a_stage() -> None:
    loose = [n for n in MODULES if n.startswith("tasks.") and n.split(".")[1] not in MAY_IMPORT]
    assert loose == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_imports(package: str) -> None:
    """A package's modules one after another in a fresh interpreter, in name order (the cycle test above is
    what guarantees any order works)."""
    names = sorted(n for n in MODULES if n.split(".")[0] == package)
    script = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    out = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
