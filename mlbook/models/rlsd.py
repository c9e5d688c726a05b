"""RLSD: Regional Latent Semantic Dependencies (Zhang, Wu, Shen, Chen, Pan, Wang, TMM 2018).

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
The localization layer (anchors and Eqs. 1-2, the region selection with NMS at test time) and
RLSD+ft-RPN's region ground truth and localization loss (Sec. IV-A, Eqs. 3-4, footnote 3:
``cluster_box_centres``, ``merge_clusters``, ``rpn_targets``, ``sample_anchor_minibatch`` and
``localization_loss``) are in ``models/rlsd_localization.py``, with the box conventions.
No training loop here: the experiment runner lives elsewhere.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .rlsd_localization import (ANCHOR_RATIOS, ANCHOR_SCALES, LocalizationLayer, _hw, clip_boxes, pad_regions,
                                sample_training_regions, select_test_regions, whole_image_box)


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
