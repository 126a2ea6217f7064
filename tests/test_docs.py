"""The docs stay true: code blocks in the guides run, and the mkdocs site builds with --strict."""
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# pages whose ```python blocks are executed top to bottom in one namespace
EXECUTED_PAGES = ["custom-env.md", "lm-rl-layer.md"]


def python_blocks(page: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", EXECUTED_PAGES)
def test_guide_code_blocks_run(page):
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no python blocks"
    namespace: dict = {"__name__": f"docs_{page}"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"{page}[block {i}]", "exec"), namespace)
        except Exception as e:  # pragma: no cover - failure path
            raise AssertionError(f"{page} code block {i} failed: {type(e).__name__}: {e}\n{block}") from e


def test_mkdocs_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs not installed (it is in the dev extra)")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
