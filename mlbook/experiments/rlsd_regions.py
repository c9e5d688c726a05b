"""RLSD's region sources (chapter 06; the stages of ``rlsd.run``): the region set (genuine Visual
Genome or its generated stand-in), the localization layer trained on it (Sec. III-D-a) and
fine-tuned on the target boxes (ft-RPN, Sec. IV-A), and the selective-search proposals (MCG
replaced) or the user's own proposal files. It reads ``rlsd_setup``; ``rlsd`` (the face) runs
the stages through ``pretrain_localization`` and ``proposals``."""
from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..data.base import image_size, open_rgb
from ..data.proposals import read_proposal_files, selective_search_many
from ..data.synthetic import GENERATOR_VERSION
from ..data.visual_genome import read_regions, write_generated_regions
from ..models.rlsd_localization import (ANCHOR_RATIOS, ANCHOR_SCALES, LocalizationLayer, cluster_box_centres,
                                        localization_loss, merge_clusters, rpn_targets, sample_anchor_minibatch,
                                        sample_training_regions, select_test_regions, xywh_to_xyxy)
from ..profiles import data_dir, get_profile, pick_device, runs_dir
from ..train import fit
from . import features, shared
from .rlsd_setup import TRUNK, Settings, base_config, frozen_features, image_side, settings_for


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
    b = xywh_to_xyxy(torch.as_tensor(boxes_xywh, dtype=torch.float32).reshape(-1, 4))
    return b * torch.tensor([side / width, side / height, side / width, side / height])


def _anchor_targets(loc: LocalizationLayer, gts: list[torch.Tensor], h: int, w: int, side: int):
    """rpn_targets of every image (best anchor of each region positive too: small demo grids)."""
    anchors = loc.anchors(h, w, side)
    labels, targets = zip(*(rpn_targets(anchors, g, match_best=True) for g in gts))
    return torch.stack(labels), torch.stack(targets)


def _train_localization(loc: LocalizationLayer, maps, labels, targets, s: Settings, side: int, *,
                        seed: int, device: str, folder: Path, epochs: int, desc: str,
                        init_seed: int | None = None) -> list[dict]:
    """Eqs. 3-4 + confidence BCE on anchor minibatches (at most half positives), early stopped; the
    hold-out split from the data seed ``seed``, the minibatches from ``init_seed`` (default: ``seed``)."""
    init_seed = seed if init_seed is None else init_seed
    def loss_fn(model, batch):
        x, lab, tgt = batch
        out = model(x.float(), side, details=True)
        if model.training:
            lab = torch.stack([sample_anchor_minibatch(l, s.anchor_batch) for l in lab])
        return localization_loss(out["deltas"], out["scores"], lab, tgt)

    fit_idx, val_idx = shared.holdout_split(len(maps), s.holdout, seed)
    part = lambda idx: torch.utils.data.TensorDataset(maps[idx], labels[idx], targets[idx])  # noqa: E731
    torch.manual_seed(init_seed)
    return fit(loc, part(fit_idx), loss_fn, epochs=epochs, batch_size=s.batch_size, device=device, seed=init_seed,
               val_dataset=part(val_idx), patience=s.patience,
               make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.loc_lr),
               checkpoint=folder / "checkpoint.pt", desc=desc, progress=False)


@torch.no_grad()
def layer_regions(loc: LocalizationLayer, maps: torch.Tensor, s: Settings, side: int, train: bool,
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
            r = sample_training_regions(b, sc, m, side)[:, :-1].cpu()
            boxes += list(r)
            counts += [r.shape[1]] * r.shape[0]
        else:
            for bb, ss in zip(b, sc):
                r = select_test_regions(bb, ss, m, side, s.nms_iou)[:-1].cpu()
                boxes.append(torch.cat([r, r.new_zeros(m - len(r), 4)]))
                counts.append(len(r))
    return torch.stack(boxes), torch.tensor(counts)


def cluster_regions(boxes, width: float, height: float, side: int) -> torch.Tensor:
    """RLSD+ft-RPN region ground truth of one image: its object boxes clustered by centre and
    merged (Sec. IV-A), xyxy in network pixels."""
    xywh = torch.tensor([[b.x, b.y, b.w, b.h] for b in boxes], dtype=torch.float32).reshape(-1, 4)
    ids = cluster_box_centres(xywh, image_size=(height, width))
    return _scaled_xyxy(merge_clusters(xywh, ids), width, height, side)


LOC_KEYS = ("batch_size", "patience", "holdout", "train_regions", "test_regions", "nms_iou", "loc_hidden",
            "anchor_batch", "loc_epochs", "loc_lr", "vg_images")


def localization_seed(seed: int, train_seed: int) -> int:
    """The torch seed of the localization layer trained with ``train_seed``: the data seed itself
    for training seed 0 (the layer every row reads), ``seed + 1000 * train_seed`` for the others."""
    return seed + 1000 * train_seed


def pretrain_localization(dataset: str, profile, root: str | None = None, seed: int = 0, device: str = "auto",
                          weights=None, vg_root: str | None = None, kind: str = "vg", force: bool = False,
                          train_seed: int = 0) -> dict:
    """The localization layer (cached): ``kind="vg"`` pre-trained on the region set (Sec. III-D-a);
    ``kind="ft"`` (RLSD+ft-RPN) that layer fine-tuned on the clustered object boxes of the
    training images of ``dataset``. ``train_seed``: its initialisation and minibatches
    (``localization_seed``; the rows read training seed 0's layer, the paper's one pre-trained
    layer; the other seeds measure how much the layer's regions vary with training). Returns
    {"state_dict", "history", "regions_train", "counts_train", "regions_test", "counts_test",
    "n_images", "n_without_boxes", "seconds"}."""
    if kind not in ("vg", "ft"):
        raise ValueError(f"kind must be 'vg' or 'ft', not {kind!r}")
    profile = get_profile(profile)
    s = settings_for(profile)
    side = image_side(profile)
    dev = pick_device(device)
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    vg = visual_genome(profile, vg_root, seed)
    config = {**base_config(f"localization_{kind}", dataset, profile, root, seed, weights, s, LOC_KEYS),
              "vg": "real" if vg_root else "generated", "vg_images": len(vg),
              **({"train_seed": train_seed} if train_seed else {})}   # seed 0: the key it always had

    def compute(folder: Path) -> dict:
        feats = frozen_features(dataset, profile, root, seed, device, weights)
        C, h, w = feats["train"].shape[1:]
        torch.manual_seed(localization_seed(seed, train_seed))
        loc = LocalizationLayer(C, len(ANCHOR_SCALES) * len(ANCHOR_RATIOS), s.loc_hidden)
        out: dict = {"side": side}
        start = time.perf_counter()
        if kind == "vg":
            backbone, _ = features.shared_backbone(dataset, profile, root, seed, device, weights, trunk=TRUNK)
            maps = _image_maps([im.path for im in vg], backbone, side, dev)
            gts = [_scaled_xyxy(im.boxes, im.width, im.height, side) for im in vg]
            out.update(n_images=len(vg), n_without_boxes=0)
        else:
            base = pretrain_localization(dataset, profile, root, seed, device, weights, vg_root, "vg",
                                         train_seed=train_seed)
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
                                             desc=f"localization ({kind}) {dataset}",
                                             init_seed=localization_seed(seed, train_seed))
        out["seconds"] = time.perf_counter() - start
        out["state_dict"] = {k: v.cpu() for k, v in loc.state_dict().items()}
        out["positives_per_image"] = float((labels == 1).sum(1).float().mean())
        for split, train_mode in (("train", True), ("test", False)):
            out[f"regions_{split}"], out[f"counts_{split}"] = layer_regions(loc, feats[split], s, side, train_mode, dev)
        return out

    return ctx.cached("rlsd_localization", config, compute, code=(pretrain_localization,), force=force,
                      vg=_vg_fingerprint(vg))


def ranked_training_regions(boxes: torch.Tensor, m: int) -> torch.Tensor:
    """The layer's training rule (``sample_training_regions``) on a ranking without confidences:
    the first (m + 1) // 2 and the last m // 2 of the whole ranking (all of it when at most m)."""
    n = len(boxes)
    if n <= m:
        return boxes
    return torch.cat([boxes[:(m + 1) // 2], boxes[n - m // 2:]])


@functools.lru_cache(maxsize=8)
def folder_key(folder: str | None) -> str | None:
    """A user folder in a cache key: its resolved path and the names and sizes of its files (listed
    once per process: every SS row's config names it, and a COCO folder holds 123k files)."""
    if not folder:
        return None
    files = sorted((p.name, p.stat().st_size) for p in Path(folder).iterdir() if p.is_file())
    return hashlib.sha256(repr((str(Path(folder).resolve()), files)).encode()).hexdigest()[:16]


def proposals(dataset: str, profile, root: str | None = None, seed: int = 0, force: bool = False,
              proposals_root: str | None = None) -> dict:
    """Selective-search proposals of every image (cached), or the user's own ranked boxes read from
    ``proposals_root`` (``read_proposal_files``; e.g. MCG, the paper's choice), in network pixels: {"regions_train"
    [N, M_train, 4] (``ranked_training_regions`` of the whole ranking), "regions_test" [N, M_test, 4]
    (the first M_test), zero-padded, "counts_train"/"counts_test" [N], "found" [N] (proposals per
    image), "side", "ms_per_image"}."""
    profile = get_profile(profile)
    s = settings_for(profile)
    side = image_side(profile)
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    config = {"chapter": "06_rlsd", "stage": "selective_search", "version": 3,
              **ctx.key, "image_size": side, "mode": s.ss_mode,
              "min_side": s.ss_min_side, "ss_size": s.ss_size, "from_files": folder_key(proposals_root),
              "train_regions": s.train_regions, "test_regions": s.test_regions}

    def compute(folder: Path) -> dict:
        out, start, found = {"side": side}, time.perf_counter(), []
        # one process per core, each image's boxes kept as it finishes (an interrupted search
        # resumes); inside a worker of ``run_all`` the search stays in that worker
        n_workers = 1 if multiprocessing.parent_process() else shared.workers()
        for split in ("train", "test"):
            m = s.train_regions if split == "train" else s.test_regions
            paths = getattr(data, split).image_paths
            boxes = (read_proposal_files(proposals_root, paths, top=None) if proposals_root else
                     selective_search_many(paths, top=None, mode=s.ss_mode, min_side=s.ss_min_side, size=s.ss_size,
                                           workers=n_workers, cache_dir=runs_dir() / "selective_search"))
            regions = []
            for path, b in zip(paths, boxes):
                W, H = image_size(path)   # the header only: the search already decoded it
                b = b * torch.tensor([side / W, side / H, side / W, side / H])
                found.append(len(b))
                regions.append(ranked_training_regions(b, m) if split == "train" else b[:m])
            out[f"counts_{split}"] = torch.tensor([len(r) for r in regions])
            out[f"regions_{split}"] = torch.stack([torch.cat([r, r.new_zeros(m - len(r), 4)]) for r in regions])
        out["found"] = torch.tensor(found)
        out["seconds"] = time.perf_counter() - start
        out["ms_per_image"] = 1000 * out["seconds"] / max(len(found), 1)
        return out

    return ctx.cached("rlsd_proposals", config, compute, code=(proposals,), force=force)
