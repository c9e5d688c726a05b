"""Checks of the built HTML book: MathJax served from the build.

``mathjax_scripts(page)`` lists the MathJax ``<script src>`` of a built page and
``offline_mathjax_problems(page)`` says what would stop its equations rendering
without internet (a remote MathJax URL, or a local one whose file is missing).
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

_SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


def mathjax_scripts(page: str | Path) -> list[str]:
    """The ``src`` of every script of the page whose URL names MathJax, as written."""
    text = Path(page).read_text(encoding="utf-8", errors="replace")
    return [src for src in _SCRIPT_SRC.findall(text) if "mathjax" in src.lower()]


def offline_mathjax_problems(page: str | Path) -> list[str]:
    """Why the page's equations would not render offline (empty when they would).

    A page without equations loads no MathJax and has no problem.
    """
    page = Path(page)
    problems = []
    for src in mathjax_scripts(page):
        url = urlparse(src)
        if url.scheme in ("http", "https") or src.startswith("//"):
            problems.append(f"{page.name}: MathJax from the network: {src}")
            continue
        target = (page.parent / unquote(url.path)).resolve()
        if not target.is_file():
            problems.append(f"{page.name}: MathJax script {src} not in the build ({target} missing)")
    return problems
