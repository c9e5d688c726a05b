"""The replication reading (the paper's Δ against the interval) and the power split, on hand-computed
cases (``mlbook.claims.replication``)."""
import io
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlbook import claims
from mlbook.claims import replication as rp


def m(low, high, published, *, direction="higher", test="superiority", margin=0.0, mde=1.0, metric="CF1", **extra):
    """A measurement as ``evaluate`` gives it (the fields the reading reads)."""
    return {"metric": metric, "delta": (low + high) / 2, "low": low, "high": high, "published_delta": published,
            "direction": direction, "test": test, "margin": margin, "mde": mde, "too_few_seeds": False,
            "metric_verdict": "not resolved", **extra}


# --- the replication reading -------------------------------------------------------------------

def test_the_papers_delta_inside_above_below_the_interval():
    assert rp.reading(m(1.0, 5.0, 3.0)) == rp.CONSISTENT
    assert rp.reading(m(1.0, 5.0, 5.0)) == rp.CONSISTENT           # an end is inside
    assert rp.reading(m(1.0, 5.0, 6.2)) == rp.SMALLER              # the paper's effect is bigger than ours
    assert rp.reading(m(1.0, 5.0, 0.4)) == rp.LARGER
    assert rp.reading(m(1.0, 5.0, None)) == rp.NO_PUBLISHED
    assert rp.reading(m(1.0, 5.0, float("nan"))) == rp.NO_PUBLISHED
    assert rp.reading(m(1.0, 5.0, 9.0, too_few_seeds=True)) == rp.NO_READING
    assert rp.reading(m(float("nan"), float("nan"), 9.0)) == rp.NO_READING


def test_lower_is_better_reads_on_the_signed_scale():
    """Δ = better − worse of an error rate: the claim's effect is −Δ. Interval [−5, −1] (the better row
    is 1 to 5 lower); the paper: 6.5 lower (Δ −6.5), so our effect is smaller than published; the
    paper's +2 (the better row worse) lies on the other side: ours is larger. The same numbers read
    "higher" give the opposite words."""
    assert rp.reading(m(-5.0, -1.0, -6.5, direction="lower")) == rp.SMALLER
    assert rp.reading(m(-5.0, -1.0, 2.0, direction="lower")) == rp.LARGER
    assert rp.reading(m(-5.0, -1.0, -3.0, direction="lower")) == rp.CONSISTENT
    assert rp.reading(m(-5.0, -1.0, -6.5)) == rp.LARGER
    assert rp.reading(m(-5.0, -1.0, 2.0)) == rp.SMALLER
    # the committed 06.lower_recall.coco row: OR Δ +7.0 [+4.9, +9.2], lower is better, paper −6.5
    assert rp.reading(m(4.87, 9.16, -6.5, direction="lower")) == rp.SMALLER


def test_claim_cell_and_frame_readings():
    both = [m(1.0, 5.0, 3.0), m(0.5, 1.5, 4.0, metric="OF1")]
    assert rp.claim_reading(both) == f"CF1: {rp.CONSISTENT}; OF1: {rp.SMALLER}"
    assert rp.claim_reading([m(1.0, 5.0, 3.0), m(0.0, 2.0, 1.0, metric="OF1")]) == rp.CONSISTENT
    assert rp.claim_reading([]) == ""
    rows = [{"id": "04.a.coco", "verdict": "not resolved", **x} for x in both]
    rows.append({"id": "04.b.coco", "verdict": "not resolved", **m(-5.0, -1.0, -6.5, direction="lower")})
    frame = pd.read_csv(io.StringIO(pd.DataFrame(rows).to_csv(index=False)))     # as chapter 00 reads it
    assert list(rp.readings(frame)) == [rp.CONSISTENT, rp.SMALLER, rp.SMALLER]
    counts = rp.reading_counts(frame.assign(chapter="04_order_free_rnn"))
    assert counts.loc["04_order_free_rnn"].to_dict() == {rp.CONSISTENT: 1, rp.SMALLER: 2, rp.LARGER: 0,
                                                         rp.NO_PUBLISHED: 0}


# --- the power split ---------------------------------------------------------------------------

def test_distance_to_the_boundary_the_papers_delta_must_clear():
    assert rp.distance(m(0, 1, 3.0)) == 3.0 and rp.distance(m(0, 1, -2.0)) == 2.0
    assert rp.distance(m(0, 1, -6.5, direction="lower")) == 6.5
    # non-inferiority, margin 2 (06.close_to_upper_bound): the paper's −1.2 is 0.8 above −2
    assert rp.distance(m(0, 1, -1.2, test="non-inferiority", margin=2.0)) == pytest.approx(0.8)
    # lower is better: the boundary is at +2 on Δ, −2 on the signed scale; the paper's Δ +1.2 is −1.2 signed
    assert rp.distance(m(0, 1, 1.2, test="non-inferiority", margin=2.0, direction="lower")) == pytest.approx(0.8)
    assert rp.distance(m(0, 1, 0.5, test="equivalence", margin=2.0)) == pytest.approx(1.5)
    assert math.isnan(rp.distance(m(0, 1, None)))


def test_not_resolved_with_and_without_power():
    seen, unseen, unsized = m(-1, 3, 4.0, mde=3.5), m(-1, 3, 4.0, mde=4.5), m(-1, 3, None, mde=0.1)
    assert rp.power_label([seen]) == rp.WITH_POWER
    assert rp.power_label([m(-1, 3, 4.0, mde=4.0)]) == rp.WITH_POWER           # no larger: with power
    assert rp.power_label([unseen]) == rp.WITHOUT_POWER
    assert rp.power_label([unsized]) == rp.NO_REFERENCE
    assert rp.power_label([seen, unseen]) == rp.WITHOUT_POWER
    assert rp.power_label([seen, unsized]) == rp.NO_REFERENCE
    assert rp.power_label([{**seen, "too_few_seeds": True}]) == rp.WITHOUT_POWER
    assert rp.power_label([seen], "supported") == "" and rp.power_label([], "not resolved") == ""
    # the quantifier decides which metrics count: the first, or any one
    assert rp.power_label([{**seen, "quantifier": "primary"}, unseen]) == rp.WITH_POWER
    assert rp.power_label([{**unseen, "quantifier": "primary"}, seen]) == rp.WITHOUT_POWER
    assert rp.power_label([{**unseen, "quantifier": "any"}, seen]) == rp.WITH_POWER
    assert rp.power_label([{**seen, "quantifier": "all"}, unseen]) == rp.WITHOUT_POWER
    frame = pd.DataFrame([{"id": "04.a.coco", "verdict": "not resolved", **seen},
                          {"id": "04.a.coco", "verdict": "not resolved", **unseen},
                          {"id": "04.b.coco", "verdict": "not resolved", **seen},
                          {"id": "04.c.coco", "verdict": "supported", **seen}])
    assert rp.power_labels(frame).to_dict() == {"04.a.coco": rp.WITHOUT_POWER, "04.b.coco": rp.WITH_POWER,
                                                "04.c.coco": ""}


def seeds_by_hand(s2: float, delta: float) -> int:
    """Two rows, seed variance s2 each, no image noise: SE_S = √(2 s2 / S), Welch df = 2 (S − 1)."""
    for S in range(3, 101):
        df = 2 * (S - 1)
        if (stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * math.sqrt(2 * s2 / S) <= delta:
            return S
    return math.inf


def test_seeds_for_80_percent_power_known_answer():
    """s² = 4 points² per row, the paper's Δ = 3: (t + t_.8) · SE is 3.013 at 8 seeds (df 14) and
    2.814 at 9 (df 16), so 9 seeds per row."""
    seedy = m(-1, 3, 3.0, seed_parts=[(4.0, 3), (4.0, 3)], image_var=0.0, n_resamples=1000)
    assert rp.seeds_for_power(seedy) == 9 == seeds_by_hand(4.0, 3.0)
    assert rp.seeds_text(seedy) == "9"
    assert rp.seeds_for_power({**seedy, "published_delta": 20.0}) == 3         # already at 3 seeds
    assert rp.seeds_for_power({**seedy, "published_delta": 0.5}) == seeds_by_hand(4.0, 0.5) == math.inf
    assert rp.seeds_text({**seedy, "published_delta": 0.5}) == "more than 100"
    assert rp.seeds_text({**seedy, "published_delta": None}) == rp.NO_PUBLISHED
    assert rp.seeds_text({**seedy, "published_delta": 0.0}).startswith("never")
    assert math.isnan(rp.seeds_for_power(m(-1, 3, 3.0)))                        # a file's row: no seed parts
    # paired rows: one part, the per-seed differences' variance, df S − 1
    paired = {**seedy, "seed_parts": [(4.0, 3)]}
    expected = next(S for S in range(3, 101) if (stats.t.ppf(.975, S - 1) + stats.t.ppf(.8, S - 1))
                    * math.sqrt(4.0 / S) <= 3.0)
    assert rp.seeds_for_power(paired) == expected


def test_image_part_dominates_more_test_images():
    """No seed variance, image variance v over R = 1000 resamples (df 999): the effect is seen at
    (t_.975 + t_.8) · √(v / k) ≤ Δ, k = v ((t_.975 + t_.8) / Δ)² times the test images."""
    imagey = m(-1, 3, 1.0, seed_parts=[(0.0, 3), (0.0, 3)], image_var=4.0, n_resamples=1000)
    assert rp.seeds_for_power(imagey) == math.inf
    q = stats.t.ppf(0.975, 999) + stats.t.ppf(0.8, 999)
    assert rp.images_for_power(imagey) == pytest.approx(4.0 * q ** 2, rel=0.011)
    assert rp.seeds_text(imagey).startswith("more than 100 (at 3 vs 3 seeds: ")
    assert rp.images_for_power({**imagey, "published_delta": 10.0}) == 1.0
    assert rp.images_for_power({**imagey, "seed_parts": [(400.0, 3), (400.0, 3)]}) == math.inf


# --- the chapters' tables ----------------------------------------------------------------------

def evaluated(direction="higher"):
    g = np.random.default_rng(0)
    values = {"CF1": (g.normal(0.6, 0.01, (3, 201)), g.normal(0.5, 0.01, (3, 201)))}
    c = claims.Claim(id="04.x.coco", chapter="04_order_free_rnn", dataset="coco", text="ours beats the baseline",
                     source="Table 2", better="Ours", worse="Baseline", metrics=("CF1",), direction=direction)
    return claims.evaluate(c, values, published={"CF1": 30.0})


def test_the_claims_table_reads_the_paper_after_the_verdict():
    row = evaluated()
    table = claims.table([row])
    columns = list(table.columns)
    assert columns.index(claims.REPLICATION) == columns.index("verdict") + 1
    assert table[claims.REPLICATION].iloc[0] == rp.SMALLER      # Δ ≈ +10 points, tight; the paper's +30
    assert claims.table([{**row, "measurements": []}])[claims.REPLICATION].iloc[0] == ""


def test_the_power_table_gives_the_seeds_for_the_papers_delta():
    row = evaluated()
    power = claims.power_table([row])
    assert power.columns[-1] == rp.SEEDS_COLUMN
    assert power[rp.SEEDS_COLUMN].iloc[0] == rp.seeds_text(row["measurements"][0]) == "3"
    row["measurements"][0]["published_delta"] = None
    assert claims.power_table([row])[rp.SEEDS_COLUMN].iloc[0] == rp.NO_PUBLISHED
