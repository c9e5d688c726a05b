"""The claims standard (mlbook.claims): the rule, the interval, its measured error rate, the claims data."""
import math
import re
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
import torch

from mlbook import claims, metrics, papers

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ROOT.parent / "shared" / "papers"
CHAPTERS = (*(p.chapter for p in papers.PAPERS), papers.COMPARISON_CHAPTER)   # every chapter with claims


def claim(**kw):
    base = dict(id="04.x.coco", chapter="04_order_free_rnn", dataset="coco", text="ours beats the baseline",
                source="Table 2", better="Ours", worse="Baseline", metrics=("CF1",))
    return claims.Claim(**{**base, **kw})


def seed_rows(per_seed, n_resamples=20, image_noise=0.0, seed=0):
    """[S, 1 + R]: each seed's value on the test set and on R resamples (+ optional resample noise)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.tensor(per_seed, dtype=torch.float64)[:, None].repeat(1, 1 + n_resamples)
    v[:, 1:] += image_noise * torch.randn(1, n_resamples, generator=g, dtype=torch.float64)
    return v


# --- the rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("low, high, kw, word", [
    (0.5, 2.0, {}, "supported"),
    (-2.0, -0.5, {}, "contradicted"),
    (-0.5, 0.5, {}, "not resolved"),
    (-2.0, -0.5, {"direction": "lower"}, "supported"),
    (0.5, 2.0, {"direction": "lower"}, "contradicted"),
    (math.nan, 1.0, {}, "not resolved"),
    (-1.5, 3.0, {"test": "non-inferiority", "margin": 2.0}, "supported"),       # low > -m
    (-2.5, 3.0, {"test": "non-inferiority", "margin": 2.0}, "not resolved"),
    (-5.0, -2.5, {"test": "non-inferiority", "margin": 2.0}, "contradicted"),   # high < -m
    (0.5, 1.5, {"test": "non-inferiority", "margin": 2.0, "direction": "lower"}, "supported"),  # better ≤ worse + m
    (-0.8, 0.9, {"test": "equivalence", "margin": 1.0}, "supported"),           # inside (−m, m)
    (-0.8, 1.2, {"test": "equivalence", "margin": 1.0}, "not resolved"),
    (1.1, 3.0, {"test": "equivalence", "margin": 1.0}, "contradicted"),         # clearly larger than m
    (-3.0, -1.1, {"test": "equivalence", "margin": 1.0, "direction": "lower"}, "contradicted"),
])
def test_verdict_branches(low, high, kw, word):
    assert claims.verdict(low, high, **kw) == word


def test_verdict_rejects_unknown_test():
    assert claims.verdict(1.0, 2.0, testable=False) == "not testable"
    with pytest.raises(ValueError):
        claims.verdict(1.0, 2.0, test="better")


S, C, N = "supported", "contradicted", "not resolved"


@pytest.mark.parametrize("words, quantifier, word", [
    ([S, S], "all", S), ([S, N], "all", N), ([S, C], "all", C), ([N, C], "all", C), ([C, C], "all", C),
    ([S, N], "any", S), ([S, C], "any", S), ([N, C], "any", N), ([C, C], "any", C), ([N, N], "any", N),
    ([S, C], "primary", S), ([N, S], "primary", N), ([C, S], "primary", C),
    ([S, C], "both", N), ([C, C], "both", C), ([S, S], "both", S),            # the old symmetric rule
    ([C], "all", C), ([S], "any", S), ([N], "primary", N),
    (["not testable", S], "any", "not testable"),
])
def test_combine_follows_the_quantifier(words, quantifier, word):
    assert claims.combine(words, quantifier) == word


def test_combine_rejects_nothing_and_unknown_quantifiers():
    with pytest.raises(ValueError):
        claims.combine([], "all")
    with pytest.raises(ValueError):
        claims.combine([S, S], "most")


def test_holm_across_metrics_by_hand():
    """Δ/SE at df 10: 2.5 clears t_.975 = 2.23 (one metric) but not t_.9875 = 2.63 (Holm's first of two)."""
    sides = lambda deltas, q, **kw: claims.standard.metric_sides(deltas, [1.0] * len(deltas), [10.0] * len(deltas),  # noqa: E731
                                                                 q, **kw)
    one = sides([-2.5], "all")
    assert one["contradicted"].tolist() == [True] == one["contradicted_unadjusted"].tolist()   # k = 1: verdict's
    two = sides([-2.5, 1.0], "all")
    assert two["contradicted_unadjusted"].tolist() == [True, False] and two["contradicted"].tolist() == [False, False]
    # step-down: the smaller p (−3.0) at 1 − .05/2, then the next at the metric's own level
    assert sides([-2.5, -3.0], "all")["contradicted"].tolist() == [True, True]
    assert sides([2.5, 1.0], "any")["supported"].tolist() == [False, False]
    assert sides([2.5, 3.0], "any")["supported"].tolist() == [True, True]
    assert sides([2.5, 3.0], "all")["supported"].tolist() == [True, True]              # every one: own level
    assert sides([-2.5, 1.0], "primary")["contradicted"].tolist() == [True, False]     # no Holm
    # a metric without a verdict (too few seeds) is never held, and counts in k
    assert sides([-9.0, 1.0], "all", usable=[False, True])["contradicted"].tolist() == [False, False]
    # lower is better: the sign flips; equivalence: TOST inside, the nearer outside side
    assert sides([3.0, -1.0], "all", direction="lower")["contradicted"].tolist() == [True, False]
    eq = sides([0.0, 6.0], "all", test="equivalence", margin=3.5)
    assert eq["supported"].tolist() == [True, False] and eq["contradicted"].tolist() == [False, False]
    assert sides([0.0, 6.5], "all", test="equivalence", margin=3.5)["contradicted"].tolist() == [False, True]


def test_one_sided_p_values_match_the_interval():
    from scipy import stats

    p_sup, p_con = claims.standard.one_sided_p([2.5, -1.0], [1.0, 1.0], [10.0, 10.0])
    assert p_sup[0] == pytest.approx(stats.t.sf(2.5, 10)) and p_con[1] == pytest.approx(stats.t.sf(1.0, 10))
    ni = claims.standard.one_sided_p(-1.0, 0.5, 8.0, test="non-inferiority", margin=2.0)
    assert ni[0] == pytest.approx(stats.t.sf(2.0, 8)) and ni[1] == pytest.approx(stats.t.cdf(2.0, 8))
    eq = claims.standard.one_sided_p(0.5, 1.0, 20.0, test="equivalence", margin=3.0)
    assert eq[0] == pytest.approx(stats.t.sf(2.5, 20)) and eq[1] == pytest.approx(stats.t.cdf(2.5, 20))
    assert claims.standard.one_sided_p(math.nan, 1.0, 5.0)[0] == 1.0


# --- the interval -----------------------------------------------------------------------------

def test_hand_case_gives_the_welch_interval():
    # A = [.50, .51, .52] vs B = [.49, .50, .51], no image noise: Δ = 1 point, SE = 0.816, df = 4
    r = claims.interval(seed_rows([.50, .51, .52]), seed_rows([.49, .50, .51]))
    assert 100 * r["delta"] == pytest.approx(1.0)
    assert r["df"] == pytest.approx(4.0) and r["image_var"] == pytest.approx(0.0)
    assert (100 * r["low"], 100 * r["high"]) == (pytest.approx(-1.267, abs=1e-3), pytest.approx(3.267, abs=1e-3))
    assert r["seeds"] == (3, 3) and r["seed_deltas"] == pytest.approx([0.01] * 3)
    with pytest.raises(ValueError):
        claims.interval(seed_rows([.5, .5, .5]), seed_rows([.5, .5, .5], n_resamples=5))


def test_image_part_widens_the_interval():
    no_images = claims.interval(seed_rows([.50, .51, .52]), seed_rows([.49, .50, .51]))
    noisy = claims.interval(seed_rows([.50, .51, .52], 200, 0.01), seed_rows([.49, .50, .51], 200, 0.01, seed=1))
    assert noisy["image_var"] > 0 and noisy["se"] ** 2 == pytest.approx(noisy["seed_var"] + noisy["image_var"])
    assert noisy["high"] - noisy["low"] > no_images["high"] - no_images["low"]


def test_fixed_and_paired_rows():
    ours = seed_rows([.50, .52, .54], 50, 0.01)
    chance = torch.full((1, 51), 0.5, dtype=torch.float64)          # a constant: no seeds, no image noise
    r = claims.interval(ours, chance, fixed_worse=True)
    assert r["seeds"] == (3, 1) and r["seed_parts"] == [(pytest.approx(4e-4), 3)] and r["seed_deltas"] == []
    # two readings of the same models: the seed spread cancels in the per-seed differences
    other = ours - 0.01 + 1e-4 * torch.tensor([[1.0], [-1.0], [0.0]])
    paired = claims.interval(ours, other, paired=True)
    unpaired = claims.interval(ours, other)
    assert paired["low"] > 0 and unpaired["low"] < 0 and paired["df"] == pytest.approx(2.0, rel=0.01)


# --- evaluate: seeds, replicates, evidence ----------------------------------------------------

def test_fewer_than_three_seeds_gives_no_verdict():
    big = {"CF1": (seed_rows([.70, .71]), seed_rows([.40, .41]))}
    row = claims.evaluate(claim(), big)
    assert row["verdict"] == "not resolved" and "fewer than 3 training seeds" in row["evidence"]
    fixed = claim(worse="chance", fixed=("chance",))
    row = claims.evaluate(fixed, {"CF1": (seed_rows([.70, .71, .72]), torch.full((1, 21), .5, dtype=torch.float64))})
    assert row["verdict"] == "supported" and "3 seeds vs fixed" in row["evidence"]


def per_image_values(n_images, shift, seed=0):
    """A callable weights -> values: a metric that is the mean over images of per-image values."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n_images, generator=g, dtype=torch.float64)
    b = torch.randn(n_images, generator=g, dtype=torch.float64)
    better, worse = torch.stack([a + 0.001 * s for s in range(3)]), torch.stack([b + 0.001 * s for s in range(3)])

    def values(weights):
        mean = lambda x: x @ (weights / weights.sum(1, keepdim=True)).T  # noqa: E731
        return {"CF1": (mean(better) + shift, mean(worse))}
    return values, float((a - b).mean())


def test_replicates_escalate_only_near_a_boundary():
    n = 100
    values, raw = per_image_values(n, 0.0)
    first = claims.interval(*values(metrics.image_weights(n, claims.N_RESAMPLES, 0))["CF1"])
    # shift the better row so that the low end sits on 0 at 1,000 replicates
    near, _ = per_image_values(n, -first["low"])
    row = claims.evaluate(claim(), near, n_images=n, scale=1.0)
    assert row["measurements"][0]["n_resamples"] == claims.MAX_RESAMPLES
    assert "10,000 image resamples" in row["evidence"]
    far, _ = per_image_values(n, 1.0 - raw)                          # Δ = 1, SE about 0.14
    row = claims.evaluate(claim(), far, n_images=n, scale=1.0)
    assert row["measurements"][0]["n_resamples"] == claims.N_RESAMPLES and row["verdict"] == "supported"
    with pytest.raises(ValueError):
        claims.evaluate(claim(), far)                                 # a callable needs n_images


def test_ends_near_a_boundary_show_their_side():
    assert claims.evaluation._end(0.003, (0.0,)) == "+0.003"
    assert claims.evaluation._end(-0.04, (0.0,)) == "-0.04"
    assert claims.evaluation._end(6.2345, (0.0,)) == "+6.2"
    assert claims.evaluation._end(-1.98, (-2.0,)) == "-1.98"


def test_non_inferiority_and_equivalence_read_their_margin():
    ni = claim(test="non-inferiority", margin=2.0, margin_source="book's choice: test")
    # Δ = -1 point, interval about [-1.6, -0.4]: worse, but within 2 points; clearly more than 0.3
    values = {"CF1": (seed_rows([.499, .500, .501], 50, 0.002), seed_rows([.509, .510, .511], 50, 0.002, seed=3))}
    assert claims.evaluate(claim(), values)["verdict"] == "contradicted"
    row = claims.evaluate(ni, values)
    assert row["verdict"] == "supported" and row["test"] == "non-inferiority, margin 2"
    eq = claim(test="equivalence", margin=2.0, margin_source="book's choice: test")
    assert claims.evaluate(eq, values)["verdict"] == "supported"
    too_far = claim(test="equivalence", margin=0.3, margin_source="x")
    assert claims.evaluate(too_far, values)["verdict"] == "contradicted"


def test_evaluate_row_tidy_and_table():
    weights = metrics.image_weights(50, 200, seed=1)
    g = torch.Generator().manual_seed(2)
    y = (torch.rand(50, 4, generator=g) < 0.4).float()
    good = [y.bool() for _ in range(3)]
    bad = [torch.rand(50, 4, generator=g) < 0.5 for _ in range(3)]
    values = {m: (metrics.set_metric_values(good, y, weights, m), metrics.set_metric_values(bad, y, weights, m))
              for m in ("CF1", "OF1")}
    c = claim(metrics=("CF1", "OF1"), note="a confound", quantifier="all")
    row = claims.evaluate(c, values, published={"CF1": 8.7}, secondary={"mAP": 1.25})
    assert row["verdict"] == "supported" and row["id"] == "04.x.coco" and row["quantifier"] == "all"
    for words in ("paper's table +8.7", "(note: a confound)", "→ supported", "t, df", "3 vs 3 seeds", "detects ≥",
                  "200 image resamples", "shown, not voted: mAP +1.2", "all metrics must hold (Holm across 2)"):
        assert words in row["evidence"]
    assert {m["quantifier"] for m in row["measurements"]} == {"all"}
    flipped = claims.evaluate(claim(metrics=("OF1",)), {"OF1": values["OF1"][::-1]})
    untestable = claims.evaluate(c, {}, testable=False, why_not="no boxes")
    assert untestable["evidence"] == "no boxes (note: a confound)" and untestable["measurements"] == []
    t = claims.table([row, flipped, untestable])
    display = list(claims.DISPLAY)
    assert list(t.columns) == display[:display.index("verdict") + 1] + [claims.REPLICATION] + display[
        display.index("verdict") + 1:]
    assert list(t["verdict"]) == ["supported", "contradicted", "not testable"]
    numbers = claims.tidy([row, flipped, untestable])
    assert list(numbers["metric"]) == ["CF1", "OF1", "OF1"] and numbers["published_delta"].iloc[0] == 8.7
    assert list(numbers["quantifier"]) == ["all", "all", "primary"]
    assert numbers["seeds_better"].tolist() == [3, 3, 3] and (numbers["low"] < numbers["delta"]).all()
    with pytest.raises(ValueError):
        claims.table([{**row, "verdict": "holds"}])
    with pytest.raises(ValueError):
        claims.table([{**row, "evidence": "a | b"}])


# --- the measured error rate ------------------------------------------------------------------

N_SIM = 4000


@pytest.mark.parametrize("noise", ["seed", "image", "both"])
@pytest.mark.parametrize("n_seeds", [3, 5, 10])
def test_false_verdict_rate_is_at_most_five_percent(n_seeds, noise):
    r = claims.false_verdict_rate(n_seeds, noise, n_sim=N_SIM, n_images=200)
    nominal_se = math.sqrt(0.05 * 0.95 / N_SIM)
    assert r["rate"] <= 0.05 + 2 * nominal_se, r
    assert r["rate"] == pytest.approx(r["supported"] + r["contradicted"])


ONE_SIDE = 0.025 + 3 * math.sqrt(0.025 * 0.975 / N_SIM)     # each side's nominal rate and 3 Monte Carlo SEs


@pytest.mark.parametrize("quantifier", claims.QUANTIFIERS)
@pytest.mark.parametrize("n_metrics", [2, 6])
@pytest.mark.parametrize("correlation", [0.0, 0.8])
@pytest.mark.parametrize("n_seeds", [3, 5])
def test_false_verdicts_per_quantifier(n_seeds, correlation, n_metrics, quantifier):
    """Seed and image noise, no true effect: wrong supported and wrong contradicted each at most
    the nominal 2.5% (and 3 MC SEs), whatever the quantifier; without Holm, "all" with six
    independent metrics would say contradicted 14% of the time. The settings share one
    simulation of six metrics per (seeds, correlation) (``metrics_judged``)."""
    r = claims.false_verdict_rate(n_seeds, "both", n_sim=N_SIM, n_images=200, n_metrics=6, correlation=correlation,
                                  quantifier=quantifier, metrics_judged=n_metrics)
    assert r["supported"] <= ONE_SIDE and r["contradicted"] <= ONE_SIDE, r
    assert r["n_metrics"] == n_metrics


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_paired_interval_false_verdict_rate(n_seeds):
    """Seed-paired rows (a shared per-seed effect, SD 0.3, on top of each row's own seed noise 0.1
    and image noise), no true effect: the paired interval's wrong supported and contradicted each
    at most 2.5% and 3 MC SEs, the total near 5% (measured 5.3% and 4.8%); the unpaired interval
    on the same data counts the shared effect twice and errs less (measured 0.6% and 0.3%)."""
    r = claims.power.paired_false_verdict_rate(n_seeds, n_sim=N_SIM, n_images=200)
    assert r["supported"] <= ONE_SIDE and r["contradicted"] <= ONE_SIDE, r
    assert r["rate"] >= 0.05 - 4 * math.sqrt(0.05 * 0.95 / N_SIM), r           # not conservative
    unpaired = claims.power.paired_false_verdict_rate(n_seeds, n_sim=N_SIM, n_images=200, paired=False)
    assert unpaired["rate"] < r["rate"] and unpaired["rate"] <= 0.05, unpaired


#: measured shares supported at a true effect of 3 SDs of Δ (3 seeds, seed and image noise, independent
#: metrics), and the bound a few Monte Carlo SEs (0.007 at most) below: a rule that decides less fails
POWER_AT_3 = {("primary", 1): (0.790, 0.765), ("all", 2): (0.626, 0.60), ("all", 6): (0.246, 0.225),
              ("any", 2): (0.893, 0.875), ("any", 6): (0.985, 0.975)}


@pytest.mark.parametrize("quantifier, n_metrics", list(POWER_AT_3))
def test_power_at_three_standard_errors(quantifier, n_metrics):
    r = claims.power.verdict_rates(3, "both", n_sim=N_SIM, n_images=200, n_metrics=6, correlation=0.0,
                                   quantifier=quantifier, metrics_judged=n_metrics, effect=3.0)
    assert r["supported"] >= POWER_AT_3[quantifier, n_metrics][1], r
    assert r["contradicted"] <= 0.001, r


@pytest.mark.parametrize("noise, at_least", [("seed", 0.49), ("image", 0.83), ("both", 0.755)])
def test_one_metric_power_and_coverage(noise, at_least):
    """One metric, 3 seeds: supported at a true effect of 3 SDs at least ``at_least`` (measured
    0.518, 0.854, 0.784, each bound about 4 Monte Carlo SEs below: seed noise alone has df near
    3), and the 95% interval holds the true Δ in at least 93% of the experiments at true effects
    of 1 and 3 SDs (measured 0.957, 0.947, 0.950)."""
    for effect in (1.0, 3.0):
        r = claims.power.verdict_rates(3, noise, n_sim=N_SIM, n_images=200, effect=effect)
        assert r["coverage"] >= 0.93, r
    assert r["supported"] >= at_least, r


# --- power and multiplicity -------------------------------------------------------------------

def test_mde_and_power_table():
    assert claims.mde(1.0, math.inf) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert claims.mde(1.0, 4) > claims.mde(1.0, 40) > claims.mde(1.0, math.inf)
    seedy = claims.evaluate(claim(), {"CF1": (seed_rows([.50, .53, .56], 100, 0.002),
                                              seed_rows([.49, .50, .51], 100, 0.002, seed=5))})
    power = claims.power_table([seedy])
    assert list(power.columns) == ["id", "metric", "measured Δ", "3 seeds", "5 seeds", "10 seeds",
                                   claims.replication.SEEDS_COLUMN]
    at = power.iloc[0]
    assert at["3 seeds"] > at["5 seeds"] > at["10 seeds"] > 0
    assert at["3 seeds"] == pytest.approx(seedy["measurements"][0]["mde"], abs=0.06)


def test_multiplicity():
    m = claims.multiplicity(14, 26)
    assert m["expected_wrong"] == pytest.approx(0.7) and m["p_at_least_one"] == pytest.approx(1 - 0.95 ** 14)
    assert m["expected_wrong_intervals"] == pytest.approx(1.3)
    assert "14 claims" in m["text"] and "51%" in m["text"]


# --- the claims data --------------------------------------------------------------------------

def test_claims_data_loads_and_is_complete():
    all_claims = claims.load()
    assert len({c.id for c in all_claims}) == len(all_claims)
    for chapter in CHAPTERS:
        assert claims.load(chapter), chapter
    close = claims.get("06.close_to_upper_bound.voc")
    assert (close.test, close.margin, close.better, close.worse) == ("non-inferiority", 2.0, "RLSD", "RLSD+ft-RPN")
    assert "only 1.2% lower" in close.margin_source
    assert claims.get("07.k_little_effect.nuswide").test == "equivalence"
    with pytest.raises(KeyError):
        claims.get("99.nothing.coco")


def write(tmp_path, name, rows):
    path = tmp_path / name
    pd.DataFrame(rows, columns=list(claims.COLUMNS) + ["registered"]).to_csv(path, index=False)
    return path


GOOD = {"id": "06.a.voc", "chapter": "06_rlsd", "dataset": "voc", "text": "t", "quoted": "true", "source": "s",
        "better": "RLSD", "worse": "CNN+LSTM", "metrics": "mAP", "test": "superiority", "margin": 0,
        "margin_source": "", "direction": "higher", "fixed": "", "paired": "false", "note": "",
        "registered": "2026-11-28", "quantifier": "primary"}


@pytest.mark.parametrize("change, field", [
    ({"test": "better"}, "test"),
    ({"direction": "up"}, "direction"),
    ({"metrics": ""}, "metrics"),
    ({"test": "non-inferiority"}, "margin"),                         # a margin is required
    ({"test": "equivalence", "margin": 1.0}, "margin_source"),       # and its words
    ({"margin": "two"}, "margin"),
    ({"quoted": "yes"}, "quoted"),
    ({"fixed": "chance"}, "fixed"),
    ({"dataset": "imagenet"}, "dataset"),
    ({"id": "06.a.coco"}, "id"),
    ({"quantifier": ""}, "quantifier"),                               # required, one of QUANTIFIERS
    ({"quantifier": "most", "metrics": "CF1;OF1"}, "quantifier"),
])
def test_load_names_file_line_and_field(tmp_path, change, field):
    path = write(tmp_path, "claims.csv", [GOOD, {**GOOD, "id": "06.b.voc", **change}])
    with pytest.raises(ValueError, match=rf"claims\.csv, line 3, field '{field}'"):
        claims.load(paths=[path])


AMENDED = {**GOOD, "amended": "2026-11-29", "amendment_reason": "the rows are two readings of one model",
           "paired": "true"}


def test_original_paired_is_kept_and_optional(tmp_path):
    # files without the column (all written before it) load as before
    assert claims.load(paths=[write(tmp_path, "claims.csv", [GOOD])])[0].original_paired == ""
    path = tmp_path / "claims.csv"
    pd.DataFrame([{**AMENDED, "original_paired": "False"}, {**AMENDED, "id": "06.b.voc", "original_paired": ""},
                  {**AMENDED, "id": "06.c.voc", "original_paired": "true", "paired": "false"}]).to_csv(path, index=False)
    to_paired, unchanged, to_unpaired = claims.load(paths=[path])
    assert to_paired.paired and to_paired.original_paired == "false" and not to_paired.original().paired
    assert to_paired.original().original_paired == "" and to_paired.original() != to_paired
    assert unchanged.original().paired and to_unpaired.original().paired and not to_unpaired.paired
    assert "original_paired" in claims.AMENDMENT
    row = claims.evaluate(to_paired, {"mAP": (seed_rows([.53, .54, .55]), seed_rows([.50, .51, .52]))})
    assert row["original verdict"] in claims.VERDICTS and ", unpaired" in row["original test (amended claims)"]


def test_original_fixed_rows_are_kept(tmp_path):
    # registered with a fixed row (no training seed), amended when that row came to vary by seed
    path = tmp_path / "claims.csv"
    pd.DataFrame([{**AMENDED, "original_paired": "false", "original_fixed": "CNN+LSTM"}]).to_csv(path, index=False)
    claim, = claims.load(paths=[path])
    assert claim.paired and not claim.fixed
    assert claim.original().fixed == ("CNN+LSTM",) and not claim.original().paired
    row = claims.evaluate(claim, {"mAP": (seed_rows([.53, .54, .55]), seed_rows([.50, .51, .52]))})
    assert ", unpaired, CNN+LSTM fixed" in row["original test (amended claims)"]
    assert claims.load(paths=[write(tmp_path, "old.csv", [GOOD])])[0].original_fixed == ()   # the column may be absent


@pytest.mark.parametrize("change, field", [
    ({"original_fixed": "VGG"}, "original_fixed"),                                    # a row the original does not compare
    ({"original_fixed": "CNN+LSTM", "original_paired": "true", "paired": "false"}, "original_paired"),
    ({"original_paired": "yes"}, "original_paired"),
    ({"original_paired": "true", "amended": "", "amendment_reason": ""}, "amended"),   # needs the date
    ({"original_paired": "true", "paired": "false", "fixed": "CNN+LSTM"}, "original_paired"),
])
def test_original_paired_is_validated(tmp_path, change, field):
    path = tmp_path / "claims.csv"
    pd.DataFrame([GOOD, {**AMENDED, "id": "06.b.voc", **change}]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=rf"claims\.csv, line 3, field '{field}'"):
        claims.load(paths=[path])


def test_load_rejects_duplicates_and_foreign_chapters(tmp_path):
    assert [c.id for c in claims.load(paths=[write(tmp_path, "claims.csv", [GOOD])])] == ["06.a.voc"]
    with pytest.raises(ValueError, match="line 3, field 'id'"):
        claims.load(paths=[write(tmp_path, "claims.csv", [GOOD, GOOD])])
    with pytest.raises(ValueError, match="field 'chapter'"):
        claims.load(paths=[write(tmp_path, "claims_05_cadm.csv", [GOOD])])


def normalised(text):
    """Straight quotes, no citation markers, one space, lower case; line-break hyphens kept ('Multi-CNN')."""
    text = unicodedata.normalize("NFKC", text).replace("\\lambda", "λ").replace("$", "").replace("*", "")
    text = text.replace("‘", "'").replace("’", "'").replace("“", '"').replace("”", '"').replace("…", "...")
    text = re.sub(r"\s*\[\d+(, ?\d+)*\]", "", re.sub(r"-\s*\n\s*", "-", text))
    text = re.sub(r"\(\s*(\w)\s*\)", r"(\1)", text)                                # "image (F )"
    return re.sub(r"\s+", " ", text).lower()


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the papers' texts are not in this checkout")
def test_quoted_texts_are_the_papers_words():
    files = {"04": "order_free_rnn_aaai2018.txt", "05": "cadm_label_correlation_embedding_icme2019.txt",
             "06": "rlsd_regional_latent_semantic_dependencies.txt", "07": "image_dependent_transformation_ranking.txt"}
    missing = []
    for c in claims.load():
        if not c.quoted:       # the book's own questions (chapter 08's are all its own) quote no paper
            continue
        raw = (PAPERS / files[c.id[:2]]).read_text(encoding="utf-8")
        smart = re.sub(r"-\s*\n\s*(?![A-Z])", "", raw)   # "de-\npendencies" joined, "Multi-\nCNN" kept
        papers = (normalised(raw), normalised(re.sub(r"-\s*\n\s*", "", raw)), normalised(smart))
        parts = [p.strip() for p in normalised(c.text).split("...")]
        if c.quoted and not all(any(p in paper for paper in papers) for p in parts):   # each part, either reading
            missing.append(c.id)
    assert not missing, f"quoted texts not found in the papers: {missing}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_listed_claim_has_a_row(chapter):
    path = ROOT / "figures" / chapter / "table_claims.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    written = set(table["id"]) if "id" in table else set()
    missing = [c.id for c in claims.load(chapter) if c.id not in written]
    assert not missing, f"{chapter}: no row for {missing}"


# --- published numbers and resampled metrics --------------------------------------------------

def test_map_values_match_metrics():
    from mlbook.metrics import mean_average_precision

    g = torch.Generator().manual_seed(3)
    y = (torch.rand(30, 3, generator=g) < 0.4).float()
    s = torch.rand(30, 3, generator=g)
    v = metrics.map_values([s], y, metrics.image_weights(30, 5))
    assert v.shape == (1, 6) and v[0, 0].item() == pytest.approx(mean_average_precision(s, y))


def test_resampled_ap_reuses_a_row_only_for_the_same_resamples():
    from mlbook.metrics import average_precision

    g = torch.Generator().manual_seed(4)
    y = (torch.rand(40, 3, generator=g) < 0.4).float()
    s = torch.rand(40, 3, generator=g)
    for seed in (0, 1, 0):      # the third call hits the first's row; the second must not
        w = metrics.image_weights(40, 7, seed)
        assert torch.equal(metrics.map_values([s], y, w)[0], average_precision(s, y, weights=w).nanmean(1))


def test_image_weights_default_is_the_claims_standard():
    import inspect

    # metrics sits below claims, so the default R of image_weights is a literal there
    assert inspect.signature(metrics.image_weights).parameters["n_resamples"].default == claims.N_RESAMPLES
    w = metrics.image_weights(5)
    assert w.shape == (1 + claims.N_RESAMPLES, 5) and torch.equal(w[0], torch.ones(5, dtype=torch.float64))


def test_published_delta():
    ref = pd.DataFrame({"CF1": [62.1, 53.4], "OF1": [67.7, None]}, index=["Ours", "Resnet-baseline"])
    assert claims.published_delta(ref, "Ours", "Resnet-baseline", "CF1") == pytest.approx(8.7)
    assert claims.published_delta(ref, "Ours", "Resnet-baseline", "OF1") is None
    assert claims.published_delta(ref, "Ours", "KNN", "CF1") is None
