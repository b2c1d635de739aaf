"""The runtime dependency closure of this project, and constraints.txt that pins it.

`python tests/pins.py > constraints.txt` writes the pins from the virtualenv
that runs it (the one `make venv` built): every distribution that
pyproject.toml's dependencies need, with their extras, transitively, at the
version installed there. The Dockerfile installs the package with these pins,
so that the image runs the versions the test suite ran; tests/test_deployment.py
checks the file against pyproject.toml and that virtualenv.
"""

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"
HEADER = """\
# Exact versions of everything cloud-import-prep needs at run time (pyproject.toml's
# dependencies with their extras, transitively): the versions the test suite runs with.
# The Dockerfile installs with these pins, and `make venv` builds the test virtualenv with
# them, so the image runs what was tested. Written by `python tests/pins.py > constraints.txt`;
# tests/test_deployment.py checks it against pyproject.toml and the virtualenv.
"""


def project_requirements() -> list[Requirement]:
    """pyproject.toml's [project] dependencies."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    assert block, "pyproject.toml has no dependencies list"
    return [Requirement(m) for m in re.findall(r'^\s*"([^"]+)"', block[1], re.M)]


def runtime_closure() -> dict[str, str]:
    """Canonical name -> installed version of every distribution the dependencies need."""
    found: dict[str, str] = {}
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in project_requirements()]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise SystemExit(f"{name} is needed but not installed: run make venv") from None
        found[name] = dist.version
        for line in dist.requires or ():
            requirement = Requirement(line)
            wanted = {""} | set(extras)
            if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in wanted):
                todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return found


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """Canonical name -> pinned version of a constraints file."""
    pins = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        line = text.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def main() -> None:
    sys.stdout.write(HEADER)
    for name, version in sorted(runtime_closure().items()):
        sys.stdout.write(f"{name}=={version}\n")


if __name__ == "__main__":
    main()
