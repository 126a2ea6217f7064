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


@pytest.fixture(scope="module")
def strict_build(tmp_path_factory):
    """``mkdocs build --strict`` into a temporary folder, once: (completed process, site folder)."""
    mkdocs = shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs not installed (it is in the dev extra)")
    site = tmp_path_factory.mktemp("docs") / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    return out, site


def test_mkdocs_builds_strict(strict_build):
    out, _ = strict_build
    assert out.returncode == 0, out.stdout + out.stderr


def test_site_loads_its_maths_and_styles_from_itself_not_a_cdn(strict_build):
    """Offline docs: the MathJax the pages load is the installed package's, copied into the site (with its fonts and
    TeX extensions), and no page loads a script or stylesheet from another host."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    mkdocs_hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mkdocs_hooks)
    out, site = strict_build
    assert out.returncode == 0, out.stdout + out.stderr
    local = site / mkdocs_hooks.SITE_DIR / mkdocs_hooks.COMPONENT
    assert local.read_bytes() == (mkdocs_hooks.mathjax_dir() / mkdocs_hooks.COMPONENT).read_bytes()
    assert list((site / mkdocs_hooks.SITE_DIR / "output/chtml/fonts/woff-v2").glob("*.woff"))
    assert (site / mkdocs_hooks.SITE_DIR / "input/tex/extensions/boldsymbol.js").is_file()
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    with_math = 0
    for page in pages:
        html = page.read_text()
        loaded = re.findall(r'<script[^>]*\ssrc="([^"]*)"', html) + re.findall(r'<link[^>]*\shref="([^"]*)"', html)
        remote = [u for u in loaded if re.match(r"([a-z]+:)?//", u)]
        assert not remote, f"{page.relative_to(site)} loads {remote}"
        assert not re.search(r"cdn\.|cdnjs|jsdelivr|unpkg", html), f"{page.relative_to(site)} names a CDN"
        if 'class="arithmatex"' in html:
            with_math += 1
            script = (page.parent / next(u for u in loaded if u.endswith(mkdocs_hooks.COMPONENT))).resolve()
            assert script == local.resolve(), page
    assert with_math >= 3  # the algorithm pages' equations
