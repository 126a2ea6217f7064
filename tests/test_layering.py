"""Layers never import upward (../shared/DESIGN.md §2): every ``import`` in the package, at module level or inside
a function, goes to the same layer or a lower one.

    core < envs < nets < rl < lm < algos < curricula < teach < run < cli

``jaxrl_self/__init__.py`` (lazy attribute access to the subpackages) is the package's front door, not a layer.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("core", "envs", "nets", "rl", "lm", "algos", "curricula", "teach", "run", "cli")


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "jaxrl_self" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")  # envs/ (top of the repository) is installed as jaxrl_self.envs
    parts = ["jaxrl_self", "envs", *rel.parts[1:]] if rel.parts[0] == "envs" else list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST):
    """``(line, module)`` for every import; ``from jaxrl_self import lm`` counts as ``jaxrl_self.lm``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            if node.module == "jaxrl_self":
                for alias in node.names:
                    yield node.lineno, f"jaxrl_self.{alias.name}"


def upward_imports(files) -> list[str]:
    bad = []
    for path in files:
        here = layer_of(module_name(path))
        if here is None:
            continue
        for line, target in imported_modules(ast.parse(path.read_text(), str(path))):
            there = layer_of(target)
            if there is not None and LAYERS.index(there) > LAYERS.index(here):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {target} ({there} is above {here})")
    return bad


def package_files():
    return sorted([*ROOT.joinpath("jaxrl_self").rglob("*.py"), *ROOT.joinpath("envs").rglob("*.py")])


def test_no_layer_imports_a_higher_one():
    files = package_files()
    assert len(files) > 50
    bad = upward_imports(files)
    assert not bad, "upward imports (move the code to the higher layer or the dependency down):\n" + "\n".join(bad)


def test_the_check_catches_an_upward_import():
    """The guard itself: an lm module that imports the runner, even inside a function, is reported."""
    fake = ROOT / "jaxrl_self" / "lm" / "_upward_probe.py"
    source = "def f():\n    from jaxrl_self.run.runner import seed_keys\n    from jaxrl_self import algos\n"
    bad = _check_source(fake, source)
    assert len(bad) == 2 and "lm imports jaxrl_self.run.runner" in bad[0] and "jaxrl_self.algos" in bad[1]
    assert not _check_source(ROOT / "jaxrl_self" / "run" / "_probe.py", source)  # run may import both


def _check_source(path: Path, source: str) -> list[str]:
    here = layer_of(module_name(path))
    return [f"{here} imports {t}" for _, t in imported_modules(ast.parse(source))
            if layer_of(t) is not None and LAYERS.index(layer_of(t)) > LAYERS.index(here)]


@pytest.mark.parametrize("path, module", [("envs/tokens/addition.py", "jaxrl_self.envs.tokens.addition"),
                                          ("jaxrl_self/lm/__init__.py", "jaxrl_self.lm"),
                                          ("jaxrl_self/cli.py", "jaxrl_self.cli")])
def test_module_names(path, module):
    assert module_name(ROOT / path) == module
