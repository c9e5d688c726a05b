"""Set metrics: top-k / threshold predictions and CP CR CF1 OP OR OF1 (on the test set or on
bootstrap resamples), with the CF1 and empty-precision conventions as named options.
Conventions: see the package docstring (:mod:`mlbook.metrics`)."""
from __future__ import annotations

import torch

from ._inputs import _as_tensor, _check

CF1_OPTIONS = ("harmonic", "mean_f1", "geometric")
EMPTY_PRECISION_OPTIONS = ("zero", "skip", "one")
PRF_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


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
    c = pred.shape[1]
    stacked = torch.cat([pred & targets, pred, targets], dim=1)      # [N, 3C]: one product, not three
    w = torch.as_tensor(weights)
    # image counts are whole numbers: in float32 their sums are exact below 2**24, the same bits as float64
    exact32 = (w.shape[1] * float(w.abs().max()) < 2 ** 24 if w.numel() else True) and bool((w == w.round()).all())
    counts = (w.float() @ stacked.float()).double() if exact32 else w.double() @ stacked.double()
    return _prf_from_counts(counts[:, :c], counts[:, c:2 * c], counts[:, 2 * c:], cf1, empty_precision)


def prf_of_thresholds(scores, targets, thresholds, ignore=None, cf1: str = "harmonic",
                      empty_precision: str = "zero") -> dict:
    """CP..OF1 of the predictions "score >= t" for every t of ``thresholds`` [T] at once: {metric:
    Tensor[T]}, each entry the same as ``prf_of_predictions(scores >= t, ...)`` (the same integer counts
    through ``_prf_from_counts``)."""
    scores, targets = torch.as_tensor(scores), torch.as_tensor(targets) > 0.5
    valid = torch.ones_like(targets) if ignore is None else ~torch.as_tensor(ignore, dtype=torch.bool)
    t = torch.as_tensor(thresholds, dtype=scores.dtype)
    pred = (scores[None] >= t[:, None, None]) & valid                # [T, N, C]
    targets = targets & valid
    nc = (pred & targets).sum(1).double()
    np_ = pred.sum(1).double()
    ng = targets.sum(0).double().expand_as(nc)
    return _prf_from_counts(nc, np_, ng, cf1, empty_precision)


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

