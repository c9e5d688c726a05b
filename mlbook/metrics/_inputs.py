"""Input checking shared by the ranking and set metrics: score, target and ignore matrices."""
from __future__ import annotations

import torch

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
