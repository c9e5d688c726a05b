"""RLSD's localization layer (Zhang et al., TMM 2018, Sec. III-A-2 and the RLSD+ft-RPN of Sec. IV-A),
the region-proposing part of the model of ``models/rlsd.py``:

    conv maps [B, C, h, w]
      --LocalizationLayer--> boxes, confidences        (Sec. III-A-2a, Eqs. 1-2, k = 12 anchors)
      --select regions-----> M regions + whole image   (Sec. III-A-2b, footnote 4; NMS at test time)

RLSD+ft-RPN (Sec. IV-A, Eqs. 3-4, footnote 3): ``cluster_box_centres``, ``merge_clusters``,
``rpn_targets``, ``sample_anchor_minibatch`` and ``localization_loss``.

Box conventions, used throughout: "cxcywh" = (centre x, centre y, width, height),
"xyxy" = (x1, y1, x2, y2), "xywh" = (top-left x, top-left y, width, height) as COCO
and Visual Genome write them; all in continuous image pixels, the image spanning
[0, W] x [0, H] and pixel (i, j) covering [j, j + 1) x [i, i + 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Anchors (Sec. III-A-2a): the paper sets k = 12 but not the shapes. 4 sides x 3
# aspect ratios; the sides are fractions of the image side, so the same anchors
# cover a 48 px demo image and a 448/600 px real one alike.
ANCHOR_SCALES = (0.1, 0.2, 0.4, 0.8)   # anchor side sqrt(w h) / image side
ANCHOR_RATIOS = (0.5, 1.0, 2.0)        # h / w
MAX_LOG_SCALE = math.log(1000.0 / 16)  # clamp of tw, th before exp (Eq. 2): no overflow

# RLSD+ft-RPN region ground truth (Sec. IV-A): the paper names Euclidean hierarchical
# clustering of box centres but not the linkage or the cut.
CLUSTER_LINKAGE = "complete"   # a merged region's centres are all within the cut of each other
CLUSTER_CUT = 0.25             # distance threshold, as a fraction of the image diagonal


# --- boxes (Eqs. 1-2) ---------------------------------------------------------------

def _hw(image_size) -> tuple[int, int]:
    """An int side or an (H, W) pair -> (H, W)."""
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(b: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """Top-left (x, y, w, h), as COCO / Visual Genome -> (x1, y1, x2, y2)."""
    x, y, w, h = b.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def clip_boxes(b: torch.Tensor, image_size) -> torch.Tensor:
    """xyxy boxes clipped to the image [0, W] x [0, H] (differentiable inside it)."""
    H, W = _hw(image_size)
    x1, y1, x2, y2 = b.unbind(-1)
    return torch.stack([x1.clamp(0, W), y1.clamp(0, H), x2.clamp(0, W), y2.clamp(0, H)], dim=-1)


def whole_image_box(image_size, like: torch.Tensor | None = None) -> torch.Tensor:
    """The whole image as one xyxy box [4] (footnote 4)."""
    H, W = _hw(image_size)
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
    return torch.tensor([0.0, 0.0, float(W), float(H)], **kw)


def make_anchors(feat_h: int, feat_w: int, stride, scales=ANCHOR_SCALES, ratios=ANCHOR_RATIOS,
                 image_size=None) -> torch.Tensor:
    """Anchors [feat_h * feat_w * k, 4] as (cx, cy, w, h) in image pixels, k = len(scales) * len(ratios).

    Sec. III-A-2a: every feature cell (i, j) is projected back into the image and used
    as the centre, ((j + 0.5) * stride_x, (i + 0.5) * stride_y), of k anchors. The
    paper gives k = 12 but not the shapes: ``scales`` are anchor sides sqrt(w h) as a
    fraction of the image side (sqrt(H W); default 0.1, 0.2, 0.4, 0.8), ``ratios``
    are h / w (default 0.5, 1, 2), so the defaults suit 48 px demo images and
    448 / 600 px real ones alike. ``stride``: an int or (stride_y, stride_x);
    ``image_size`` defaults to the feature map times the stride.
    Order: cell-major, row by row, then scale-major within a cell, i.e. index
    ((i * feat_w + j) * len(scales) + s) * len(ratios) + r, the layout of
    ``LocalizationLayer``'s output.
    """
    sy, sx = (stride, stride) if isinstance(stride, (int, float)) else stride
    H, W = (feat_h * sy, feat_w * sx) if image_size is None else _hw(image_size)
    side = math.sqrt(H * W)
    s = torch.tensor(scales, dtype=torch.float32)[:, None] * side      # [S, 1]
    r = torch.tensor(ratios, dtype=torch.float32)[None, :]             # [1, R]
    aw, ah = (s / r.sqrt()).flatten(), (s * r.sqrt()).flatten()        # area (s side)^2, h / w = r
    cy = (torch.arange(feat_h, dtype=torch.float32) + 0.5) * sy
    cx = (torch.arange(feat_w, dtype=torch.float32) + 0.5) * sx
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")                     # [h, w]
    k = aw.numel()
    return torch.stack([cx[..., None].expand(-1, -1, k), cy[..., None].expand(-1, -1, k),
                        aw.expand(feat_h, feat_w, k), ah.expand(feat_h, feat_w, k)], dim=-1).reshape(-1, 4)


def apply_deltas(anchors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Eqs. 1-2: (ax, ay, aw, ah) + (tx, ty, tw, th) -> b = (bx, by, bw, bh), all cxcywh."""
    ax, ay, aw, ah = anchors.unbind(-1)
    tx, ty, tw, th = deltas.unbind(-1)
    return torch.stack([ax + tx * aw, ay + ty * ah,                            # Eq. 1
                        aw * tw.clamp(max=MAX_LOG_SCALE).exp(),                # Eq. 2
                        ah * th.clamp(max=MAX_LOG_SCALE).exp()], dim=-1)


def encode_deltas(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The inverse of Eqs. 1-2: the (tx, ty, tw, th) taking ``anchors`` to ``boxes`` (both cxcywh)."""
    ax, ay, aw, ah = anchors.unbind(-1)
    bx, by, bw, bh = boxes.unbind(-1)
    return torch.stack([(bx - ax) / aw, (by - ay) / ah, (bw / aw).log(), (bh / ah).log()], dim=-1)


# --- the localization layer (Sec. III-A-2a) ------------------------------------------

class LocalizationLayer(nn.Module):
    """3x3 conv with ``hidden`` (256) filters, ReLU, 1x1 conv with (4 + 1) k filters (Sec. III-A-2a).

    forward(maps [B, C, h, w], image_size) -> boxes [B, h w k, 4] (xyxy pixels, clipped to
    the image) and confidence logits [B, h w k]. ``stride`` None: image side / map side.
    """

    def __init__(self, in_channels: int, k: int = 12, hidden: int = 256, *, stride=None,
                 scales=ANCHOR_SCALES, ratios=ANCHOR_RATIOS):
        super().__init__()
        if len(scales) * len(ratios) != k:
            raise ValueError(f"k = {k} anchors, but {len(scales)} scales x {len(ratios)} ratios")
        self.k, self.stride, self.scales, self.ratios = k, stride, tuple(scales), tuple(ratios)
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 5 * k, 1)
        nn.init.normal_(self.out.weight, std=0.01)   # start from the anchors themselves
        nn.init.zeros_(self.out.bias)

    def anchors(self, feat_h: int, feat_w: int, image_size) -> torch.Tensor:
        H, W = _hw(image_size)
        stride = self.stride if self.stride is not None else (H / feat_h, W / feat_w)
        return make_anchors(feat_h, feat_w, stride, self.scales, self.ratios, image_size=(H, W))

    def forward(self, maps: torch.Tensor, image_size, details: bool = False):
        B, _, h, w = maps.shape
        out = self.out(F.relu(self.conv(maps)))                         # [B, 5k, h, w]
        out = out.permute(0, 2, 3, 1).reshape(B, h * w * self.k, 5)      # anchor order of make_anchors
        deltas, logits = out[..., :4], out[..., 4]
        anchors = self.anchors(h, w, image_size).to(maps)
        boxes = clip_boxes(cxcywh_to_xyxy(apply_deltas(anchors, deltas)), image_size)  # Eqs. 1-2
        if details:
            return {"boxes": boxes, "scores": logits, "deltas": deltas, "anchors": anchors}
        return boxes, logits


# --- region selection (Sec. III-A-2b) -------------------------------------------------

def sample_training_regions(boxes: torch.Tensor, scores: torch.Tensor, M: int, image_size) -> torch.Tensor:
    """Training regions: the top M/2 by confidence and the lowest M/2, plus the whole image.

    boxes [..., N, 4] xyxy, scores [..., N] -> [..., m + 1, 4] with m = min(M, N), the
    whole image last (footnote 4). The paper borrows the RPN minibatch of [14], [33]:
    the M/2 highest-scoring proposals are its "positives", the M/2 lowest its
    "negatives". Without region labels no loss tells the two apart, so all of them are
    fed to the LSTM and the max-pooling of Eq. 13 decides which ones matter. (With
    region ground truth, RLSD+ft-RPN labels anchors by IoU instead: ``rpn_targets``.)
    Where N < M, all N proposals are taken, best first. Gradients reach the boxes.
    """
    N = scores.shape[-1]
    if N <= M:
        idx = scores.argsort(dim=-1, descending=True)
    else:
        top = scores.topk((M + 1) // 2, dim=-1).indices                      # "positives"
        low = scores.topk(M // 2, dim=-1, largest=False).indices              # "negatives"
        idx = torch.cat([top, low.flip(-1)], dim=-1)
    picked = boxes.gather(-2, idx[..., None].expand(*idx.shape, 4))
    whole = whole_image_box(image_size, boxes).expand(*picked.shape[:-2], 1, 4)
    return torch.cat([picked, whole], dim=-2)


def select_test_regions(boxes: torch.Tensor, scores: torch.Tensor, M: int, image_size,
                        iou: float = 0.7) -> torch.Tensor:
    """Test regions of one image: NMS at ``iou``, the top M survivors, plus the whole image.

    boxes [N, 4] xyxy, scores [N] -> [min(M, kept) + 1, 4], best first, the whole image last
    (Sec. III-A-2b and footnote 4).
    """
    from torchvision.ops import nms

    keep = nms(boxes.detach().float(), scores.detach().float(), iou)[:M]   # sorted by score
    return torch.cat([boxes[keep], whole_image_box(image_size, boxes)[None]], dim=0)


def pad_regions(regions: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image region lists [R_b, 4] -> ([B, R, 4] zero-padded, valid mask [B, R])."""
    R = max(int(r.shape[0]) for r in regions)
    ref = regions[0]
    out = ref.new_zeros(len(regions), R, 4)
    mask = torch.zeros(len(regions), R, dtype=torch.bool, device=ref.device)
    for b, r in enumerate(regions):
        out[b, :len(r)] = r
        mask[b, :len(r)] = True
    return out, mask


# --- RLSD+ft-RPN: region ground truth and the localization loss (Sec. IV-A, Eqs. 3-4) -------

def cluster_box_centres(boxes_xywh, cut: float = CLUSTER_CUT, image_size=None,
                        linkage: str = CLUSTER_LINKAGE) -> torch.Tensor:
    """Cluster ids [n] (0, 1, ... in order of first appearance) of object boxes by their centres.

    Sec. IV-A: Euclidean-distance hierarchical clustering of the box centres
    (scipy.cluster.hierarchy, ``linkage`` = "complete" by default: within a cluster
    every two centres are at most the cut apart), cut at a distance threshold of
    ``cut`` times the image diagonal. ``boxes_xywh`` [n, 4]: top-left x, y, width,
    height (COCO / Visual Genome). ``image_size`` (H, W) or a side; None: the smallest
    frame from (0, 0) holding every box.
    """
    import numpy as np
    from scipy.cluster.hierarchy import fcluster
    from scipy.cluster.hierarchy import linkage as hlinkage

    b = torch.as_tensor(boxes_xywh, dtype=torch.float64).reshape(-1, 4)
    n = b.shape[0]
    if n <= 1:
        return torch.zeros(n, dtype=torch.long)
    if image_size is None:
        H, W = float((b[:, 1] + b[:, 3]).max()), float((b[:, 0] + b[:, 2]).max())
    else:
        H, W = _hw(image_size)
    centres = (b[:, :2] + b[:, 2:] / 2).numpy()
    z = hlinkage(centres, method=linkage, metric="euclidean")
    raw = fcluster(z, t=cut * math.hypot(H, W), criterion="distance")
    _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))                             # relabel by first appearance
    return torch.as_tensor(rank[inverse], dtype=torch.long)


def merge_clusters(boxes_xywh, ids: torch.Tensor) -> torch.Tensor:
    """One union box per cluster (the region ground truth, Sec. IV-A): [n, 4] xywh -> [n_clusters, 4] xywh."""
    b = xywh_to_xyxy(torch.as_tensor(boxes_xywh, dtype=torch.float32).reshape(-1, 4))
    ids = torch.as_tensor(ids, dtype=torch.long)
    n_c = int(ids.max()) + 1 if ids.numel() else 0
    idx = ids[:, None].expand(-1, 2)
    lo = b.new_full((n_c, 2), float("inf")).scatter_reduce(0, idx, b[:, :2], "amin")
    hi = b.new_full((n_c, 2), float("-inf")).scatter_reduce(0, idx, b[:, 2:], "amax")
    return torch.cat([lo, hi - lo], dim=1)


def rpn_targets(anchors: torch.Tensor, gt_regions: torch.Tensor, pos_iou: float = 0.7, neg_iou: float = 0.3,
                match_best: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor labels [N] (1 positive, 0 negative, -1 ignored) and regression targets [N, 4] (footnote 3).

    ``anchors`` [N, 4] cxcywh, ``gt_regions`` [G, 4] xyxy. IoU with the best region
    > ``pos_iou``: positive; < ``neg_iou``: negative; between: ignored. Targets are
    ``encode_deltas`` to the best region (meaningful on positives only).
    ``match_best=True`` adds the rule of [14]: each region's best anchor is positive too.
    """
    from torchvision.ops import box_iou

    N = anchors.shape[0]
    labels = torch.full((N,), -1, dtype=torch.long, device=anchors.device)
    if gt_regions.numel() == 0:
        labels.fill_(0)
        return labels, torch.zeros_like(anchors)
    iou = box_iou(cxcywh_to_xyxy(anchors), gt_regions.to(anchors))    # [N, G]
    best, which = iou.max(1)
    labels[best < neg_iou] = 0
    labels[best > pos_iou] = 1
    if match_best:
        labels[iou.argmax(0)] = 1
    targets = encode_deltas(anchors, xyxy_to_cxcywh(gt_regions.to(anchors)[which]))
    return labels, targets


def sample_anchor_minibatch(labels: torch.Tensor, M: int = 256, generator: torch.Generator | None = None):
    """At most M/2 positives, the rest negatives, M in all; the others become -1 (Sec. III-A-2b)."""
    out = labels.clone()
    pos = (labels == 1).nonzero().flatten()
    pos = pos[torch.randperm(len(pos), generator=generator)]
    out[pos[M // 2:]] = -1
    n_neg = M - min(len(pos), M // 2)
    neg = (labels == 0).nonzero().flatten()
    neg = neg[torch.randperm(len(neg), generator=generator)]
    out[neg[n_neg:]] = -1
    return out


def localization_loss(deltas: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                      targets: torch.Tensor, box_weight: float = 1.0) -> torch.Tensor:
    """Smooth-L1 of Eqs. 3-4 on the positives + binary cross-entropy of the confidence.

    ``deltas``/``targets`` [..., N, 4] (predicted / ``rpn_targets`` t), ``logits`` and
    ``labels`` [..., N] (1 / 0 / -1 ignored). Eq. 3 sums SmoothL1 over x, y, w, h of the
    box parameterisation (as [14]); Eq. 4 is SmoothL1 with its kink at |x| = 1
    (beta = 1). The box term is averaged over positives, the confidence term over
    the sampled (non-ignored) anchors.
    """
    pos, used = labels == 1, labels >= 0
    box = F.smooth_l1_loss(deltas[pos], targets[pos].to(deltas), beta=1.0, reduction="sum")  # Eqs. 3-4
    box = box / pos.sum().clamp_min(1)
    conf = F.binary_cross_entropy_with_logits(logits[used], labels[used].to(logits), reduction="sum")
    conf = conf / used.sum().clamp_min(1)
    return conf + box_weight * box
