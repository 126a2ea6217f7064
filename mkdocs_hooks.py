"""mkdocs hook: the site loads nothing from a CDN, so it reads the same offline (a built site or ``mkdocs serve``).

``mkdocs.yml`` names this file under ``hooks:``, lists ``assets/mathjax/tex-mml-chtml.js`` in ``extra_javascript``
and ``assets/pygments.css`` in ``extra_css``, and turns off the theme's highlight.js (a CDN script).
:func:`on_files` adds MathJax 3's ``tex-mml-chtml.js`` component, with everything it loads on demand (TeX extensions,
CHTML fonts, the menu and accessibility modules), from the ``django-static-mathjax`` package (MathJax 3.2.2's files,
no dependencies; in the ``docs`` and ``dev`` extras) to the site under ``assets/mathjax/``, so the equations render
offline. Without the package the build stops with a one-line error saying what to install. Code blocks are
highlighted at build time by ``codehilite`` (Pygments, where installed); :func:`on_files` writes its stylesheet as
``assets/pygments.css`` (empty without Pygments: the code is then plain).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

#: Where the MathJax files go in the site (``extra_javascript`` in mkdocs.yml points at its ``tex-mml-chtml.js``).
SITE_DIR = "assets/mathjax"
#: The component the pages load, and the folders (relative to MathJax's ``es5/``) it loads files from on demand.
COMPONENT = "tex-mml-chtml.js"
ON_DEMAND = ("input/tex/extensions", "input/mml", "output/chtml/fonts", "a11y", "ui", "sre", "adaptors")
PACKAGE = "django-static-mathjax"
#: The stylesheet of codehilite's Pygments classes.
PYGMENTS_CSS = "assets/pygments.css"


def mathjax_dir() -> Path:
    """MathJax's ``es5/`` folder in the installed ``django-static-mathjax`` package (import name ``mathjax``)."""
    spec = importlib.util.find_spec("mathjax")
    root = Path(spec.origin).parent / "static" / "mathjax" / "es5" if spec and spec.origin else None
    if root is None or not (root / COMPONENT).is_file():
        raise PluginError(f"the docs render maths with a local MathJax: pip install {PACKAGE} (in the docs and dev "
                          "extras)")
    return root


def mathjax_files(root: Path) -> list[Path]:
    """The files copied to the site: the component and every file under :data:`ON_DEMAND`."""
    files = [root / COMPONENT]
    for folder in ON_DEMAND:
        files += sorted(p for p in (root / folder).rglob("*") if p.is_file())
    return files


def pygments_css() -> str:
    """Pygments' default style for codehilite's ``.codehilite`` blocks ("" without Pygments)."""
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:
        return ""
    return HtmlFormatter(style="default").get_style_defs(".codehilite") + "\n"


def on_files(files: Files, config) -> Files:
    root = mathjax_dir()
    for path in mathjax_files(root):
        uri = f"{SITE_DIR}/{path.relative_to(root).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    files.append(File.generated(config, PYGMENTS_CSS, content=pygments_css()))
    return files
