"""The HTML book builds offline with Jupyter Book 1, warnings as errors."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_book_builds(tmp_path):
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else shutil.which("jupyter-book"), "build", str(ROOT),
           "--path-output", str(tmp_path), "--all", "-W", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    html = tmp_path / "_build" / "html" / "book"
    for py in sorted((ROOT / "book").glob("[0-9][0-9]_*.py")):
        page = html / f"{py.stem}.html"
        assert page.exists(), f"{page} was not built"
        text = page.read_text()
        assert "Traceback" not in text, f"{page.name} shows a traceback"
        # tables shown by report.save_table are Markdown: they must render as tables, not as a
        # paragraph of pipes (what CommonMark, myst-nb's default for outputs, makes of them)
        assert "<p>| " not in text, f"{page.name} shows a Markdown table as raw text"
