"""The benchmarks run, as a user types them (they print ratios and rates; no test asserts a timing)."""
import subprocess
import sys

import pytest

from mlbook import papers
from mlbook.bench.metrics import bench_metrics
from mlbook.cli import main


def _mlbook(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlbook", *args], capture_output=True, text=True, timeout=300)


def test_bench_train_runs_as_typed():
    r = _mlbook("bench", "train", "--profile", "smoke", "--steps", "1", "--device", "cpu")   # the default paper
    assert r.returncode == 0, r.stderr
    assert "img/s" in r.stdout


@pytest.mark.parametrize("paper", [p.key for p in papers.PAPERS if "bench_train" in p.benches])
def test_bench_train_runs_for_every_paper_that_has_one(paper, capsys):
    assert main(["bench", "train", "--model", paper, "--profile", "smoke", "--steps", "1", "--device", "cpu"]) == 0
    assert "img/s" in capsys.readouterr().out


def test_bench_train_rows_and_bad_input(capsys):
    r = _mlbook("bench", "train", "--model", "cadm", "--rows", "baseline", "--profile", "smoke", "--steps", "1",
                "--device", "cpu")
    assert r.returncode == 0 and r.stdout.count("img/s") == 1, r.stderr

    assert main(["bench", "train", "--model", "nonsense", "--steps", "1"]) == 2
    assert "no training bench" in capsys.readouterr().err


def test_bench_metrics_agrees_with_sklearn():
    out = bench_metrics(n=300, c=6, repeats=1, resamples=20, matrices=2)
    assert all(row["max_abs_diff"] < 1e-9 for row in out["rows"])
    # the fields the bench reports (timings are printed and returned, never asserted)
    assert {"n", "c", "positives", "threads", "argsort_s", "sort_s", "rows", "bootstrap"} <= set(out)
    assert [row["metric"] for row in out["rows"]] == [
        "AP, ties=sklearn", "AP, ties=stable", "AP, 5% ignored", "prf top-3 (CP, CR)"]
    assert all({"torch_s", "sklearn_s", "ratio", "over_argsort", "max_abs_diff"} <= set(row) for row in out["rows"])
    boot = out["bootstrap"]
    assert {"matrices", "resamples", "seconds", "per_replicate_s", "max_abs_diff"} <= set(boot)
    assert (boot["matrices"], boot["resamples"]) == (2, 20) and boot["max_abs_diff"] < 1e-9


def test_flops_are_counted_not_typed_in():
    import torch

    from mlbook.costs import GPU_PEAK, RunCost, count_flops

    f = count_flops(lambda: torch.nn.Linear(10, 4, bias=False), ((1, 10),), train=False)
    assert f == 2 * 10 * 4                                        # one multiply-add per weight
    g = count_flops(lambda: torch.nn.Linear(10, 4, bias=False), ((1, 10),), train=True)
    assert g == 2 * f                                             # + the weight gradient (input needs none)
    r = RunCost("04", "x", "coco", f, images=100, epochs=3, runs=2)
    assert r.flops == f * 600 and GPU_PEAK["h100"] > GPU_PEAK["a100"]
