"""`python -m mlbook verify`: results tables compared number by number and verdict by verdict,
run the way a user types it; plus the cell rules and the timings log it leaves alone."""
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlbook import report
from mlbook.verify import numbers_equal, split_cell

ROOT = Path(__file__).resolve().parents[1]

TIDY = """table,data set,method,metric,reproduced,published,delta
table_1,coco (generated),WARP,CP,35.28,59.3,-24.02
table_1,coco (generated),WARP,CR,50.59,52.5,-1.91
table_1,coco (generated),Ours,CP,41.0,,
"""
DISPLAY = """method,CP,CF1
WARP,59.0 (78.3),41.6 (55.7)
Ours,62.1 (–),– (–)
"""
CLAIMS = """id,data set,claim,evidence,verdict
cadm-1,MS-COCO,“the embedding helps”,"mAP Δ +1.6 [−0.5, +3.6] (3 vs 3 seeds)",not resolved
cadm-2,MS-COCO,both beat the baseline,"mAP Δ +2.0 [+0.4, +3.6] (3 vs 3 seeds)",supported
"""
TIMINGS = "what,seconds,img/s\nbackbone coco,12.3,800\n"
# numbers: tidy 3 rows x (reproduced, published, delta) minus two empty cells = 7;
# display 5 ("–" is text); claims 5 + 5 in the evidence (not the ids: "cadm-1" is a name); verdicts 2
NUMBERS, VERDICTS = 7 + 5 + 10, 2


def write_tree(folder: Path) -> Path:
    """A small figures tree in the shapes the book writes."""
    for chapter, files in {"04_x": {"table_1.csv": TIDY, "table_claims.csv": CLAIMS, "timings.csv": TIMINGS},
                           "05_y": {"table_2.csv": DISPLAY}}.items():
        (folder / chapter).mkdir(parents=True)
        for name, text in files.items():
            (folder / chapter / name).write_text(text, encoding="utf-8")
    (folder / "05_y" / "table_2.md").write_text("not compared: only CSVs are")
    return folder


def verify(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlbook", "verify", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def trees(tmp_path):
    committed = write_tree(tmp_path / "committed")
    now = tmp_path / "now"
    shutil.copytree(committed, now)
    return committed, now


def difference_rows(output: str) -> list[list[str]]:
    """The Markdown difference table's rows, as cells."""
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in output.splitlines()
            if line.startswith("| ") and not line.startswith("| file ")]


def test_identical_copy_passes_with_full_scorecard(trees):
    committed, now = trees
    proc = verify("--reference", str(committed), "--against", str(now))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{NUMBERS} of {NUMBERS} numbers identical" in proc.stdout
    assert f"{VERDICTS} of {VERDICTS} verdicts identical" in proc.stdout
    assert re.search(r"^04_x\s+ok\s+2 files", proc.stdout, re.M)   # timings.csv not counted
    assert difference_rows(proc.stdout) == []


def test_one_edited_number_names_file_row_and_both_values(trees):
    committed, now = trees
    edit(now / "04_x" / "table_1.csv", "50.59", "50.61")
    proc = verify("--reference", str(committed), "--against", str(now))
    assert proc.returncode == 1
    assert f"{NUMBERS - 1} of {NUMBERS} numbers identical" in proc.stdout
    [row] = difference_rows(proc.stdout)
    assert row[0] == "04_x/table_1.csv" and row[1].startswith("row 2 (") and "WARP, CR" in row[1]
    assert row[2:] == ["reproduced", "number", "50.59", "50.61"]


def test_a_number_inside_a_display_string_is_compared(trees):
    committed, now = trees
    edit(now / "05_y" / "table_2.csv", "41.6 (55.7)", "41.7 (55.7)")
    proc = verify("--reference", str(committed), "--against", str(now))
    assert proc.returncode == 1
    assert difference_rows(proc.stdout) == [["05_y/table_2.csv", "row 1 (WARP)", "CF1", "number",
                                             "41.6 (55.7)", "41.7 (55.7)"]]


def test_changed_verdict_is_a_verdict_difference(trees):
    committed, now = trees
    edit(now / "04_x" / "table_claims.csv", ",supported", ",contradicted")
    proc = verify("--reference", str(committed), "--against", str(now))
    assert proc.returncode == 1
    assert f"{VERDICTS - 1} of {VERDICTS} verdicts identical" in proc.stdout
    assert f"{NUMBERS} of {NUMBERS} numbers identical" in proc.stdout
    [row] = difference_rows(proc.stdout)
    assert row[0] == "04_x/table_claims.csv" and "cadm-2" in row[1]
    assert row[2:] == ["verdict", "verdict", "supported", "contradicted"]


def test_changed_text_and_missing_file_row_and_column_are_differences(trees):
    committed, now = trees
    edit(now / "04_x" / "table_1.csv", "Ours,CP", "Ours (w/o),CP")
    (now / "05_y" / "table_2.csv").unlink()
    (now / "05_y" / "table_9.csv").write_text("a,b\nx,1\n")
    proc = verify("--reference", str(committed), "--against", str(now))
    assert proc.returncode == 1
    kinds = {(r[0], r[3], r[4], r[5]) for r in difference_rows(proc.stdout)}
    assert ("04_x/table_1.csv", "text", "Ours", "Ours (w/o)") in kinds
    assert ("05_y/table_2.csv", "file", "present (2 rows)", "missing") in kinds
    assert ("05_y/table_9.csv", "file", "missing", "present (1 rows)") in kinds


def test_row_and_column_on_one_side(trees):
    committed, now = trees
    edit(now / "04_x" / "table_1.csv", "table_1,coco (generated),WARP,CR,50.59,52.5,-1.91\n", "")
    edit(now / "05_y" / "table_2.csv", "method,CP,CF1", "method,CP,CF2")
    proc = verify("--reference", str(committed), "--against", str(now))
    assert proc.returncode == 1
    rows = difference_rows(proc.stdout)
    assert ["04_x/table_1.csv", "row 3 (table_1, coco (generated), Ours, CP)", "–", "row", "present",
            "missing"] in rows   # rows match by first column and position: the third row has no partner
    assert ["05_y/table_2.csv", "–", "CF1", "column", "present", "missing"] in rows
    assert ["05_y/table_2.csv", "–", "CF2", "column", "missing", "present"] in rows


def test_rtol_accepts_a_small_relative_change_and_rejects_a_large_one(trees):
    committed, now = trees
    edit(now / "04_x" / "table_1.csv", "35.28", "35.2835")          # 1e-4 relative
    edit(now / "05_y" / "table_2.csv", "62.1 (–)", "62.2 (–)")      # 1.6e-3 relative
    args = ("--reference", str(committed), "--against", str(now))
    assert verify(*args).returncode == 1                             # exact by default
    assert verify(*args, "--rtol", "1e-3").returncode == 1           # the second change is too large
    edit(now / "05_y" / "table_2.csv", "62.2 (–)", "62.1 (–)")
    loose = verify(*args, "--rtol", "1e-3")
    assert loose.returncode == 0, loose.stdout
    assert "rtol 0.001" in loose.stdout
    assert verify(*args, "--rtol", "-1").returncode == 2


def test_timings_are_never_compared(trees):
    committed, now = trees
    (now / "04_x" / "timings.csv").write_text("what,seconds,img/s\nbackbone coco,99.9,1\nother,1,1\n")
    (now / "05_y" / "timings.csv").write_text(TIMINGS)               # on one side only
    proc = verify("--reference", str(committed), "--against", str(now))
    assert proc.returncode == 0, proc.stdout
    assert "timings.csv" not in proc.stdout


def test_chapter_selection_limits_the_comparison(trees):
    committed, now = trees
    edit(now / "05_y" / "table_2.csv", "59.0 (78.3)", "59.1 (78.3)")
    args = ("--reference", str(committed), "--against", str(now))
    assert verify(*args, "--chapters", "04").returncode == 0
    assert verify(*args, "--chapters", "04,05").returncode == 1


def test_the_repositorys_figures_are_identical_to_a_copy(tmp_path):
    """The real tables (every shape the book writes); the default reference is the project's
    figures/ (MLBOOK_HOME points the project root at a copy, so no concurrent run interferes)."""
    home = tmp_path / "home"
    shutil.copytree(ROOT / "figures", home / "figures")
    shutil.copytree(home / "figures", tmp_path / "again")
    proc = verify("--against", str(tmp_path / "again"), env={"MLBOOK_HOME": str(home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    total = re.search(r"^total\s+ok\s+\d+ files: (\d+) of (\d+) numbers identical", proc.stdout, re.M)
    assert total and total[1] == total[2] and int(total[1]) > 1000


def test_a_used_scratch_folder_is_refused(tmp_path):
    """Stale tables in the scratch folder would be compared as if the run had just made them."""
    (tmp_path / "figures" / "01_a").mkdir(parents=True)
    (tmp_path / "figures" / "01_a" / "table_1.csv").write_text("a\n1\n")
    proc = verify("--profile", "smoke", "--chapters", "01", "--scratch", str(tmp_path))
    assert proc.returncode == 2 and "fresh scratch folder" in proc.stderr


def test_cell_rules():
    assert split_cell("mAP Δ +1.6 [−0.5, +3.6]") == ("mAP Δ \0 [\0, \0]", [1.6, -0.5, 3.6])
    assert split_cell("table_1") == ("table_1", []) and split_cell("CF1") == ("CF1", [])
    assert split_cell("ResNet-101, top-3")[1] == [] and split_cell("mAP@10, k=40")[1] == [10, 40]
    assert split_cell("0.12-0.25")[1] == [0.12, 0.25]                 # a range, not a negative number
    assert split_cell("3711.0") == split_cell("3711")
    assert math.isnan(split_cell("nan")[1][0])
    assert numbers_equal(float("nan"), float("nan")) and not numbers_equal(float("nan"), 0.0)
    assert numbers_equal(100.0, 100.05, rtol=1e-3) and not numbers_equal(100.0, 100.2, rtol=1e-3)
    assert numbers_equal(0.0, 5e-7, rtol=1e-3) and not numbers_equal(0.0, 0.01, rtol=1e-3)


def test_save_timings_writes_the_run_log(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_FIGURES", str(tmp_path))
    assert report.save_timings("03_z", [{"what": "backbone coco", "seconds": 12.3, "img/s": 800},
                                        {"what": "head", "seconds": 1.5}]) is None
    log = pd.read_csv(tmp_path / "03_z" / "timings.csv")
    assert list(log.columns) == ["what", "seconds", "img/s"] and log["seconds"].tolist() == [12.3, 1.5]
    assert [p.name for p in (tmp_path / "03_z").iterdir()] == ["timings.csv"]   # no temporary file left


@pytest.mark.slow
def test_a_rerun_of_chapter_01_is_identical(tmp_path):
    """A real run: chapter 01 (audits the published tables, trains nothing, the same in every profile)
    re-run cold in the smoke profile into a scratch folder, every number compared with the committed
    figures/: the book's own check of itself, as a reader types it."""
    again = verify("--profile", "smoke", "--chapters", "01", "--scratch", str(tmp_path / "again"))
    assert (tmp_path / "again" / "figures" / "01_published_numbers").is_dir(), again.stdout + again.stderr
    assert (tmp_path / "again" / "01_published_numbers.ipynb").is_file()
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"^01_published_numbers\s+ok\s+\d+ files: (\d+) of \1 numbers identical", again.stdout, re.M)