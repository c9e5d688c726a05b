"""RLSD: Regional Latent Semantic Dependencies (Zhang, Wu, Shen, Chen, Pan, Wang, TMM 2018), in one file.

    conv maps [B, C, h, w] (frozen VGG16 conv5 / the demo's SmallCNN)
      --LocalizationLayer--> boxes, confidences        (Sec. III-A-2a, Eqs. 1-2, k = 12 anchors)
      --select regions-----> M regions + whole image   (Sec. III-A-2b, footnote 4)
      --bilinear sampling--> [B, R, C, X, Y]           (Sec. III-A-2b, X = Y = 7)
      --RegionEncoder------> v per region              (Sec. III-A-3, two fc layers)
      --RegionalLSTM-------> p_tm [B, R, T, L]         (Sec. III-B, Eqs. 5-12, latent labels)
      --max over m, t------> p [B, L]                  (Sec. III-C, Eq. 13), loss Eq. 14

Baselines are modes of the same model (Sec. IV-C): ``mode="global"`` feeds only the
whole image (CNN+LSTM, also the LSTM pre-training of Sec. III-D-b), and external
boxes (``forward(..., boxes=...)``) replace the localization layer (MCG-CNN+LSTM).
RLSD+ft-RPN (Sec. IV-A, Eqs. 3-4, footnote 3): ``cluster_box_centres``,
``merge_clusters``, ``rpn_targets``, ``sample_anchor_minibatch`` and ``localization_loss``.
No training loop here: the experiment runner lives elsewhere.

Box conventions, used throughout: "cxcywh" = (centre x, centre y, width, height),
"xyxy" = (x1, y1, x2, y2), "xywh" = (top-left x, top-left y, width, height) as COCO
and Visual Genome write them; all in continuous image pixels, the image spanning
[0, W] x [0, H] and pixel (i, j) covering [j, j + 1) x [i, i + 1).
"""
from __future__ import annotations

import dataclasses
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


# --- bilinear sampling instead of RoI pooling (Sec. III-A-2b) -------------------------

def bilinear_region_features(maps: torch.Tensor, boxes, image_size, X: int = 7, Y: int = 7) -> torch.Tensor:
    """Region features [B, R, C, X, Y] by bilinear sampling of ``maps`` [B, C, h, w].

    ``boxes``: [B, R, 4] or a list of [R_b, 4] (zero-padded to the largest R, padded rows
    give zero features), xyxy in pixels of an image of ``image_size``. Each box is cut into
    an X (rows, along y) by Y (columns, along x) grid and the maps are read at the bin
    centres, x_q = x1 + (q + 0.5)(x2 - x1) / Y.

    Convention: the map covers the whole image, feature cell (a, b) the pixels
    [b W/w, (b + 1) W/w) x [a H/h, (a + 1) H/h), its value sitting at the cell centre
    (as the anchors' centres). ``grid_sample(align_corners=False)`` uses exactly this:
    normalised -1 / +1 are the outer edges of the outer cells, so a pixel coordinate x
    maps to u = 2 x / W - 1 (y: 2 y / H - 1). Points in the outer half cell read the
    edge value (padding_mode="border").

    Unlike RoI pooling (and torchvision's roi_align), the sampling grid is a smooth
    function of the box, so the result is differentiable with respect to both the maps
    and the box coordinates, as the paper requires ([33]).
    """
    mask = None
    if isinstance(boxes, (list, tuple)):
        boxes, mask = pad_regions(list(boxes))
    B, R, _ = boxes.shape
    H, W = _hw(image_size)
    x1, y1, x2, y2 = boxes.to(maps.dtype).unbind(-1)                                   # [B, R]
    fy = (torch.arange(X, device=maps.device, dtype=maps.dtype) + 0.5) / X            # bin centres in [0, 1]
    fx = (torch.arange(Y, device=maps.device, dtype=maps.dtype) + 0.5) / Y
    ys = y1[..., None] + fy * (y2 - y1)[..., None]                                      # [B, R, X] pixels
    xs = x1[..., None] + fx * (x2 - x1)[..., None]                                      # [B, R, Y]
    v = (2 * ys / H - 1)[..., :, None].expand(B, R, X, Y)                              # pixel -> [-1, 1]
    u = (2 * xs / W - 1)[..., None, :].expand(B, R, X, Y)
    grid = torch.stack([u, v], dim=-1).reshape(B, R * X, Y, 2)                         # (x, y) order
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = out.reshape(B, -1, R, X, Y).permute(0, 2, 1, 3, 4)                           # [B, R, C, X, Y]
    if mask is not None:
        out = out * mask[:, :, None, None, None].to(out.dtype)
    return out


# --- region encoder (Sec. III-A-3) ----------------------------------------------------

class RegionEncoder(nn.Module):
    """Two fully connected layers (4096-d in the paper) with ReLU and dropout: C X Y -> v (Sec. III-A-3).

    By default randomly initialised. ``layers``: the six modules fc6, ReLU, Dropout, fc7, ReLU,
    Dropout to use instead (``from_vgg16``: VGG16's own pretrained fc6/fc7, as in the paper).
    """

    def __init__(self, in_features: int, fc_dim: int = 4096, dropout: float = 0.5, *,
                 layers: nn.Sequential | None = None):
        super().__init__()
        if layers is None:
            layers = nn.Sequential(nn.Linear(in_features, fc_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                   nn.Linear(fc_dim, fc_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        fc6, fc7 = layers[0], layers[3]
        if (fc6.in_features, fc6.out_features, fc7.in_features, fc7.out_features) != (in_features, fc_dim,
                                                                                    fc_dim, fc_dim):
            raise ValueError(f"layers map {fc6.in_features} -> {fc6.out_features} -> {fc7.out_features}, "
                             f"not {in_features} -> {fc_dim} -> {fc_dim}")
        self.net = layers
        self.in_features, self.out_features = in_features, fc_dim

    @classmethod
    def from_vgg16(cls, fc67: nn.Sequential) -> "RegionEncoder":
        """The encoder *is* VGG16's fc6/fc7 (``backbones.vgg16_fc67``: ImageNet weights, shared, not
        copied): on 512-channel conv5 maps sampled at X = Y = 7 it reads the flattened region as fc6
        reads pool5 (channel, row, column order), Sec. III-A-3. Use with ``RLSDConfig(in_channels=512,
        grid=7, fc_dim=4096)``."""
        fc6, fc7, drop = fc67[0], fc67[3], fc67[2]
        return cls(fc6.in_features, fc7.out_features, drop.p, layers=fc67)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """[..., C, X, Y] -> [..., fc_dim]."""
        return self.net(feats.flatten(-3))


# --- the regional LSTM (Sec. III-B) -----------------------------------------------------

class RegionalLSTM(nn.Module):
    """Label sequence of each region with latent labels (Eqs. 5-12).

    x_0 = W_ev v; for t >= 1, x_t = W_es S_t with S_t the one-hot argmax of p_{t-1}
    (Eq. 12, over the L labels and END); h_t from one LSTM layer (Eqs. 5-10);
    p_t = softmax(W_p h_t + b_p) over L + 1 outputs, the last being END (Eq. 11, the
    linear map to the label space implied by "fed to a Softmax").
    There is no region ground truth, so S_t is the latent label in training and test
    alike; argmax has no gradient: the loss reaches p_t directly, and W_es only through
    the rows it selects.
    A region stops after the step whose argmax is END (that step's p is kept); its later
    steps are padded with 0 (Sec. III-B): all regions run T = ``max_steps`` steps together
    and the steps after an END are zeroed. forward(v [R, D]) -> p [R, T, L] (END dropped);
    ``details=True`` also gives "full" [R, T, L + 1] (before padding), "latent" [R, T]
    (S_t fed at step t, -1 at t = 0) and "alive" [R, T].
    """

    def __init__(self, feat_dim: int, num_labels: int, embed: int = 64, hidden: int = 512, max_steps: int = 4):
        super().__init__()
        self.num_labels, self.max_steps = num_labels, max_steps
        self.end = num_labels                                        # index of END in p_t
        self.w_ev = nn.Linear(feat_dim, embed, bias=False)           # region embedding W_ev (64-d)
        self.w_es = nn.Embedding(num_labels + 1, embed)              # label embedding W_es S_t (64-d)
        self.cell = nn.LSTMCell(embed, hidden)                       # Eqs. 5-10, memory 512
        self.out = nn.Linear(hidden, num_labels + 1)                 # Eq. 11, L labels + END

    def forward(self, v: torch.Tensor, details: bool = False):
        R = v.shape[0]
        x = self.w_ev(v)                                             # x_0 = W_ev v
        state = None
        probs, latents = [], [torch.full((R,), -1, dtype=torch.long, device=v.device)]
        for t in range(self.max_steps):
            if t > 0:
                s = probs[-1].detach().argmax(-1)                    # Eq. 12: S_t = 1{p_{t-1} = max p_{t-1}}
                latents.append(s)                                    # (argmax: no gradient)
                x = self.w_es(s)                                     # x_t = W_es S_t
            state = self.cell(x, state)                              # Eqs. 5-10
            probs.append(self.out(state[0]).softmax(-1))             # Eq. 11
        # latent[:, t] is S_t, the label fed at step t (-1 at t = 0, where v is fed).
        latent = torch.stack(latents, 1)                             # [R, T]
        ended = torch.stack([p.argmax(-1) == self.end for p in probs], 1)       # [R, T]
        alive = ~(torch.cumsum(ended.long(), 1) - ended.long()).bool()         # no END before t
        full = torch.stack(probs, 1)                                 # [R, T, L + 1]
        p = full[..., :self.num_labels] * alive[..., None].to(full.dtype)      # pad 0 after END
        if details:
            return {"probs": p, "full": full, "latent": latent, "alive": alive}
        return p


# --- fusion and loss (Sec. III-C) --------------------------------------------------------

FUSIONS = ("max", "mean")


def fuse_regions(p: torch.Tensor, mask: torch.Tensor | None = None, how: str = "max") -> torch.Tensor:
    """Eq. 13: p^(j) = max over regions m and steps t of p_tm^(j). [B, R, T, L] (+ valid [B, R]) -> [B, L].

    ``how="mean"`` is the book's ablation of Eq. 13, not the paper's: the mean of the same
    M x T matrix over the valid regions and all T steps (steps after END count 0, as padded)."""
    if how not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, not {how!r}")
    if mask is not None:
        p = p.masked_fill(~mask[:, :, None, None], 0.0)              # probabilities >= 0: padding never wins
    if how == "max":
        return p.amax(dim=(1, 2))
    regions = mask.sum(1) if mask is not None else torch.full(p.shape[:1], p.shape[1], device=p.device)
    return p.sum(dim=(1, 2)) / (regions * p.shape[2]).clamp_min(1)[:, None].to(p.dtype)


def rlsd_loss(p: torch.Tensor, y: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 14: J = 1/N sum_i sum_l (p_il - y_il / ||y_i||_1)^2.

    ``p`` [N, L] fused probabilities, ``y`` [N, L] in {0, 1}. The paper feeds the fused p
    to "a multi-way softmax layer with the squared loss"; we read the softmax as the one
    of Eq. 11 (p is already a maximum of probabilities). Images without a positive
    label have no target distribution: they are left out of the sum and of N.
    ``ignore`` [N, L] (VOC "difficult"): those entries are neither targets nor scored.
    """
    y = y.to(p.dtype)
    keep = torch.ones_like(y) if ignore is None else (~ignore.bool()).to(p.dtype)
    y = y * keep
    norm = y.sum(1, keepdim=True)                                    # ||y_i||_1
    has = (norm.squeeze(1) > 0).to(p.dtype)
    target = y / norm.clamp_min(1e-12)
    per_image = ((p - target) ** 2 * keep).sum(1)
    return (per_image * has).sum() / has.sum().clamp_min(1)


def pretraining_loss(p_steps: torch.Tensor, y: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """LSTM pre-training on the global image (Sec. III-D-b, footnote 6): every time step has the
    global label as ground truth. Eq. 14 on each step's p_t [N, T, L], averaged over the steps."""
    N, T, L = p_steps.shape
    rep = (lambda a: None if a is None else a[:, None].expand(N, T, L).reshape(N * T, L))
    return rlsd_loss(p_steps.reshape(N * T, L), rep(y), rep(ignore))


# --- the model ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RLSDConfig:
    in_channels: int                 # C of the conv maps: 512 (VGG16 conv5), 128 (demo SmallCNN)
    num_labels: int
    mode: str = "rlsd"               # "rlsd" | "global" (CNN+LSTM, Sec. IV-C-b)
    stride: int | None = None        # None: image side / map side (16 for VGG16, 8 for the demo CNN)
    anchor_scales: tuple = ANCHOR_SCALES
    anchor_ratios: tuple = ANCHOR_RATIOS
    loc_hidden: int = 256            # Sec. III-A-2a
    train_regions: int = 256         # M (Sec. III-A-2b)
    test_regions: int = 256          # M at test time, after NMS
    nms_iou: float = 0.7
    grid: int = 7                    # X = Y = 7
    fc_dim: int = 4096               # Sec. III-A-3
    dropout: float = 0.5
    embed: int = 64                  # W_ev, W_es (Sec. IV-A)
    hidden: int = 512                # LSTM memory (Sec. IV-A)
    max_steps: int = 4               # T: not given in the paper
    fusion: str = "max"              # Eq. 13; "mean": the book's fusion ablation (``fuse_regions``)


class RLSD(nn.Module):
    """The full model on precomputed (frozen) conv maps: Secs. III-A to III-C.

    forward(maps [B, C, h, w], image_size, boxes=None) -> fused p [B, L] (Eq. 13);
    ``details=True`` adds the region probabilities [B, R, T, L], the regions [B, R, 4]
    (xyxy pixels), their valid mask [B, R] and the localization outputs.
    - mode "rlsd", ``boxes`` None: the localization layer proposes; training mode takes
      ``sample_training_regions``, eval mode ``select_test_regions``.
    - ``boxes`` given (list of [N_b, 4] xyxy, ranked best first; MCG-CNN+LSTM): the first
      M replace the localization layer's, the whole image appended as always.
    - mode "global" (CNN+LSTM): the whole image is the only region, i.e. VGG's pool5 + fc6 +
      fc7 of the whole image fed once to the LSTM. It is the model of the LSTM pre-training
      (Sec. III-D-b): ``init_from_global`` copies its encoder and LSTM into an RLSD model.
    ``encoder``: the region encoder to start from (``RegionEncoder.from_vgg16``: VGG16's own
    pretrained fc6/fc7, Sec. III-A-3); None draws a random one.
    """

    def __init__(self, cfg: RLSDConfig, encoder: RegionEncoder | None = None):
        super().__init__()
        if cfg.mode not in ("rlsd", "global"):
            raise ValueError(f"mode must be 'rlsd' or 'global', not {cfg.mode!r}")
        self.cfg = cfg
        k = len(cfg.anchor_scales) * len(cfg.anchor_ratios)
        self.loc = (LocalizationLayer(cfg.in_channels, k, cfg.loc_hidden, stride=cfg.stride,
                                      scales=cfg.anchor_scales, ratios=cfg.anchor_ratios)
                    if cfg.mode == "rlsd" else None)
        region = cfg.in_channels * cfg.grid * cfg.grid                   # a flattened C x X x Y region
        if encoder is None:
            encoder = RegionEncoder(region, cfg.fc_dim, cfg.dropout)
        elif (encoder.in_features, encoder.out_features) != (region, cfg.fc_dim):
            raise ValueError(f"the encoder maps {encoder.in_features} -> {encoder.out_features}, the config "
                             f"{cfg.in_channels} x {cfg.grid} x {cfg.grid} = {region} -> {cfg.fc_dim}")
        self.encoder = encoder
        self.lstm = RegionalLSTM(cfg.fc_dim, cfg.num_labels, cfg.embed, cfg.hidden, cfg.max_steps)

    def regions(self, maps: torch.Tensor, image_size, boxes=None):
        """(regions [B, R, 4] xyxy, valid [B, R], localization outputs or None)."""
        B = maps.shape[0]
        M = self.cfg.train_regions if self.training else self.cfg.test_regions
        whole = whole_image_box(image_size, maps)
        if self.cfg.mode == "global":
            return whole.expand(B, 1, 4), torch.ones(B, 1, dtype=torch.bool, device=maps.device), None
        if boxes is not None:                                         # external proposals (MCG-CNN+LSTM)
            per_image = [torch.cat([clip_boxes(b.to(maps)[:M], image_size), whole[None]]) for b in boxes]
            return (*pad_regions(per_image), None)
        loc = self.loc(maps, image_size, details=True)
        if self.training:
            r = sample_training_regions(loc["boxes"], loc["scores"], M, image_size)
            return r, torch.ones(r.shape[:2], dtype=torch.bool, device=maps.device), loc
        per_image = [select_test_regions(b, s, M, image_size, self.cfg.nms_iou)
                     for b, s in zip(loc["boxes"], loc["scores"])]   # NMS: one image at a time
        return (*pad_regions(per_image), loc)

    def forward(self, maps: torch.Tensor, image_size, boxes=None, details: bool = False):
        regions, mask, loc = self.regions(maps, image_size, boxes)
        feats = bilinear_region_features(maps, regions, image_size, self.cfg.grid, self.cfg.grid)
        v = self.encoder(feats)                                       # [B, R, fc_dim]
        B, R = mask.shape
        p = self.lstm(v.reshape(B * R, -1)).reshape(B, R, self.cfg.max_steps, -1)  # all regions at once
        fused = fuse_regions(p, mask, self.cfg.fusion)                # Eq. 13
        if not details:
            return fused
        return {"p": fused, "region_probs": p, "regions": regions, "mask": mask, "loc": loc}

    @torch.no_grad()
    def init_from_global(self, source) -> list[str]:
        """Initialise the encoder and the regional LSTM from a global (CNN+LSTM) model or its
        state dict (Sec. III-D-b). Returns the names of the copied tensors."""
        state = source.state_dict() if isinstance(source, nn.Module) else source
        own = self.state_dict()
        copied = [n for n in state if n.startswith(("encoder.", "lstm.")) and n in own]
        for n in copied:
            if own[n].shape != state[n].shape:
                raise ValueError(f"{n}: shape {tuple(state[n].shape)} in the global model, "
                                 f"{tuple(own[n].shape)} here")
            own[n].copy_(state[n])
        if not copied:
            raise ValueError("no encoder./lstm. tensors to copy: not an RLSD state dict")
        return copied


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
