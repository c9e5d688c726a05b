"""Training and evaluating the RLSD rows of Tables I-IV (Zhang et al., TMM 2018), and the chapter's evidence.

Stages (each a cached experiment, on the frozen conv maps of the shared backbone):
- ``visual_genome``: the region set the localization layer is pre-trained on: genuine
  Visual Genome (``vg_root``) or the generated stand-in, written once (atomically) under
  ``data_dir()/generated/visual_genome/``.
- ``pretrain_localization`` (Sec. III-D-a): the localization layer trained on those
  regions (``rpn_targets`` + ``localization_loss``) on the data set's frozen backbone maps
  of the region-set images; then frozen. ``kind="ft"``: RLSD+ft-RPN's layer, the same layer
  fine-tuned on the clustered box centres of the target training images (Sec. IV-A).
  The stage also stores the regions the frozen layer gives every image (training: the top
  and lowest M/2 by confidence; test: NMS, top M), so the rows need not rerun it.
- ``proposals``: the top-M selective-search proposals of every image (MCG replaced), timed.
Rows (``run_row``, one training seed each): CNN+LSTM (global mode, Eq. 14; also the LSTM
pre-training), RLSD, SS-CNN+LSTM and RLSD+ft-RPN (initialised from CNN+LSTM of the same
seed, Eq. 14). The rows of ``mlbook.experiments.baselines`` give Multi-CNN (its
"Resnet-baseline": a linear head with BCE on the pooled maps), WARP, CNN-RNN, KNN, softmax.
Results hold the test scores p [N, L] (Eq. 13) and the history; metrics are computed after loading.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from .. import cache, metrics
from ..models import rlsd as M
from ..profiles import data_dir, get_profile, pick_device
from ..train import fit
from . import baselines, shared

CODE = (*shared.SHARED_CODE, M, sys.modules[__name__])


@dataclasses.dataclass(frozen=True)
class RLSDSettings:
    """Sizes and training settings of the RLSD rows (scaled with the profile)."""
    epochs: int                       # budget; early stopping on the hold-out loss (Eq. 14)
    batch_size: int
    lr: float = 1e-3                  # Adam (the paper: SGD 1e-5 on a pretrained VGG16); 3e-3 and
                                      # above sometimes collapse the global model to chance on VOC
    weight_decay: float = 0.0
    patience: int = 3
    holdout: float = 0.1
    train_regions: int = 4            # M in training (+ the whole image)
    test_regions: int = 8             # M at test time, after NMS (+ the whole image)
    nms_iou: float = 0.7
    grid: int = 2                     # X = Y of the bilinear sampling
    fc_dim: int = 128                 # the two fc layers of the region encoder (paper 4096)
    dropout: float = 0.2
    loc_hidden: int = 64              # 3x3 conv of the localization layer (paper 256)
    embed: int = 64                   # W_ev, W_es (paper 64)
    hidden: int = 64                  # LSTM memory (paper 512)
    max_steps: int = 3                # T (not given in the paper)
    anchor_batch: int = 64            # anchors per image in the localization loss (paper 256)
    loc_epochs: int = 8               # localization layer: pre-training and ft-RPN budgets
    loc_lr: float = 1e-3
    vg_images: int = 400              # generated Visual Genome images
    ss_top: int = 16                  # selective search proposals kept per image
    ss_mode: str = "single"           # OpenCV strategy ("fast" on real data)
    ss_min_side: int = 64             # images are searched at least this large


def settings_for(profile) -> RLSDSettings:
    profile = get_profile(profile)
    base = dict(epochs=profile.head_epochs, batch_size=profile.batch_size, patience=profile.patience,
                holdout=profile.holdout)
    if profile.name == "smoke":
        return RLSDSettings(**base, train_regions=3, test_regions=6, fc_dim=32, loc_hidden=32, embed=16,
                            hidden=16, max_steps=2, anchor_batch=32, loc_epochs=2, vg_images=24, ss_top=6)
    if profile.backbone == "small_cnn":
        return RLSDSettings(**base)
    return RLSDSettings(**base, lr=1e-4, train_regions=256, test_regions=256, grid=7, fc_dim=4096, dropout=0.5,
                        loc_hidden=256, embed=64, hidden=512, max_steps=4, anchor_batch=256, loc_epochs=10,
                        vg_images=5000, ss_top=256, ss_mode="fast", ss_min_side=128)


def sizes_table(profiles=("smoke", "demo", "full")):
    """The sizes of every profile, one column each (for the chapter)."""
    import pandas as pd

    keys = ["train_regions", "test_regions", "grid", "fc_dim", "dropout", "loc_hidden", "embed", "hidden",
            "max_steps", "anchor_batch", "lr", "epochs", "loc_epochs", "vg_images", "ss_top", "ss_mode",
            "ss_min_side"]
    return pd.DataFrame({p: {k: getattr(settings_for(p), k) for k in keys} for p in profiles})


def _profile(profile):
    return get_profile(profile)


@functools.lru_cache(maxsize=16)
def _splits_cached(dataset, profile, root, seed):
    return shared.splits(dataset, profile, root, seed)


def splits(dataset, profile, root=None, seed=0):
    """``shared.splits``, read once per process (VOC parses every annotation file on each read)."""
    return _splits_cached(dataset, get_profile(profile), root, seed)


def image_side(profile) -> int:
    """The network input side: every box of this chapter is in pixels of that square input."""
    return get_profile(profile).image_size


def _features(dataset, profile, root, seed, device, weights):
    return shared.backbone_features(dataset, profile, root, seed, device, weights)


def model_config(s: RLSDSettings, in_channels: int, num_labels: int, mode: str = "rlsd") -> M.RLSDConfig:
    return M.RLSDConfig(in_channels=in_channels, num_labels=num_labels, mode=mode,
                        loc_hidden=s.loc_hidden, train_regions=s.train_regions, test_regions=s.test_regions,
                        nms_iou=s.nms_iou, grid=s.grid, fc_dim=s.fc_dim, dropout=s.dropout, embed=s.embed,
                        hidden=s.hidden, max_steps=s.max_steps)


def _base_config(stage, dataset, profile, root, seed, weights, s: RLSDSettings) -> dict:
    return {"chapter": "06_rlsd", "stage": stage, "version": 1, **shared.data_key(dataset, profile, root, seed),
            "backbone": profile.backbone, "image_size": profile.image_size, "weights": weights,
            "settings": dataclasses.asdict(s)}


# --- the region set (Visual Genome or its generated stand-in) ----------------------------------

def generated_vg_root(profile, n_images: int, seed: int = 0) -> Path:
    """Write (once) the generated Visual Genome stand-in of this profile; return its folder.

    Deterministic (``write_generated_regions``); written into a temporary folder that is
    renamed into place, so a half-written set is never read.
    """
    from ..data.visual_genome import write_generated_regions

    p = get_profile(profile)
    name = f"{p.name}-n{n_images}-px{p.gen_image_size}-c{p.gen_classes}-s{seed}"
    root = data_dir() / "generated" / "visual_genome" / name
    if (root / "image_data.json").is_file() and (root / "region_descriptions.json").is_file():
        return root
    tmp = root.with_name(f".{name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_generated_regions(tmp, n_images=n_images, image_size=p.gen_image_size, seed=seed,
                            n_classes=p.gen_classes)
    try:
        os.replace(tmp, root)
    except OSError:                      # another process wrote it first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def visual_genome(profile, vg_root: str | None = None, seed: int = 0):
    """The region set: genuine Visual Genome at ``vg_root`` (``read_regions``) or the generated one."""
    from ..data.visual_genome import read_regions

    s = settings_for(profile)
    root = vg_root or generated_vg_root(profile, s.vg_images, seed)
    vg = read_regions(root)
    if vg_root and s.vg_images and len(vg) > s.vg_images:   # a profile's cap on the genuine set
        vg.images = vg.images[:s.vg_images]
    return vg


def _vg_fingerprint(vg) -> str:
    import hashlib

    h = hashlib.sha256()
    for im in vg:
        h.update(f"{im.image_id}:{im.width}x{im.height}".encode())
        h.update(im.boxes.numpy().tobytes())
    return h.hexdigest()[:16]


def _image_maps(paths, net, size: int, device: str, batch: int = 128) -> torch.Tensor:
    """Backbone maps (float16) of image files, resized to size x size as ``image_tensor_cache``."""
    import numpy as np

    from ..data.base import open_rgb

    out = []
    net.to(device).eval()
    with torch.no_grad():
        for i in range(0, len(paths), batch):
            imgs = [np.asarray(open_rgb(p).resize((size, size))) for p in paths[i:i + batch]]
            x = torch.as_tensor(np.stack(imgs)).permute(0, 3, 1, 2).contiguous().to(device)
            out.append(net(shared.as_input(x, train=False)).half().cpu())
    return torch.cat(out)


def _scaled_xyxy(boxes_xywh: torch.Tensor, width: float, height: float, side: int) -> torch.Tensor:
    """xywh boxes in an image of (width, height) -> xyxy in the side x side network input."""
    b = M.xywh_to_xyxy(torch.as_tensor(boxes_xywh, dtype=torch.float32).reshape(-1, 4))
    return b * torch.tensor([side / width, side / height, side / width, side / height])


def _anchor_targets(loc: M.LocalizationLayer, gts: list[torch.Tensor], h: int, w: int, side: int):
    """rpn_targets of every image (best anchor of each region positive too: small demo grids)."""
    anchors = loc.anchors(h, w, side)
    labels, targets = zip(*(M.rpn_targets(anchors, g, match_best=True) for g in gts))
    return torch.stack(labels), torch.stack(targets)


def _train_localization(loc: M.LocalizationLayer, maps, labels, targets, s: RLSDSettings, side: int, *,
                        seed: int, device: str, folder: Path, epochs: int, desc: str) -> list[dict]:
    """Eqs. 3-4 + confidence BCE on anchor minibatches (at most half positives), early stopped."""
    def loss_fn(model, batch):
        x, lab, tgt = batch
        out = model(x.float(), side, details=True)
        if model.training:
            lab = torch.stack([M.sample_anchor_minibatch(l, s.anchor_batch) for l in lab])
        return M.localization_loss(out["deltas"], out["scores"], lab, tgt)

    fit_idx, val_idx = shared.holdout_split(len(maps), s.holdout, seed)
    part = lambda idx: torch.utils.data.TensorDataset(maps[idx], labels[idx], targets[idx])  # noqa: E731
    torch.manual_seed(seed)
    return fit(loc, part(fit_idx), loss_fn, epochs=epochs, batch_size=s.batch_size, device=device, seed=seed,
               val_dataset=part(val_idx), patience=s.patience,
               make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.loc_lr),
               checkpoint=folder / "checkpoint.pt", desc=desc, progress=False)


@torch.no_grad()
def layer_regions(loc: M.LocalizationLayer, maps: torch.Tensor, s: RLSDSettings, side: int, train: bool,
                  batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The regions the frozen layer gives (without the whole image, which the model appends):
    training: the top and lowest M/2 by confidence (``sample_training_regions``); test: NMS and
    the top M (``select_test_regions``). Returns (boxes [N, M, 4] xyxy zero-padded, counts [N])."""
    loc = loc.cpu().eval()
    boxes, counts = [], []
    M_ = s.train_regions if train else s.test_regions
    for i in range(0, len(maps), batch):
        b, sc = loc(maps[i:i + batch].float(), side)
        if train:
            r = M.sample_training_regions(b, sc, M_, side)[:, :-1]
            boxes += list(r)
            counts += [r.shape[1]] * r.shape[0]
        else:
            for bb, ss in zip(b, sc):
                r = M.select_test_regions(bb, ss, M_, side, s.nms_iou)[:-1]
                boxes.append(torch.cat([r, r.new_zeros(M_ - len(r), 4)]))
                counts.append(len(r))
    return torch.stack(boxes), torch.tensor(counts)


def cluster_regions(boxes, width: float, height: float, side: int) -> torch.Tensor:
    """RLSD+ft-RPN region ground truth of one image: its object boxes clustered by centre and
    merged (Sec. IV-A), xyxy in network pixels."""
    xywh = torch.tensor([[b.x, b.y, b.w, b.h] for b in boxes], dtype=torch.float32).reshape(-1, 4)
    ids = M.cluster_box_centres(xywh, image_size=(height, width))
    return _scaled_xyxy(M.merge_clusters(xywh, ids), width, height, side)


def localization_config(dataset, profile, root=None, seed=0, weights=None, vg_root=None, kind="vg",
                        n_vg: int | None = None) -> dict:
    if kind not in ("vg", "ft"):
        raise ValueError(f"kind must be 'vg' or 'ft', not {kind!r}")
    profile = _profile(profile)
    n_vg = len(visual_genome(profile, vg_root, seed)) if n_vg is None else n_vg
    s = settings_for(profile)
    keys = ("batch_size", "patience", "holdout", "train_regions", "test_regions", "nms_iou", "loc_hidden",
            "anchor_batch", "loc_epochs", "loc_lr", "vg_images")
    config = _base_config(f"localization_{kind}", dataset, profile, root, seed, weights, s)
    config["settings"] = {k: getattr(s, k) for k in keys}       # only what the layer depends on
    return {**config, "vg": "real" if vg_root else "generated", "vg_images": n_vg}


def pretrain_localization(dataset: str, profile, root: str | None = None, seed: int = 0, device: str = "auto",
                          weights: str | None = None, vg_root: str | None = None, kind: str = "vg",
                          force: bool = False) -> dict:
    """The localization layer (cached): ``kind="vg"`` pre-trained on the region set (Sec. III-D-a);
    ``kind="ft"`` (RLSD+ft-RPN) that layer fine-tuned on the clustered object boxes of the
    training images of ``dataset``. Returns {"state_dict", "history", "regions_train",
    "counts_train", "regions_test", "counts_test", "n_images", "n_without_boxes", "seconds"}."""
    profile = _profile(profile)
    s = settings_for(profile)
    side = image_side(profile)
    data = splits(dataset, profile, root, seed)
    vg = visual_genome(profile, vg_root, seed)
    config = localization_config(dataset, profile, root, seed, weights, vg_root, kind, len(vg))

    def compute(folder: Path) -> dict:
        feats = _features(dataset, profile, root, seed, device, weights)
        C, h, w = feats["train"].shape[1:]
        loc = M.LocalizationLayer(C, len(M.ANCHOR_SCALES) * len(M.ANCHOR_RATIOS), s.loc_hidden)
        out: dict = {}
        start = time.perf_counter()
        if kind == "vg":
            backbone, _ = shared.shared_backbone(dataset, profile, root, seed, device, weights)
            with shared.cpu_threads(None):
                maps = _image_maps([im.path for im in vg], backbone, side, pick_device(device))
            gts = [_scaled_xyxy(im.boxes, im.width, im.height, side) for im in vg]
            out.update(n_images=len(vg), n_without_boxes=0)
            desc = f"localization (region set) {dataset}"
        else:
            base = pretrain_localization(dataset, profile, root, seed, device, weights, vg_root, "vg")
            loc.load_state_dict(base["state_dict"])
            train = data.train
            if train.boxes is None:
                raise ValueError(f"{dataset}: no object boxes in this format: RLSD+ft-RPN needs them")
            keep = [i for i, bs in enumerate(train.boxes) if bs]
            maps = feats["train"][keep]
            gts = [cluster_regions(train.boxes[i], *train.image_sizes[i], side) for i in keep]
            out.update(n_images=len(keep), n_without_boxes=len(train) - len(keep))
            desc = f"localization (ft-RPN) {dataset}"
        labels, targets = _anchor_targets(loc, gts, h, w, side)
        with shared.cpu_threads(1 if pick_device(device) == "cpu" else None):
            out["history"] = _train_localization(loc, maps, labels, targets, s, side, seed=seed, device=device,
                                                 folder=folder, epochs=s.loc_epochs, desc=desc)
        out["seconds"] = time.perf_counter() - start
        out["state_dict"] = {k: v.cpu() for k, v in loc.state_dict().items()}
        out["positives_per_image"] = float((labels == 1).sum(1).float().mean())
        for split, train_mode in (("train", True), ("test", False)):
            out[f"regions_{split}"], out[f"counts_{split}"] = layer_regions(loc, feats[split], s, side, train_mode)
        return out

    data_fp = {"data": shared.data_fingerprint(data), "vg": _vg_fingerprint(vg)}
    return cache.run("rlsd_localization", config, compute, force=force, code=CODE, data=data_fp)


def proposals_config(dataset, profile, root=None, seed=0) -> dict:
    profile = _profile(profile)
    s = settings_for(profile)
    return {"chapter": "06_rlsd", "stage": "selective_search", "version": 1,
            **shared.data_key(dataset, profile, root, seed), "image_size": image_side(profile),
            "top": s.ss_top, "mode": s.ss_mode, "min_side": s.ss_min_side}


def proposals(dataset: str, profile, root: str | None = None, seed: int = 0, force: bool = False) -> dict:
    """Top selective-search proposals of every image (cached), in network pixels:
    {"regions_train"/"regions_test" [N, top, 4] zero-padded, "counts_train"/"counts_test" [N],
    "ms_per_image"}. Computed once per image, on the image file."""
    from ..data.base import open_rgb
    from ..models.proposals import selective_search_boxes

    profile = _profile(profile)
    s = settings_for(profile)
    side = image_side(profile)
    data = splits(dataset, profile, root, seed)
    config = proposals_config(dataset, profile, root, seed)

    def compute(folder: Path) -> dict:
        import cv2

        cv2.setNumThreads(1)
        out, start, n = {}, time.perf_counter(), 0
        for split in ("train", "test"):
            d = getattr(data, split)
            boxes, counts = [], []
            for path in d.image_paths:
                img = open_rgb(path)
                W, H = img.size
                b = selective_search_boxes(img, top=s.ss_top, mode=s.ss_mode, min_side=s.ss_min_side)
                b = b * torch.tensor([side / W, side / H, side / W, side / H])
                counts.append(len(b))
                boxes.append(torch.cat([b, b.new_zeros(s.ss_top - len(b), 4)]))
                n += 1
            out[f"regions_{split}"], out[f"counts_{split}"] = torch.stack(boxes), torch.tensor(counts)
        out["seconds"] = time.perf_counter() - start
        out["ms_per_image"] = 1000 * out["seconds"] / max(n, 1)
        return out

    return cache.run("rlsd_proposals", config, compute, force=force, code=CODE,
                     data=shared.data_fingerprint(data))


# --- the rows --------------------------------------------------------------------------------

ROWS = {  # table method name -> where its regions come from
    "CNN+LSTM": None,                      # global mode: the whole image only
    "RLSD": "vg",                          # the localization layer pre-trained on the region set
    "SS-CNN+LSTM": "ss",                   # selective search proposals (the paper's MCG-CNN+LSTM)
    "RLSD+ft-RPN": "ft",                   # the layer fine-tuned on clustered object boxes
}
BASELINE_ROWS = {"Multi-CNN": "Resnet-baseline", "WARP": "WARP", "CNN-RNN": "CNN-RNN", "KNN": "KNN",
                 "softmax": "Softmax"}
PUBLISHED_NAME = {"SS-CNN+LSTM": "MCG-CNN+LSTM"}   # our row -> the paper's row it stands in for


def region_source(method: str, dataset: str, profile, root, seed, device, weights, vg_root) -> dict:
    src = ROWS[method]
    if src == "ss":
        return proposals(dataset, profile, root, seed)
    return pretrain_localization(dataset, profile, root, seed, device, weights, vg_root, src)


def _boxes_list(boxes: torch.Tensor, counts: torch.Tensor) -> list[torch.Tensor]:
    return [b[:int(n)] for b, n in zip(boxes, counts)]


def predict_scores(model: M.RLSD, maps: torch.Tensor, side: int, boxes=None, counts=None,
                   batch: int = 256) -> torch.Tensor:
    """Fused p (Eq. 13) of every image, in eval mode."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(maps), batch):
            b = None if boxes is None else _boxes_list(boxes[i:i + batch], counts[i:i + batch])
            out.append(model(maps[i:i + batch].float(), side, boxes=b))
    return torch.cat(out)


def row_config(method, dataset, profile, root=None, seed=0, weights=None, train_seed=0, vg_root=None,
               settings=None) -> dict:
    profile = _profile(profile)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))
    src = ROWS[method]
    return {**_base_config("row", dataset, profile, root, seed, weights, s), "method": method,
            "train_seed": train_seed, "vg": ("real" if vg_root else "generated") if src in ("vg", "ft") else None}


def not_cached(jobs: list[tuple]) -> list[tuple]:
    """The run_all jobs still to compute: RLSD rows and stages whose result is not on disk (a stale
    one is recomputed when it is loaded); baseline rows are always passed on (their loader decides)."""
    out = []
    for fn, args, kw in jobs:
        if fn is run_any and args[0] in ROWS:
            a = dict(zip(("method", "dataset", "profile", "root", "seed", "device", "weights"), args))
            cfg = row_config(a["method"], a["dataset"], a["profile"], a.get("root"), a.get("seed", 0),
                             a.get("weights"), kw.get("train_seed", 0), kw.get("vg_root"))
            if cache.is_cached("rlsd", cfg):
                continue
        elif fn is pretrain_localization:
            if cache.is_cached("rlsd_localization", localization_config(*args[:4], *args[5:8])):
                continue
        elif fn is proposals:
            if cache.is_cached("rlsd_proposals", proposals_config(*args[:4])):
                continue
        out.append((fn, args, kw))
    return out


def run_row(method: str, dataset: str, profile, root: str | None = None, seed: int = 0, device: str = "auto",
            weights: str | None = None, train_seed: int = 0, vg_root: str | None = None,
            settings: dict | None = None, force: bool = False) -> dict:
    """Train and evaluate one RLSD-family row (cached). Returns {"scores" [N_test, L] (p of
    Eq. 13), "history", "config", "init" (tensors copied from CNN+LSTM)}."""
    profile = _profile(profile)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))
    side = image_side(profile)
    data = splits(dataset, profile, root, seed)
    src = ROWS[method]
    config = row_config(method, dataset, profile, root, seed, weights, train_seed, vg_root, settings)

    def _compute(folder: Path) -> dict:
        feats = _features(dataset, profile, root, seed, device, weights)
        C = feats["train"].shape[1]
        L = data.train.num_classes
        cfg = model_config(s, C, L, "global" if src is None else "rlsd")
        torch.manual_seed(train_seed)
        model = M.RLSD(cfg)
        out: dict = {"config": dataclasses.asdict(cfg), "init": []}
        y = data.train.labels
        ign = data.train.ignore if data.train.ignore is not None else torch.zeros_like(y, dtype=torch.bool)
        tensors = [feats["train"], y, ign]
        if src is not None:
            regions = region_source(method, dataset, profile, root, seed, device, weights, vg_root)
            base = run_row("CNN+LSTM", dataset, profile, root, seed, device, weights, train_seed, vg_root, settings)
            out["init"] = model.init_from_global(base["state_dict"])            # Sec. III-D-b
            if src in ("vg", "ft"):
                model.loc.load_state_dict(regions["state_dict"])
            model.loc.requires_grad_(False)                                     # frozen (Sec. III-D)
            tensors += [regions["regions_train"][:, :s.train_regions], regions["counts_train"].clamp(max=s.train_regions)]

        def loss_fn(m, batch):
            x, yy, ii = batch[:3]
            b = _boxes_list(*batch[3:]) if len(batch) > 3 else None
            return M.rlsd_loss(m(x.float(), side, boxes=b), yy, ii)            # Eqs. 13-14

        fit_idx, val_idx = shared.holdout_split(len(y), s.holdout, seed)
        part = lambda idx: torch.utils.data.TensorDataset(*(t[idx] for t in tensors))  # noqa: E731
        params = [p for p in model.parameters() if p.requires_grad]
        out["history"] = fit(model, part(fit_idx), loss_fn, epochs=s.epochs, batch_size=s.batch_size, device=device,
                             seed=train_seed, val_dataset=part(val_idx), patience=s.patience,
                             make_optimizer=lambda m: torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay),
                             checkpoint=folder / "checkpoint.pt", desc=f"{method} {dataset}", progress=False)
        model.cpu()
        if src is None:
            out["scores"] = predict_scores(model, feats["test"], side)
        else:
            out["scores"] = predict_scores(model, feats["test"], side, regions["regions_test"], regions["counts_test"])
        out["state_dict"] = {k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("loc.")}
        return out

    compute = shared.head_on_frozen_features(_compute, dataset, profile, root, seed, device, weights)
    return cache.run("rlsd", config, compute, force=force, code=CODE, data=shared.data_fingerprint(data))


def run_any(method: str, dataset: str, profile, root=None, seed=0, device="auto", weights=None,
            train_seed: int = 0, vg_root=None) -> dict:
    """Any trained row of the tables: an RLSD-family row or a baseline of ``mlbook.experiments.baselines``."""
    if method in ROWS:
        return run_row(method, dataset, profile, root, seed, device, weights, train_seed, vg_root)
    return baselines.run_baseline(BASELINE_ROWS[method], dataset, profile, root, seed, device, weights,
                                  train_seed=train_seed)


def stage_jobs(datasets: dict, profile, seed=0, device="auto", weights=None, vg_root=None) -> list[tuple]:
    """The shared stages of every data set, as run_all jobs (localization layers, proposals)."""
    jobs = []
    for d, root in datasets.items():
        jobs.append((pretrain_localization, (d, profile, root, seed, device, weights, vg_root, "vg"), {}))
        jobs.append((proposals, (d, profile, root, seed), {}))
    return jobs


# --- metrics -----------------------------------------------------------------------------------

FLOOR_ROWS = ("Multi-CNN", "CNN+LSTM", "SS-CNN+LSTM", "RLSD", "RLSD+ft-RPN")   # probabilities: the 0.5 floor applies


def predictions(result: dict, method: str, floor: float | None, k: int = 3) -> torch.Tensor:
    """Top-3 predictions [N, L]; the paper's 0.5 floor on its own rows' probabilities where asked
    (COCO, Table III); a sequence baseline (CNN-RNN): its first three emitted labels."""
    if "sequences" in result:
        return result["pred"]
    return metrics.predict_labels(result["scores"], k=k, floor=floor if method in FLOOR_ROWS else None)


# --- evidence ----------------------------------------------------------------------------------

def objects_per_region(regions: torch.Tensor, counts: torch.Tensor, boxes, image_sizes, side: int,
                       top: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image with object boxes: the mean number of object-box centres inside its regions
    (the whole image not counted). Returns (image indices, mean objects per region)."""
    idx, vals = [], []
    for i, bs in enumerate(boxes):
        n = int(counts[i]) if top is None else min(int(counts[i]), top)
        if not bs or n == 0:
            continue
        W, H = image_sizes[i]
        c = torch.tensor([[(b.x + b.w / 2) * side / W, (b.y + b.h / 2) * side / H] for b in bs])
        r = regions[i, :n]
        inside = ((c[None, :, 0] >= r[:, None, 0]) & (c[None, :, 0] <= r[:, None, 2])
                  & (c[None, :, 1] >= r[:, None, 1]) & (c[None, :, 1] <= r[:, None, 3]))
        idx.append(i)
        vals.append(float(inside.sum(1).float().mean()))
    return torch.tensor(idx), torch.tensor(vals, dtype=torch.float64)


def weighted_mean(images: torch.Tensor, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of per-image values under image resamples ``weights`` [1 + R, N] -> [1 + R]."""
    w = weights.double()[:, images]
    return (w * values.double()).sum(1) / w.sum(1).clamp_min(1e-12)


def relative_sizes(boxes, image_sizes) -> dict[int, list[float]]:
    """Per class, the relative size sqrt(box area / image area) of every object box."""
    out: dict[int, list[float]] = {}
    for i, bs in enumerate(boxes):
        W, H = image_sizes[i]
        for b in bs:
            out.setdefault(b.label, []).append(math.sqrt(max(b.w * b.h, 0.0) / (W * H)))
    return out


def recall_by_area(pred: torch.Tensor, boxes, image_sizes, edges) -> tuple[list[float], list[int]]:
    """Recall of (image, label) pairs binned by the relative area (box area / image area) of the
    label's largest box; ``edges``: bin edges of the area. Returns (recall per bin, pairs per bin)."""
    from .order_free_rnn import object_size_hits

    _, sizes, hits = object_size_hits(pred, boxes, image_sizes)
    area = sizes.double() ** 2
    b = torch.bucketize(area, torch.tensor(edges[1:-1], dtype=torch.float64))
    rec, n = [], []
    for k in range(len(edges) - 1):
        sel = b == k
        n.append(int(sel.sum()))
        rec.append(float(hits[sel].double().mean()) if bool(sel.any()) else float("nan"))
    return rec, n


# --- figures ------------------------------------------------------------------------------------

def _draw(ax, image, boxes_xyxy, scale_x, scale_y, color, lw=0.8):
    import matplotlib.patches as patches

    ax.imshow(image)
    for b in boxes_xyxy:
        x1, y1, x2, y2 = [float(v) for v in b]
        ax.add_patch(patches.Rectangle((x1 * scale_x, y1 * scale_y), (x2 - x1) * scale_x, (y2 - y1) * scale_y,
                                       fill=False, edgecolor=color, lw=lw))
    ax.set_xticks([])
    ax.set_yticks([])


def regions_figure(data, indices, loc_stage: dict, ss_stage: dict, maps: torch.Tensor, s: RLSDSettings,
                   side: int, top: int = 15):
    """Fig. 4: per test image, the top regions of the (frozen) localization layer after NMS
    (left) and the top selective-search proposals (right); ``maps``: the test conv maps."""
    import matplotlib.pyplot as plt
    import numpy as np

    from ..data.base import open_rgb

    layer = M.LocalizationLayer(maps.shape[1], len(M.ANCHOR_SCALES) * len(M.ANCHOR_RATIOS), s.loc_hidden)
    layer.load_state_dict(loc_stage["state_dict"])
    own = dataclasses.replace(s, test_regions=top)
    loc_boxes, loc_counts = layer_regions(layer, maps[list(indices)], own, side, train=False)
    fig, axes = plt.subplots(len(indices), 2, figsize=(4.4, 2.3 * len(indices)), squeeze=False)
    for r, i in enumerate(indices):
        img = np.asarray(open_rgb(data.image_paths[i]))
        H, W = img.shape[:2]
        panels = ((loc_boxes[r], loc_counts[r], "localization layer", "lime"),
                  (ss_stage["regions_test"][i], ss_stage["counts_test"][i], "selective search", "orange"))
        for c, (boxes, count, name, color) in enumerate(panels):
            n = min(int(count), top)
            _draw(axes[r, c], img, boxes[:n], W / side, H / side, color)
            axes[r, c].set_title(f"{name}: top {n}", fontsize=7)
        labels = [data.classes[j] for j in torch.nonzero(data.labels[i] > 0.5).flatten().tolist()]
        axes[r, 0].set_ylabel(", ".join(labels), fontsize=6)
    fig.tight_layout()
    return fig


def clusters_figure(data, indices, side: int):
    """Fig. 7: per image, the object boxes (left) and the clustered region ground truth (right)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from ..data.base import open_rgb

    fig, axes = plt.subplots(len(indices), 2, figsize=(4.4, 2.3 * len(indices)), squeeze=False)
    for r, i in enumerate(indices):
        img = np.asarray(open_rgb(data.image_paths[i]))
        H, W = img.shape[:2]
        bs = data.boxes[i]
        objects = _scaled_xyxy(torch.tensor([[b.x, b.y, b.w, b.h] for b in bs]), W, H, side)
        regions = cluster_regions(bs, W, H, side)
        _draw(axes[r, 0], img, objects, W / side, H / side, "red")
        axes[r, 0].set_title(f"{len(bs)} object boxes", fontsize=7)
        _draw(axes[r, 1], img, regions, W / side, H / side, "cyan", lw=1.2)
        axes[r, 1].set_title(f"{len(regions)} clustered regions", fontsize=7)
        axes[r, 0].set_ylabel(", ".join(sorted({data.classes[b.label] for b in bs})), fontsize=6)
    fig.tight_layout()
    return fig


# --- speed --------------------------------------------------------------------------------------

def bench_rlsd(profile: str = "demo", steps: int = 10, device: str = "auto", dtype: str | None = None,
               channels_last: bool = False, M_values=(4, 8, 16, 32, 64)) -> dict:
    """Training-step throughput (img/s) of the full RLSD model (localization layer in the loop,
    bilinear sampling, encoder, regional LSTM, Eq. 14) on random conv maps of the profile's shape,
    at the profile's sizes and for each M in ``M_values``. ``dtype``: None (float32) or
    "bfloat16" / "float16" (autocast); ``channels_last``: the maps' memory format. Prints and
    returns {"profile", "img_per_s", "by_M": {M: img/s}}."""
    p = get_profile(profile)
    s = settings_for(p)
    dev = pick_device(device)
    C, side = (128, p.image_size) if p.backbone == "small_cnn" else (2048, p.image_size)
    h = side // (8 if p.backbone == "small_cnn" else 32)
    L, B = max(p.gen_classes, 20) if p.gen_classes else 80, min(p.batch_size, 64)
    amp = getattr(torch, dtype) if dtype else None

    def rate(M_: int) -> float:
        torch.manual_seed(0)
        model = M.RLSD(dataclasses.replace(model_config(s, C, L), train_regions=M_)).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.randn(B, C, h, h, device=dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = (torch.rand(B, L, device=dev) < 0.1).float()
        def step():
            with torch.autocast(dev.split(":")[0], dtype=amp, enabled=amp is not None):
                loss = M.rlsd_loss(model(x, side).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        step()
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
        return B * steps / (time.perf_counter() - t)

    out = {"profile": p.name, "img_per_s": rate(s.train_regions), "by_M": {}}
    print(f"rlsd train step, {p.name} sizes (M={s.train_regions}, grid {s.grid}, fc {s.fc_dim}, "
          f"LSTM {s.hidden}, maps {C}x{h}x{h}, batch {B}, {dev}, {dtype or 'float32'}): {out['img_per_s']:.0f} img/s")
    for M_ in M_values:
        out["by_M"][M_] = rate(M_)
        print(f"  M = {M_:4d}: {out['by_M'][M_]:8.0f} img/s  ({out['by_M'][M_] / out['img_per_s']:.2f}x)")
    return out
