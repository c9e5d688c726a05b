"""The AP engine and the ranking metrics: per-class AP (one sort of packed keys for every class,
bootstrap resamples reusing that ranking), mAP, the chance level of AP, mAP@k, PR curves.
Conventions: see the package docstring (:mod:`mlbook.metrics`)."""
from __future__ import annotations

import math
import sys
import warnings
from typing import NamedTuple

import torch

from ._inputs import _as_tensor, _check, _check_labels


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

