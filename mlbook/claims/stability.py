"""How stable a verdict is: the chance that an independent rerun gives the same verdict.

A rerun with another ``--seed`` redraws the data, the backbone, every training seed and the image
resamples, so its interval moves: an interval near a decision boundary flips between supported and
not resolved. ``p_same`` says, per claim, how likely that is, from the claim's own numbers (Δ̂, SE,
df, its test), by the formula (``PREDICTIVE``)

    P(same) = P(verdict(Δ̂' ± t_df · SE') = the verdict of this run),

    Δ̂' ~ Normal(Δ̂, 2σ²),   SE'² ~ σ² · χ²_df / df,   σ² ~ SE² · df / χ²_df,

t_df the interval's own critical value, df its Welch–Satterthwaite degrees of freedom, the two χ²
independent (and of Δ̂'). Why each part: the true effect is unknown, so the rerun's Δ̂' differs
from this Δ̂ by two estimates' noise, not one (variance 2σ², the predictive distribution under a
flat prior); the rerun estimates its own SE (with three seeds it varies as much as Δ̂ does); and
σ, the true SE, is known only through this run's SE and df. The plug-in reading (``PLUG_IN``:
Δ̂' ~ Normal(Δ̂, SE²), σ = SE, "the same verdict if the truth were this run") is overconfident.
Each χ² expectation is a mean over ``NODES`` equal-probability quantiles. The verdict regions are
``standard.verdict``'s: per metric, Δ signed by the claim's direction, superiority supported if
low > 0, contradicted if high < 0; non-inferiority the same at −m; equivalence supported if
−m < low and high < m, contradicted if low > m or high < −m.

Several primary metrics follow the claim's quantifier (``standard.combine``; each measurement's
``quantifier``): "primary", the first metric's probabilities alone; "all", P(supported) =
Π P_i(supported) and P(contradicted) = 1 − Π (1 − P_i(contradicted)); "any", P(supported) =
1 − Π (1 − P_i(supported)) and P(contradicted) = Π P_i(contradicted); not resolved the rest;
"both" (files written before the quantifier: the old symmetric rule) Π P_i for both. The metrics
are taken as **independent**, and each P_i is at the metric's own level: the Holm step-down the
rule applies to an "at least one" side is left out of the approximation, which overstates that
side's probability a little. Primary metrics of one claim usually correlate, so this understates
the stability of a verdict that needs every metric and overstates that of the other verdicts. A
metric that got no verdict for want of seeds, a degenerate interval (SE 0 or not finite) and a
not-testable claim give the same verdict again: P = 1.

**Measured** (``rerun_agreement``, tests/test_claims_stability.py): 4,000 pairs of independent
replicates of the false-verdict simulation's experiments (``power.simulated_values``, 200 images,
200 resamples), a true effect per pair uniform over ±5 standard deviations of Δ; mean predicted vs
observed agreement: 3 seeds, seed and image noise 0.770 vs 0.759 (plug-in 0.837); 10 seeds 0.777
vs 0.770; image noise, 5 seeds 0.781 vs 0.778; non-inferiority 0.774 vs 0.764; equivalence 0.786
vs 0.759; two metrics, "all": independent 0.778 vs 0.790, correlated 0.8 0.772 vs 0.762, "any",
correlated 0.8 0.767 vs 0.761 ("primary" 0.769 vs 0.757); seed noise only,
3 seeds (df ≈ 3) 0.739 vs 0.679 (the test holds all but this one within 0.03). The calibration
holds over a spread of true effects, not per effect: with effects over ±8 SDs 0.843 vs 0.842
(seed noise only 0.774 vs 0.780), over ±3 SDs 0.719 vs 0.664, and with no effect at all 0.766 vs
0.914. Read P as the chance for a claim like this one, and its sum over claims, Σ (1 − P), as
the number of verdicts a rerun is expected to change.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from ..metrics import image_weights
from .power import simulated_sd, simulated_values
from .replication import with_reference
from .standard import (CONTRADICTED, LEVEL, NOT_RESOLVED, NOT_TESTABLE, P_SAME, QUANTIFIERS, SUPPORTED, SYMMETRIC,
                       _combine_sides, _welch_interval, metric_sides)

NODES = 32                  # equal-probability quantiles of each χ²_df (their mean is the expectation; 128 moves
                            # the book's total by 0.03)
WORDS = (SUPPORTED, CONTRADICTED, NOT_RESOLVED)


@dataclasses.dataclass(frozen=True)
class Formula:
    """How the rerun is drawn: Δ̂' − Δ̂ ~ Normal(0, spread² σ²) and SE'² ~ σ² χ²_df / df, with
    σ = SE (``uncertain_se`` False) or σ² ~ SE² df / χ²_df (this run's SE is an estimate too)."""
    spread: float
    uncertain_se: bool


PREDICTIVE = Formula(math.sqrt(2.0), True)    # the book's: two estimates' noise, σ unknown (the docstring)
PLUG_IN = Formula(1.0, False)                 # "if the true effect were Δ̂ and the true SE this SE": overconfident


# --- the formula ----------------------------------------------------------------------------

def word_probabilities(delta, se, df, *, test: str = "superiority", margin: float = 0.0, direction: str = "higher",
                       level: float = LEVEL, formula: Formula = PREDICTIVE) -> np.ndarray:
    """[..., 3]: the probabilities that a rerun's interval reads supported, contradicted, not
    resolved (``WORDS``) for one metric with estimate ``delta``, standard error ``se`` and ``df``
    (arrays broadcast; the units of ``margin``). Undefined (NaN) where se is not a positive number
    or df is NaN: no rerun distribution to draw from (``metric_probabilities`` handles those)."""
    mu = np.asarray(delta, dtype=float) * (1 if direction == "higher" else -1)
    mu, se, df = np.broadcast_arrays(mu, np.asarray(se, dtype=float), np.asarray(df, dtype=float))
    q = (np.arange(NODES) + 0.5) / NODES
    finite = np.where(np.isfinite(df), df, 1.0)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        chi = stats.chi2.ppf(q, finite) / finite                 # χ²_df / df at each node
        chi = np.where(np.isfinite(df)[..., None], chi, 1.0)
        crit = stats.t.ppf(1 - (1 - level) / 2, df)[..., None, None]
    # σ/SE (the true SE over this run's estimate) on axis -2, SE'/σ on axis -1
    sigma = 1 / np.sqrt(chi[..., :, None]) if formula.uncertain_se else np.ones_like(chi)[..., :, None]
    half = crit * se[..., None, None] * sigma * np.sqrt(chi[..., None, :])   # the rerun's half-width
    mu, sd = mu[..., None, None], formula.spread * se[..., None, None] * sigma
    cdf = stats.norm.cdf
    if test == "equivalence":
        inside = np.clip(cdf((margin - half - mu) / sd) - cdf((-margin + half - mu) / sd), 0, 1)
        outside = cdf((mu - margin - half) / sd) + cdf((-margin - half - mu) / sd)
        supported, contradicted = inside, outside
    else:
        bound = 0.0 if test == "superiority" else -margin
        supported, contradicted = cdf((mu - bound - half) / sd), cdf((bound - half - mu) / sd)
    supported, contradicted = supported.mean((-2, -1)), contradicted.mean((-2, -1))
    out = np.stack([supported, contradicted, 1 - supported - contradicted], -1)
    bad = ~((se > 0) & np.isfinite(se) & ~np.isnan(df))
    out[bad] = np.nan
    return out


def metric_probabilities(m: dict, formula: Formula = PREDICTIVE) -> dict[str, float]:
    """One primary metric's measurement (``claims_measurements.csv`` row or ``evaluate``'s
    ``measurements`` entry, with ``direction`` and ``too_few_seeds``) -> {word: probability}."""
    word = m.get("metric_verdict_unadjusted", m["metric_verdict"])     # its own level, as the P_i are
    if not isinstance(word, str):                     # an older file: no unadjusted column
        word = m["metric_verdict"]
    if bool(m.get("too_few_seeds", False)):          # the rerun has as few seeds: no verdict again
        return {w: float(w == word) for w in WORDS}
    p = word_probabilities(m["delta"], m["se"], m["df"], test=m["test"], margin=float(m["margin"]),
                           direction=m["direction"], formula=formula)
    if np.isnan(p).any():                             # a degenerate interval is the same interval again
        return {w: float(w == word) for w in WORDS}
    return dict(zip(WORDS, p.tolist()))


def quantifier_of(measurements: Sequence[dict]) -> str:
    """The claim's quantifier from its measurements (``m["quantifier"]``); "both", the old symmetric
    rule, for measurements written before it (missing or empty)."""
    words = {m.get("quantifier") for m in measurements}
    words = {w for w in words if isinstance(w, str) and w} or {SYMMETRIC}
    if len(words) > 1 or not words <= set(QUANTIFIERS) | {SYMMETRIC}:
        raise ValueError(f"one claim's measurements need one quantifier, not {sorted(words)}")
    return words.pop()


def p_same(measurements: Sequence[dict], claim_verdict: str, formula: Formula = PREDICTIVE,
           quantifier: str | None = None) -> float:
    """The chance that an independent rerun gives ``claim_verdict`` again (the module docstring's
    formula; several metrics independent, combined by ``quantifier``, default the measurements'
    own, ``quantifier_of``). NaN when a tested claim has no measurements."""
    if claim_verdict == NOT_TESTABLE:
        return 1.0
    if claim_verdict not in WORDS:
        raise ValueError(f"not a verdict: {claim_verdict!r}")
    if not measurements:
        return math.nan
    quantifier = quantifier or quantifier_of(measurements)
    probs = np.array([[p[w] for w in WORDS] for p in (metric_probabilities(m, formula) for m in measurements)])
    return float(np.clip(combined(probs, quantifier)[WORDS.index(claim_verdict)], 0.0, 1.0))


def combined(probs: np.ndarray, quantifier: str = SYMMETRIC) -> np.ndarray:
    """[metrics, ..., 3] word probabilities of each primary metric -> [..., 3] of ``combine``'s
    verdict by ``quantifier``, the metrics independent and each at its own level (no Holm): the
    module docstring's products; not resolved the rest."""
    p_supported, p_contradicted = probs[..., 0], probs[..., 1]
    either = lambda p: 1 - (1 - p).prod(0)        # noqa: E731  P(at least one)
    if quantifier == "primary":
        supported, contradicted = p_supported[0], p_contradicted[0]
    elif quantifier == "all":
        supported, contradicted = p_supported.prod(0), either(p_contradicted)
    elif quantifier == "any":
        supported, contradicted = either(p_supported), p_contradicted.prod(0)
    elif quantifier == SYMMETRIC:
        supported, contradicted = p_supported.prod(0), p_contradicted.prod(0)
    else:
        raise ValueError(f"quantifier must be in {QUANTIFIERS} or {SYMMETRIC!r}, not {quantifier!r}")
    return np.stack([supported, contradicted, 1 - supported - contradicted], -1)


# --- the claims files -----------------------------------------------------------------------

def claim_p_same(measurements: pd.DataFrame, formula: Formula = PREDICTIVE) -> pd.Series:
    """``p_same`` of every claim in a ``claims_measurements.csv`` frame (one row per claim and
    primary metric), by id in file order; NaN where the file lacks what the formula needs."""
    if measurements.empty:
        return pd.Series(dtype=float, name=P_SAME)
    frame = with_reference(measurements)
    out = {}
    for claim_id, rows in frame.groupby("id", sort=False):
        records = rows.to_dict("records")
        usable = all(isinstance(r["direction"], str) and r["too_few_seeds"] in (True, False) for r in records)
        out[claim_id] = p_same(records, records[0]["verdict"], formula) if usable else math.nan
    return pd.Series(out, name=P_SAME, dtype=float)


def expected_changes(measurements: pd.DataFrame, formula: Formula = PREDICTIVE) -> pd.DataFrame:
    """Per ``chapter`` of a measurements frame (several chapters' files with a ``chapter`` column):
    the claims with measurements and Σ (1 − P(same)), the number of verdicts an independent rerun
    is expected to change (not-testable claims never change). NaN where a claim's P is unknown."""
    rows = []
    for chapter, part in measurements.groupby("chapter", sort=False):
        p = claim_p_same(part, formula)
        rows.append({"chapter": chapter, "claims": len(p), "expected changes": float((1 - p).sum(skipna=False))})
    return pd.DataFrame(rows, columns=["chapter", "claims", "expected changes"]).set_index("chapter")


def read_folder(figures: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every chapter's ``table_claims.csv`` (id, verdict) and ``claims_measurements.csv`` under
    ``figures``, each with a ``chapter`` column."""
    tables, numbers = [], []
    for path in sorted(Path(figures).glob("*/table_claims.csv")):
        tables.append(pd.read_csv(path, usecols=["id", "verdict"]).assign(chapter=path.parent.name))
        if (path.parent / "claims_measurements.csv").is_file():
            numbers.append(pd.read_csv(path.parent / "claims_measurements.csv").assign(chapter=path.parent.name))
    join = lambda frames: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["id", "chapter"])
    return join(tables), join(numbers)


def compare(first: Path, second: Path, formula: Formula = PREDICTIVE) -> pd.DataFrame:
    """Two runs' figures folders (e.g. ``figures/`` and a rerun with another ``--seed``): per
    chapter and in total, the claims both hold, the verdicts that changed (measured) and the
    changes each run predicts for its rerun (Σ (1 − P) over those claims, from its own intervals),
    with their mean as the prediction."""
    (table_a, numbers_a), (table_b, numbers_b) = read_folder(first), read_folder(second)
    both = table_a.merge(table_b, on=["chapter", "id"], suffixes=("_a", "_b"))
    predicted = {}
    for side, numbers in (("a", numbers_a), ("b", numbers_b)):
        p = pd.concat([claim_p_same(part, formula) for _, part in numbers.groupby("chapter", sort=False)]) \
            if len(numbers) else pd.Series(dtype=float)
        # a claim without measurements is not testable in that run: it gives that verdict again
        predicted[side] = 1 - both["id"].map(lambda i: p.get(i, 1.0))
    both = both.assign(changed=(both["verdict_a"] != both["verdict_b"]).astype(int),
                       predicted_first=predicted["a"].to_numpy(), predicted_second=predicted["b"].to_numpy())
    out = both.groupby("chapter", sort=True)[["changed", "predicted_first", "predicted_second"]].sum()
    out.insert(0, "claims", both.groupby("chapter", sort=True).size())
    out.loc["total"] = out.sum()
    out["predicted"] = (out["predicted_first"] + out["predicted_second"]) / 2
    return out.rename(columns={"changed": "changed (measured)", "predicted_first": "predicted by the first",
                               "predicted_second": "predicted by the second"})


# --- measured by simulation -------------------------------------------------------------------

def rerun_agreement(n_seeds: int, noise: str, *, n_sim: int, n_images: int, seed: int = 0, n_resamples: int = 200,
                    effects: float = 5.0, test: str = "superiority", margin: float = 0.0, n_metrics: int = 1,
                    correlation: float = 0.0, quantifier: str = "all", formula: Formula = PREDICTIVE) -> dict:
    """Pairs of independent replicate experiments (``power.simulated_values``, the error-rate
    simulation's experiments) with a true effect per pair, uniform over ±``effects`` standard
    deviations of Δ (``margin`` in those units too): the share of pairs whose verdicts agree
    (observed) and the mean of ``p_same`` predicted from the first replicate alone (predicted),
    with the Monte Carlo SE of their difference. Several metrics: the verdicts by the rule
    (``quantifier``, Holm where it applies), the prediction by ``combined``."""
    g = torch.Generator().manual_seed(7919 * seed + 100 * n_seeds + n_metrics)
    sd = simulated_sd(n_seeds, noise, n_images)
    truth = effects * sd * (2 * torch.rand(n_sim, generator=g, dtype=torch.float64) - 1)
    words, first = [], []
    for replicate in (0, 1):      # the rerun redraws everything, the bootstrap seed included
        values = simulated_values(n_sim, n_seeds, noise, n_images, g,
                                  image_weights(n_images, n_resamples, 2 * seed + replicate),
                                  n_metrics=n_metrics, correlation=correlation)
        values[:, :, 0] += truth[None, :, None, None]
        ends = [{k: v.numpy() for k, v in _welch_interval(m[:, 0], m[:, 1]).items() if k != "seed_parts"}
                for m in values]
        sides = metric_sides(*(np.stack([e[k] for e in ends]) for k in ("delta", "se", "df")), quantifier,
                             test=test, margin=margin * sd)
        supported, contradicted = _combine_sides(sides["supported"], sides["contradicted"], quantifier)
        words.append(np.where(supported.numpy(), 0, np.where(contradicted.numpy(), 1, 2)))    # WORDS' indices
        first = first or ends
    probs = np.stack([word_probabilities(e["delta"], e["se"], e["df"], test=test, margin=margin * sd, formula=formula)
                      for e in first])
    predicted = np.take_along_axis(combined(probs, quantifier), words[0][:, None], -1)[:, 0]
    agree = (words[0] == words[1]).astype(float)
    return {"observed": float(agree.mean()), "predicted": float(predicted.mean()),
            "mc_se": float((agree - predicted).std(ddof=1) / math.sqrt(n_sim)), "n_sim": n_sim, "n_seeds": n_seeds,
            "noise": noise, "test": test, "n_metrics": n_metrics, "quantifier": quantifier, "formula": formula}

