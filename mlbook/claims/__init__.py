"""The book's one standard for claims: what a claim is, how its interval is made, and the one
rule that turns intervals into a verdict.

Layout: ``standard`` (claims, interval, rule, one table row), ``tables`` (a chapter's claims
tables), ``power`` (detectable effects, multiplicity, the measured error rate), ``stability`` (the
chance that an independent rerun gives the same verdict).

**Claims are data.** ``mlbook/reference/claims_<chapter>.csv`` (one file per chapter; a ``claims.csv`` beside them is read too)
holds one row per claim and data set, with the date it was registered (``registered``: most rows were
written in their chapter on 2026-11-28, after early demo runs, and moved here on 2026-11-29), never
"before any run": the paper's words (``quoted``, with where they stand) or the book's measurable reading; the rows compared (``better`` should beat
``worse``); the primary metric(s) and their ``quantifier`` (how several make the verdict, below);
the test, its margin and the words that give the number. ``load`` validates them. Secondary
metrics are shown in the evidence, never voted.

**Amendments stay visible.** A test changed after its result was seen keeps the original beside
it (``amended``, ``original_test``, ``original_margin``, ``original_better``/``original_worse``,
``original_metrics``, ``original_direction``, ``original_paired`` ("" unchanged, "true" or "false";
the column may be absent), ``original_fixed`` (the original's fixed rows where the amendment changed
them; may be absent), ``amendment_reason``; ``Claim.original``).
``evaluate`` judges both, and the claims table shows the original's verdict and the reason next to
the amended one: a reader can see what was changed after the data spoke.

**The interval.** Each compared row is trained with S training seeds on fixed data; its metric is
computed on the test set and on R bootstrap resamples of the test images, the same resamples for
both rows: ``values[s, 0]`` on the test set, ``values[s, r]`` on resample r. The estimate is
Δ = mean_s better[s, 0] − mean_s worse[s, 0], and

    Var(Δ) = s²_b / S_b + s²_w / S_w + Var_r(mean_s better[:, r] − mean_s worse[:, r]),

seed parts (sample variances over seeds on the test set; none for a ``fixed`` row, an algorithm
without training seeds or a constant) plus the image-sampling part of the paired resamples. With
``paired`` rows (two readings of the same trained models, e.g. two decoders, or rows whose seed s
shares a trained part, e.g. chapter 08's backbone of seed s) the seed part is the
variance of the per-seed differences over S. The interval is Δ ± t_df · SE, df by Welch–
Satterthwaite (seed parts S − 1, image part R − 1): with 3 seeds the t quantile, not a resample of
three numbers, carries the uncertainty of a variance estimated from three values. Seed-specific
image noise enters both parts, which errs on the wide side.

**The rule** (``verdict``), per primary metric, Δ signed so that positive favours the claim:
superiority: supported if low > 0, contradicted if high < 0; non-inferiority with margin m
(better ≥ worse − m): supported if low > −m, contradicted if high < −m; equivalence with margin m
(|Δ| < m): supported if −m < low and high < m, contradicted if low > m or high < −m; otherwise
not resolved. Each side is a one-sided test at (1 − 0.95) / 2 = 2.5% (``one_sided_p``: the t
test against the boundary; equivalence supported by TOST, contradicted by the nearer outside
side). Several primary metrics are tested as the paper words the claim, its ``quantifier``
(``combine``, ``metric_sides``): **all** ("in terms of all measurements", "outperforms" with a
list of metrics, and a sentence on performance that names no metric): supported if every metric
is supported at its own level (an intersection–union test needs no correction), contradicted if
at least one is contradicted after Holm's step-down across the k metrics at family-wise 2.5%
(ordered by p, the j-th (from 0) at 2.5% / (k − j)); **any** ("better in terms of X or Y"):
supported if at least one is supported after Holm, contradicted if every one is contradicted at
its own level; **primary** (a sentence about one headline number, listed first): the first metric
decides, the others are shown with their own verdicts. One metric: its verdict, whatever the
quantifier. Each metric's verdict is printed at the level the quantifier reads it
(``metric_verdict``; "alone: ..." where Holm changed it, ``metric_verdict_unadjusted``), and the
quantifier once. Not testable: the data cannot test the claim. Margins are in points (the units
of the evidence, values × scale).

**Seeds and replicates.** No verdict from fewer than ``MIN_SEEDS`` training seeds on a non-fixed
row. ``N_RESAMPLES`` image resamples, ``MAX_RESAMPLES`` when an interval end lies within 4 Monte
Carlo standard errors of a decision boundary (SE of the image variance v: v·√(2/(R − 1))), so no
verdict depends on the bootstrap seed; ends near a boundary are printed with the decimals that show
their side.

**Measured** by tests/test_claims.py (``false_verdict_rate``, ``verdict_rates``: two rows,
4,000 simulated comparisons per setting, 200 images, 200 replicates): with no true effect, wrong
supported/contradicted verdicts of one metric with 3 / 5 / 10 seeds: seed noise only 4.3 / 4.9 /
5.1%, image noise only 5.4 / 5.2 / 4.6%, both 5.0 / 4.7 / 4.6% (Monte Carlo SE about 0.35
points). Several metrics (both noises, 3 and 5 seeds, 2 and 6 metrics correlated 0 or 0.8; the
test: each side ≤ 2.5% + 3 MC SEs): all, wrong supported 0–1.0%, wrong contradicted 1.3–2.5%
(without Holm six independent metrics would say contradicted 14% of the time); any, supported
1.6–3.0%, contradicted 0–1.0%; primary, each side 1.8–2.8%. Power, at a true effect of 3 SDs of Δ
(3 seeds, both noises, independent metrics): supported 79% (one metric or primary), 63% / 25%
(all of 2 / 6), 89% / 98% (any of 2 / 6); one metric with seed noise only 52% (df near 3), image
noise only 85%; the 95% interval holds the true Δ in 94.7–95.7% of the experiments. The
percentile bootstrap over seeds used before gave 16.8% wrong verdicts (3 seeds, seed noise).
Paired rows (``power.paired_false_verdict_rate``: a shared per-seed effect, SD 0.3, added to both rows,
on top of each row's own seed noise 0.1 and both image noises; one metric, no true effect): wrong
verdicts of the paired interval with 3 / 5 seeds 5.3 / 4.8%; the unpaired interval on the same data,
which counts the shared effect twice, 0.6 / 0.3%.
``multiplicity`` says what 5% means for a chapter.

**Stability** (``stability.p_same``, the table's last column): the chance that an independent rerun
(another ``--seed``: new data, backbone and training seeds) gives the same verdict, from the claim's
Δ, SE and df: the rerun's Δ' ~ Normal(Δ, 2σ²) and SE'² ~ σ² χ²_df/df, with σ² ~ SE² df/χ²_df,
read through the rule above (several metrics independent, by the quantifier, without Holm). Calibrated by simulation over a spread
of true effects (tests/test_claims_stability.py); Σ (1 − P) is the number of verdicts a rerun is
expected to change (chapter 00).
"""
from __future__ import annotations

from .power import false_verdict_rate, multiplicity, power_table, verdict_rates
from .standard import (
    AMENDMENT,
    CLAIMS_DIR,
    COLUMNS,
    CONTRADICTED,
    Claim,
    DATASETS,
    DIRECTIONS,
    DISPLAY,
    LEVEL,
    MAX_RESAMPLES,
    MC_GUARD,
    MIN_SEEDS,
    NOT_RESOLVED,
    NOT_TESTABLE,
    N_RESAMPLES,
    P_SAME,
    QUANTIFIERS,
    SUPPORTED,
    TESTS,
    VERDICTS,
    boundaries,
    combine,
    get,
    interval,
    load,
    mde,
    verdict,
)
from .evaluation import evaluate
from .replication import POWER_SPLIT, READINGS, REPLICATION, claim_reading, power_label, reading, seeds_for_power
from .stability import claim_p_same, expected_changes, p_same
from .tables import TIDY, published_delta, table, tidy

__all__ = [
    "AMENDMENT",
    "false_verdict_rate",
    "verdict_rates",
    "multiplicity",
    "power_table",
    "CLAIMS_DIR",
    "COLUMNS",
    "CONTRADICTED",
    "Claim",
    "DATASETS",
    "DIRECTIONS",
    "DISPLAY",
    "LEVEL",
    "MAX_RESAMPLES",
    "MC_GUARD",
    "MIN_SEEDS",
    "NOT_RESOLVED",
    "NOT_TESTABLE",
    "N_RESAMPLES",
    "P_SAME",
    "QUANTIFIERS",
    "SUPPORTED",
    "TESTS",
    "VERDICTS",
    "boundaries",
    "combine",
    "evaluate",
    "get",
    "interval",
    "load",
    "mde",
    "verdict",
    "claim_p_same",
    "expected_changes",
    "p_same",
    "TIDY",
    "published_delta",
    "table",
    "tidy",
    "POWER_SPLIT", "READINGS", "REPLICATION", "claim_reading", "power_label", "reading", "seeds_for_power",
]
