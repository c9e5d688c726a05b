"""The one metrics module of the book: multi-label ranking and set metrics.

Everything here works on a score matrix ``scores`` [N, C] (higher = more
confident; probabilities or logits), a target matrix ``targets`` [N, C] with
values in {0, 1}, and an optional ``ignore`` mask [N, C] (bool, ``True`` = the
entry is not scored, e.g. a VOC 2007 "difficult" label).  It is vectorised in
torch: no per-class Python loop in the hot path, and it runs on whatever device
the tensors live on (CPU or GPU), in float32 or float64.  Counts are exact
(integers; float32 only where every partial sum fits its 24-bit mantissa) and
precisions are float64.  AP ranks every class with one sort (of packed 64-bit
keys, see ``_sorted_keys``) and then works on the positives only; bootstrap
resamples reuse that one ranking (see ``_ap_weighted``).

Conventions (stated once, used everywhere)
------------------------------------------
* Every metric is a **fraction in [0, 1]**; tables multiply by 100 themselves.
* **AP** is non-interpolated, scikit-learn's ``average_precision_score``:
  ``AP = sum_n (R_n - R_{n-1}) P_n`` over decreasing thresholds with ``R_0 = 0``.
  ``ties="sklearn"`` makes tied scores one threshold (sklearn); ``ties="stable"``
  makes every item its own threshold, ranked by score then by lower row index.
* A class without a positive has AP = **NaN**; :func:`mean_average_precision`
  is the mean over the classes whose AP is not NaN (``nanmean``).  If every class
  is NaN the mAP is NaN.
* ``ignore``: with ``difficult="ignore"`` (default, the VOC protocol) an ignored
  entry is deleted: it is neither a positive nor a negative, it is removed from
  its class's ranking and cannot be predicted or counted in P/R/F1 (it does not
  take a top-k slot).  With ``difficult="negative"`` an ignored entry is scored
  as a negative (its target is forced to 0).
* **Top-k** predictions: the k highest scores of each image; ties are broken by
  the lower class index (stable sort); ``k > C`` predicts every label.
  ``floor`` keeps only the top-k labels whose score is ``>= floor``.
  ``threshold`` predicts every label with ``score >= threshold`` (``> threshold``
  with ``strict=True``).
* **CP/CR/CF1/OP/OR/OF1** (per-class = "C", overall = "O", the names of the
  papers; O is micro, C is macro).  With Nc, Np, Ng the per-class counts of
  correct, predicted and ground-truth labels::

      CP = mean_c Nc/Np     CR = mean_c Nc/Ng     OP = sum Nc / sum Np
      OR = sum Nc / sum Ng  OF1 = 2 OP OR / (OP + OR)

  - CR (and ``cf1="mean_f1"``) average over the classes with Ng > 0 only
    (recall is undefined without a ground-truth label); CP averages over all
    classes, a class with Np = 0 taking ``empty_precision``: ``"zero"`` (counts
    as 0, the common open-source practice), ``"one"`` (counts as 1) or
    ``"skip"`` (left out of the CP mean).  OP with sum Np = 0 follows the same
    option (0, 1, NaN).
  - ``cf1="harmonic"``: 2 CP CR / (CP + CR) of the averaged CP and CR (what
    every paper of the book reports); ``"mean_f1"``: mean over classes of the
    per-class F1 = 2 Nc / (Np + Ng); ``"geometric"``: sqrt(CP CR) (what the
    transformation-ranking paper's text says, although its numbers are
    harmonic).  An F1 whose P and R are both 0 is 0.
* **mAP@10**: see :func:`map_at_k`.
* **Chance level** of AP: :func:`random_ranking_ap`, the exact expected AP of a
  uniformly random ranking, which exceeds the prevalence on a finite test set.
* **Resamples**: ``weights`` [R, N] holds how often each image is drawn in each of R
  bootstrap resamples (:func:`bootstrap_weights`); a metric on a row equals the metric
  on that resample, an image drawn k times counting as k tied copies.

The evidence helpers (object sizes, means over pairs, recall of held-out labels) compute
the quantities some chapters' claims compare, on resamples too.

Layout (every public name is importable from ``mlbook.metrics`` itself)
-----------------------------------------------------------------------
* :mod:`.ranking`: the AP engine (packed-key sort, thresholds, weighted resamples) and the
  ranking metrics: ``average_precision``, ``mean_average_precision``, ``random_ranking_ap``,
  ``map_at_k``, ``pr_curve``.
* :mod:`.sets`: set metrics: ``predict_labels``, ``confusion_counts``, ``prf``,
  ``prf_of_predictions``, ``prf_of_thresholds``, ``prf_resampled``, ``PRF_KEYS``, ``CF1_OPTIONS``,
  ``EMPTY_PRECISION_OPTIONS``.
* :mod:`.conventions`: the papers' conventions and protocols: ``PAPER_CONVENTIONS``,
  ``PROTOCOLS``, ``variant_key``, ``evaluate_all``, ``summary``.
* :mod:`.resampling`: ``bootstrap_weights``, ``image_weights``, the per-seed values on
  resamples that claims compare (``set_metric_values``, ``map_values``, ``resampled_ap``) and
  the evidence helpers.
* ``._inputs``: the input checking the others share.

``ranking`` and ``sets`` are the bottom layer, ``conventions`` and ``resampling`` use them;
nothing here imports :mod:`mlbook.claims` (claims is the layer above).
"""
from __future__ import annotations

from .conventions import PAPER_CONVENTIONS, PROTOCOLS, evaluate_all, summary, variant_key
from .ranking import (average_precision, map_at_k, mean_average_precision, pr_curve,
                      random_ranking_ap)
from .resampling import (bootstrap_weights, bucket_recall, image_weights, map_values,
                         object_size_hits, pair_mean, positive_wins, recall_by_area, relative_sizes,
                         resampled_ap, set_metric_values, size_buckets, unseen_recall_at,
                         weighted_mean)
from .sets import (CF1_OPTIONS, EMPTY_PRECISION_OPTIONS, PRF_KEYS, confusion_counts,
                   predict_labels, prf, prf_of_predictions, prf_of_thresholds, prf_resampled)

__all__ = [
    "average_precision",
    "mean_average_precision",
    "map_at_k",
    "predict_labels",
    "confusion_counts",
    "prf",
    "pr_curve",
    "PAPER_CONVENTIONS",
    "PROTOCOLS",
    "CF1_OPTIONS",
    "EMPTY_PRECISION_OPTIONS",
    "evaluate_all",
    "summary",
    "bootstrap_weights",
    "prf_resampled",
    "prf_of_predictions",
    "prf_of_thresholds",
    "variant_key",
    "random_ranking_ap",
    "relative_sizes",
    "object_size_hits",
    "size_buckets",
    "bucket_recall",
    "recall_by_area",
    "weighted_mean",
    "pair_mean",
    "positive_wins",
    "unseen_recall_at",
    "PRF_KEYS",
    "image_weights",
    "set_metric_values",
    "map_values",
    "resampled_ap",
]
