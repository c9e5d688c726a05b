"""The benchmarks run (they print ratios and rates; no test asserts a timing)."""
from mlbook import bench


def test_bench_ranking_runs():
    r = bench.bench_ranking(profile="demo", batch_size=2, steps=1, warmup=0, device="cpu")
    assert r["img/s"] > 0


def test_bench_metrics_agrees_with_sklearn():
    out = bench.bench_metrics(n=300, c=6, repeats=1)
    assert all(row["max_abs_diff"] < 1e-9 for row in out["rows"])


def test_flops_are_counted_not_typed_in():
    import torch

    from mlbook.plan import GPU_PEAK, RunCost, count_flops

    f = count_flops(lambda: torch.nn.Linear(10, 4, bias=False), ((1, 10),), train=False)
    assert f == 2 * 10 * 4                                        # one multiply-add per weight
    g = count_flops(lambda: torch.nn.Linear(10, 4, bias=False), ((1, 10),), train=True)
    assert g == 2 * f                                             # + the weight gradient (input needs none)
    r = RunCost("04", "x", "coco", f, images=100, epochs=3, runs=2)
    assert r.flops == f * 600 and GPU_PEAK["h100"] > GPU_PEAK["a100"]
