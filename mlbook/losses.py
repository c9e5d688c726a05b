"""Losses of the papers, in one place.

Each function takes logits/scores [B, C] (or what its paper needs) and binary
targets [B, C], and returns a scalar averaged over the batch. Equations are
cited by paper and number. ``AsymmetricLoss`` (ASL) is a yardstick of today's
methods, not one of the four papers' losses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# --- Order-Free RNN chapter baselines (Gong et al. 2013; Wang et al. 2016) ----

def softmax_normalised_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """"Softmax" baseline of Gong et al. 2013, Eq. 2: cross-entropy between the
    softmax of the scores and the label vector normalised to sum to one,
    ``-sum_c (y_c / |y|) log softmax(f)_c``, averaged over images with a label."""
    y = targets.float()
    n = y.sum(1)
    keep = n > 0
    if not bool(keep.any()):
        return logits.sum() * 0.0
    q = y[keep] / n[keep, None]
    return -(q * F.log_softmax(logits[keep].float(), dim=1)).sum(1).mean()


def warp_rank_weight(rank: torch.Tensor) -> torch.Tensor:
    """L(r) = sum_{i=1}^{r} 1/i (Gong et al. 2013, Eq. 5 with alpha_i = 1/i); L(0) = 0."""
    r = rank.float()
    # harmonic number via digamma: H_r = psi(r + 1) + gamma
    return torch.where(r > 0, torch.special.digamma(r + 1) + 0.5772156649015329, torch.zeros_like(r))


def warp_loss(scores: torch.Tensor, targets: torch.Tensor, margin: float = 1.0,
              rank: str = "exact", generator: torch.Generator | None = None) -> torch.Tensor:
    """WARP loss of Gong et al. 2013, Eq. 4, averaged over images::

        J = sum_{j in pos} sum_{k in neg} L(r_j) max(0, margin - f_j + f_k)

    ``rank="exact"`` (default): r_j = the number of negatives k that violate the
    margin for positive j, computed in one vectorised pass (the quantity the
    paper's sampling estimates). ``rank="sampled"``: Gong et al.'s estimate
    r_j = floor((C - 1) / s), s = the number of negatives drawn (in a random
    order) until the first violator; the weight is a constant (no gradient).
    """
    f = scores.float()
    pos = targets > 0.5
    neg = ~pos
    viol = (margin - f[:, :, None] + f[:, None, :]).clamp_min(0)           # [B, j, k]
    pair = pos[:, :, None] & neg[:, None, :]
    viol = viol * pair
    if rank == "exact":
        r = ((viol > 0) & pair).sum(2)                                    # [B, j]
    elif rank == "sampled":
        B, C = f.shape
        order = torch.argsort(torch.rand(B, C, generator=generator), dim=1).to(f.device)
        idx = order[:, None, :].expand(B, C, C)                           # negatives in a random order
        hit = ((viol > 0) & pair).gather(2, idx)
        draws = pair.gather(2, idx).cumsum(2)                              # negatives drawn so far
        first = hit.float().argmax(2)                                      # first violator (0 if none)
        s = draws.gather(2, first[..., None]).squeeze(2).clamp_min(1)
        r = torch.where(hit.any(2), torch.div(C - 1, s, rounding_mode="floor"), torch.zeros_like(s))
    else:
        raise ValueError(f"rank must be 'exact' or 'sampled', not {rank!r}")
    w = warp_rank_weight(r).detach()                                      # [B, j]
    return (w[:, :, None] * viol).sum((1, 2)).mean()


# --- CADM (Chen et al., ICME 2019), Sec. 2.4 ---------------------------------

LCE_NEGATIVES = ("per_label", "summed")
LCE_REDUCTIONS = ("per_class", "sum")


def label_correlation_embedding_loss(vectors: torch.Tensor, targets: torch.Tensor,
                                     ignore: torch.Tensor | None = None, *, margin: float = 1.0,
                                     negatives: str = "per_label",
                                     reduction: str = "per_class", terms: bool = False):
    """CADM label correlation embedding loss L_lce (Eq. 12).

    ``vectors`` [B, C, E]: the label vectors a_c of Eq. 8; ``targets`` [B, C] in {0, 1};
    ``ignore`` [B, C] bool (entries that are neither positive nor negative).
    Per image, with S the positive labels and a_bar their mean (Eq. 11)::

        pull = sum_{j in S} ||a_j - a_bar||^2
        push = sum_{k not in S} [margin - ||a_k - a_bar||^2]_+      negatives="per_label" (Eq. 12 as typeset)
             = [margin - sum_{k not in S} ||a_k - a_bar||^2]_+      negatives="summed" (the sentence after Eq. 12)

    ``reduction="per_class"`` divides each image's pull + push by its number of
    scored classes (as a BCE averaged over classes is Eq. 4 divided by C, so that
    lambda of Eq. 5 keeps its meaning); ``"sum"`` keeps the sum over classes.
    The result is averaged over the images with at least one positive label
    (a_bar is undefined without one; such images contribute nothing).
    Computed in float32 for half-precision inputs (autocast), else in the input dtype.
    ``terms=True`` returns (L_lce, pull, push), each reduced the same way, for logging.
    """
    if negatives not in LCE_NEGATIVES:
        raise ValueError(f"negatives must be one of {LCE_NEGATIVES}, got {negatives!r}")
    if reduction not in LCE_REDUCTIONS:
        raise ValueError(f"reduction must be one of {LCE_REDUCTIONS}, got {reduction!r}")
    if vectors.ndim != 3 or vectors.shape[:2] != targets.shape:
        raise ValueError(f"vectors must be [B, C, E] matching targets [B, C]; got "
                         f"{tuple(vectors.shape)} and {tuple(targets.shape)}")
    a = vectors.float() if vectors.dtype in (torch.float16, torch.bfloat16) else vectors
    scored = torch.ones_like(targets, dtype=torch.bool) if ignore is None else ~ignore.bool()
    pos = (targets > 0.5) & scored
    neg = (targets <= 0.5) & scored
    posf, negf = pos.to(a.dtype), neg.to(a.dtype)
    n_pos = posf.sum(1)                                                   # [B]
    mean = (a * posf[..., None]).sum(1) / n_pos.clamp_min(1)[:, None]    # a_bar, [B, E]
    dist2 = (a - mean[:, None, :]).pow(2).sum(-1)                         # ||a_c - a_bar||^2, [B, C]
    pull = (dist2 * posf).sum(1)
    if negatives == "per_label":
        push = (F.relu(margin - dist2) * negf).sum(1)
    else:
        push = F.relu(margin - (dist2 * negf).sum(1))
    valid = (n_pos > 0).float()
    norm = scored.float().sum(1).clamp_min(1) if reduction == "per_class" else torch.ones_like(valid)
    reduce = lambda x: (x / norm * valid).sum() / valid.sum().clamp_min(1)  # noqa: E731
    if terms:
        return reduce(pull + push), reduce(pull), reduce(push)
    return reduce(pull + push)


# --- Asymmetric loss (Ben-Baruch, Ridnik et al., ICCV 2021) -----------------------
# Equation numbers as we recall them (the section names are the safe anchors): Sec. "Binary
# Cross-Entropy and Focal Loss" Eqs. 1-2, Sec. "Asymmetric Focusing" Eq. 3, Sec. "Asymmetric
# Probability Shifting" Eqs. 4-5, Sec. "ASL Definition" Eq. 6.

ASL_REDUCTIONS = ("mean", "sum", "none")


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, ignore: torch.Tensor | None = None, *,
                    gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05, eps: float = 1e-8,
                    detach_focusing: bool = False, reduction: str = "mean") -> torch.Tensor:
    """ASL: per label k with p = sigmoid(logit) and p_m = max(p - m, 0) (probability shifting)::

        L = -sum_k [ y_k (1 - p_k)^gamma_pos log p_k + (1 - y_k) p_m,k^gamma_neg log(1 - p_m,k) ]

    Defaults are the paper's (gamma_pos = 0, gamma_neg = 4, m = ``clip`` = 0.05); the logs read
    their argument clamped at ``eps`` as the authors' code does, so a saturated logit gives a
    bounded loss (log eps) instead of -inf. gamma_pos = gamma_neg = 0 and clip = 0 give BCE.

    ``reduction="mean"`` (default): summed over labels, averaged over images, the convention of
    this file (the scale does not move with the batch size, so learning rates carry over between
    batch sizes); ``"sum"``: summed over labels and images, the authors' code (B times "mean");
    ``"none"``: [B, C]. ``ignore`` [B, C] bool drops entries (VOC difficult) from the sum.
    ``detach_focusing=True`` treats the weights (1 - p)^gamma_pos and p_m^gamma_neg as constants,
    an option of the authors' code; False (default) differentiates L as written, which is what the
    paper's gradient analysis (Sec. "Gradient Analysis") does.
    """
    if reduction not in ASL_REDUCTIONS:
        raise ValueError(f"reduction must be one of {ASL_REDUCTIONS}, got {reduction!r}")
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    y = targets.to(x.dtype)
    p = torch.sigmoid(x)
    p_m = (p - clip).clamp_min(0)                    # probability shifting: easy negatives (p < m) give 0
    # asymmetric focusing: gamma_pos on positives, gamma_neg on (shifted) negatives; the bases are
    # clamped at eps too, so a fractional gamma keeps a finite gradient where p = 1 or p_m = 0
    # (the weight moves by at most eps^gamma)
    w_pos = (1 - p).clamp_min(eps).pow(gamma_pos)
    w_neg = p_m.clamp_min(eps).pow(gamma_neg)
    if detach_focusing:
        w_pos, w_neg = w_pos.detach(), w_neg.detach()
    loss = -(y * w_pos * torch.log(p.clamp_min(eps))
             + (1 - y) * w_neg * torch.log((1 - p_m).clamp_min(eps)))
    if ignore is not None:
        loss = loss * (~ignore.bool()).to(loss.dtype)
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.sum(1).mean()


class AsymmetricLoss(nn.Module):
    """``asymmetric_loss`` as a module: ``AsymmetricLoss()(logits, targets[, ignore])``, paper defaults."""

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05, eps: float = 1e-8,
                 detach_focusing: bool = False, reduction: str = "mean"):
        super().__init__()
        if reduction not in ASL_REDUCTIONS:
            raise ValueError(f"reduction must be one of {ASL_REDUCTIONS}, got {reduction!r}")
        self.options = dict(gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip, eps=eps,
                            detach_focusing=detach_focusing, reduction=reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, ignore: torch.Tensor | None = None):
        return asymmetric_loss(logits, targets, ignore, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.options.items())
