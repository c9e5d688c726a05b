"""The book's one standard for claims: what a claim is, how its interval is made, and
the one function that turns an interval into a verdict.

A ``Claim`` records the paper's own words (quoted, with where they stand) or, marked
``quoted=False``, the book's measurable reading of a claim the paper makes only in
words; the rows it compares (``better`` should beat ``worse``); its primary
metric(s) as the paper states them; the direction. Secondary metrics are shown in
the evidence, never voted.

Evidence. Every row a claim compares is trained with several training seeds on fixed
data and a fixed backbone. For each seed s and each of R bootstrap resamples of the
test images (the same resamples for both rows: paired), the metric is computed:
``values[s, r]`` (column 0 is the test set itself). The estimate is
Δ = mean_s metric(better, s) − mean_s metric(worse, s). Its interval is a two-level
bootstrap: each replicate r draws a resample of the test images (column r) *and*
resamples the seeds of each row with replacement, then takes the difference of the
seed means; the percentile interval of those replicates covers both the test-image
sampling and the seed-to-seed spread of training.

Verdicts (``verdict``), one of four words:
- **supported**: the interval excludes 0 in the claimed direction;
- **contradicted**: it excludes 0 the other way;
- **not resolved**: it contains 0 (the interval is printed, so a reader sees whether it
  is tight: a tight interval around 0 is evidence of no effect, a wide one of too little data);
- **not testable**: the data cannot test it (e.g. object sizes on a data set without boxes).
A claim with several primary metrics is supported when all are, contradicted when any is.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import pandas as pd
import torch

VERDICTS = ("supported", "contradicted", "not resolved", "not testable")
LEVEL = 0.95          # two-sided percentile interval
N_RESAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Claim:
    text: str                       # the paper's words (quoted=True) or the book's reading of them
    source: str                     # where: "Sec. 4.2", "Table 2", "Sec. 3 (text)"
    better: str                     # the row claimed to be better
    worse: str                      # the row it is compared with
    metrics: tuple[str, ...]        # primary metric(s), as the paper states them
    quoted: bool = True
    direction: str = "higher"       # "higher": better > worse on every primary metric
    dataset: str = ""
    note: str = ""                  # e.g. what else differs between the rows (a confound)

    def __post_init__(self):
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"direction must be 'higher' or 'lower', not {self.direction!r}")
        if not self.metrics:
            raise ValueError("a claim needs at least one primary metric")


def image_weights(n_images: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> torch.Tensor:
    """[1 + R, N] float64: row 0 is the test set (all ones), rows 1..R bootstrap resamples
    (how often each image is drawn). Pass the same matrix to every row a claim compares."""
    from .metrics import bootstrap_weights

    return torch.cat([torch.ones(1, n_images, dtype=torch.float64),
                      bootstrap_weights(n_resamples, n_images, seed)])


def interval(values_better: torch.Tensor, values_worse: torch.Tensor, *, level: float = LEVEL,
             seed: int = 0) -> dict:
    """Δ of the seed means and its two-level bootstrap interval.

    ``values_*`` [S, 1 + R]: the metric of each training seed (rows) on the test set
    (column 0) and on R image resamples. Returns {"delta", "low", "high", "seeds":
    (S_better, S_worse), "seed_deltas": per-seed Δ on the test set (paired by seed index
    where both rows have it)}.
    """
    a, b = torch.as_tensor(values_better, dtype=torch.float64), torch.as_tensor(values_worse, dtype=torch.float64)
    if a.ndim == 1:
        a, b = a[None], b[None]
    if a.shape[1] != b.shape[1]:
        raise ValueError("both rows must be measured on the same image resamples")
    delta = float(a[:, 0].mean() - b[:, 0].mean())
    R = a.shape[1] - 1
    if R < 1:
        return {"delta": delta, "low": math.nan, "high": math.nan, "seeds": (len(a), len(b)), "seed_deltas": []}
    g = torch.Generator().manual_seed(seed + 104729)
    pick_a = torch.randint(0, len(a), (R, len(a)), generator=g)      # seeds drawn with replacement
    pick_b = torch.randint(0, len(b), (R, len(b)), generator=g)
    cols = torch.arange(1, R + 1)
    rep = a[pick_a, cols[:, None]].mean(1) - b[pick_b, cols[:, None]].mean(1)
    rep = rep[~rep.isnan()]
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    low, high = torch.quantile(rep, q).tolist() if len(rep) else (math.nan, math.nan)
    n = min(len(a), len(b))
    return {"delta": delta, "low": low, "high": high, "seeds": (len(a), len(b)),
            "seed_deltas": (a[:n, 0] - b[:n, 0]).tolist()}


def verdict(low: float, high: float, direction: str = "higher", testable: bool = True) -> str:
    """The one rule: an interval of Δ = better − worse -> one of ``VERDICTS``."""
    if not testable:
        return VERDICTS[3]
    if math.isnan(low) or math.isnan(high):
        return VERDICTS[2]
    sign = 1 if direction == "higher" else -1
    lo, hi = sorted((sign * low, sign * high))
    if lo > 0:
        return VERDICTS[0]
    if hi < 0:
        return VERDICTS[1]
    return VERDICTS[2]


def combine(verdicts: Sequence[str]) -> str:
    """Several primary metrics: contradicted if any is, supported if all are, else not resolved."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    if VERDICTS[3] in verdicts:
        return VERDICTS[3]
    if VERDICTS[1] in verdicts:
        return VERDICTS[1]
    return VERDICTS[0] if all(v == VERDICTS[0] for v in verdicts) else VERDICTS[2]


def evaluate(claim: Claim, values: dict[str, tuple[torch.Tensor, torch.Tensor]], *,
             scale: float = 100.0, testable: bool = True, why_not: str = "",
             secondary: dict[str, float] | None = None, published: dict[str, float] | None = None,
             seed: int = 0) -> dict:
    """One row of a claims table.

    ``values[metric] = (better [S, 1+R], worse [S, 1+R])`` for every primary metric (see
    ``interval``); ``scale`` turns fractions into points. ``secondary``: Δ of other metrics,
    shown only. ``published``: the Δ the paper's own table gives for each metric, shown
    next to the measured one. ``testable=False`` with ``why_not`` when the data cannot test it.
    """
    parts, verdicts = [], []
    if testable:
        for m in claim.metrics:
            r = interval(*values[m], seed=seed)
            v = verdict(r["low"], r["high"], claim.direction)
            verdicts.append(v)
            pub = "" if not published or published.get(m) is None else f"; paper's table {published[m]:+.1f}"
            spread = (f"; per seed {', '.join(f'{scale * d:+.1f}' for d in r['seed_deltas'])}"
                      if len(r["seed_deltas"]) > 1 else "")
            parts.append(f"{m} Δ {scale * r['delta']:+.1f} [{scale * r['low']:+.1f}, {scale * r['high']:+.1f}]"
                         f" ({r['seeds'][0]} vs {r['seeds'][1]} seeds{spread}{pub})")
        evidence = "; ".join(parts)
        if secondary:
            evidence += "; shown, not voted: " + ", ".join(f"{k} {v:+.1f}" for k, v in secondary.items())
    else:
        verdicts.append(VERDICTS[3])
        evidence = why_not or "the data cannot test it"
    words = f"“{claim.text}”" if claim.quoted else f"{claim.text} (the book's reading)"
    return {"data set": claim.dataset, "claim": words, "source": claim.source,
            "compared": f"{claim.better} vs {claim.worse}", "primary": ", ".join(claim.metrics),
            "evidence": evidence + (f" (note: {claim.note})" if claim.note else ""),
            "verdict": combine(verdicts)}


def table(rows: list[dict]) -> pd.DataFrame:
    """The claims table of a chapter (its verdicts checked against the four words; no cell holds a
    '|', which would split a Markdown table's columns)."""
    df = pd.DataFrame(rows, columns=["data set", "claim", "source", "compared", "primary", "evidence", "verdict"])
    if df.astype(str).apply(lambda col: col.str.contains("|", regex=False)).any().any():
        raise ValueError("a claims cell contains '|', which breaks the Markdown table")
    bad = set(df["verdict"]) - set(VERDICTS)
    if bad:
        raise ValueError(f"verdicts must be among {VERDICTS}, not {sorted(bad)}")
    return df


def published_delta(reference: pd.DataFrame, better: str, worse: str, metric: str) -> float | None:
    """Δ (points) of two rows of a paper's own table, or None where a cell is missing."""
    try:
        a, b = reference.loc[better, metric], reference.loc[worse, metric]
    except KeyError:
        return None
    return None if pd.isna(a) or pd.isna(b) else round(float(a - b), 1)


# --- metric values on image resamples ----------------------------------------------------------

def set_metric_values(preds: Sequence[torch.Tensor], targets: torch.Tensor, weights: torch.Tensor,
                      metric: str, ignore=None) -> torch.Tensor:
    """[S, 1+R]: ``metric`` (CP..OF1) of each seed's fixed predictions [N, C] on each resample."""
    from .metrics import prf_resampled

    return torch.stack([prf_resampled(p, targets, weights, ignore)[metric] for p in preds])


def map_values(scores: Sequence[torch.Tensor], targets: torch.Tensor, weights: torch.Tensor,
               ignore=None) -> torch.Tensor:
    """[S, 1+R]: mAP of each seed's scores on each resample (classes without a positive left out)."""
    from .metrics import average_precision

    return torch.stack([average_precision(s, targets, ignore, weights=weights).nanmean(1) for s in scores])
