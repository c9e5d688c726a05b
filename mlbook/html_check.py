"""Checks of the built HTML book: MathJax served from the build, screenshots of pages.

``mathjax_scripts(page)`` lists the MathJax ``<script src>`` of a built page and
``offline_mathjax_problems(page)`` says what would stop its equations rendering
without internet (a remote MathJax URL, or a local one whose file is missing).
``screenshot(pages, out_dir)`` renders pages with headless Chromium, when it is
installed, for a person to look at; it cuts the page off the network where it
can (``unshare -n``, as root) so a remote script could not load unnoticed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

_SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


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


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(pages, out_dir: str | Path, width: int = 1200, height: int = 2400,
               budget_ms: int = 5000, offline: bool = True, timeout: float = 90) -> list[Path]:
    """PNG screenshots of built pages (paths to .html files) with headless Chromium.

    Returns the PNGs written (``out_dir/<page stem>.png``). Raises RuntimeError when
    Chromium is not installed (``apt-get install chromium``). Screenshot chapter
    pages, not the book's index.html: it is a meta refresh, on which headless
    Chromium can hang. ``offline`` runs Chromium in a new network namespace
    (``unshare -n``, needs root) so that nothing can be fetched from the network.
    """
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("no Chromium found (apt-get install chromium)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = []
    if offline and shutil.which("unshare") and hasattr(os, "geteuid") and os.geteuid() == 0:
        prefix = ["unshare", "-n"]
    written = []
    for page in pages:
        page = Path(page).resolve()
        png = out_dir / f"{page.stem}.png"
        cmd = prefix + [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--virtual-time-budget={budget_ms}", f"--screenshot={png}",
                        f"--window-size={width},{height}", page.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not png.is_file():
            raise RuntimeError(f"chromium failed on {page} ({proc.returncode}): {proc.stderr[-2000:]}")
        written.append(png)
    return written
