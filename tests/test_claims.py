"""The one verdict rule (mlbook.claims): every branch, the two-level interval, a claims row."""
import math

import pytest
import torch

from mlbook import claims


@pytest.mark.parametrize("low, high, direction, word", [
    (0.5, 2.0, "higher", "supported"),
    (-2.0, -0.5, "higher", "contradicted"),
    (-0.5, 0.5, "higher", "not resolved"),
    (-2.0, -0.5, "lower", "supported"),
    (0.5, 2.0, "lower", "contradicted"),
    (math.nan, math.nan, "higher", "not resolved"),
])
def test_verdict_branches(low, high, direction, word):
    assert claims.verdict(low, high, direction) == word


def test_not_testable_and_combine():
    assert claims.verdict(1.0, 2.0, testable=False) == "not testable"
    assert claims.combine(["supported", "supported"]) == "supported"
    assert claims.combine(["supported", "not resolved"]) == "not resolved"
    assert claims.combine(["supported", "contradicted"]) == "contradicted"
    assert claims.combine(["not testable"]) == "not testable"
    with pytest.raises(ValueError):
        claims.Claim("x", "Sec. 1", "a", "b", ("CF1",), direction="sideways")


def test_interval_covers_seed_spread_and_images():
    g = torch.Generator().manual_seed(0)
    R = 400
    # a is better by 0.05 on average; its seeds spread by +-0.04; images add noise of 0.01 (small)
    seeds_a = torch.tensor([0.01, 0.05, 0.09])[:, None]
    a = 0.5 + seeds_a + 0.002 * torch.randn(3, 1 + R, generator=g)
    b = 0.5 + 0.002 * torch.randn(3, 1 + R, generator=g)
    r = claims.interval(a, b)
    assert r["delta"] == pytest.approx(float(a[:, 0].mean() - b[:, 0].mean()))
    assert r["low"] < r["delta"] < r["high"]
    # the seed spread widens the interval beyond the image noise alone
    one_seed = claims.interval(a[1:2], b[1:2])
    assert (r["high"] - r["low"]) > 2 * (one_seed["high"] - one_seed["low"])
    assert r["seeds"] == (3, 3) and len(r["seed_deltas"]) == 3
    with pytest.raises(ValueError):
        claims.interval(a, b[:, :10])


def test_evaluate_row_and_table():
    weights = claims.image_weights(50, 200, seed=1)
    g = torch.Generator().manual_seed(2)
    y = (torch.rand(50, 4, generator=g) < 0.4).float()
    good = [y.bool() for _ in range(2)]                           # perfect predictions, two seeds
    bad = [torch.rand(50, 4, generator=g) < 0.5 for _ in range(2)]
    values = {m: (claims.set_metric_values(good, y, weights, m), claims.set_metric_values(bad, y, weights, m))
              for m in ("CF1", "OF1")}
    c = claims.Claim("ours beats the baseline", "Table 2", "Ours", "Baseline", ("CF1", "OF1"), dataset="coco",
                     note="a confound")
    row = claims.evaluate(c, values, published={"CF1": 8.7})
    assert row["verdict"] == "supported"
    assert "paper's table +8.7" in row["evidence"] and "(note: a confound)" in row["evidence"]
    flipped = claims.evaluate(claims.Claim("b beats a", "x", "B", "A", ("OF1",)), {"OF1": values["OF1"][::-1]})
    assert flipped["verdict"] == "contradicted"
    untestable = claims.evaluate(c, {}, testable=False, why_not="no boxes")
    assert untestable["verdict"] == "not testable" and untestable["evidence"] == "no boxes (note: a confound)"
    t = claims.table([row, flipped, untestable])
    assert list(t["verdict"]) == ["supported", "contradicted", "not testable"]
    with pytest.raises(ValueError):
        claims.table([{**row, "verdict": "holds"}])


def test_map_values_match_metrics():
    from mlbook.metrics import mean_average_precision

    g = torch.Generator().manual_seed(3)
    y = (torch.rand(30, 3, generator=g) < 0.4).float()
    s = torch.rand(30, 3, generator=g)
    v = claims.map_values([s], y, claims.image_weights(30, 5))
    assert v.shape == (1, 6) and v[0, 0].item() == pytest.approx(mean_average_precision(s, y))


def test_published_delta():
    import pandas as pd

    ref = pd.DataFrame({"CF1": [62.1, 53.4], "OF1": [67.7, None]}, index=["Ours", "Resnet-baseline"])
    assert claims.published_delta(ref, "Ours", "Resnet-baseline", "CF1") == pytest.approx(8.7)
    assert claims.published_delta(ref, "Ours", "Resnet-baseline", "OF1") is None
    assert claims.published_delta(ref, "Ours", "KNN", "CF1") is None
