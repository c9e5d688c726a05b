"""Checks of the built HTML book: MathJax served from the build, what a reader sees in the text.

``mathjax_scripts(page)`` lists the MathJax ``<script src>`` of a built page and
``offline_mathjax_problems(page)`` says what would stop its equations rendering
without internet (a remote MathJax URL, or a local one whose file is missing).
``raw_math_problems(html)`` finds equations MyST did not parse (a ``$$...$$`` inside a paragraph
is left as raw ``$`` and LaTeX in the paragraph's text) and ``run_log_lines(html)`` the cache's
run log ("[cache] ...: loaded", "[run] ...: computed in 1.4 s") printed into a page.
"""
from __future__ import annotations

import re
from html.parser import HTMLParser
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


# --- what the reader sees: raw LaTeX, run logs ----------------------------------------------------

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_NOT_PROSE = {"code", "pre", "kbd", "samp", "script", "style", "math", "mjx-container", "svg"}


class _Paragraphs(HTMLParser):
    """The text of every ``<p>``, without code, preformatted text and math elements (Sphinx's
    ``class="math"`` spans and divs, MathJax's containers)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._stack: list[tuple[str, bool]] = []     # open elements: (tag, is it left out)
        self._text: list[str] | None = None          # the open paragraph's text

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        skip = tag in _NOT_PROSE or any(c == "math" or c.startswith("math-") or c.startswith("MathJax")
                                        for c in classes)
        if tag == "p":
            self._close_paragraph()
            self._text = []
        self._stack.append((tag, skip))

    def handle_endtag(self, tag):
        if tag in _VOID or all(t != tag for t, _ in self._stack):
            return
        while self._stack and self._stack.pop()[0] != tag:
            pass
        if tag == "p":
            self._close_paragraph()

    def handle_data(self, data):
        if self._text is not None and not any(skip for _, skip in self._stack):
            self._text.append(data)

    def _close_paragraph(self):
        if self._text is not None:
            self.paragraphs.append(" ".join("".join(self._text).split()))
            self._text = None

    def close(self):
        super().close()
        self._close_paragraph()


def _html(page: str | Path) -> tuple[str, str]:
    """(a name for messages, the HTML) of a built page's path or of an HTML string (one with a tag)."""
    if isinstance(page, Path) or "<" not in page:
        return Path(page).name, Path(page).read_text(encoding="utf-8", errors="replace")
    return "html", page


def paragraph_texts(page: str | Path) -> list[str]:
    """What a reader reads as prose: the text of each ``<p>`` of a page (a path or an HTML
    string), code and math left out."""
    parser = _Paragraphs()
    parser.feed(_html(page)[1])
    parser.close()
    return parser.paragraphs


def raw_math_problems(page: str | Path) -> list[str]:
    """One line per paragraph that shows a raw ``$`` (an equation MyST left unparsed, e.g. a
    ``$$...$$`` block inside a paragraph); empty when every equation became a math element."""
    name = _html(page)[0]
    problems = []
    for text in paragraph_texts(page):
        at = text.find("$")
        if at >= 0:
            problems.append(f"{name}: raw $ in a paragraph (a $$ equation needs a blank line before and "
                            f"after it): ...{text[max(0, at - 60):at + 60]}...")
    return problems


_RUN_LOG = re.compile(r"\[(?:cache|run)\] [\w.-]+/[0-9a-f]{16}: [^\n<]*")


def run_log_lines(page: str | Path) -> list[str]:
    """The cache's run-log lines ("[cache] method/hash: loaded", "[run] method/hash: computed in
    1.4 s") printed into a page: they tell the reader nothing about the paper."""
    name, text = _html(page)
    return [f"{name}: {m}" for m in _RUN_LOG.findall(text)]
