"""What a claim's interval says about the paper's own number, and what a run could have seen.

**The replication reading** (``reading``): the paper's own Δ (``published_delta``, from its
tables, same rows, same metric) against this run's interval [low, high] on the same metric.
Both are read on the scale the rule uses (``standard.verdict``): Δ signed so that positive
favours the claim (``direction`` "lower": −Δ, and the interval's ends swap). The paper's Δ inside
the interval (ends included): "consistent with the paper"; above it: "effect smaller than
published" (this run's effect, in the claim's favour, is smaller than the paper's, beyond its
noise); below it: "effect larger than published". No reading without a published Δ, nor from
an interval the rule gives no verdict on (fewer than ``MIN_SEEDS`` training seeds, no finite
interval). A consistent reading is not a confirmation: a wide interval holds the paper's Δ and
zero alike, which is what the power split below says.

**Not resolved, split by power** (``power_label``): whether the run could have seen the paper's
effect, had it been the truth. The effect to be seen is the paper's signed Δ's distance to the
nearest decision boundary of the claim's test (``distance``: |Δ| for superiority; |Δ + m| for
non-inferiority with margin m; the nearer of ±m for equivalence); the run could see it if its own
minimum detectable effect at its seeds (``standard.mde``: 80% power at the book's level) is no
larger. A not resolved claim is "not resolved, with power" when the metrics that decide it (its
``quantifier``: all of them, the first, or any one) could have seen the paper's effect, "not
resolved, without power" when one of them could not (or got no verdict for want of seeds), and
"not resolved, no published Δ" when neither applies for want of the paper's number.

**Seeds for 80% power** (``seeds_for_power``): the smallest number of training seeds per row S
(``MIN_SEEDS`` to ``max_seeds``) whose interval would detect the paper's effect with 80% power,
the measured seed variances rescaled to S and the image part unchanged (as ``power.power_table``):
the smallest S with (t_{.975, df_S} + t_{.8, df_S}) · SE_S ≤ distance. When no S does (the image
part alone is too wide), ``images_for_power`` gives the multiple of the test set that would, at
the current seeds (the image part scales as 1 / images).

Everything works on measurement dicts (``evaluate``'s ``"measurements"``) and on the rows of a
``claims_measurements.csv`` frame (``tables.tidy``), so that chapter 00 recomputes the readings
from the files (no seed parts there: the seeds needed are the chapters' power tables' column).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import pandas as pd
import torch

from .standard import LEVEL, MIN_SEEDS, NOT_RESOLVED, _welch, load, mde

CONSISTENT = "consistent with the paper"
SMALLER = "effect smaller than published"
LARGER = "effect larger than published"
NO_PUBLISHED = "no published Δ"
NO_READING = "no reading (no verdict: too few seeds or no interval)"
READINGS = (CONSISTENT, SMALLER, LARGER, NO_PUBLISHED)       # NO_READING only where the rule gives no verdict
REPLICATION = "replication (paper's Δ vs the interval)"        # the claims table's column

WITH_POWER = "not resolved, with power"
WITHOUT_POWER = "not resolved, without power"
NO_REFERENCE = "not resolved, no published Δ"
POWER_SPLIT = (WITH_POWER, WITHOUT_POWER, NO_REFERENCE)
POWER = 0.8
MAX_SEEDS = 100
SEEDS_COLUMN = "seeds for 80% power at the paper's Δ"         # the power table's column


def _number(x) -> float:
    """A float, NaN for None / NaN / an empty cell."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return math.nan
    return x


def _published(m: Mapping) -> float:
    return _number(m.get("published_delta"))


def _sign(m: Mapping) -> int:
    return -1 if m.get("direction") == "lower" else 1


def _few(m: Mapping) -> bool:
    few = m.get("too_few_seeds", False)
    return bool(few) and str(few).lower() != "false"


# --- the replication reading ------------------------------------------------------------------

def reading(m: Mapping) -> str:
    """One measurement's replication reading (one of ``READINGS``, or ``NO_READING``)."""
    pub = _published(m)
    if math.isnan(pub):
        return NO_PUBLISHED
    low, high = _number(m.get("low")), _number(m.get("high"))
    if _few(m) or not (math.isfinite(low) and math.isfinite(high)):
        return NO_READING
    s = _sign(m)
    low, high = sorted((s * low, s * high))
    p = s * pub
    return SMALLER if p > high else LARGER if p < low else CONSISTENT


def claim_reading(measurements: Iterable[Mapping]) -> str:
    """A claim's cell: its metrics' reading when they agree, else each metric's ("CF1: …; OF1: …");
    "" for a claim without measurements (not testable)."""
    words = [(m["metric"], reading(m)) for m in measurements]
    if not words:
        return ""
    if len({w for _, w in words}) == 1:
        return words[0][1]
    return "; ".join(f"{metric}: {w}" for metric, w in words)


def readings(frame: pd.DataFrame) -> pd.Series:
    """``reading`` of every row of a claims_measurements frame (files written before the
    ``direction`` column take it from the claims data)."""
    if frame.empty:
        return pd.Series(dtype=object, name="reading")
    return pd.Series([reading(r) for r in _complete(frame).to_dict("records")], index=frame.index, name="reading")


def reading_counts(frame: pd.DataFrame, by: str = "chapter") -> pd.DataFrame:
    """Per value of ``by``: how many intervals (claim × primary metric) read each of ``READINGS``
    (and ``NO_READING``, a column only where some interval got no verdict)."""
    if frame.empty:
        return pd.DataFrame(columns=list(READINGS), dtype=int)
    words = readings(frame)
    counts = pd.crosstab(frame[by], words)
    columns = list(READINGS) + ([NO_READING] if NO_READING in counts else [])
    return counts.reindex(columns=columns, fill_value=0).astype(int)


# --- what the run could have seen ------------------------------------------------------------

def distance(m: Mapping) -> float:
    """The paper's signed Δ's distance (points) to the nearest decision boundary of the claim's
    test: the effect a run must detect to reach the paper's verdict (NaN without a published Δ)."""
    pub = _published(m)
    if math.isnan(pub):
        return math.nan
    p, margin = _sign(m) * pub, _number(m.get("margin"))
    margin = 0.0 if math.isnan(margin) else margin
    bounds = {"non-inferiority": (-margin,), "equivalence": (-margin, margin)}.get(m.get("test"), (0.0,))
    return min(abs(p - b) for b in bounds)


def could_see(m: Mapping) -> bool | None:
    """Whether the run's own minimum detectable effect (``mde``, its seeds) is no larger than the
    paper's effect (``distance``); None without a published Δ; False with too few seeds for a
    verdict or no interval."""
    d = distance(m)
    if math.isnan(d):
        return None
    detects = _number(m.get("mde"))
    return not _few(m) and math.isfinite(detects) and detects <= d


def power_label(measurements: Iterable[Mapping], verdict: str = NOT_RESOLVED) -> str:
    """A claim's place in ``POWER_SPLIT`` if it is not resolved ("" otherwise), by the metrics its
    ``quantifier`` (a measurement's key or column) lets decide: "primary", the first metric; "any",
    with power if one metric could have seen the paper's effect; "all" (and a file without the
    column), every metric: without power if one could not, else no published Δ if one lacks it,
    else with power."""
    if verdict != NOT_RESOLVED:
        return ""
    measurements = list(measurements)
    seen = [could_see(m) for m in measurements]
    if not seen:
        return ""
    quantifier = measurements[0].get("quantifier")
    if quantifier == "primary":
        seen = seen[:1]
    elif quantifier == "any" and True in seen:
        return WITH_POWER
    return WITHOUT_POWER if False in seen else NO_REFERENCE if None in seen else WITH_POWER


def power_labels(frame: pd.DataFrame) -> pd.Series:
    """``power_label`` of every claim of a claims_measurements frame, by id in file order."""
    if frame.empty:
        return pd.Series(dtype=object, name="power")
    out = {i: power_label(rows.to_dict("records"), rows["verdict"].iloc[0])
           for i, rows in _complete(frame).groupby("id", sort=False)}
    return pd.Series(out, dtype=object, name="power")


def mde_at(m: Mapping, S: int | None = None, image_factor: float = 1.0, level: float = LEVEL,
            power: float = POWER) -> float:
    """``mde`` of a measurement with its seed parts rescaled to S seeds per row (None: as
    measured) and its image variance divided by ``image_factor``."""
    parts = [(torch.tensor(float(s2), dtype=torch.float64), int(S or n)) for s2, n in m["seed_parts"]]
    se, df = _welch(parts, torch.tensor(float(m["image_var"]) / image_factor, dtype=torch.float64),
                    int(m["n_resamples"]))
    return mde(float(se), float(df), level, power)


def seeds_for_power(m: Mapping, max_seeds: int = MAX_SEEDS, level: float = LEVEL, power: float = POWER) -> float:
    """The smallest S (``MIN_SEEDS`` … ``max_seeds``) whose interval detects the paper's effect with
    ``power``: (t_{1−α/2, df_S} + t_{power, df_S}) · SE_S ≤ ``distance``; inf if none does, NaN
    without a published Δ or without seed parts (a measurement read from a file)."""
    target = distance(m)
    if math.isnan(target) or "seed_parts" not in m or "image_var" not in m:
        return math.nan
    if not m["seed_parts"]:         # fixed rows only: no seeds to add
        detects = mde_at(m, level=level, power=power)
        return MIN_SEEDS if detects == detects and detects <= target else math.inf
    for S in range(MIN_SEEDS, max_seeds + 1):
        detects = mde_at(m, S, level=level, power=power)
        if detects == detects and detects <= target:
            return S
    return math.inf


def images_for_power(m: Mapping, max_factor: float = 1000.0, level: float = LEVEL, power: float = POWER) -> float:
    """At the measured seeds: the multiple of the test set (the image part ∝ 1 / images) that
    would detect the paper's effect with ``power``; inf if the seed part alone is too wide (or more
    than ``max_factor`` is needed), NaN without a published Δ or seed parts."""
    target = distance(m)
    if math.isnan(target) or "seed_parts" not in m or "image_var" not in m:
        return math.nan
    ok = lambda k: (lambda d: d == d and d <= target)(mde_at(m, None, k, level, power))  # noqa: E731
    if ok(1.0):
        return 1.0
    if not ok(max_factor):
        return math.inf
    lo, hi = 1.0, max_factor
    while hi / lo > 1.01:         # the mde falls as the image part shrinks: bisect on the factor
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def seeds_text(m: Mapping, max_seeds: int = MAX_SEEDS) -> str:
    """The power table's cell: "5", "more than 100", "more than 100 (at 3 vs 3 seeds: 4.2 × the test
    images)" where the image part dominates, "no published Δ", "never (the paper's Δ is on a
    decision boundary)"."""
    if math.isnan(_published(m)):
        return NO_PUBLISHED
    if distance(m) == 0:
        return "never (the paper's Δ is on a decision boundary)"
    S = seeds_for_power(m, max_seeds)
    if math.isnan(S):
        return "n/a"
    if not m["seed_parts"]:
        return "any (no training seeds)" if math.isfinite(S) else f"none (fixed rows){_images_text(m, 'fixed rows')}"
    if math.isfinite(S):
        return f"{int(S)}"
    where = "at " + " vs ".join(str(n) for _, n in m["seed_parts"]) + " seeds"
    return f"more than {max_seeds}{_images_text(m, where)}"


def _images_text(m: Mapping, where: str) -> str:
    """" (at 3 vs 3 seeds: 4.2 × the test images)" where more test images would do, else ""."""
    k = images_for_power(m)
    return f" ({where}: {k:.1f} × the test images)" if math.isfinite(k) else ""


# --- files ------------------------------------------------------------------------------------

def _complete(frame: pd.DataFrame) -> pd.DataFrame:
    """A measurements frame with ``direction`` and ``too_few_seeds`` (older files: ``with_reference``)."""
    return with_reference(frame)


def with_reference(measurements: pd.DataFrame) -> pd.DataFrame:
    """``direction`` and ``too_few_seeds`` for rows of files written before they were columns (a
    frame of several chapters may mix both): from the claims data (the claim's direction; too few
    seeds on a row that is not ``fixed``); None for an id the claims data no longer holds."""
    out = measurements.copy()
    for column in ("direction", "too_few_seeds"):
        out[column] = out[column].astype(object) if column in out else None
    missing = out["direction"].isna() | out["too_few_seeds"].isna()
    if not missing.any():
        return out
    known = {c.id: c for c in load()}

    def few(r):       # standard._too_few_seeds on the file's seed counts
        c = known[r["id"]]
        sides = ((c.better, r["seeds_better"]), (c.worse, r["seeds_worse"]))
        return any(n < MIN_SEEDS for row, n in sides if row not in c.fixed)
    for i, r in out[missing].iterrows():
        c = known.get(r["id"])
        out.at[i, "direction"], out.at[i, "too_few_seeds"] = (c.direction, few(r)) if c else (None, None)
    return out
