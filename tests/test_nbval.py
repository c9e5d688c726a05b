"""The strict nbval run (`pytest --nbval book/`, `make nbval`): every text output of a chapter compared
with its committed one, through tests/nbval_sanitize.cfg. Run the way a user types it, pytest in a
subprocess with the project's pyproject.toml and conftest.py, on notebooks copied to a temporary folder:
a changed number fails, a changed wall time, progress bar, address, timestamp or run-log line does not,
and the default (lax) run still checks only that cells raise nothing."""
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

TABLE = 'print("| method | CF1 |\\n|:--|--:|\\n| Ours | 41.6 |")'
# a cell whose every line changes from run to run, and what a run months ago printed
VOLATILE = """import datetime, random, time
start = time.perf_counter()
print(f"took {time.perf_counter() - start + random.random():.2f} s; wall time: {random.randint(1, 9)} min {random.randint(0, 59)} s")
print(f"weights: {random.randint(0, 100):3d}%|###   | 3/9 [00:0{random.randint(0, 9)}<00:01, {100 * random.random():.2f}it/s]")
print(f"{random.randint(100, 999)} img/s", object())
print(datetime.datetime.now().isoformat())
print("[cache] 04 Ours coco: code changed, recomputed")"""
VOLATILE_THEN = ("took 12.31 s; wall time: 3 min 5 s\n"
                 "weights: 100%|######| 9/9 [00:01<00:00, 8.31it/s]\n"
                 "812 img/s <object object at 0x7f3a2b1c9d40>\n"
                 "2026-12-06T10:11:12.123456\n")


def committed_notebook(path: Path, table_output: str) -> Path:
    """A two-cell notebook with the outputs a past run committed; no cell carries an nbval marker."""
    cells = [nbformat.v4.new_code_cell(TABLE, outputs=[nbformat.v4.new_output("stream", name="stdout", text=table_output)]),
             nbformat.v4.new_code_cell(VOLATILE, outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                                 text=VOLATILE_THEN)])]
    for count, cell in enumerate(cells, 1):
        cell.execution_count = count   # nbval refuses a cell with outputs and no count as never run
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                        "display_name": "Python 3"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def nbval(folder: Path, *args: str) -> tuple[int, dict[str, str]]:
    """pytest on ``folder``'s notebooks as the project configures it (addopts, conftest.py); returns the exit
    status and {'<notebook>::Cell N': PASSED or FAILED}."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(folder),
                           "-p", "conftest", *args, *map(str, sorted(folder.rglob("*.ipynb"))), "-q", "-rA",
                           "--color=no"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    # node ids are printed relative to the working directory: keep the part under ``folder``
    outcomes = {m[2].split(f"{folder.name}/")[-1]: m[1]
                for m in re.finditer(r"^(PASSED|FAILED) (\S+::Cell \d+)", proc.stdout, re.M)}
    assert outcomes, proc.stdout + proc.stderr
    return proc.returncode, outcomes


@pytest.mark.slow
def test_strict_run_fails_on_a_changed_number_and_not_on_a_changed_timing(tmp_path):
    committed_notebook(tmp_path / "same.ipynb", "| method | CF1 |\n|:--|--:|\n| Ours | 41.6 |\n")
    committed_notebook(tmp_path / "changed.ipynb", "| method | CF1 |\n|:--|--:|\n| Ours | 41.7 |\n")
    status, outcomes = nbval(tmp_path, "--nbval")
    assert status == 1
    assert outcomes == {"same.ipynb::Cell 0": "PASSED", "same.ipynb::Cell 1": "PASSED",
                        "changed.ipynb::Cell 0": "FAILED", "changed.ipynb::Cell 1": "PASSED"}
    # the smoke run's default (pyproject's --nbval-lax): an unmarked cell's output is not compared
    status, outcomes = nbval(tmp_path)
    assert status == 0 and set(outcomes.values()) == {"PASSED"}


@pytest.mark.slow
def test_strict_run_of_chapter_01_fails_on_one_altered_number_of_a_table(tmp_path):
    """Chapter 01 (the published tables audited; trains nothing, seconds) as committed passes; a copy with
    one number of its first table altered fails in that cell only."""
    source = ROOT / "book" / "01_published_numbers.ipynb"
    nb = nbformat.read(source, as_version=4)
    (tmp_path / "as_committed").mkdir()
    nbformat.write(nb, tmp_path / "as_committed" / source.name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    number, altered = next((i, o) for i, c in enumerate(code) for o in c.outputs
                           if o.output_type == "stream" and "| KNN " in o.text)
    row = re.search(r"^\| KNN .*$", altered.text, re.M)[0]
    assert "| 32.6 |" in row, row   # Order-Free RNN's Table 1: KNN's CP on NUS-WIDE, as printed
    altered.text = altered.text.replace(row, row.replace("| 32.6 |", "| 32.7 |", 1), 1)
    (tmp_path / "altered").mkdir()
    nbformat.write(nb, tmp_path / "altered" / source.name)
    status, outcomes = nbval(tmp_path, "--nbval")
    assert status == 1
    failed = sorted(name for name, outcome in outcomes.items() if outcome == "FAILED")
    assert failed == [f"altered/{source.name}::Cell {number}"], outcomes
    assert sum(name.startswith("as_committed/") for name in outcomes) == len(code)
