"""The benchmarks run (they print ratios and rates; no test asserts a timing)."""
from mlbook import bench


def test_bench_ranking_runs():
    r = bench.bench_ranking(profile="demo", batch_size=2, steps=1, warmup=0, device="cpu")
    assert r["img/s"] > 0


def test_bench_metrics_agrees_with_sklearn():
    out = bench.bench_metrics(n=300, c=6, repeats=1, resamples=20, matrices=2)
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

    from mlbook.plan import GPU_PEAK, RunCost, count_flops

    f = count_flops(lambda: torch.nn.Linear(10, 4, bias=False), ((1, 10),), train=False)
    assert f == 2 * 10 * 4                                        # one multiply-add per weight
    g = count_flops(lambda: torch.nn.Linear(10, 4, bias=False), ((1, 10),), train=True)
    assert g == 2 * f                                             # + the weight gradient (input needs none)
    r = RunCost("04", "x", "coco", f, images=100, epochs=3, runs=2)
    assert r.flops == f * 600 and GPU_PEAK["h100"] > GPU_PEAK["a100"]
