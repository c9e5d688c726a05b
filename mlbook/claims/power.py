"""What the claims standard can see and how often it errs: the smallest detectable effect (``mde``,
``power_table``), what its error rate means for a chapter (``multiplicity``), and that error rate
measured by simulation (``false_verdict_rate``, on the experiments of ``simulated_values``)."""
from __future__ import annotations

import math
from typing import Sequence

import pandas as pd
import torch

from ..metrics import image_weights
from .standard import CONTRADICTED, LEVEL, SUPPORTED, _welch, _welch_interval, combine, mde, verdict


# --- power and multiplicity ---------------------------------------------------------------

def power_table(rows: list[dict], seeds: Sequence[int] = (3, 5, 10)) -> pd.DataFrame:
    """Per claim and primary metric, the smallest detectable effect (points) with each seed count:
    the measured seed variances rescaled to S seeds per row, the image part unchanged."""
    out = []
    for r in rows:
        for m in r.get("measurements", []):
            line = {"id": r["id"], "metric": m["metric"], "measured Δ": round(m["delta"], 1)}
            for S in seeds:
                se, df = _welch([(torch.tensor(s2), S) for s2, _ in m["seed_parts"]],
                                torch.tensor(m["image_var"]), m["n_resamples"])
                line[f"{S} seeds"] = round(mde(float(se), float(df)), 1)
            out.append(line)
    return pd.DataFrame(out, columns=["id", "metric", "measured Δ", *(f"{S} seeds" for S in seeds)])


def multiplicity(n_claims: int, n_intervals: int, level: float = LEVEL) -> dict:
    """What a (1 − level) error rate per verdict means for a chapter's n claims and intervals, if
    no effect were real: the expected number of wrong verdicts and P(at least one); one sentence."""
    alpha = 1 - level
    out = {"n_claims": n_claims, "n_intervals": n_intervals, "expected_wrong": alpha * n_claims,
           "p_at_least_one": 1 - level ** n_claims, "expected_wrong_intervals": alpha * n_intervals,
           "p_at_least_one_interval": 1 - level ** n_intervals}
    out["text"] = (f"This chapter tests {n_claims} claims through {n_intervals} intervals; if no effect were "
                   f"real, each verdict would still read supported or contradicted with probability at most "
                   f"{alpha:.0%}, so about {out['expected_wrong']:.1f} wrong verdicts are expected and at least "
                   f"one with probability {out['p_at_least_one']:.0%} (independent claims); no correction for "
                   f"multiplicity is applied, so read each verdict as one test among {n_claims}.")
    return out


# --- the measured error rate --------------------------------------------------------------

def simulated_values(n_sim: int, n_seeds: int, noise: str, n_images: int, generator: torch.Generator,
                     weights: torch.Tensor, *, n_metrics: int = 1, correlation: float = 0.8, seed_sd: float = 0.1,
                     image_sd: float = 1.0) -> torch.Tensor:
    """The simulated experiments of ``false_verdict_rate`` (and of ``stability.rerun_agreement``):
    [n_metrics, n_sim, 2 rows, n_seeds, 1 + R] metric values, no true effect, drawn from
    ``generator`` and resampled by ``weights`` ([1 + R, n_images], ``image_weights``). ``noise``:
    "seed" (a per-seed offset, images identical across rows), "image" (per-row image values,
    identical seeds), "both" (those two plus seed-specific image noise); metrics' noises correlate
    by ``correlation``. Per-image values whose mean is the metric, so a resample is a weighted mean
    (one matrix product)."""
    if noise not in ("seed", "image", "both"):
        raise ValueError(f"noise must be 'seed', 'image' or 'both', not {noise!r}")
    shape = (n_sim, 2, n_seeds, n_images)

    def correlated(*size):       # [n_metrics, *size], pairwise correlation `correlation`
        common, own = torch.randn(*size, generator=generator, dtype=torch.float64), torch.randn(
            n_metrics, *size, generator=generator, dtype=torch.float64)
        return math.sqrt(correlation) * common + math.sqrt(1 - correlation) * own

    x = torch.zeros(n_metrics, *shape, dtype=torch.float64)
    if noise in ("seed", "both"):
        x += seed_sd * correlated(n_sim, 2, n_seeds, 1)
    if noise in ("image", "both"):
        x += image_sd * correlated(n_sim, 2, 1, n_images)
    if noise == "both":
        x += 0.5 * image_sd * correlated(*shape)
    return x @ (weights / weights.sum(1, keepdim=True)).T


def simulated_sd(n_seeds: int, noise: str, n_images: int, seed_sd: float = 0.1, image_sd: float = 1.0) -> float:
    """The true standard deviation of Δ in ``simulated_values`` (two rows, ``n_seeds`` each)."""
    per_row = {"seed": seed_sd ** 2 / n_seeds, "image": image_sd ** 2 / n_images,
               "both": seed_sd ** 2 / n_seeds + image_sd ** 2 / n_images + 0.25 * image_sd ** 2 / (n_images * n_seeds)}
    return math.sqrt(2 * per_row[noise])


def false_verdict_rate(n_seeds: int, noise: str, *, n_sim: int, n_images: int, seed: int = 0,
                       n_resamples: int = 200, n_metrics: int = 1, correlation: float = 0.8,
                       seed_sd: float = 0.1, image_sd: float = 1.0) -> dict:
    """Share of wrong supported/contradicted verdicts (superiority) when there is no true effect.

    Two rows, ``n_seeds`` training seeds each, drawn by ``simulated_values`` (``noise``: "seed",
    "image" or "both"). ``n_metrics`` > 1: primary metrics whose noises correlate by
    ``correlation``, combined by ``combine``. Returns rate, its Monte Carlo SE, and the shares
    supported and contradicted."""
    g = torch.Generator().manual_seed(1000 * seed + n_seeds)     # independent draws per seed count
    values = simulated_values(n_sim, n_seeds, noise, n_images, g, image_weights(n_images, n_resamples, seed),
                              n_metrics=n_metrics, correlation=correlation, seed_sd=seed_sd, image_sd=image_sd)
    ends = [_welch_interval(v[:, 0], v[:, 1]) for v in values]
    words = [combine([verdict(float(e["low"][i]), float(e["high"][i])) for e in ends]) for i in range(n_sim)]
    supported, contradicted = words.count(SUPPORTED) / n_sim, words.count(CONTRADICTED) / n_sim
    rate = supported + contradicted
    return {"rate": rate, "mc_se": math.sqrt(max(rate * (1 - rate), 1e-12) / n_sim), "supported": supported,
            "contradicted": contradicted, "n_sim": n_sim, "n_seeds": n_seeds, "noise": noise, "n_metrics": n_metrics}
