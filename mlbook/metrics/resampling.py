"""Bootstrap resamples of the test images and the metric values on them: the resample matrices
(``bootstrap_weights``, ``image_weights``), per-seed metric values on resamples for the claims
(``set_metric_values``, ``map_values``, ``resampled_ap``) and the evidence helpers of the
chapters' claims (object sizes, means over pairs, recall of held-out labels)."""
from __future__ import annotations

import hashlib
import math
from typing import Sequence

import torch

from .ranking import average_precision
from .sets import predict_labels, prf_resampled


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


def image_weights(n_images: int, n_resamples: int = 1000, seed: int = 0) -> torch.Tensor:
    """[1 + R, N] float64: row 0 the test set (all ones), rows 1..R bootstrap resamples (how often
    each image is drawn). Pass the same matrix to every row a claim compares (paired resamples).
    The default R is ``claims.N_RESAMPLES`` (1,000; claims sits above metrics, so it is a literal
    here and tests/test_claims.py checks the two agree)."""
    return torch.cat([torch.ones(1, n_images, dtype=torch.float64),
                      bootstrap_weights(n_resamples, n_images, seed)])


def set_metric_values(preds: Sequence[torch.Tensor], targets: torch.Tensor, weights: torch.Tensor,
                      metric: str, ignore=None) -> torch.Tensor:
    """[S, 1+R]: ``metric`` (CP..OF1) of each seed's fixed predictions [N, C] on each resample.
    The six metrics of one prediction come from the same counts: computed once per (predictions,
    targets, ignore, resample matrix), as ``resampled_ap`` does for AP."""
    digest = _digest(weights)
    return torch.stack([_prf_rows_of(p, targets, weights, ignore, digest)[metric] for p in preds])


_prf_rows: dict = {}    # (predictions digest, ids of targets and ignore, weights digest) -> (inputs, {metric: [1+R]})


def _digest(t: torch.Tensor) -> str:
    return hashlib.blake2b(t.detach().cpu().contiguous().numpy().tobytes(), digest_size=16).hexdigest()


def _prf_rows_of(pred, targets, weights, ignore, weights_digest: str) -> dict:
    pred = torch.as_tensor(pred)
    key = (_digest(pred.bool()), tuple(pred.shape), id(targets), id(ignore), weights_digest)
    hit = _prf_rows.get(key)
    if hit is None:
        if len(_prf_rows) >= 1024:
            _prf_rows.pop(next(iter(_prf_rows)))
        hit = _prf_rows[key] = ((targets, ignore), prf_resampled(pred, targets, weights, ignore))
    return hit[1]


def map_values(scores: Sequence[torch.Tensor], targets: torch.Tensor, weights: torch.Tensor,
               ignore=None) -> torch.Tensor:
    """[S, 1+R]: mAP of each seed's scores on each resample (classes without a positive left out)."""
    return torch.stack([resampled_ap(s, targets, weights, ignore).nanmean(1) for s in scores])


_ap_rows: dict = {}     # (ids of scores, targets, ignore; weights digest) -> (those objects, AP [1+R, C])


def resampled_ap(scores: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, ignore=None) -> torch.Tensor:
    """``metrics.average_precision`` on the resamples ``weights`` [1+R, C], computed once per
    (scores, targets, ignore, resample matrix): a row that several claims compare (RLSD in six of
    chapter 06's) reuses it, and the AP under 1,000-10,000 resamples is most of a chapter's claims
    time. The inputs are kept with the entry, so their ids cannot be reused while it lives."""
    key = (id(scores), id(targets), id(ignore), _digest(weights))
    hit = _ap_rows.get(key)
    if hit is None:
        if len(_ap_rows) >= 1024:      # at most ~200 MB of [1,001 x 24] float64 entries in the demo
            _ap_rows.pop(next(iter(_ap_rows)))
        hit = _ap_rows[key] = ((scores, targets, ignore), average_precision(scores, targets, ignore, weights=weights))
    return hit[1]


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
