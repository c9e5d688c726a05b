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

The evidence helpers at the end (object sizes, means over pairs, recall of held-out
labels) compute the quantities some chapters' claims compare, on resamples too.
"""
from __future__ import annotations

import math
import sys
import warnings
from typing import Any, NamedTuple

import torch

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
]

CF1_OPTIONS = ("harmonic", "mean_f1", "geometric")
EMPTY_PRECISION_OPTIONS = ("zero", "skip", "one")
PRF_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")

# ---------------------------------------------------------------------------
# input checking
# ---------------------------------------------------------------------------


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except Exception as exc:  # pragma: no cover - message only
        raise TypeError(f"{name}: cannot convert {type(x).__name__} to a tensor") from exc


def _check(scores, targets, ignore=None, difficult: str = "ignore"):
    """Validate and return (scores float, targets bool, valid bool or None)."""
    scores = _as_tensor(scores, "scores")
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, C], got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        scores = scores.double()
    targets, valid = _check_labels(targets, ignore, difficult, scores.shape, scores.device)
    # cheap test first (a sum is finite iff no NaN/inf, barring overflow, which the full test settles)
    if not bool(torch.isfinite(scores.sum())):
        if not bool(torch.isfinite(scores).all()):
            raise ValueError("scores must be finite (found NaN or inf)")
    return scores, targets, valid


def _check_labels(targets, ignore=None, difficult: str = "ignore", shape=None, device=None):
    """Validate and return (targets bool [N, C], valid bool or None) on ``device``; ``shape``:
    the scores' shape they must have."""
    targets = _as_tensor(targets, "targets")
    if targets.ndim == 1:
        targets = targets[:, None]
    shape = tuple(targets.shape) if shape is None else tuple(shape)
    if tuple(targets.shape) != shape:
        raise ValueError(f"targets shape {tuple(targets.shape)} != scores shape {shape}")
    if targets.ndim != 2:
        raise ValueError(f"targets must be [N, C], got shape {shape}")
    if targets.dtype != torch.bool:
        if not bool(((targets == 0) | (targets == 1)).all()):
            raise ValueError("targets must contain only 0 and 1 "
                             "(VOC -1/0/1 files: map 1 -> 1, -1 -> 0, 0 -> ignore)")
        targets = targets != 0
    if difficult not in ("ignore", "negative"):
        raise ValueError(f"difficult must be 'ignore' or 'negative', got {difficult!r}")
    device = targets.device if device is None else device
    valid = None
    if ignore is not None:
        ignore = _as_tensor(ignore, "ignore")
        if ignore.ndim == 1:
            ignore = ignore[:, None]
        if tuple(ignore.shape) != shape:
            raise ValueError(f"ignore shape {tuple(ignore.shape)} != scores shape {shape}")
        ignore = ignore.to(device=device, dtype=torch.bool)
        if difficult == "negative":
            targets = targets.to(device) & ~ignore
        else:
            valid = ~ignore
    return targets.to(device), valid


# ---------------------------------------------------------------------------
# ranking metrics
# ---------------------------------------------------------------------------


# One sort serves every class. Each entry (image i, class c) becomes one 64-bit key
#     [ score key: 32 bits | image index i: 31 bits | positive: 1 bit ]
# whose ascending order is (score descending, image index ascending): the "stable" ranking,
# which is also a valid "sklearn" ranking (a tie group is one threshold whatever its inner
# order). Sorting the keys, rather than arg-sorting the scores, carries the image index and the
# target along: no gather follows the sort, and numpy's SIMD sort of int64 is ~2x faster than
# its argsort. Everything after the sort works on the positives only (a few % of the entries).
_LOW31 = 0x7FFFFFFF
_LOW63 = 0x7FFFFFFFFFFFFFFF
_IGNORED = 0x7FFFFFFF   # score part of an ignored entry: after every finite score
_MAX_SCORE_PART = 0xFFFFFFFF


def _descending_key(scores: torch.Tensor) -> torch.Tensor:
    """Integer keys (int32 for float32 scores, int64 for float64) whose ascending order is the
    scores' descending order; equal scores get equal keys."""
    # 0.0 - s negates and turns -0.0 into +0.0 (a tie, as in scikit-learn)
    bits = (0.0 - scores).view(torch.int32 if scores.dtype == torch.float32 else torch.int64)
    sign_shift, magnitude = (31, _LOW31) if bits.dtype == torch.int32 else (63, _LOW63)
    # IEEE 754 is sign-magnitude: flipping the magnitude bits of negative numbers gives the
    # two's-complement order of the floats
    key = bits >> sign_shift
    key &= magnitude
    key ^= bits
    return key


def _fits_float32(scores: torch.Tensor) -> bool:
    """Whether float32 holds every score exactly (then the 32-bit score key is exact)."""
    if scores.dtype != torch.float64:
        return scores.element_size() <= 4
    return bool((scores.float().double() == scores).all())


def _sort_rows(keys: torch.Tensor, use_numpy: bool | None = None) -> torch.Tensor:
    """Each row of an int64 matrix sorted ascending (numpy's SIMD sort on CPU, torch elsewhere)."""
    if keys.device.type == "cpu" if use_numpy is None else use_numpy:
        import numpy as np

        return torch.from_numpy(np.sort(keys.numpy(), axis=1))
    return torch.sort(keys, dim=1).values


def _argsort_rows(keys: torch.Tensor, use_numpy: bool | None = None) -> torch.Tensor:
    """Stable argsort of each row of an int64 matrix."""
    if keys.device.type == "cpu" if use_numpy is None else use_numpy:
        import numpy as np

        return torch.from_numpy(np.argsort(keys.numpy(), axis=1, kind="stable"))
    return torch.sort(keys, dim=1, stable=True).indices


def _sorted_keys(scores, targets, valid, use_numpy: bool | None = None) -> torch.Tensor:
    """Every class ranked, as packed keys int64 [C, N]: row c holds class c's entries ascending,
    i.e. by decreasing score, then by image index; ignored entries come last, with score part
    ``_IGNORED``. Two keys have the same score part iff their scores are equal (tied).

    Float64 scores that float32 would round are ranked by one stable argsort of their 64-bit
    keys; the score part is then the rank of the tie group instead of the score itself."""
    n = scores.shape[0]
    if n >= 2 ** 30:                    # image << 1 | positive must fit a non-negative int32
        raise ValueError(f"at most 2**30 - 1 images, got {n}")
    positive = targets if valid is None else targets & valid
    image_bits = torch.arange(0, 2 * n, 2, device=scores.device)          # image index << 1
    if _fits_float32(scores):
        part = _descending_key(scores.float())                             # [N, C]
        if valid is not None:
            part.masked_fill_(~valid, _IGNORED)
        keys = part.long()                          # packed in the input's layout, then transposed
        keys <<= 32
        keys |= image_bits[:, None]
        keys |= positive
        return _sort_rows(keys.t().contiguous(), use_numpy)
    key = _descending_key(scores.double())
    if valid is not None:
        key.masked_fill_(~valid, _LOW63)
    key = key.t().contiguous()
    order = _argsort_rows(key, use_numpy)
    key = key.gather(1, order)
    part = torch.zeros_like(key)
    part[:, 1:] = (key[:, 1:] != key[:, :-1]).cumsum(1)                   # tie-group rank
    part.masked_fill_(key == _LOW63, _IGNORED)
    return (part << 32) | (order << 1) | positive.t().gather(1, order)


def _low_words(keys: torch.Tensor) -> torch.Tensor:
    """The low 32 bits of every key, ``image << 1 | positive``, as int32 [C, N] (a view on a
    little-endian machine: no pass over the keys)."""
    if sys.byteorder == "little":
        return keys.view(torch.int32)[..., 0::2]
    return (keys & 0xFFFFFFFF).int()


def _positive_entries(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class, rank) of every positive entry, by class then rank."""
    return (_low_words(keys) & 1).nonzero(as_tuple=True)


def _key_images(keys: torch.Tensor) -> torch.Tensor:
    return (keys >> 1) & _LOW31


def _search_rows(keys: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """For each (row, value): how many keys of that row are <= value (one batched binary search;
    the values are laid out per row, padded to the longest row)."""
    counts = torch.bincount(rows, minlength=keys.shape[0])
    column = torch.arange(len(rows), device=keys.device) - (counts.cumsum(0) - counts)[rows]
    padded = torch.zeros(keys.shape[0], int(counts.max()), dtype=keys.dtype, device=keys.device)
    padded[rows, column] = values
    return torch.searchsorted(keys, padded, right=True)[rows, column]


class _Thresholds(NamedTuple):
    """The thresholds that hold at least one positive, over all classes, class by class in rank
    order (G of them; S classes have a positive). ``end`` [G]: the rank of the threshold's last
    entry (its tie group's end with ties="sklearn", the positive itself with "stable");
    ``positives`` [G]: how many positives it holds; ``slot`` [G]: its class's index among the S;
    ``start``/``last`` [S]: each class's first and last threshold; ``cls`` [S]: the class;
    ``image`` [P]: the image of every positive, in the same order."""
    end: torch.Tensor
    positives: torch.Tensor
    slot: torch.Tensor
    start: torch.Tensor
    last: torch.Tensor
    cls: torch.Tensor
    image: torch.Tensor


def _positive_thresholds(keys: torch.Tensor, ties: str) -> _Thresholds:
    cls, rank = _positive_entries(keys)
    pos_keys = keys[cls, rank]
    if ties == "stable" or len(cls) == 0:
        end = rank
    else:  # the tie group ends at the last key with the same score part
        end = _search_rows(keys, cls, (pos_keys >> 32 << 32) | _MAX_SCORE_PART) - 1
    new = torch.ones_like(cls, dtype=torch.bool)
    new[1:] = (cls[1:] != cls[:-1]) | (end[1:] != end[:-1])
    starts = new.nonzero().squeeze(1)
    positives = torch.diff(starts, append=torch.tensor([len(cls)], device=keys.device))
    g_cls = cls[starts]
    first = torch.ones_like(g_cls, dtype=torch.bool)
    first[1:] = g_cls[1:] != g_cls[:-1]
    start = first.nonzero().squeeze(1)
    last = torch.cat([start[1:], torch.tensor([len(g_cls)], device=keys.device)]) - 1
    return _Thresholds(end[starts], positives, first.cumsum(0) - 1, start, last, g_cls[start],
                       _key_images(pos_keys))


class _Scratch:
    """Reused work tensors, by name: on CPU a fresh tensor of tens of MB costs more (page faults)
    than the pass that fills it, so each chunk of resamples reuses the previous chunk's."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, shape: tuple, dtype, device) -> torch.Tensor:
        size = math.prod(shape)
        t = self.tensors.get(name)
        if t is None or t.dtype != dtype or t.numel() < size:
            t = self.tensors[name] = torch.empty(size, dtype=dtype, device=device)
        return t[:size].view(shape)


def _class_cumsum(x: torch.Tensor, thr: _Thresholds, parts: int = 1, scratch: _Scratch | None = None
                  ) -> list[torch.Tensor]:
    """Cumulative sums along the thresholds restarted at every class's first one: ``x`` [..., parts
    * G] holds ``parts`` runs of the G thresholds side by side; returns one float64 [..., G]
    tensor per run. One running sum over everything in ``x``'s dtype, minus its value just
    before each class starts: exact for integer counts while the grand total fits that dtype's
    mantissa. ``scratch``: where the work tensors live (fresh ones without it)."""
    g, s = len(thr.end), len(thr.cls)
    scratch = scratch or _Scratch()
    lead = x.shape[:-1]
    cum = torch.cumsum(x, -1, out=scratch("cum", x.shape, x.dtype, x.device))
    run = torch.arange(parts, device=x.device)[:, None]
    before = cum.index_select(-1, (run * g + thr.start - 1).flatten().clamp_min(0))   # [..., parts * S]
    before[..., 0] = 0.0                               # the first class starts at column 0
    out = []
    for k in range(parts):
        base = torch.index_select(before[..., k * s:(k + 1) * s], -1, thr.slot,
                                  out=scratch("base", lead + (g,), x.dtype, x.device))
        out.append(torch.sub(cum[..., k * g:(k + 1) * g], base,
                             out=scratch(f"run{k}", lead + (g,), torch.float64, x.device)))
    return out


def _ap_from_counts(pos, tp, ranked, thr: _Thresholds, n_classes: int) -> torch.Tensor:
    """AP [..., C] from per-threshold counts [..., G]: ``pos`` positives at the threshold,
    ``tp`` positives and ``ranked`` entries at or above it (weighted or not; ``tp`` and
    ``ranked`` float64 and contiguous, overwritten).
    AP = sum_thresholds pos * (tp / ranked) / sum pos, i.e. sklearn's sum_n (R_n - R_{n-1}) P_n."""
    lead = pos.shape[:-1]
    npos = tp.index_select(-1, thr.last)                    # all positives: tp at the last threshold
    term = tp.div_(ranked.clamp_min_(1e-300)).mul_(pos)
    per_class = (thr.last - thr.start + 1).expand(lead + (len(thr.cls),)).contiguous()
    num = torch.segment_reduce(term, "sum", lengths=per_class, axis=len(lead))
    ap = torch.full(lead + (n_classes,), float("nan"), dtype=torch.float64, device=pos.device)
    ap[..., thr.cls] = torch.where(npos > 0, num / npos.clamp_min(1e-300), float("nan"))
    return ap


def _ap_unweighted(thr: _Thresholds, n_classes: int) -> torch.Tensor:
    """AP [C] of the test set itself: every count is an integer read off the ranks."""
    pos = thr.positives.double()
    if len(pos) == 0:
        return torch.full((n_classes,), float("nan"), dtype=torch.float64, device=pos.device)
    tp, = _class_cumsum(pos, thr)
    return _ap_from_counts(pos, tp, (thr.end + 1).double(), thr, n_classes)


def _block_matrix(keys: torch.Tensor, thr: _Thresholds, dtype) -> torch.Tensor:
    """Sparse CSR [2G, N]: row g sums the weights of the entries ranked after threshold g-1 of
    its class and up to threshold g (so a cumulative sum over a class's rows counts every entry
    at or above each threshold); row G + g sums the weights of threshold g's positives."""
    n_classes, n = keys.shape
    last = torch.full((n_classes,), -1, dtype=torch.long, device=keys.device)
    last[thr.cls] = thr.end[thr.last]
    low = _low_words(keys)
    # each class's entries up to its last threshold (a prefix of its row; slicing beats a mask)
    ranked = torch.cat([row[:k] for row, k in zip(low, (last + 1).tolist()) if k > 0])
    previous = torch.roll(thr.end, 1)
    previous[thr.start] = -1
    counts = torch.cat([thr.end - previous, thr.positives])
    index = torch.int32 if len(ranked) + len(thr.image) < 2 ** 31 else torch.long   # int32: faster
    crow = torch.cat([torch.zeros(1, dtype=torch.long, device=keys.device), counts.cumsum(0)]).to(index)
    col = torch.cat([ranked >> 1, thr.image.int()]).to(index)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        return torch.sparse_csr_tensor(crow, col, torch.ones(len(col), dtype=dtype, device=keys.device),
                                       size=(len(counts), n), check_invariants=False)


def _weight_chunk(part: torch.Tensor, scratch: _Scratch) -> tuple[torch.Tensor, float]:
    """A chunk of resamples [r, N] as the dense [N, r] operand of the sparse product, and its
    largest row sum. float32 when the weights are integers with row sums below 2**24 (every
    partial sum is then an integer that float32 holds exactly), float64 otherwise."""
    total = part.sum(1)
    if not bool(torch.isfinite(total).all()) or float(part.min()) < 0:
        raise ValueError("weights must be finite and non-negative (image counts)")
    largest = float(total.max())
    rounded = torch.round(part, out=scratch("rounded", part.shape, part.dtype, part.device))
    dtype = torch.float32 if largest < 2 ** 24 and torch.equal(part, rounded) else torch.float64
    return scratch("weights", part.t().shape, dtype, part.device).copy_(part.t()), largest


def _ap_weighted(keys: torch.Tensor, thr: _Thresholds, weights: torch.Tensor, chunk: int = 64,
                 rows: int = 8) -> torch.Tensor:
    """AP [R, C] on R resamples ``weights`` [R, N] (image counts), from the one ranking.

    Only the G thresholds that hold a positive matter: each resample needs the weighted counts
    of the entries between consecutive ones and of their positives, one sparse product of the
    [2G, N] block matrix with the weights (C * N additions per resample, in a single pass),
    then one cumulative sum over the thresholds. Exact: counts are summed as integers (in
    float32 only while every sum stays below 2**24, see ``_weight_chunk``), precisions in
    float64. The product takes ``chunk`` resamples at a time (work tensors of about
    ``chunk * (16 G + 12 N)`` bytes), the rest ``rows`` at a time (its work stays in cache)."""
    n_classes, n = keys.shape
    w = weights.to(keys.device)
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights must be [R, {n}], got shape {tuple(w.shape)}")
    g = len(thr.end)
    if g == 0 or len(w) == 0:                               # no positive anywhere, or no resample
        return torch.full((len(w), n_classes), float("nan"), dtype=torch.float64, device=keys.device)
    scratch, blocks, out = _Scratch(), {}, []
    for part in w.split(chunk):
        wt, largest = _weight_chunk(part, scratch)
        if wt.dtype not in blocks:
            blocks[wt.dtype] = _block_matrix(keys, thr, wt.dtype)
        product = scratch("product", (2 * g, len(part)), wt.dtype, keys.device)
        torch.addmm(product, blocks[wt.dtype], wt, beta=0, out=product)   # beta=0: no zero-filled result
        counts = scratch("counts", (len(part), 2 * g), wt.dtype, keys.device).copy_(product.t())
        if 2 * len(thr.cls) * largest >= 2 ** 24:    # the running sum (2 S row sums at most) needs float64
            counts = counts.double()
        for few in counts.split(rows):
            ranked, tp = _class_cumsum(few, thr, parts=2, scratch=scratch)
            out.append(_ap_from_counts(few[:, g:], tp, ranked, thr, n_classes))
    return torch.cat(out)


def average_precision(scores, targets, ignore=None, ties: str = "sklearn",
                      difficult: str = "ignore", weights=None) -> torch.Tensor:
    """Per-class average precision, Tensor[C] (float64, on the input's device).

    ``AP_c = sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds of class
    c (scikit-learn's ``average_precision_score``; non-interpolated), i.e. the
    mean over positives of the precision at their threshold. With ``ties="sklearn"``
    tied scores form one threshold; with ``"stable"`` each item is its own
    threshold in (score desc, row index asc) order. Classes with no positive
    (after ``ignore``) are NaN. See the module docstring for ``ignore``/``difficult``.

    ``weights`` [R, N]: image counts of R bootstrap resamples (an image drawn k
    times is k tied copies: one threshold, also with ``ties="stable"``); returns [R, C]
    then, one AP per resample and class. The classes are ranked once (one sort of packed
    keys for all classes) and every resample reuses that ranking.
    """
    if ties not in ("sklearn", "stable"):
        raise ValueError(f"ties must be 'sklearn' or 'stable', got {ties!r}")
    scores, targets, valid = _check(scores, targets, ignore, difficult)
    keys = _sorted_keys(scores, targets, valid)
    thr = _positive_thresholds(keys, ties)
    if weights is None:
        return _ap_unweighted(thr, keys.shape[0])
    return _ap_weighted(keys, thr, _as_tensor(weights, "weights"))


def mean_average_precision(scores, targets, ignore=None, ties: str = "sklearn",
                           difficult: str = "ignore") -> float:
    """mAP = mean of :func:`average_precision` over the classes that are not
    NaN (classes with no positive are excluded).  NaN if every class is."""
    ap = average_precision(scores, targets, ignore, ties=ties, difficult=difficult)
    ok = ~torch.isnan(ap)
    return float(ap[ok].mean()) if bool(ok.any()) else float("nan")


def random_ranking_ap(targets, ignore=None, weights=None) -> torch.Tensor:
    """The exact expected AP of a uniformly random ranking, per class: Tensor[C] (float64;
    [R, C] with ``weights``). Chance level for :func:`average_precision`.

    n items (the class's entries that are not ignored) in a uniformly random order, without
    ties, m of them positive. With rel_p = 1 if the item at rank p is positive and TP(p) the
    positives among the first p, AP = (1/m) sum_p rel_p TP(p) / p. Given a positive at rank
    p, each of the p - 1 items before it is positive with probability (m-1)/(n-1), so
    E[rel_p TP(p)] = (m/n) (1 + (p-1)(m-1)/(n-1)) and::

        E[AP] = (1/n) sum_{p=1..n} [1/p + (m-1)/(n-1) * (p-1)/p]
              = (m-1)/(n-1) + H_n (n-m) / (n (n-1)),      H_n = sum_{p<=n} 1/p

    (m = 1: H_n / n; m = n: 1; m = 0: NaN, as AP). It exceeds the prevalence m/n, the AP of
    a ranking that ties every item, by (n-m)(H_n - 1) / (n (n-1)): with 600 images and 26
    positives 5.3 % instead of 4.3 %; the two meet only as n grows at fixed m/n.

    ``weights`` [R, N]: per resample, an image drawn k times counts as k items of the random
    list (n and m are weighted counts; H_n = digamma(n + 1) + Euler's gamma, which also
    serves non-integer weights). ``ignore`` [N, C]: entries left out of n and m.
    """
    targets, valid = _check_labels(targets, ignore)
    positive = targets if valid is None else targets & valid
    items = torch.ones_like(targets) if valid is None else valid
    if weights is None:
        n, m = items.sum(0).double(), positive.sum(0).double()
    else:
        w = _as_tensor(weights, "weights").to(device=targets.device, dtype=torch.float64)
        n, m = w @ items.double(), w @ positive.double()
    harmonic = torch.special.digamma(n + 1) + 0.5772156649015329
    ap = (m - 1) / (n - 1) + harmonic * (n - m) / (n * (n - 1))
    ap = torch.where(m >= n, torch.ones_like(ap), ap)          # every item positive (n = 1 too)
    return torch.where(m > 0, ap, torch.full_like(ap, float("nan")))


def map_at_k(scores, targets, k: int = 10, ignore=None, per: str = "class",
             normalize: str = "min", difficult: str = "ignore") -> float:
    """mAP@k, the retrieval metric of CNN-RNN (Wang et al. 2016) that RLSD reports.

    Definition used (default ``per="class"``): for each class c, rank the
    images by their score for c (ties: lower row index first) and keep the top
    k; ``AP@k_c = (1 / min(k, G_c)) * sum_{i<=k} rel_i * P@i`` with ``P@i`` the
    fraction of relevant images among the first i and ``G_c`` the number of
    positive images of class c; mAP@k is the mean over classes with ``G_c > 0``.

    Why per class: RLSD says only "mAP@10 measures are additionally computed"
    (Table III) and Fig. 8 gives "the average precision @ 10" next to the
    precision-recall curves *of single classes* (bird, fire hydrant, kite),
    i.e. an AP of a class, computed on a ranking of images.  The papers never
    write the formula, so two choices are open and are named options:

    * ``per="image"``: rank the C labels of each image, AP over its top-k
      labels, mean over images with at least one positive (the label-ranking
      reading of "retrieval @10" used in image annotation).
    * ``normalize="min"`` divides by ``min(k, G)`` (the usual AP@k);
      ``normalize="retrieved"`` divides by the number of relevant items inside
      the top k (AP@k of the retrieved list, 0 when none is relevant).

    Ignored entries are removed from the ranking (``difficult="ignore"``).
    """
    if per not in ("class", "image"):
        raise ValueError(f"per must be 'class' or 'image', got {per!r}")
    if normalize not in ("min", "retrieved"):
        raise ValueError(f"normalize must be 'min' or 'retrieved', got {normalize!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores, targets, valid = _check(scores, targets, ignore, difficult)
    if per == "class":  # rank rows of the [C, N] matrix
        scores, targets = scores.t(), targets.t()
        valid = valid.t() if valid is not None else None
    if valid is None:
        valid = torch.ones_like(targets)
    s = scores.masked_fill(~valid, float("-inf"))
    kk = min(k, s.shape[1])
    order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :kk]
    v = torch.gather(valid, 1, order).double()
    rel = torch.gather(targets & valid, 1, order).double()
    hits = torch.cumsum(rel, dim=1)
    pos = torch.cumsum(v, dim=1).clamp_min(1.0)
    num = (rel * hits / pos).sum(dim=1)
    g = (targets & valid).sum(dim=1).double()
    if normalize == "min":
        den = torch.clamp(g, max=float(kk))
    else:
        den = hits[:, -1]
    apk = torch.where(den > 0, num / den.clamp_min(1.0), torch.zeros_like(num))
    ok = g > 0
    return float(apk[ok].mean()) if bool(ok.any()) else float("nan")


def pr_curve(scores, targets, cls: int | None = None, ignore=None,
             difficult: str = "ignore"):
    """Precision-recall curve(s), one point per distinct threshold (sklearn ties).

    Returns, for class ``cls``, a dict ``{"precision", "recall", "thresholds"}``
    of 1-D float64 tensors ordered by **decreasing** threshold (recall
    non-decreasing), without sklearn's appended (P=1, R=0) point; for
    ``cls=None`` a list of such dicts, one per class (the curves of all classes
    are computed in one vectorised pass; only the final split is per class).
    Recall is NaN for a class with no positive.
    """
    scores, targets, valid = _check(scores, targets, ignore, difficult)
    keys = _sorted_keys(scores, targets, valid)
    part = keys >> 32
    tp = (keys & 1).cumsum(1).double()
    ranked = torch.arange(1, keys.shape[1] + 1, dtype=torch.float64, device=keys.device)
    is_thr = torch.ones_like(keys, dtype=torch.bool)       # the last entry of each tie group
    is_thr[:, :-1] = part[:, 1:] != part[:, :-1]
    keep = is_thr & (part != _IGNORED)
    prec, rec = tp / ranked, tp / tp[:, -1:]
    thresholds = scores.t().gather(1, _key_images(keys)).double()

    def one(c):
        m = keep[c]
        return {"precision": prec[c][m], "recall": rec[c][m], "thresholds": thresholds[c][m]}

    if cls is not None:
        return one(int(cls))
    return [one(c) for c in range(keys.shape[0])]


# ---------------------------------------------------------------------------
# set metrics: top-k / threshold predictions, CP CR CF1 OP OR OF1
# ---------------------------------------------------------------------------


def predict_labels(scores, k: int | None = None, threshold: float | None = None,
                   floor: float | None = None, strict: bool = False,
                   valid: torch.Tensor | None = None) -> torch.Tensor:
    """Binary predictions [N, C] (bool).

    Exactly one of ``k`` (top-k per image, ties -> lower class index, ``k > C``
    -> all labels; ``floor`` additionally requires ``score >= floor``) or
    ``threshold`` (``score >= threshold``, ``>`` if ``strict``) must be given.
    Entries where ``valid`` is False are never predicted and take no top-k slot.
    """
    scores = _as_tensor(scores, "scores")
    if (k is None) == (threshold is None):
        raise ValueError("give exactly one of k (top-k) or threshold")
    if threshold is not None:
        if floor is not None:
            raise ValueError("floor only applies to top-k; use threshold alone")
        pred = scores > threshold if strict else scores >= threshold
    else:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        kk = min(int(k), scores.shape[1])
        s = scores if valid is None else torch.where(valid, scores, float("-inf"))
        pred = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        if kk <= 8:
            # k passes of argmax (argmax returns the FIRST maximal index, so
            # ties go to the lower class index, as a stable sort would)
            s = s.clone()
            rows = torch.arange(s.shape[0], device=s.device)
            for _ in range(kk):
                idx = s.argmax(dim=1)
                pred[rows, idx] = True
                s[rows, idx] = float("-inf")
                # an already-picked -inf can be re-picked only when fewer than
                # kk finite entries remain; those are invalid and masked below
        else:
            idx = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :kk]
            pred.scatter_(1, idx, True)
        if floor is not None:
            pred &= (scores > floor) if strict else (scores >= floor)
    if valid is not None:
        pred &= valid
    return pred


def confusion_counts(pred, targets, valid=None):
    """Per-class counts (Nc, Np, Ng) as float64 tensors [C]: correct,
    predicted and ground-truth labels, over the entries where ``valid``."""
    if valid is not None:
        pred = pred & valid
        targets = targets & valid
    nc = (pred & targets).sum(0).double()
    np_ = pred.sum(0).double()
    ng = targets.sum(0).double()
    return nc, np_, ng


def _f1(p: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """2PR/(P+R); 0 where P + R = 0; NaN where either is NaN."""
    return torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-300), torch.zeros_like(p))


def _prf_from_counts(nc, np_, ng, cf1: str, empty_precision: str) -> dict:
    """CP, CR, CF1, OP, OR, OF1 from per-class counts [C] (floats) or [R, C] (tensors [R]).

    The one place the set metrics are computed: bootstrap resamples pass weighted
    counts [R, C] and get one value per resample.
    """
    if cf1 not in CF1_OPTIONS:
        raise ValueError(f"cf1 must be one of {CF1_OPTIONS}, got {cf1!r}")
    if empty_precision not in EMPTY_PRECISION_OPTIONS:
        raise ValueError(
            f"empty_precision must be one of {EMPTY_PRECISION_OPTIONS}, got {empty_precision!r}")
    single = nc.ndim == 1
    nc, np_, ng = (x.double().reshape(-1, x.shape[-1]) for x in (nc, np_, ng))
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=nc.device)
    has_pred, has_gt = np_ > 0, ng > 0
    p_c = nc / np_.clamp_min(1e-300)
    fill = {"zero": 0.0, "one": 1.0, "skip": float("nan")}[empty_precision]
    cp_vals = torch.where(has_pred, p_c, torch.full_like(p_c, fill))
    cp = cp_vals.nanmean(1) if empty_precision == "skip" else cp_vals.mean(1)
    r_c = torch.where(has_gt, nc / ng.clamp_min(1e-300), nan)
    cr = r_c.nanmean(1)                                   # over classes with a ground-truth label
    if cf1 == "harmonic":
        cf = _f1(cp, cr)
    elif cf1 == "geometric":
        cf = (cp * cr).sqrt()
    else:
        cf = torch.where(has_gt, 2 * nc / (np_ + ng).clamp_min(1e-300), nan).nanmean(1)
    snc, snp, sng = nc.sum(1), np_.sum(1), ng.sum(1)
    op = torch.where(snp > 0, snc / snp.clamp_min(1e-300), torch.full_like(snp, fill))
    orr = torch.where(sng > 0, snc / sng.clamp_min(1e-300), nan)
    out = {"CP": cp, "CR": cr, "CF1": cf, "OP": op, "OR": orr, "OF1": _f1(op, orr)}
    nan_if = lambda x, bad: torch.where(bad, nan, x)  # noqa: E731
    out["CF1"] = nan_if(out["CF1"], cp.isnan() | cr.isnan()) if cf1 != "mean_f1" else out["CF1"]
    out["OF1"] = nan_if(out["OF1"], op.isnan() | orr.isnan())
    return {k: float(v[0]) for k, v in out.items()} if single else out


def prf_of_predictions(pred, targets, ignore=None, cf1: str = "harmonic",
                       empty_precision: str = "zero") -> dict:
    """CP..OF1 (floats) of fixed binary predictions [N, C] (a set predictor's output)."""
    n = torch.as_tensor(pred).shape[0]
    out = prf_resampled(pred, targets, torch.ones(1, n, dtype=torch.float64), ignore, cf1, empty_precision)
    return {k: float(v[0]) for k, v in out.items()}


def prf_resampled(pred, targets, weights, ignore=None, cf1: str = "harmonic",
                  empty_precision: str = "zero") -> dict:
    """CP..OF1 of fixed predictions [N, C] on R bootstrap resamples of the images:
    ``weights`` [R, N] image counts; returns {metric: Tensor[R]}."""
    valid = None if ignore is None else ~torch.as_tensor(ignore, dtype=torch.bool)
    pred, targets = torch.as_tensor(pred).bool(), torch.as_tensor(targets) > 0.5
    if valid is not None:
        pred, targets = pred & valid, targets & valid
    w = weights.double()
    counts = (w @ (pred & targets).double(), w @ pred.double(), w @ targets.double())
    return _prf_from_counts(*counts, cf1, empty_precision)


def prf(scores, targets, ignore=None, *, k: int | None = None,
        threshold: float | None = None, cf1: str = "harmonic",
        floor: float | None = None, empty_precision: str = "zero",
        strict: bool = False, difficult: str = "ignore") -> dict:
    """CP, CR, CF1, OP, OR, OF1 (fractions in [0, 1]) of top-k or threshold predictions.

    ``k``: top-k labels per image (ties -> lower class index; ``k > C`` -> all).
    ``threshold``: ``score >= threshold`` (``>`` with ``strict``).
    ``floor``: with ``k``, keep only top-k labels with ``score >= floor``.
    ``cf1``: ``"harmonic"`` | ``"mean_f1"`` | ``"geometric"``;
    ``empty_precision``: ``"zero"`` | ``"skip"`` | ``"one"`` (module docstring).
    Returns ``{"CP", "CR", "CF1", "OP", "OR", "OF1"}`` as Python floats.
    """
    scores, targets, valid = _check(scores, targets, ignore, difficult)
    pred = predict_labels(scores, k=k, threshold=threshold, floor=floor,
                          strict=strict, valid=valid)
    return _prf_from_counts(*confusion_counts(pred, targets, valid), cf1, empty_precision)


# ---------------------------------------------------------------------------
# protocols and the papers' conventions
# ---------------------------------------------------------------------------

#: the prediction rules evaluated by :func:`evaluate_all` (keyword args of prf)
PROTOCOLS: dict[str, dict[str, Any]] = {
    "top3": {"k": 3},
    "top3+floor0.5": {"k": 3, "floor": 0.5},
    "top5": {"k": 5},
    "top5+floor0.5": {"k": 5, "floor": 0.5},
    "thr0.5": {"threshold": 0.5},
    "thr>0.5": {"threshold": 0.5, "strict": True},
}
_PROTOCOL_ALIASES = {"all": "thr0.5", "threshold": "thr0.5", "top-3": "top3", "top-5": "top5"}

#: per paper: the protocols of its tables and the options it uses; "source"
#: quotes the paper, or says what is unstated and assumed.  Scores are assumed
#: to be probabilities (a 0.5 threshold/floor on logits would be 0).
PAPER_CONVENTIONS: dict[str, dict[str, Any]] = {
    "order_free_rnn": {
        "protocols": ["thr0.5"],
        "prediction": "beam search over label sequences, stopped by a probability "
                      "threshold chosen by cross-validation (variable label count); "
                      "for a score matrix we assume threshold 0.5",
        "cf1": "harmonic", "empty_precision": "zero", "map": None, "difficult": None,
        "source": "'the prediction process via beam search would terminate [when] the "
                  "probability output of a particular prediction path is below a threshold "
                  "(which is determined by cross-validation)'; CF1 unstated, but Table 2 "
                  "'Ours' CP 71.6, CR 54.8 -> harmonic 62.1 = reported C-F1; Table 1 caption "
                  "'Macro/Micro P/R/F1 scores are abbreviated as O/C-P/R/F1' has macro/micro "
                  "swapped (C = per-class = macro); empty precision unstated (assumed zero)",
    },
    "rlsd": {
        "protocols": ["top3", "top3+floor0.5"],     # the primary first; the floor is a variant
        "k": 3, "floor": None, "variant_floor": 0.5,
        "cf1": "harmonic", "empty_precision": "zero",
        "map": "mAP (VOC: per-class AP, Table I) and mAP@10 (COCO, Table III)",
        "map_at_k": {"k": 10, "per": "class", "normalize": "min"},
        "difficult": "unstated; VOC protocol assumed (ignored)",
        "source": "'For each test image, we predict k highest ranked labels' (Sec. IV-B; k = 3, "
                  "Tables II-IV): top 3, every row at 3 labels, is the book's primary protocol. The "
                  "paper states a floor once, for its own model on MS-COCO: 'our model may predict "
                  "less than k labels for an image (a threshold t = 0.5 is set on the prediction "
                  "score ...)' (Sec. IV-E); kept as the variant top3+floor0.5. It cannot have "
                  "produced the paper's own Table III: Eq. 14 trains a true label of an image with n "
                  "labels towards 1/n, below 0.5 for n >= 3, so with the floor most COCO labels would "
                  "never be predicted, while RLSD reports CR 56.4, OR 59.9. cp = 1/c sum Nc/Np "
                  "(Eq. 16); F1 formula unstated but 67.7/56.4 -> 61.5 (harmonic); empty precision "
                  "unstated (assumed zero); mAP@10 formula unstated ('mAP@10 measures are "
                  "additionally computed'; Fig. 8 gives a per-class 'average precision @ 10', hence "
                  "per='class')",
    },
    "transform_ranking": {
        "protocols": ["top3", "top5"],
        "k": [3, 5], "floor": None,
        "cf1": "harmonic", "empty_precision": "zero", "map": None, "difficult": None,
        "source": "'For each image, the top-k ranked labels are compared to the ground "
                  "truth labels' (Tables 3, 4: 3 and 5 labels); text says F1 is 'the "
                  "geometrical average of the precision and the recall' but the tables are "
                  "harmonic (O: 51.8/63.8 -> 57.2 reported; geometric would be 57.5; "
                  "top-5 C: 27.5/58.5 -> 37.4 reported, geometric 40.1); no floor stated; "
                  "empty precision unstated (assumed zero)",
    },
    "cadm": {
        "protocols": ["thr>0.5", "top3"],
        "threshold": 0.5, "strict": True, "k": 3,
        "cf1": "harmonic", "empty_precision": "zero", "map": "mAP", "difficult": None,
        "source": "'we assign labels with confidence greater than 0.5 as positive' ('All' "
                  "columns) and 'we also report the results of top-3 labels with highest "
                  "confidences' (no floor stated; follows SRN [12] whose code may floor); "
                  "CF1 unstated but COCO 82.5/72.2 -> 77.0 (harmonic); note Table 2 "
                  "lambda=0.5 top-3 row (64.3/57.7 -> 60.8, printed 56.3) is inconsistent; "
                  "empty precision unstated (assumed zero)",
    },
    "cnn_rnn": {
        "protocols": ["top3"],
        "k": 3, "floor": None,
        "cf1": "harmonic", "empty_precision": "zero",
        "map": "mAP@10 (COCO 61.2 as quoted by RLSD Table III)",
        "map_at_k": {"k": 10, "per": "class", "normalize": "min"},
        "difficult": None,
        "source": "not among the four papers; known through RLSD, which 'refer[s] to the "
                  "evaluation metrics used in [8], [6]' (WARP, CNN-RNN) and quotes CNN-RNN "
                  "at k = 3 with mAP@10; the formula of mAP@10 is unstated (per-class "
                  "reading assumed, per-image is map_at_k(per='image'))",
    },
}


def _protocol_kwargs(protocol: str) -> tuple[str, dict, dict]:
    """Resolve a protocol name, alias or paper key -> (name, prf kwargs, variant kwargs)."""
    variant: dict[str, Any] = {}
    name = _PROTOCOL_ALIASES.get(protocol, protocol)
    if name in PAPER_CONVENTIONS:
        conv = PAPER_CONVENTIONS[name]
        variant = {"cf1": conv["cf1"], "empty_precision": conv["empty_precision"]}
        name = conv["protocols"][0]
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {sorted(PROTOCOLS)}, "
                         f"{sorted(_PROTOCOL_ALIASES)} or a paper key {sorted(PAPER_CONVENTIONS)}")
    return name, dict(PROTOCOLS[name]), variant


def variant_key(cf1: str, empty_precision: str) -> str:
    """Key of one convention variant in :func:`evaluate_all`'s ``"prf"`` dict."""
    return f"cf1={cf1},empty_precision={empty_precision}"


def evaluate_all(scores, targets, ignore=None) -> dict:
    """Every metric under every convention.

    Returns::

      {"n_images", "n_classes",
       "mAP", "mAP(stable ties)", "mAP(difficult=negative)" (only with ignore),
       "AP": [per-class floats, NaN = no positive],
       "mAP@10": {"per=class,normalize=min", "per=class,normalize=retrieved",
                  "per=image,normalize=min", "per=image,normalize=retrieved"},
       "prf": {protocol: {variant_key(cf1, empty_precision): {CP, CR, CF1, OP, OR, OF1}}},
       "conventions": {paper: [(protocol, variant_key), ...]}}

    protocols = :data:`PROTOCOLS` keys; every cf1 x empty_precision variant.
    All values are fractions in [0, 1].
    """
    scores, targets, valid = _check(scores, targets, ignore)
    ign = None if valid is None else ~valid
    ap = average_precision(scores, targets, ign)
    ok = ~torch.isnan(ap)
    out: dict[str, Any] = {
        "n_images": int(scores.shape[0]),
        "n_classes": int(scores.shape[1]),
        "mAP": float(ap[ok].mean()) if bool(ok.any()) else float("nan"),
        "mAP(stable ties)": mean_average_precision(scores, targets, ign, ties="stable"),
    }
    if ign is not None:
        out["mAP(difficult=negative)"] = mean_average_precision(
            scores, targets, ign, difficult="negative")
    out["AP"] = [float(x) for x in ap.cpu()]
    out["mAP@10"] = {
        f"per={per},normalize={norm}": map_at_k(scores, targets, 10, ign, per=per, normalize=norm)
        for per in ("class", "image") for norm in ("min", "retrieved")}
    prf_out: dict[str, dict] = {}
    for name, kw in PROTOCOLS.items():
        counts = confusion_counts(predict_labels(scores, valid=valid, **kw), targets, valid)
        prf_out[name] = {variant_key(c, e): _prf_from_counts(*counts, c, e)
                         for c in CF1_OPTIONS for e in EMPTY_PRECISION_OPTIONS}
    out["prf"] = prf_out
    out["conventions"] = {
        paper: [(p, variant_key(conv["cf1"], conv["empty_precision"])) for p in conv["protocols"]]
        for paper, conv in PAPER_CONVENTIONS.items()}
    return out


def summary(scores, targets, ignore=None, protocol: str = "top3",
            cf1: str | None = None, empty_precision: str | None = None) -> dict:
    """The six numbers + mAP in one convention, for a table row.

    ``protocol``: a :data:`PROTOCOLS` key (``"top3"``, ``"top3+floor0.5"``,
    ``"top5"``, ``"top5+floor0.5"``, ``"thr0.5"``, ``"thr>0.5"``), an alias
    (``"all"`` = ``"thr0.5"``) or a paper key of :data:`PAPER_CONVENTIONS`
    (its first protocol and its cf1/empty_precision).  Explicit ``cf1`` and
    ``empty_precision`` override; defaults are ``"harmonic"`` and ``"zero"``.
    Returns ``{"mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"}`` (fractions).
    """
    _, kw, variant = _protocol_kwargs(protocol)
    kw["cf1"] = cf1 or variant.get("cf1", "harmonic")
    kw["empty_precision"] = empty_precision or variant.get("empty_precision", "zero")
    out = {"mAP": mean_average_precision(scores, targets, ignore)}
    out.update(prf(scores, targets, ignore, **kw))
    return out


# ---------------------------------------------------------------------------
# resampling
# ---------------------------------------------------------------------------


def bootstrap_weights(n_resamples: int, n_items: int, seed: int = 0) -> torch.Tensor:
    """[n_resamples, n_items] float64: how often each item is drawn in each bootstrap resample
    (drawing n_items with replacement). A metric weighted by a row equals the metric on that
    resample, so paired comparisons of two models use the same rows for both."""
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n_items, (n_resamples, n_items), generator=g)
    ones = torch.ones(n_resamples, n_items, dtype=torch.float64)
    return torch.zeros(n_resamples, n_items, dtype=torch.float64).scatter_add_(1, draws, ones)


# ---------------------------------------------------------------------------
# evidence of the chapters' claims: object sizes, means over pairs, resampled
# ---------------------------------------------------------------------------
# ``boxes``: per image, a list of objects with ``.x .y .w .h`` (pixels) and ``.label`` (a class
# index; mlbook.data.base.Box); ``image_sizes``: per image, (width, height) in pixels.
# ``weights`` [R, N]: image counts of R resamples (row 0 usually the test set itself).


def relative_sizes(boxes, image_sizes) -> dict[int, list[float]]:
    """Per class, the relative size sqrt(box area / image area) of every object box."""
    out: dict[int, list[float]] = {}
    for i, image_boxes in enumerate(boxes):
        width, height = image_sizes[i]
        for b in image_boxes:
            out.setdefault(b.label, []).append(math.sqrt(max(b.w * b.h, 0.0) / (width * height)))
    return out


def object_size_hits(pred, boxes, image_sizes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One entry per (image, label) that has a box: (image index int64, relative size float32 =
    sqrt(box area / image area) of the label's largest box in the image, whether ``pred``
    [N, C] predicted the label: bool)."""
    images, sizes, hits = [], [], []
    for i, image_boxes in enumerate(boxes):
        width, height = image_sizes[i]
        largest: dict[int, float] = {}
        for b in image_boxes:
            size = math.sqrt(max(b.w * b.h, 0.0) / (width * height))
            largest[b.label] = max(largest.get(b.label, 0.0), size)
        for label, size in largest.items():
            images.append(i)
            sizes.append(size)
            hits.append(bool(pred[i, label]))
    return (torch.tensor(images, dtype=torch.long), torch.tensor(sizes, dtype=torch.float32),
            torch.tensor(hits, dtype=torch.bool))


def size_buckets(sizes: torch.Tensor, n: int = 3) -> tuple[torch.Tensor, list[float]]:
    """Equal-count buckets of relative object size: (bucket of each object, 0 = smallest, and the
    n - 1 inner edges, the size quantiles 1/n, ..., (n-1)/n). A size equal to an edge goes to
    the lower bucket (``torch.bucketize``, right=False)."""
    q = torch.linspace(0, 1, n + 1, dtype=torch.float64)[1:-1]
    edges = torch.quantile(sizes.double(), q).tolist()
    return torch.bucketize(sizes.double(), torch.tensor(edges, dtype=torch.float64)), edges


def bucket_recall(hits: torch.Tensor, images: torch.Tensor, bucket: torch.Tensor, k: int,
                  weights: torch.Tensor) -> torch.Tensor:
    """Recall of the objects in size bucket ``k`` on each resample -> [R]: the weighted share of
    them predicted, each object weighted by its image's count (0 where the bucket is empty)."""
    chosen = bucket == k
    w = weights.double()[:, images[chosen]]
    return (w * hits[chosen].double()).sum(1) / w.sum(1).clamp_min(1e-12)


def recall_by_area(pred, boxes, image_sizes, edges) -> tuple[list[float], list[int]]:
    """Recall of (image, label) pairs binned by the relative area (box area / image area) of the
    label's largest box. ``edges``: the bins' edges, first and last included (only the inner
    ones split; an area equal to an inner edge goes to the lower bin). Returns (recall per bin,
    NaN for an empty bin, and pairs per bin)."""
    _, sizes, hits = object_size_hits(pred, boxes, image_sizes)
    area = sizes.double() ** 2
    bins = torch.bucketize(area, torch.tensor(edges[1:-1], dtype=torch.float64))
    recall, counts = [], []
    for k in range(len(edges) - 1):
        chosen = bins == k
        counts.append(int(chosen.sum()))
        recall.append(float(hits[chosen].double().mean()) if bool(chosen.any()) else float("nan"))
    return recall, counts


def weighted_mean(images: torch.Tensor, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of per-item ``values`` (item j belongs to image ``images[j]``) on each resample -> [R],
    each item weighted by its image's count (0 where no item is drawn)."""
    w = weights.double()[:, images]
    return (w * values.double()).sum(1) / w.sum(1).clamp_min(1e-12)


def pair_mean(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [N, C] over the (image, label) pairs where ``mask`` [N, C] on each
    resample -> [R], each pair weighted by its image's count."""
    m, w = mask.double(), weights.double()
    return (w @ (values.double() * m)).sum(1) / (w @ m).sum(1).clamp_min(1e-12)


def positive_wins(total: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Share of an image's (positive, negative) label pairs whose positive has the strictly larger
    ``total`` [N, C], over all pairs of the images of each resample -> [R] (each pair weighted by
    its image's count; a tie is not a win)."""
    pos, neg = targets > 0.5, targets <= 0.5
    pairs = pos[:, :, None] & neg[:, None, :]
    wins = ((total[:, :, None] > total[:, None, :]) & pairs).sum((1, 2)).double()
    w = weights.double()
    return (w @ wins) / (w @ pairs.sum((1, 2)).double()).clamp_min(1e-12)


def unseen_recall_at(scores: torch.Tensor, labels: torch.Tensor, unseen: torch.Tensor, k: int,
                     weights: torch.Tensor | None = None) -> torch.Tensor:
    """Recall of the held-out labels ``unseen`` (indices or a bool mask over C) when only they are
    ranked and each image's top ``k`` of them kept (ties -> lower index), over the (image,
    held-out positive) pairs -> [R] (one per resample; [1] without ``weights``)."""
    pred = predict_labels(scores[:, unseen], k=k)
    y = labels[:, unseen] > 0.5
    w = torch.ones(1, len(labels), dtype=torch.float64) if weights is None else weights.double()
    return (w @ (pred & y).double().sum(1)) / (w @ y.double().sum(1)).clamp_min(1e-12)
