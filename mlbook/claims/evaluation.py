"""One claim evaluated: its values measured on image resamples (more near a boundary), each primary
metric's interval, verdict and evidence text, the claim's verdict by its quantifier, and an amended
claim's original test beside it (``evaluate``, one claims-table row). The rule and the interval are
``standard``'s."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..metrics import image_weights
from .standard import (CONTRADICTED, LEVEL, MAX_RESAMPLES, MC_GUARD, MIN_SEEDS, N_RESAMPLES, NOT_RESOLVED,
                       NOT_TESTABLE, SUPPORTED, Claim, _as_rows, _t, boundaries, combine, interval, mde, metric_sides,
                       verdict)


# --- one claim, evaluated -----------------------------------------------------------------

def _intervals(claim: Claim, values: dict) -> dict:
    missing = [m for m in claim.metrics if m not in values]
    if missing:
        raise KeyError(f"{claim.id}: no values for {missing}")
    return {m: interval(*values[m], fixed_better=claim.better in claim.fixed,
                        fixed_worse=claim.worse in claim.fixed, paired=claim.paired) for m in claim.metrics}


def _near_boundary(claim: Claim, results: dict, scale: float) -> bool:
    """Whether an interval end is within MC_GUARD Monte Carlo SEs of a decision boundary; the MC
    SE of an end is t · SE(v) / (2 SE) with SE(v) ≈ v √(2 / (R − 1)) for the image variance v.
    A claim that gets no verdict (too few seeds) needs no more replicates."""
    for r in results.values():
        if not (r["se"] > 0 and r["n_resamples"] > 1 and math.isfinite(r["low"])) or _too_few_seeds(claim, r["seeds"]):
            continue
        se_v = r["image_var"] * math.sqrt(2 / (r["n_resamples"] - 1))
        mc_se = float(_t(1 - (1 - LEVEL) / 2, r["df"])) * se_v / (2 * r["se"])
        for b in boundaries(claim.test, claim.margin, claim.direction):
            if min(abs(scale * r["low"] - b), abs(scale * r["high"] - b)) < MC_GUARD * scale * mc_se:
                return True
    return False


def _resampled_values(values: Callable, n_images: int, seed: int, chunks: int, done: list,
                      size: int = N_RESAMPLES) -> dict:
    """``values`` on ``chunks`` × ``size`` resamples, reusing the chunks in ``done``. Chunk j
    draws with seed + j · 1,000,003 (chunk 0 is ``image_weights(n_images, size, seed)``);
    chunks are drawn one at a time so that 10,000 resamples of a large test set fit in memory."""
    while len(done) < chunks:
        done.append(values(image_weights(n_images, size, seed + len(done) * 1_000_003)))

    def joined(metric, side):     # column 0 (the test set) once, then every chunk's resamples
        parts = [_as_rows(d[metric][side]) for d in done]
        return torch.cat([parts[0]] + [p[:, 1:] for p in parts[1:]], dim=1)
    return {m: (joined(m, 0), joined(m, 1)) for m in done[0]}


def _end(x: float, bounds: Sequence[float]) -> str:
    """An interval end with 1 decimal, or with up to 4 where that is needed to show its side of a
    boundary it lies within 0.05 of."""
    if not math.isfinite(x):
        return "n/a"
    for d in (1, 2, 3, 4):
        shown = round(x, d)
        if all(abs(x - b) >= 0.05 or (shown - b) * (x - b) > 0 for b in bounds):
            return f"{x:+.{d}f}"
    return f"{x:+.4f}"


def _seeds_text(claim: Claim, seeds: tuple[int, int]) -> str:
    """"3 vs 3 seeds", "3 seeds, paired", "3 seeds vs fixed", "fixed vs fixed"."""
    if claim.paired:
        return f"{seeds[0]} seeds, paired"
    b, w = ("fixed" if row in claim.fixed else f"{n} seeds" for row, n in zip((claim.better, claim.worse), seeds))
    return f"{b.split()[0]} vs {w}" if "fixed" not in (b, w) else f"{b} vs {w}"


def _too_few_seeds(claim: Claim, seeds: tuple[int, int]) -> bool:
    return any(n < MIN_SEEDS for row, n in zip((claim.better, claim.worse), seeds) if row not in claim.fixed)


def _measurement(claim: Claim, metric: str, r: dict, scale: float, published) -> dict:
    """One primary metric's numbers in points, its verdict at its own level
    (``metric_verdict_unadjusted``; ``_judge`` adds the verdict the quantifier reads), and its
    evidence text."""
    bounds = boundaries(claim.test, claim.margin, claim.direction)
    low, high, se = scale * r["low"], scale * r["high"], scale * r["se"]
    too_few = _too_few_seeds(claim, r["seeds"])
    v = NOT_RESOLVED if too_few else verdict(low, high, test=claim.test, margin=claim.margin,
                                             direction=claim.direction)
    detects = mde(se, r["df"])
    pub = None if not published or published.get(metric) is None else float(published[metric])
    df = "∞" if r["df"] == math.inf else "n/a" if math.isnan(r["df"]) else f"{r['df']:.1f}"
    details = [f"fewer than {MIN_SEEDS} training seeds: no verdict"] if too_few else []
    details += [f"t, df {df}", _seeds_text(claim, r["seeds"])]
    if len(r["seed_deltas"]) > 1:
        details.append("per seed " + ", ".join(f"{scale * d:+.1f}" for d in r["seed_deltas"]))
    if pub is not None:
        details.append(f"paper's table {pub:+.1f}")
    if math.isfinite(detects):
        details.append(f"detects ≥ {detects:.1f}")
    text = f"{metric} Δ {scale * r['delta']:+.1f} [{_end(low, bounds)}, {_end(high, bounds)}] ({'; '.join(details)})"
    return {"metric": metric, "delta": scale * r["delta"], "low": low, "high": high, "se": se, "df": r["df"],
            "seeds": r["seeds"], "n_resamples": r["n_resamples"], "published_delta": pub, "mde": detects,
            "metric_verdict": v, "metric_verdict_unadjusted": v, "quantifier": claim.quantifier,
            "test": claim.test, "margin": claim.margin, "direction": claim.direction,
            "too_few_seeds": too_few, "image_var": scale ** 2 * r["image_var"],
            "seed_parts": [(scale ** 2 * s2, S) for s2, S in r["seed_parts"]], "text": text}


QUANTIFIER_TEXT = {"all": "all metrics must hold", "any": "one metric suffices", "primary": "the first metric decides"}


def _judge(claim: Claim, measured: list[dict]) -> tuple[str, str]:
    """The claim's verdict from its measurements (in place: each one's ``metric_verdict`` becomes
    the verdict at the level the quantifier asks of it, ``metric_verdict_unadjusted`` stays) and
    the sentence that says how the metrics were combined ("" for one metric)."""
    k = len(measured)
    sides = metric_sides([m["delta"] for m in measured], [m["se"] for m in measured], [m["df"] for m in measured],
                         claim.quantifier, test=claim.test, margin=claim.margin, direction=claim.direction,
                         usable=[not m["too_few_seeds"] for m in measured])
    for i, m in enumerate(measured):
        m["metric_verdict"] = (SUPPORTED if sides["supported"][i] else CONTRADICTED if sides["contradicted"][i]
                               else NOT_RESOLVED)
    if k == 1:
        return measured[0]["metric_verdict"], ""
    how = QUANTIFIER_TEXT[claim.quantifier] + (f" (Holm across {k})" if claim.quantifier != "primary" else
                                               f" ({measured[0]['metric']}), the others are shown")
    return combine([m["metric_verdict"] for m in measured], claim.quantifier), how


def _test_text(claim: Claim) -> str:
    return claim.test if claim.test == "superiority" else f"{claim.test}, margin {claim.margin:g}"


def evaluate(claim: Claim, values, *, n_images: int | None = None, scale: float = 100.0, testable: bool = True,
             why_not: str = "", secondary: dict[str, float] | None = None,
             published: dict[str, float] | None = None, seed: int = 0, original_values=None,
             original_published: dict[str, float] | None = None, original_scale: float | None = None,
             resamples: int | None = None) -> dict:
    """One row of a claims table: the display columns (``DISPLAY``; ``P_SAME`` is added by
    ``tables.table`` from the measurements) and ``"measurements"``.

    ``values``: {metric: (better [S, 1+R], worse [S, 1+R])} used as given, or a callable
    ``values(weights [1+R, N]) -> that dict`` with ``n_images`` given: it is evaluated on
    ``resamples`` resamples (default N_RESAMPLES: ``image_weights(n_images, N_RESAMPLES, seed)``) and, if
    an end lies near a decision boundary, on ten times as many (MAX_RESAMPLES by default). ``scale`` turns values into points. ``secondary``:
    Δ (points) of other metrics, shown only; ``published``: the paper's own Δ per metric.

    An amended claim (``Claim.original``) is judged by its original test too, on
    ``original_values`` (the same forms; default ``values``, right where the original compares
    the same rows; judged with its own pairing, ``original_paired``): its verdict, evidence and the reason
    for the change fill the column "original test (amended claims)", so that a reader sees both verdicts
    side by side. ``original_scale``:
    the original's own units (default ``scale``), where its metric has other units than the new one's.
    """
    size = resamples or N_RESAMPLES
    row = _evaluate_one(claim, values, n_images=n_images, scale=scale, testable=testable, why_not=why_not,
                        secondary=secondary, published=published, seed=seed, size=size)
    row = {"registered": claim.registered, **row, "original test (amended claims)": ""}
    original = claim.original()
    if original is not None:
        try:
            before = _evaluate_one(original, values if original_values is None else original_values,
                                   n_images=n_images, scale=scale if original_scale is None else original_scale,
                                   testable=testable, why_not=why_not,
                                   published=published if original_published is None else original_published,
                                   seed=seed, size=size)
            said = f"{before['verdict']}: {before['evidence']}"
        except KeyError as missing:      # the evidence no longer measures the original's rows or metrics
            before, said = {"verdict": NOT_TESTABLE}, f"not recomputed here ({missing})"
        row["original verdict"] = before["verdict"]
        row["original test (amended claims)"] = (
            f"registered {claim.registered}, amended {claim.amended}. Original: {original.better} vs "
            f"{original.worse}, {_test_text(original)}{'' if original.direction == 'higher' else ', lower is better'}"
            f"{'' if original.paired == claim.paired else ', seed-paired' if original.paired else ', unpaired'}"
            f"{', ' + ', '.join(original.fixed) + ' fixed' if claim.original_fixed else ''}"
            f" on {', '.join(original.metrics)} → {said}. Why changed: {claim.amendment_reason}")
    return row


def _evaluate_one(claim: Claim, values, *, n_images, scale, testable, why_not, secondary=None, published=None,
                  seed=0, size=N_RESAMPLES) -> dict:
    """``evaluate`` of one test (the claim's own or its original)."""
    row = {"id": claim.id, "data set": claim.dataset,
           "claim": f"“{claim.text}”" if claim.quoted else f"{claim.text} (the book's reading)",
           "source": claim.source, "compared": f"{claim.better} vs {claim.worse}", "test": _test_text(claim),
           "primary": ", ".join(claim.metrics), "quantifier": claim.quantifier if len(claim.metrics) > 1 else ""}
    note = f" (note: {claim.note})" if claim.note else ""
    if not testable:
        return {**row, "evidence": (why_not or "the data cannot test it") + note, "verdict": NOT_TESTABLE,
                "measurements": []}
    if callable(values):
        if n_images is None:
            raise ValueError(f"{claim.id}: a callable of image weights needs n_images")
        done = []
        results = _intervals(claim, _resampled_values(values, n_images, seed, 1, done, size))
        if _near_boundary(claim, results, scale):
            results = _intervals(claim, _resampled_values(values, n_images, seed, MAX_RESAMPLES // N_RESAMPLES, done,
                                                          size))
    else:
        results = _intervals(claim, values)
    measured = [_measurement(claim, m, results[m], scale, published) for m in claim.metrics]
    decided, how = _judge(claim, measured)
    R = max(r["n_resamples"] for r in results.values())

    def said(m):                   # a metric's text, with its verdict where there are several
        if len(measured) == 1:
            return m.pop("text")
        own = m["metric_verdict_unadjusted"]
        return m.pop("text") + f" → {m['metric_verdict']}" + (
            f" (alone: {own})" if own != m["metric_verdict"] else "")
    evidence = "; ".join(said(m) for m in measured) + (f"; {how}" if how else "") + f"; {R:,} image resamples"
    if secondary:
        evidence += "; shown, not voted: " + ", ".join(f"{k} {v:+.1f}" for k, v in secondary.items())
    return {**row, "evidence": evidence + note, "verdict": decided, "measurements": measured}
