"""Training and evaluating the RLSD rows of Tables I-IV (Zhang et al., TMM 2018; chapter 06), and its claims' values.

Stages (cached experiments on the frozen conv maps of the trunk; rows of ``run`` too, so a
grid can list them):
- "localization (region set)" (Sec. III-D-a): the localization layer trained on a region
  set (``rpn_targets`` + ``localization_loss``): genuine Visual Genome (``vg_root``) or the
  generated stand-in, on the data set's frozen maps of the region-set images; then frozen.
  "localization (ft-RPN)" (Sec. IV-A): that layer fine-tuned on the clustered object boxes
  of the target training images. Each stage also stores the regions the frozen layer gives
  every image (training: the top and lowest M/2 by confidence; test: NMS, top M).
- "selective search": the selective-search proposals of every image (MCG replaced), with the
  same region-selection rule in training as the layer's (the first and the last M/2 of its
  ranked proposals) and the top M at test.
Rows (one training seed each): CNN+LSTM (global mode, Eq. 14; also the LSTM pre-training),
RLSD, SS-CNN+LSTM and RLSD+ft-RPN (initialised from the CNN+LSTM of the same seed, Eq. 14).
Baselines (``mlbook.experiments.baselines`` on the same trunk): Multi-CNN (the linear head
with BCE), WARP, CNN-RNN, KNN, softmax. Results hold the test scores p [N, L] (Eq. 13) and
the history; metrics are computed after loading.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .. import claims, metrics
from ..data.base import open_rgb
from ..data.synthetic import GENERATOR_VERSION
from ..data.visual_genome import read_regions, write_generated_regions
from ..models import rlsd as M
from ..models.proposals import selective_search_boxes
from ..profiles import data_dir, get_profile, pick_device
from ..train import fit
from . import baselines, shared

TRUNK = "vgg16"           # Sec. IV: VGG16 conv5 maps; its fc6/fc7 encode the regions (full profile)
OPTIONS = ("vg_root",)


@dataclasses.dataclass(frozen=True)
class Settings:
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


def settings_for(profile) -> Settings:
    profile = get_profile(profile)
    base = dict(epochs=profile.head_epochs, batch_size=profile.batch_size, patience=profile.patience,
                holdout=profile.holdout)
    if profile.name == "smoke":
        return Settings(**base, train_regions=3, test_regions=6, fc_dim=32, loc_hidden=32, embed=16,
                        hidden=16, max_steps=2, anchor_batch=32, loc_epochs=2, vg_images=24, ss_top=6)
    if profile.backbone == "small_cnn":
        return Settings(**base)
    return Settings(**base, lr=1e-4, train_regions=256, test_regions=256, grid=7, fc_dim=4096, dropout=0.5,
                    loc_hidden=256, embed=64, hidden=512, max_steps=4, anchor_batch=256, loc_epochs=10,
                    vg_images=5000, ss_top=256, ss_mode="fast", ss_min_side=128)


def sizes_table(profiles=("smoke", "demo", "full")):
    """The sizes of every profile, one column each (for the chapter)."""
    import pandas as pd

    keys = ["train_regions", "test_regions", "grid", "fc_dim", "dropout", "loc_hidden", "embed", "hidden",
            "max_steps", "anchor_batch", "lr", "epochs", "loc_epochs", "vg_images", "ss_top", "ss_mode",
            "ss_min_side"]
    return pd.DataFrame({p: {k: getattr(settings_for(p), k) for k in keys} for p in profiles})


@functools.lru_cache(maxsize=16)
def _splits_cached(dataset, profile, root, seed):
    return shared.splits(dataset, profile, root, seed)


def splits(dataset, profile, root=None, seed=0):
    """``shared.splits``, read once per process (VOC parses every annotation file on each read)."""
    return _splits_cached(dataset, get_profile(profile), root, seed)


def image_side(profile) -> int:
    """The network input side: every box of this chapter is in pixels of that square input."""
    return get_profile(profile).image_size


def model_config(s: Settings, in_channels: int, num_labels: int, mode: str = "rlsd") -> M.RLSDConfig:
    return M.RLSDConfig(in_channels=in_channels, num_labels=num_labels, mode=mode,
                        loc_hidden=s.loc_hidden, train_regions=s.train_regions, test_regions=s.test_regions,
                        nms_iou=s.nms_iou, grid=s.grid, fc_dim=s.fc_dim, dropout=s.dropout, embed=s.embed,
                        hidden=s.hidden, max_steps=s.max_steps)


def _base_config(stage, dataset, profile, root, seed, weights, s: Settings, keys=None) -> dict:
    name = shared.trunk_of(profile, TRUNK)
    chosen = dataclasses.asdict(s) if keys is None else {k: getattr(s, k) for k in keys}
    return {"chapter": "06_rlsd", "stage": stage, "version": 2, **shared.data_key(dataset, profile, root, seed),
            "backbone": name, "image_size": profile.image_size, "weights": shared.weights_name(weights, name),
            "holdout": profile.holdout, "settings": chosen}


def _features(dataset, profile, root, seed, device, weights):
    return shared.backbone_features(dataset, profile, root, seed, device, weights, trunk=TRUNK)


# --- the region set (Visual Genome or its generated stand-in) ----------------------------------

def generated_vg_root(profile, n_images: int, seed: int = 0) -> Path:
    """Write (once) the generated Visual Genome stand-in of this profile; return its folder.

    Deterministic (``write_generated_regions``); written into a temporary folder that is
    renamed into place, so a half-written set is never read.
    """
    p = get_profile(profile)
    name = f"{p.name}-n{n_images}-px{p.gen_image_size}-c{p.gen_classes}-s{seed}-g{GENERATOR_VERSION}"
    root = data_dir() / "generated" / "visual_genome" / name
    if (root / "image_data.json").is_file() and (root / "region_descriptions.json").is_file():
        return root
    tmp = root.with_name(f".{name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    write_generated_regions(tmp, n_images=n_images, image_size=p.gen_image_size, seed=seed,
                            n_classes=p.gen_classes)
    try:
        os.replace(tmp, root)
    except OSError:                      # another process wrote it first: the same bytes, keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def visual_genome(profile, vg_root: str | None = None, seed: int = 0):
    """The region set: genuine Visual Genome at ``vg_root`` (``read_regions``) or the generated one."""
    s = settings_for(profile)
    vg = read_regions(vg_root or generated_vg_root(profile, s.vg_images, seed))
    if vg_root and s.vg_images and len(vg) > s.vg_images:   # a profile's cap on the genuine set
        vg.images = vg.images[:s.vg_images]
    return vg


def _vg_fingerprint(vg) -> str:
    h = hashlib.sha256()
    for im in vg:
        h.update(f"{im.image_id}:{im.width}x{im.height}".encode())
        h.update(im.boxes.numpy().tobytes())
    return h.hexdigest()[:16]


def _image_maps(paths, net, size: int, device: str, batch: int = 128) -> torch.Tensor:
    """Backbone maps (float16) of image files, resized to size x size as ``image_tensor_cache``."""
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


def _train_localization(loc: M.LocalizationLayer, maps, labels, targets, s: Settings, side: int, *,
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
def layer_regions(loc: M.LocalizationLayer, maps: torch.Tensor, s: Settings, side: int, train: bool,
                  device: str = "cpu", batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The regions the frozen layer gives (without the whole image, which the model appends),
    computed on ``device``: training: the top and lowest M/2 by confidence
    (``sample_training_regions``); test: NMS and the top M (``select_test_regions``).
    Returns (boxes [N, M, 4] xyxy zero-padded, counts [N]) on the CPU."""
    loc = loc.to(device).eval()
    boxes, counts = [], []
    m = s.train_regions if train else s.test_regions
    for i in range(0, len(maps), batch):
        b, sc = loc(maps[i:i + batch].to(device).float(), side)
        if train:
            r = M.sample_training_regions(b, sc, m, side)[:, :-1].cpu()
            boxes += list(r)
            counts += [r.shape[1]] * r.shape[0]
        else:
            for bb, ss in zip(b, sc):
                r = M.select_test_regions(bb, ss, m, side, s.nms_iou)[:-1].cpu()
                boxes.append(torch.cat([r, r.new_zeros(m - len(r), 4)]))
                counts.append(len(r))
    return torch.stack(boxes), torch.tensor(counts)


def cluster_regions(boxes, width: float, height: float, side: int) -> torch.Tensor:
    """RLSD+ft-RPN region ground truth of one image: its object boxes clustered by centre and
    merged (Sec. IV-A), xyxy in network pixels."""
    xywh = torch.tensor([[b.x, b.y, b.w, b.h] for b in boxes], dtype=torch.float32).reshape(-1, 4)
    ids = M.cluster_box_centres(xywh, image_size=(height, width))
    return _scaled_xyxy(M.merge_clusters(xywh, ids), width, height, side)


LOC_KEYS = ("batch_size", "patience", "holdout", "train_regions", "test_regions", "nms_iou", "loc_hidden",
            "anchor_batch", "loc_epochs", "loc_lr", "vg_images")


def pretrain_localization(dataset: str, profile, root: str | None = None, seed: int = 0, device: str = "auto",
                          weights=None, vg_root: str | None = None, kind: str = "vg", force: bool = False) -> dict:
    """The localization layer (cached): ``kind="vg"`` pre-trained on the region set (Sec. III-D-a);
    ``kind="ft"`` (RLSD+ft-RPN) that layer fine-tuned on the clustered object boxes of the
    training images of ``dataset``. Returns {"state_dict", "history", "regions_train",
    "counts_train", "regions_test", "counts_test", "n_images", "n_without_boxes", "seconds"}."""
    if kind not in ("vg", "ft"):
        raise ValueError(f"kind must be 'vg' or 'ft', not {kind!r}")
    profile = get_profile(profile)
    s = settings_for(profile)
    side = image_side(profile)
    dev = pick_device(device)
    data = splits(dataset, profile, root, seed)
    vg = visual_genome(profile, vg_root, seed)
    config = {**_base_config(f"localization_{kind}", dataset, profile, root, seed, weights, s, LOC_KEYS),
              "vg": "real" if vg_root else "generated", "vg_images": len(vg)}

    def compute(folder: Path) -> dict:
        feats = _features(dataset, profile, root, seed, device, weights)
        C, h, w = feats["train"].shape[1:]
        torch.manual_seed(seed)
        loc = M.LocalizationLayer(C, len(M.ANCHOR_SCALES) * len(M.ANCHOR_RATIOS), s.loc_hidden)
        out: dict = {}
        start = time.perf_counter()
        if kind == "vg":
            backbone, _ = shared.shared_backbone(dataset, profile, root, seed, device, weights, trunk=TRUNK)
            maps = _image_maps([im.path for im in vg], backbone, side, dev)
            gts = [_scaled_xyxy(im.boxes, im.width, im.height, side) for im in vg]
            out.update(n_images=len(vg), n_without_boxes=0)
        else:
            base = pretrain_localization(dataset, profile, root, seed, device, weights, vg_root, "vg")
            loc.load_state_dict(base["state_dict"])
            if data.train.boxes is None:
                raise ValueError(f"{dataset}: no object boxes in this format: RLSD+ft-RPN needs them")
            keep = [i for i, bs in enumerate(data.train.boxes) if bs]
            maps = feats["train"][keep]
            gts = [cluster_regions(data.train.boxes[i], *data.train.image_sizes[i], side) for i in keep]
            out.update(n_images=len(keep), n_without_boxes=len(data.train) - len(keep))
        labels, targets = _anchor_targets(loc, gts, h, w, side)
        out["history"] = _train_localization(loc, maps, labels, targets, s, side, seed=seed, device=device,
                                             folder=folder, epochs=s.loc_epochs,
                                             desc=f"localization ({kind}) {dataset}")
        out["seconds"] = time.perf_counter() - start
        out["state_dict"] = {k: v.cpu() for k, v in loc.state_dict().items()}
        out["positives_per_image"] = float((labels == 1).sum(1).float().mean())
        for split, train_mode in (("train", True), ("test", False)):
            out[f"regions_{split}"], out[f"counts_{split}"] = layer_regions(loc, feats[split], s, side, train_mode, dev)
        return out

    return shared.cached("rlsd_localization", config, compute, profile, code=(pretrain_localization,),
                         data={"data": shared.data_fingerprint(data), "vg": _vg_fingerprint(vg)}, force=force)


def ranked_training_regions(boxes: torch.Tensor, m: int) -> torch.Tensor:
    """The layer's training rule applied to ranked proposals without confidences: the first
    (m + 1) // 2 and the last m // 2 of the ranking (all of them when there are at most m)."""
    n = len(boxes)
    if n <= m:
        return boxes
    return torch.cat([boxes[:(m + 1) // 2], boxes[n - m // 2:]])


def proposals(dataset: str, profile, root: str | None = None, seed: int = 0, force: bool = False) -> dict:
    """Selective-search proposals of every image (cached), in network pixels: {"regions_train"
    [N, M_train, 4] (``ranked_training_regions`` of the top ``ss_top``), "regions_test" [N, M_test, 4]
    (the top M_test), zero-padded, "counts_train"/"counts_test" [N], "ms_per_image"}."""
    import cv2

    profile = get_profile(profile)
    s = settings_for(profile)
    side = image_side(profile)
    data = splits(dataset, profile, root, seed)
    config = {"chapter": "06_rlsd", "stage": "selective_search", "version": 2,
              **shared.data_key(dataset, profile, root, seed), "image_size": side, "top": s.ss_top,
              "mode": s.ss_mode, "min_side": s.ss_min_side, "train_regions": s.train_regions,
              "test_regions": s.test_regions}

    def compute(folder: Path) -> dict:
        cv2.setNumThreads(1)
        out, start, n = {}, time.perf_counter(), 0
        for split in ("train", "test"):
            m = s.train_regions if split == "train" else s.test_regions
            regions = []
            for path in getattr(data, split).image_paths:
                img = open_rgb(path)
                W, H = img.size
                ctypes.CDLL(None).srand(0)   # OpenCV's selective search ranks with C rand(): same draw per image
                b = selective_search_boxes(img, top=s.ss_top, mode=s.ss_mode, min_side=s.ss_min_side)
                b = b * torch.tensor([side / W, side / H, side / W, side / H])
                regions.append(ranked_training_regions(b, m) if split == "train" else b[:m])
                n += 1
            out[f"counts_{split}"] = torch.tensor([len(r) for r in regions])
            out[f"regions_{split}"] = torch.stack([torch.cat([r, r.new_zeros(m - len(r), 4)]) for r in regions])
        out["seconds"] = time.perf_counter() - start
        out["ms_per_image"] = 1000 * out["seconds"] / max(n, 1)
        return out

    return shared.cached("rlsd_proposals", config, compute, profile, code=(proposals,),
                         data=shared.data_fingerprint(data), force=force)


# --- the rows --------------------------------------------------------------------------------

ROWS = {  # table row name -> where its regions come from
    "CNN+LSTM": None,                      # global mode: the whole image only
    "RLSD": "vg",                          # the localization layer pre-trained on the region set
    "SS-CNN+LSTM": "ss",                   # selective search proposals (the paper's MCG-CNN+LSTM)
    "RLSD+ft-RPN": "ft",                   # the layer fine-tuned on clustered object boxes
}
STAGES = {"localization (region set)": "vg", "localization (ft-RPN)": "ft", "selective search": "ss"}
BASELINE_ROWS = {"Multi-CNN": "Resnet-baseline", "WARP": "WARP", "CNN-RNN": "CNN-RNN", "KNN": "KNN",
                 "softmax": "Softmax"}   # the paper's name -> the baseline row that stands in for it


def grid(profile, datasets, seeds, boxed=("voc", "coco")) -> list[shared.Run]:
    """Every run of chapter 06, in waves: the stages; CNN+LSTM, the ft-RPN layer (data sets with
    boxes) and the baselines; then the region rows, which start from CNN+LSTM."""
    runs = shared.feature_runs(datasets, trunk=TRUNK)
    runs += [shared.Run("rlsd", stage, d) for d in datasets for stage in ("localization (region set)",
                                                                            "selective search")]
    runs += [shared.Run("rlsd", "localization (ft-RPN)", d, wave=1) for d in datasets if d in boxed]
    runs += [shared.Run("rlsd", "CNN+LSTM", d, s, wave=1) for d in datasets for s in seeds]
    runs += [dataclasses.replace(r, wave=1) for r in baselines.grid(profile, datasets, seeds,
                                                                      rows=tuple(BASELINE_ROWS.values()), trunk=TRUNK)]
    runs += [shared.Run("rlsd", row, d, s, wave=2) for d in datasets for row in ROWS
             if ROWS[row] and (row != "RLSD+ft-RPN" or d in boxed) for s in seeds]
    return runs


def region_source(row: str, dataset: str, profile, root, seed, device, weights, vg_root) -> dict:
    src = ROWS[row]
    if src == "ss":
        return proposals(dataset, profile, root, seed)
    return pretrain_localization(dataset, profile, root, seed, device, weights, vg_root, src)


def _boxes_list(boxes: torch.Tensor, counts: torch.Tensor) -> list[torch.Tensor]:
    return [b[:int(n)] for b, n in zip(boxes, counts)]


@torch.no_grad()
def predict_scores(model: M.RLSD, maps: torch.Tensor, side: int, boxes=None, counts=None, device: str = "cpu",
                   batch: int = 256) -> torch.Tensor:
    """Fused p (Eq. 13) of every image, in eval mode, computed on ``device``; returned on the CPU."""
    model.to(device).eval()
    out = []
    for i in range(0, len(maps), batch):
        b = None if boxes is None else [x.to(device) for x in _boxes_list(boxes[i:i + batch], counts[i:i + batch])]
        out.append(model(maps[i:i + batch].to(device).float(), side, boxes=b).cpu())
    return torch.cat(out)


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, vg_root: str | None = None, settings: dict | None = None,
        force: bool = False) -> dict:
    """Train and evaluate one RLSD-family row, or compute one stage (``STAGES``), cached.
    A row returns {"scores" [N_test, L] (p of Eq. 13), "history", "config", "init" (tensors
    copied from CNN+LSTM), "state_dict"}."""
    if row in STAGES:
        if STAGES[row] == "ss":
            return proposals(dataset, profile, root, seed, force=force)
        return pretrain_localization(dataset, profile, root, seed, device, weights, vg_root, STAGES[row], force)
    profile = get_profile(profile)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))
    side = image_side(profile)
    dev = pick_device(device)
    data = splits(dataset, profile, root, seed)
    src = ROWS[row]
    config = {**_base_config("row", dataset, profile, root, seed, weights, s), "method": row,
              "train_seed": train_seed, "vg": ("real" if vg_root else "generated") if src in ("vg", "ft") else None}

    def compute(folder: Path) -> dict:
        feats = _features(dataset, profile, root, seed, device, weights)
        cfg = model_config(s, feats["train"].shape[1], data.train.num_classes, "global" if src is None else "rlsd")
        torch.manual_seed(train_seed)
        model = M.RLSD(cfg)
        out: dict = {"config": dataclasses.asdict(cfg), "init": []}
        y = data.train.labels
        tensors = [feats["train"], y, shared.ignore_mask(data.train)]
        regions = None
        if src is not None:
            regions = region_source(row, dataset, profile, root, seed, device, weights, vg_root)
            base = run("CNN+LSTM", dataset, profile, root=root, seed=seed, train_seed=train_seed, device=device,
                       weights=weights, vg_root=vg_root, settings=settings)
            out["init"] = model.init_from_global(base["state_dict"])            # Sec. III-D-b
            if src in ("vg", "ft"):
                model.loc.load_state_dict(regions["state_dict"])
            model.loc.requires_grad_(False)                                     # frozen (Sec. III-D)
            tensors += [regions["regions_train"][:, :s.train_regions],
                        regions["counts_train"].clamp(max=s.train_regions)]

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
                             checkpoint=folder / "checkpoint.pt", desc=f"{row} {dataset}", progress=False)
        test_boxes = () if regions is None else (regions["regions_test"], regions["counts_test"])
        out["scores"] = predict_scores(model, feats["test"], side, *test_boxes, device=dev)
        out["state_dict"] = {k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("loc.")}
        return out

    return shared.cached("rlsd", config, compute, profile, code=(run,), data=shared.data_fingerprint(data),
                         force=force)


# --- protocols -----------------------------------------------------------------------------------

FLOOR_ROWS = ("Multi-CNN", "CNN+LSTM", "SS-CNN+LSTM", "RLSD", "RLSD+ft-RPN")   # probabilities: a floor applies


def predictions(result: dict, row: str, floor: float | None = None, k: int = 3, ignore=None) -> torch.Tensor:
    """Top-k predictions [N, L] (difficult entries take no slot); with ``floor`` (the paper's
    t = 0.5, a variant) only labels scoring at least the floor, on the rows that output
    probabilities; a sequence baseline (CNN-RNN): its top-k continued past END."""
    if "sequences" in result:
        return result["pred"]
    return metrics.predict_labels(result["scores"], k=k, floor=floor if row in FLOOR_ROWS else None,
                                  valid=None if ignore is None else ~ignore)


def table_results(results: dict) -> dict:
    """Results keyed by the paper's row names: the baselines renamed (Multi-CNN, softmax, ...)."""
    names = {v: k for k, v in BASELINE_ROWS.items()}
    return {(d, names.get(row, row), s): r for (d, row, s), r in results.items()}


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


def claim_values(claim: claims.Claim, results: dict, data: shared.Splits, seeds, weights: torch.Tensor, *,
                 stages: dict | None = None, side: int | None = None, s: Settings | None = None) -> dict:
    """{metric: (better [S, 1+R], worse [S, 1+R])} for ``claim`` on image resamples ``weights``.

    ``results`` keyed by the paper's row names (``table_results``). Metrics: "mAP", "AP <class>",
    the set metrics "CP" ... "OF1" (top-3, no floor) and "<metric> (floor 0.5)", "recall gain
    small − large" (RLSD over CNN+LSTM: recall of the smallest third of the objects minus the
    largest third), "objects per region" (``stages``: {"localization layer": stage, "selective
    search": stage}, fixed rows)."""
    d, test = claim.dataset, data.test
    y, ign = test.labels, test.ignore

    def values(row: str, metric: str) -> torch.Tensor:
        if metric == "objects per region":
            st = stages[row]
            idx, o = objects_per_region(st["regions_test"], st["counts_test"], test.boxes, test.image_sizes,
                                        side, top=s.test_regions)
            return metrics.weighted_mean(idx, o, weights)[None]
        runs = [results[d, row, t] for t in seeds]
        if metric == "mAP":
            return claims.map_values([r["scores"] for r in runs], y, weights, ign)
        if metric.startswith("AP "):
            c = test.classes.index(metric[3:])
            return torch.stack([metrics.average_precision(r["scores"], y, ign, weights=weights)[:, c] for r in runs])
        floor = 0.5 if metric.endswith("(floor 0.5)") else None
        name = metric.replace(" (floor 0.5)", "")
        preds = [predictions(r, row, floor, ignore=ign) for r in runs]
        if name == "recall gain small − large":
            out = []
            for p in preds:
                images, sizes, hits = metrics.object_size_hits(p, test.boxes, test.image_sizes)
                bucket, _ = metrics.size_buckets(sizes)
                out.append(metrics.bucket_recall(hits, images, bucket, 0, weights)
                           - metrics.bucket_recall(hits, images, bucket, 2, weights))
            return torch.stack(out)
        return claims.set_metric_values(preds, y, weights, name, ign)

    return {m: (values(claim.better, m), values(claim.worse, m)) for m in claim.metrics}
