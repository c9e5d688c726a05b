"""What the claims standard can see and how often it errs: the smallest detectable effect (``mde``,
``power_table``), what its error rate means for a chapter (``multiplicity``), and that error rate
measured by simulation (``false_verdict_rate``, and power and coverage with ``verdict_rates``, on the
experiments of ``simulated_values``, judged by each quantifier; seed-paired rows with
``paired_false_verdict_rate``)."""
from __future__ import annotations

import functools
import math
from typing import Sequence

import pandas as pd
import torch

from ..metrics import image_weights
from .replication import SEEDS_COLUMN, mde_at, seeds_text
from .standard import (CONTRADICTED, LEVEL, NOT_RESOLVED, SUPPORTED, _combine_sides, _t, _welch_interval,
                       metric_sides)


# --- power and multiplicity ---------------------------------------------------------------

def power_table(rows: list[dict], seeds: Sequence[int] = (3, 5, 10)) -> pd.DataFrame:
    """Per claim and primary metric, the smallest detectable effect (points) with each seed count:
    the measured seed variances rescaled to S seeds per row, the image part unchanged; and the seeds
    per row that would detect the paper's own Δ with 80% power (``replication.SEEDS_COLUMN``,
    ``replication.seeds_text``: up to 100, else the test images that would at these seeds)."""
    out = []
    for r in rows:
        for m in r.get("measurements", []):
            line = {"id": r["id"], "metric": m["metric"], "measured Δ": round(m["delta"], 1)}
            for S in seeds:
                line[f"{S} seeds"] = round(mde_at(m, S), 1)
            line[SEEDS_COLUMN] = seeds_text(m)
            out.append(line)
    return pd.DataFrame(out, columns=["id", "metric", "measured Δ", *(f"{S} seeds" for S in seeds), SEEDS_COLUMN])


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
                   f"multiplicity is applied, so read each verdict as one test among {n_claims}. The training "
                   f"seeds redraw each compared row on the one backbone and data set of this run (chapter 03's), "
                   f"so every interval is conditional on them; another --seed redraws both.")
    return out


# --- the measured error rate --------------------------------------------------------------

def simulated_values(n_sim: int, n_seeds: int, noise: str, n_images: int, generator: torch.Generator,
                     weights: torch.Tensor, *, n_metrics: int = 1, correlation: float = 0.8, seed_sd: float = 0.1,
                     image_sd: float = 1.0, reduced: bool = False) -> torch.Tensor:
    """The simulated experiments of ``false_verdict_rate`` (and of ``stability.rerun_agreement``):
    [n_metrics, n_sim, 2 rows, n_seeds, 1 + R] metric values, no true effect, drawn from
    ``generator`` and resampled by ``weights`` ([1 + R, n_images], ``image_weights``). ``noise``:
    "seed" (a per-seed offset, images identical across rows), "image" (per-row image values,
    identical seeds), "both" (those two plus seed-specific image noise); metrics' noises correlate
    by ``correlation``. Per-image values whose mean is the metric, so a resample is a weighted mean
    (a matrix product; column 0, the test set, weighs every image alike).

    ``reduced``: every seed's resample columns hold the mean over seeds of the seeds' resampled
    values, all that the interval reads from them (its image part is the variance of the seed
    means), and the seed-specific image noise is drawn as those means only: of iid Normal
    Z [S, I], the seed means B_i ~ N(0, 1/S) iid (drawn with the shared image noise as one
    normal) and the image means A_s = mean(B) + (Y_s − Ȳ)/√I with Y ~ N(0, 1) over seeds. The
    same distribution of intervals from other draws, far faster (the error-rate simulation's;
    ``stability.rerun_agreement`` keeps the full draws)."""
    if noise not in ("seed", "image", "both"):
        raise ValueError(f"noise must be 'seed', 'image' or 'both', not {noise!r}")
    shape = (n_sim, 2, n_seeds, n_images)

    def correlated(*size):       # [n_metrics, *size], pairwise correlation `correlation`
        common, own = torch.randn(*size, generator=generator, dtype=torch.float64), torch.randn(
            n_metrics, *size, generator=generator, dtype=torch.float64)
        return math.sqrt(correlation) * common + math.sqrt(1 - correlation) * own

    w = (weights / weights.sum(1, keepdim=True)).T.to(torch.float64)      # [n_images, 1 + R]: means
    if not reduced:
        x = torch.zeros(n_metrics, *shape, dtype=torch.float64)
        if noise in ("seed", "both"):
            x += seed_sd * correlated(n_sim, 2, n_seeds, 1)
        if noise in ("image", "both"):
            x += image_sd * correlated(n_sim, 2, 1, n_images)
        if noise == "both":
            x += 0.5 * image_sd * correlated(*shape)
        return x @ w
    if not torch.allclose(w[:, 0], torch.full_like(w[:, 0], 1 / n_images)):
        raise ValueError("reduced draws need column 0 to be the test set (every image weighed alike)")
    x = torch.zeros(n_metrics, n_sim, 2, n_seeds, 1, dtype=torch.float64)     # added to every column
    if noise in ("seed", "both"):     # a per-seed offset: every (weighted) mean of it is itself
        x = x + seed_sd * correlated(n_sim, 2, n_seeds, 1)
    if noise in ("image", "both"):    # per image, every seed: the image noise and B in one draw
        x = x + (image_sd * math.sqrt(1 + (0.25 / n_seeds if noise == "both" else 0.0))
                 * correlated(n_sim, 2, 1, n_images)) @ w
    if noise == "both":               # the test set's A − mean(B), per seed
        y = correlated(n_sim, 2, n_seeds, 1)
        x[..., :1] += 0.5 * image_sd * (y - y.mean(-2, keepdim=True)) / math.sqrt(n_images)
    return x.expand(*x.shape[:-1], w.shape[1]).contiguous()       # seed noise only: every column alike


def simulated_sd(n_seeds: int, noise: str, n_images: int, seed_sd: float = 0.1, image_sd: float = 1.0) -> float:
    """The true standard deviation of Δ in ``simulated_values`` (two rows, ``n_seeds`` each)."""
    per_row = {"seed": seed_sd ** 2 / n_seeds, "image": image_sd ** 2 / n_images,
               "both": seed_sd ** 2 / n_seeds + image_sd ** 2 / n_images + 0.25 * image_sd ** 2 / (n_images * n_seeds)}
    return math.sqrt(2 * per_row[noise])


def simulated_intervals(n_seeds: int, noise: str, *, n_sim: int, n_images: int, seed: int = 0,
                        n_resamples: int = 200, n_metrics: int = 1, correlation: float = 0.8, seed_sd: float = 0.1,
                        image_sd: float = 1.0) -> dict:
    """The intervals of ``simulated_values``' experiments (no true effect), each metric's:
    {"delta", "se", "df": [n_metrics, n_sim]} and "sd" (the true SD of Δ, ``simulated_sd``).
    Cached (the tensors are shared: do not change them). A true effect adds to Δ alone."""
    return _simulated_intervals(n_seeds, noise, n_sim, n_images, seed, n_resamples, n_metrics, float(correlation),
                                float(seed_sd), float(image_sd))


@functools.lru_cache(maxsize=16)
def _simulated_intervals(n_seeds, noise, n_sim, n_images, seed, n_resamples, n_metrics, correlation, seed_sd,
                         image_sd) -> dict:
    g = torch.Generator().manual_seed(1000 * seed + n_seeds)     # independent draws per seed count
    values = simulated_values(n_sim, n_seeds, noise, n_images, g, image_weights(n_images, n_resamples, seed),
                              n_metrics=n_metrics, correlation=correlation, seed_sd=seed_sd, image_sd=image_sd,
                              reduced=True)
    e = _welch_interval(values[:, :, 0], values[:, :, 1])
    return {"delta": e["delta"], "se": e["se"], "df": e["df"],
            "sd": simulated_sd(n_seeds, noise, n_images, seed_sd, image_sd)}


def verdict_rates(n_seeds: int, noise: str, *, n_sim: int, n_images: int, effect: float = 0.0,
                  quantifier: str = "all", n_metrics: int = 1, metrics_judged: int | None = None,
                  **simulation) -> dict:
    """How often the rule says what, on ``simulated_intervals``' experiments with a true effect
    of ``effect`` standard deviations of Δ (``simulated_sd``) on every metric, in the claim's
    favour (superiority): the shares "supported", "contradicted", "not resolved" of the claims'
    verdicts (``metric_sides`` and ``combine`` with ``quantifier``: Holm across the metrics where
    it applies), "rate" (supported + contradicted: the wrong verdicts when ``effect`` is 0) with
    its Monte Carlo SE, and "coverage" (the share of the metrics' intervals that hold the true Δ).
    ``metrics_judged``: judge only the first so many of the ``n_metrics`` simulated (their draws
    are those of a simulation of that many metrics, with another seed: the metrics are
    exchangeable), which lets several settings share one simulation. ``simulation``: the rest of
    ``simulated_intervals``' arguments."""
    sim = simulated_intervals(n_seeds, noise, n_sim=n_sim, n_images=n_images, n_metrics=n_metrics, **simulation)
    k = metrics_judged or n_metrics
    truth = effect * sim["sd"]
    delta, se, df = sim["delta"][:k] + truth, sim["se"][:k], sim["df"][:k]
    sides = metric_sides(delta, se, df, quantifier)
    supported, contradicted = _combine_sides(sides["supported"], sides["contradicted"], quantifier)
    half = _t(1 - (1 - LEVEL) / 2, df) * se
    coverage = float(((delta - half < truth) & (truth < delta + half)).double().mean())
    shares = {SUPPORTED: float(supported.double().mean()), CONTRADICTED: float(contradicted.double().mean())}
    shares[NOT_RESOLVED] = 1 - shares[SUPPORTED] - shares[CONTRADICTED]
    rate = shares[SUPPORTED] + shares[CONTRADICTED]
    return {**shares, "rate": rate, "mc_se": math.sqrt(max(rate * (1 - rate), 1e-12) / n_sim), "coverage": coverage,
            "n_sim": n_sim, "n_seeds": n_seeds, "noise": noise, "n_metrics": k, "quantifier": quantifier,
            "effect": effect}


def simulated_paired_values(n_sim: int, n_seeds: int, n_images: int, generator: torch.Generator,
                            weights: torch.Tensor, *, shared_sd: float = 0.3, seed_sd: float = 0.1,
                            image_sd: float = 1.0) -> torch.Tensor:
    """Seed-paired experiments, no true effect: [n_sim, 2 rows, n_seeds, 1 + R] metric values.
    Each training seed s draws an effect u_s ~ N(0, ``shared_sd``²) that both rows share (two
    readings of the same trained model), and each row adds its own per-seed offset (``seed_sd``),
    its own per-image values (``image_sd``, the same for every seed) and seed-specific image noise
    (``image_sd`` / 2), as ``simulated_values``' "both"; resampled by ``weights`` ([1 + R, n_images])."""
    w = (weights / weights.sum(1, keepdim=True)).T.to(torch.float64)      # [n_images, 1 + R]: means

    def normal(*size):
        return torch.randn(*size, generator=generator, dtype=torch.float64)
    x = shared_sd * normal(n_sim, 1, n_seeds, 1) + seed_sd * normal(n_sim, 2, n_seeds, 1)
    x = x + image_sd * normal(n_sim, 2, 1, n_images) + 0.5 * image_sd * normal(n_sim, 2, n_seeds, n_images)
    return x @ w


def paired_false_verdict_rate(n_seeds: int, *, n_sim: int, n_images: int, paired: bool = True, seed: int = 0,
                              n_resamples: int = 200, shared_sd: float = 0.3, seed_sd: float = 0.1,
                              image_sd: float = 1.0) -> dict:
    """Share of wrong supported/contradicted verdicts (superiority, one metric) on
    ``simulated_paired_values``' experiments, judged by the paired interval (``paired``) or, on the
    same data, by the unpaired one (which counts the shared effect twice: conservative). Returns
    rate, its Monte Carlo SE, the shares supported and contradicted, and the intervals' coverage of
    the true Δ = 0. The same ``seed`` gives the same data whatever ``paired``."""
    g = torch.Generator().manual_seed(1000 * seed + 100 + n_seeds)
    values = simulated_paired_values(n_sim, n_seeds, n_images, g, image_weights(n_images, n_resamples, seed),
                                     shared_sd=shared_sd, seed_sd=seed_sd, image_sd=image_sd)
    e = _welch_interval(values[:, 0], values[:, 1], paired=paired)
    supported, contradicted = e["low"] > 0, e["high"] < 0
    shares = {SUPPORTED: float(supported.double().mean()), CONTRADICTED: float(contradicted.double().mean())}
    rate = shares[SUPPORTED] + shares[CONTRADICTED]
    return {**shares, "rate": rate, "mc_se": math.sqrt(max(rate * (1 - rate), 1e-12) / n_sim),
            "coverage": 1 - rate, "n_sim": n_sim, "n_seeds": n_seeds, "paired": paired}


def false_verdict_rate(n_seeds: int, noise: str, *, n_sim: int, n_images: int, seed: int = 0,
                       n_resamples: int = 200, n_metrics: int = 1, correlation: float = 0.8,
                       seed_sd: float = 0.1, image_sd: float = 1.0, quantifier: str = "all",
                       metrics_judged: int | None = None) -> dict:
    """Share of wrong supported/contradicted verdicts (superiority) when there is no true effect
    (``verdict_rates`` at effect 0).

    Two rows, ``n_seeds`` training seeds each, drawn by ``simulated_values`` (``noise``: "seed",
    "image" or "both"). ``n_metrics`` > 1: primary metrics whose noises correlate by
    ``correlation``, judged by ``quantifier`` (Holm across them where it applies). Returns rate,
    its Monte Carlo SE, the shares supported and contradicted, and the intervals' coverage."""
    return verdict_rates(n_seeds, noise, n_sim=n_sim, n_images=n_images, quantifier=quantifier, n_metrics=n_metrics,
                         metrics_judged=metrics_judged, seed=seed, n_resamples=n_resamples, correlation=correlation,
                         seed_sd=seed_sd, image_sd=image_sd)
