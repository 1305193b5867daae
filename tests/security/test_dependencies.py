"""Issue 8 §4: dependencies pinned, so CI and a fresh machine run the versions that were tested.

pyproject.toml gives compatible ranges; constraints.txt pins every package exactly (the lock), and `make test`
installs from it. Each pin must lie inside its range, every package installed in the environment must be pinned
at the version installed, and the Makefile must install with the constraints and reinstall when they change.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
UNPINNED = {"pip", "setuptools", "wheel", "portcullis"}  # the installer itself, and the project


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for n, raw in enumerate((REPO / "constraints.txt").read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert m, f"constraints.txt line {n} is not an exact pin NAME==VERSION: {raw!r}"
        name = canonicalize_name(m[1])
        assert name not in out, f"constraints.txt pins {name} twice"
        Version(m[2])  # a real version
        out[name] = m[2]
    return out


def requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for group in project.get("optional-dependencies", {}).values():
        reqs += group
    return [Requirement(r) for r in reqs]


def test_every_dependency_has_a_bounded_range_and_a_pin_inside_it() -> None:
    pinned = pins()
    for req in requirements():
        specs = {s.operator for s in req.specifier}
        assert specs & {">=", "~=", "=="} and specs & {"<", "~=", "=="}, (
            f"{req}: give a lower and an upper bound"
        )
        version = pinned.get(canonicalize_name(req.name))
        assert version, f"{req.name} is in pyproject.toml but not pinned in constraints.txt"
        assert req.specifier.contains(version, prereleases=True), (
            f"{req.name}=={version} is outside {req.specifier}"
        )


def test_the_environment_runs_exactly_the_pinned_versions() -> None:
    pinned = pins()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    unpinned = sorted(set(installed) - set(pinned) - UNPINNED)
    assert not unpinned, f"installed but not in constraints.txt (add them, pinned): {unpinned}"
    differ = {n: (v, pinned[n]) for n, v in installed.items() if n in pinned and v != pinned[n]}
    assert not differ, f"installed version != pinned version: {differ}"


def test_make_installs_from_the_constraints() -> None:
    makefile = (REPO / "Makefile").read_text()
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.M)
    assert stamp and "constraints.txt" in stamp[1] and "pyproject.toml" in stamp[1], (
        "reinstall when either changes"
    )
    installs = [line for line in makefile.splitlines() if "pip install" in line and "-e" in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    test_target = re.search(r"^test:(.*)$", makefile, re.M)
    assert test_target and "install" in test_target[1], "`make test` installs (from the constraints) first"
