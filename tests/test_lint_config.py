"""pyproject.toml's lint settings stay in step with the code (`make lint` runs ruff and mypy)."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("pipeline", "transforms")


def _strict_modules() -> set[str]:
    """The module list of the [[tool.mypy.overrides]] that turns on what --strict adds."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    (block,) = re.findall(r'\[\[tool\.mypy\.overrides\]\]\s*module = \[([^\]]*)\]\s*(?:#[^\n]*\n)*'
                          r'disallow_any_generics = true', text)
    return set(re.findall(r'"([\w.]+)"', block))


def _imports() -> dict[str, set[str]]:
    """Module name -> the modules it imports (at any depth of its code), for pipeline/ and transforms/."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            names = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names.add(node.module)
                    names.update(f"{node.module}.{alias.name}" for alias in node.names)
            found[name] = names
    return found


def test_the_strict_modules_are_the_pure_core():
    # STYLE.md point 1: the pure core never imports apache_beam, not even through
    # another of the project's modules; mypy checks exactly it as --strict would.
    imports = _imports()
    beam = {m for m, names in imports.items() if any(n.split(".")[0] == "apache_beam" for n in names)}
    while True:
        more = {m for m, names in imports.items() if m not in beam and names & beam}
        if not more:
            break
        beam |= more
    assert _strict_modules() == set(imports) - beam
