"""The HTML book builds offline with Jupyter Book 1, warnings as errors."""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlbook.html_check import mathjax_scripts, offline_mathjax_problems, raw_math_problems, run_log_lines

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _build(source: Path, out: Path) -> None:
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else shutil.which("jupyter-book"), "build", str(source),
           "--path-output", str(out), "--all", "-W", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_book_builds(tmp_path):
    _build(ROOT, tmp_path)
    html = tmp_path / "_build" / "html" / "book"
    problems = []
    for py in sorted((ROOT / "book").glob("[0-9][0-9]_*.py")):
        page = html / f"{py.stem}.html"
        assert page.exists(), f"{page} was not built"
        text = page.read_text()
        assert "Traceback" not in text, f"{page.name} shows a traceback"
        # tables shown by report.save_table are Markdown: they must render as tables, not as a
        # paragraph of pipes (what CommonMark, myst-nb's default for outputs, makes of them)
        assert "<p>| " not in text, f"{page.name} shows a Markdown table as raw text"
        # a page with equations loads MathJax from the build, never from the network
        assert not offline_mathjax_problems(page)
        # every equation became math: a $$...$$ inside a paragraph is left as raw $ and LaTeX
        problems += raw_math_problems(page)
        # the cache's run log ("[cache] ...: loaded", "[run] ...: computed in") is not the reader's
        problems += run_log_lines(page)
    assert not problems, "\n".join(problems)
    assert (tmp_path / "_build" / "html" / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_book_equations_offline(tmp_path):
    """Every chapter, given an equation, loads MathJax from a file in the build (no http(s) URL).

    The chapters hold little LaTeX yet, and Sphinx adds MathJax only to pages with
    math, so a copy of the book with one equation cell in each chapter is built.
    """
    src = tmp_path / "src"
    src.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "book", src / "book", ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    chapters = sorted((src / "book").glob("[0-9][0-9]_*.ipynb"))
    assert chapters
    for nb_path in chapters:
        nb = json.loads(nb_path.read_text())
        nb["cells"].insert(1, {"cell_type": "markdown", "id": "offline-math-check", "metadata": {},
                               "source": ["Inline $\\hat y = \\sigma(Wx + b)$ and display\n", "\n",
                                          "$$\\mathcal{L} = -\\sum_{c=1}^{C} y_c \\log p_c$$\n", "\n",
                                          # what the raw-$ check must catch: no blank line around $$
                                          "A broken one:\n", "$$a = b$$\n", "inside a paragraph.\n"]})
        nb_path.write_text(json.dumps(nb))
    _build(src, tmp_path / "out")
    html = tmp_path / "out" / "_build" / "html"
    for nb_path in chapters:
        page = html / "book" / f"{nb_path.stem}.html"
        scripts = mathjax_scripts(page)
        assert scripts, f"{page.name}: no MathJax script although the page has equations"
        assert not any(s.startswith(("http:", "https:", "//")) for s in scripts), scripts
        assert not offline_mathjax_problems(page), offline_mathjax_problems(page)
        text = page.read_text()
        assert not re.search(r"(https?:)?//[^\s\"'<>]*mathjax", text, re.IGNORECASE), page.name
        assert 'class="math' in text   # the $...$ became math for MathJax to typeset
        raw = raw_math_problems(page)
        assert not [p for p in raw if "Inline" in p or "display" in p], raw    # parsed math passes
        assert [p for p in raw if "A broken one: $" in p], raw                 # an unparsed $$ is caught
