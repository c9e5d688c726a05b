"""``python -m mlbook bench head-to-head`` as a user types it (rates are printed, never asserted as timings)."""
import csv
import subprocess
import sys

from mlbook.bench.head_to_head import ROWS
from mlbook.cli import main


def test_bench_head_to_head_runs_as_typed(tmp_path):
    out = tmp_path / "b.csv"
    r = subprocess.run([sys.executable, "-m", "mlbook", "bench", "head-to-head", "--profile", "smoke", "--steps", "2",
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert set(ROWS) == {"BCE network", "Softmax", "WARP", "ASL", "CNN-RNN", "Query2Label"}
    for row in ROWS:
        assert f"\n{row} " in r.stdout, row
    table = {row["row"]: row for row in csv.DictReader(out.open())}
    assert list(table) == list(ROWS)
    assert all(float(row[k]) > 0 for row in table.values()
               for k in ("train_img_s", "infer_img_s", "train_ratio", "infer_ratio"))
    assert float(table["BCE network"]["train_ratio"]) == float(table["BCE network"]["infer_ratio"]) == 1.0


def test_bench_head_to_head_bad_row_is_one_line_and_exit_2(capsys):
    assert main(["bench", "head-to-head", "--profile", "smoke", "--steps", "1", "--rows", "WARP,Nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("error: --rows") and "'Nope'" in err
    assert main(["bench", "head-to-head", "--rows", "KNN"]) == 2
    assert "KNN has no network" in capsys.readouterr().err
