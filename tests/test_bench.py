"""The benchmarks run (they print ratios and rates; no test asserts a timing)."""
from mlbook import bench


def test_bench_ranking_runs():
    r = bench.bench_ranking(profile="demo", batch_size=2, steps=1, warmup=0, device="cpu")
    assert r["img/s"] > 0


def test_bench_metrics_agrees_with_sklearn():
    out = bench.bench_metrics(n=300, c=6, repeats=1)
    assert all(row["max_abs_diff"] < 1e-9 for row in out["rows"])
