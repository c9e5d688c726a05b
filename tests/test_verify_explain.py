"""`mlbook verify` says what its differences mean: which claims changed verdict (old → new) and whether
every changed number lies inside the intervals the book prints. Two fabricated figures trees, compared
through the CLI the way a user types it (`verify --reference A --against B`: compare, run nothing)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlbook.verify_explain import reading, typical_halfwidths, measurements

ROOT = Path(__file__).resolve().parents[1]

# two claims on nuswide CF1: half-widths 3.7 and 1.5 (median 2.6); OF1 only on the first (half-width 1.0)
MEASURED = """id,data set,metric,test,margin,delta,low,high,se,df,seeds_better,seeds_worse,n_resamples,published_delta,mde,metric_verdict,verdict
04.order.nuswide,nuswide,CF1,superiority,0.0,1.1,-2.6,4.8,1.6,7.3,3,3,1000,5.9,5.1,not resolved,supported
04.order.nuswide,nuswide,OF1,superiority,0.0,1.7,0.7,2.7,0.47,16.9,3,3,1000,4.7,1.4,supported,supported
04.attention.nuswide,nuswide,CF1,superiority,0.0,3.2,1.7,4.7,0.8,11.5,3,3,1000,0.2,2.7,supported,supported
"""
CLAIMS = """id,data set,claim,compared,primary,evidence,verdict
04.order.nuswide,nuswide,“semantic ordering”,Ours vs Frequency-first,"CF1, OF1","CF1 Δ +1.1 [-2.6, +4.8]; OF1 Δ +1.7 [+0.7, +2.7] → supported",supported
04.attention.nuswide,nuswide,“attention helps”,Ours vs Ours (w/o atten),CF1,"CF1 Δ +3.2 [+1.7, +4.7] → supported",supported
"""
TIDY = """table,data set,method,metric,reproduced,published,delta
table_1,nuswide (generated),Ours,CF1,41.2,50.7,-9.5
table_1,nuswide (generated),Ours,CP,45.0,59.4,-14.4
"""


def write_tree(folder: Path) -> Path:
    chapter = folder / "04_x"
    chapter.mkdir(parents=True)
    for name, text in {"claims_measurements.csv": MEASURED, "table_claims.csv": CLAIMS, "table_1.csv": TIDY}.items():
        (chapter / name).write_text(text, encoding="utf-8")
    return folder


def edit(path: Path, *pairs: tuple[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in pairs:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def trees(tmp_path):
    committed = write_tree(tmp_path / "committed")
    now = tmp_path / "now"
    shutil.copytree(committed, now)
    return committed, now


def verify(committed: Path, now: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlbook", "verify", "--reference", str(committed),
                           "--against", str(now)], cwd=ROOT, capture_output=True, text=True)


def explanation(proc: subprocess.CompletedProcess) -> list[str]:
    lines = proc.stdout.splitlines()
    return lines[lines.index("what the differences mean:") + 1:]


def test_differences_inside_the_intervals_read_as_noise(trees):
    committed, now = trees
    measured = now / "04_x" / "claims_measurements.csv"
    edit(measured, ("0.0,1.1,-2.6,4.8,1.6", "0.0,2.0,-1.9,5.9,1.9"),     # CF1 Δ 1.1 -> 2.0, inside [-2.6, 4.8]
         ("0.0,1.7,0.7,2.7,0.47", "0.0,1.2,0.3,2.1,0.45"))               # OF1 Δ 1.7 -> 1.2, inside [0.7, 2.7]
    edit(now / "04_x" / "table_claims.csv", ("CF1 Δ +1.1 [-2.6, +4.8]", "CF1 Δ +2.0 [-1.9, +5.9]"))
    edit(now / "04_x" / "table_1.csv", ("CF1,41.2,50.7,-9.5", "CF1,43.0,50.7,-7.7"))   # |Δ| 1.8 <= 2.6
    proc = verify(committed, now)
    assert proc.returncode == 1, proc.stdout + proc.stderr        # still a difference: verify is exact
    said = explanation(proc)
    assert said[0] == "verdicts: 0 changed (every claim keeps its verdict)"
    assert said[1] == "numbers: 11 changed: 11 inside the intervals the book prints, 0 outside, 0 with no interval"
    assert said[-1].startswith("reading: noise: no verdict changed and every changed number lies inside")


def test_a_verdict_change_names_the_claim_and_the_number_outside_its_interval(trees):
    committed, now = trees
    edit(now / "04_x" / "claims_measurements.csv",
         ("0.0,3.2,1.7,4.7,0.8,11.5,3,3,1000,0.2,2.7,supported,supported",
          "0.0,0.9,-0.6,2.4,0.8,11.5,3,3,1000,0.2,2.7,not resolved,not resolved"))
    edit(now / "04_x" / "table_claims.csv", ("CF1 Δ +3.2 [+1.7, +4.7] → supported\",supported",
                                             "CF1 Δ +0.9 [-0.6, +2.4] → not resolved\",not resolved"))
    edit(now / "04_x" / "table_1.csv", ("CP,45.0,59.4,-14.4", "CP,46.0,59.4,-13.4"))   # no claim on CP
    proc = verify(committed, now)
    assert proc.returncode == 1
    said = explanation(proc)
    assert said[:2] == ["verdicts: 2 changed:", "  04.attention.nuswide: supported → not resolved"]
    assert said[2] == "  04.attention.nuswide (CF1): supported → not resolved"
    assert said[3] == "numbers: 5 changed: 0 inside the intervals the book prints, 3 outside, 2 with no interval"
    assert any("Δ +0.9 outside the committed [+1.7, +4.7]" in line for line in said)
    assert any(line.startswith("  no interval: 04_x/table_1.csv row 2") and "no claim on CP" in line for line in said)
    assert said[-1] == ("reading: a changed result: 2 verdict(s) changed, 3 number(s) moved outside their interval; "
                        "1 text or structural difference(s) are not judged")   # the evidence's "→ not resolved"


def test_identical_trees_say_nothing_more(trees):
    proc = verify(*trees)
    assert proc.returncode == 0 and "what the differences mean" not in proc.stdout


def test_the_typical_interval_is_the_median_half_width(trees):
    committed, _ = trees
    widths = typical_halfwidths(measurements(committed))
    assert widths[("04_x", "nuswide", "CF1")] == pytest.approx((3.7 + 1.5) / 2)
    assert widths[("04_x", "nuswide", "OF1")] == pytest.approx(1.0)
    counts = {"inside": 3, "outside": 0, "no interval": 1}
    assert reading(0, counts, 0).startswith("no verdict changed and every number with an interval stayed inside")
    assert reading(0, {**counts, "outside": 1}, 2).startswith("beyond noise: 1 number(s)")
