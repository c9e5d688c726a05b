"""Training and evaluating the RLSD rows of Tables I-IV (Zhang et al., TMM 2018; chapter 06), and its claims' values.

Stages (cached, on the frozen conv maps of the trunk; rows of ``run`` too, so a grid lists them):
- "localization (region set)" (Sec. III-D-a): the localization layer trained on a region set
  (genuine Visual Genome at ``vg_root`` or the generated stand-in), then frozen;
  "localization (ft-RPN)" (Sec. IV-A): that layer fine-tuned on the clustered object boxes of
  the target training images. Each stores the regions the frozen layer gives every image
  (training: the top and the lowest M/2 of all anchors by confidence; test: NMS, top M).
- "selective search": the proposals of every image (MCG replaced), selected by the SAME rule:
  training the first and the last M/2 of its whole ranking, test the first M.
Rows (``ROWS``, one training seed each): the paper's CNN+LSTM (global mode, Eq. 14; also the
LSTM pre-training), RLSD, SS-CNN+LSTM and RLSD+ft-RPN (initialised from the CNN+LSTM of the
same seed), and the book's controls and ablations, each differing from its ``parent`` in one
field of ``Row``. Baselines (``mlbook.experiments.baselines`` on the same trunk): Multi-CNN (the
linear head with BCE), WARP, CNN-RNN, KNN, softmax. Results hold the test scores [N, L] and the
history; metrics are computed after loading.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .. import claims, metrics, report
from ..data.base import open_rgb
from ..data.synthetic import GENERATOR_VERSION
from ..data.visual_genome import read_regions, write_generated_regions
from ..models import baselines as B
from ..models import rlsd as M
from ..models.proposals import read_proposal_files, selective_search_many
from ..profiles import data_dir, get_profile, pick_device, runs_dir
from ..train import fit
from . import baselines, shared

TRUNK = "vgg16"           # Sec. IV: VGG16 conv5 maps; its fc6/fc7 encode the regions (full profile)
OPTIONS = ("vg_root", "proposals_root")


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
    ss_mode: str = "single"           # OpenCV strategy ("fast" on real data)
    ss_min_side: int = 64             # images are searched at least this large
    ss_size: int | None = 224         # ... and at most this large (shorter side; None: as they are).
                                      # Genuine photos searched at 224 px: 0.3 s instead of 1.8 s each


def settings_for(profile) -> Settings:
    profile = get_profile(profile)
    base = dict(epochs=profile.head_epochs, batch_size=profile.batch_size, patience=profile.patience,
                holdout=profile.holdout)
    if profile.name == "smoke":
        return Settings(**base, train_regions=3, test_regions=6, fc_dim=32, loc_hidden=32, embed=16,
                        hidden=16, max_steps=2, anchor_batch=32, loc_epochs=2, vg_images=24)
    if profile.backbone == "small_cnn":
        return Settings(**base)
    return Settings(**base, lr=1e-4, train_regions=256, test_regions=256, grid=7, fc_dim=4096, dropout=0.5,
                    loc_hidden=256, embed=64, hidden=512, max_steps=4, anchor_batch=256, loc_epochs=10,
                    vg_images=5000, ss_mode="fast", ss_min_side=128, ss_size=None)


@functools.lru_cache(maxsize=16)
def _splits_cached(dataset, profile, root, seed):
    return shared.splits(dataset, profile, root, seed)


def splits(dataset, profile, root=None, seed=0):
    """``shared.splits``, read once per process (VOC parses every annotation file on each read)."""
    return _splits_cached(dataset, get_profile(profile), root, seed)


def image_side(profile) -> int:
    """The network input side: every box of this chapter is in pixels of that square input."""
    return get_profile(profile).image_size


def model_config(s: Settings, in_channels: int, num_labels: int, mode: str = "rlsd",
                 fusion: str = "max") -> M.RLSDConfig:
    return M.RLSDConfig(in_channels=in_channels, num_labels=num_labels, mode=mode,
                        loc_hidden=s.loc_hidden, train_regions=s.train_regions, test_regions=s.test_regions,
                        nms_iou=s.nms_iou, grid=s.grid, fc_dim=s.fc_dim, dropout=s.dropout, embed=s.embed,
                        hidden=s.hidden, max_steps=s.max_steps, fusion=fusion)


def _base_config(stage, dataset, profile, root, seed, weights, s: Settings, keys=None) -> dict:
    name = shared.trunk_of(profile, TRUNK)
    chosen = dataclasses.asdict(s) if keys is None else {k: getattr(s, k) for k in keys}
    return {"chapter": "06_rlsd", "stage": stage, "version": 3, **shared.data_key(dataset, profile, root, seed),
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
        out: dict = {"side": side}
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
    """The layer's training rule (``M.sample_training_regions``) on a ranking without confidences:
    the first (m + 1) // 2 and the last m // 2 of the whole ranking (all of it when at most m)."""
    n = len(boxes)
    if n <= m:
        return boxes
    return torch.cat([boxes[:(m + 1) // 2], boxes[n - m // 2:]])


def _folder_key(folder: str | None) -> str | None:
    """A user folder in a cache key: its resolved path and the names and sizes of its files."""
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
    data = splits(dataset, profile, root, seed)
    config = {"chapter": "06_rlsd", "stage": "selective_search", "version": 3,
              **shared.data_key(dataset, profile, root, seed), "image_size": side, "mode": s.ss_mode,
              "min_side": s.ss_min_side, "ss_size": s.ss_size, "from_files": _folder_key(proposals_root), "train_regions": s.train_regions, "test_regions": s.test_regions}

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
                W, H = open_rgb(path).size
                b = b * torch.tensor([side / W, side / H, side / W, side / H])
                found.append(len(b))
                regions.append(ranked_training_regions(b, m) if split == "train" else b[:m])
            out[f"counts_{split}"] = torch.tensor([len(r) for r in regions])
            out[f"regions_{split}"] = torch.stack([torch.cat([r, r.new_zeros(m - len(r), 4)]) for r in regions])
        out["found"] = torch.tensor(found)
        out["seconds"] = time.perf_counter() - start
        out["ms_per_image"] = 1000 * out["seconds"] / max(len(found), 1)
        return out

    return shared.cached("rlsd_proposals", config, compute, profile, code=(proposals,),
                         data=shared.data_fingerprint(data), force=force)


# --- the rows --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Row:
    """An RLSD-family row. A control or an ablation names its ``parent`` and differs from it in
    exactly one of the fields before ``parent`` (tests/test_rlsd_experiments.py checks it)."""
    regions: str | None = None    # None: the whole image only; "vg"/"ft": the frozen layer; "ss": proposals
    init: bool = True             # encoder and LSTM start from the CNN+LSTM of the same seed (Sec. III-D-b)
    fusion: str = "max"           # Eq. 13 ("mean": the fusion ablation)
    head: str = "lstm"            # "lstm": Eqs. 5-12; "2fc": the region encoder + a linear layer; "linear"
    loss: str = "eq14"            # Eq. 14 on softmax probabilities; "bce": sigmoid + binary cross-entropy
    parent: str | None = None
    serves: str = ""              # the claim a control serves (for the chapter)
    datasets: tuple = ()          # where the grid trains it (empty: every data set)


ABLATIONS = ("coco",)     # the ablations of Secs. III-C and III-D: MS-COCO, the paper's main analysis set
MULTI_CNN = Row(init=False, head="linear", loss="bce")   # the baseline row "Multi-CNN", described as a Row
ROWS = {  # table row name -> Row
    "CNN+LSTM": Row(init=False),
    "RLSD": Row("vg"),
    "SS-CNN+LSTM": Row("ss"),
    "RLSD+ft-RPN": Row("ft"),
    "CNN+LSTM (continued)": Row(parent="CNN+LSTM", serves="06.rlsd_vs_cnnlstm"),
    "Multi-CNN (2-fc)": Row(init=False, head="2fc", loss="bce", parent="Multi-CNN", serves="06.rlsd_vs_multicnn"),
    "Multi-CNN (Eq. 14)": Row(init=False, head="linear", parent="Multi-CNN", serves="06.rlsd_vs_multicnn"),
    "RLSD (mean fusion)": Row("vg", fusion="mean", parent="RLSD", serves="06.max_fusion", datasets=ABLATIONS),
    "RLSD (no LSTM pre-training)": Row("vg", init=False, parent="RLSD", serves="06.pretraining_converges, "
                                       "06.pretraining_performance", datasets=ABLATIONS),
}
CONTROLS = (  # (better, worse, what the comparison isolates, the claim it serves): mAP, every data set
    ("RLSD", "CNN+LSTM (continued)", "the regions, at equal extra training", "06.rlsd_vs_cnnlstm"),
    ("CNN+LSTM (continued)", "CNN+LSTM", "the extra training alone", "06.rlsd_vs_cnnlstm"),
    ("RLSD", "Multi-CNN (2-fc)", "RLSD against a Multi-CNN whose head is not the backbone's own", "06.rlsd_vs_multicnn"),
    ("Multi-CNN", "Multi-CNN (2-fc)", "the backbone's own head against the region encoder's", "06.rlsd_vs_multicnn"),
    ("Multi-CNN", "Multi-CNN (Eq. 14)", "BCE against RLSD's loss (Eq. 14)", "06.rlsd_vs_multicnn"),
)
STAGES = {"localization (region set)": "vg", "localization (ft-RPN)": "ft", "selective search": "ss"}
BASELINE_ROWS = {"Multi-CNN": "Resnet-baseline", "WARP": "WARP", "CNN-RNN": "CNN-RNN", "KNN": "KNN",
                 "softmax": "Softmax"}   # the paper's name -> the baseline row that stands in for it


def grid(profile, datasets, seeds, boxed=("voc", "coco")) -> list[shared.Run]:
    """Every run of chapter 06, in waves: the stages; the ft-RPN layer (data sets with boxes), the
    baselines and the rows that start from scratch; then the rows that start from CNN+LSTM."""
    runs = shared.feature_runs(datasets, trunk=TRUNK)
    runs += [shared.Run("rlsd", stage, d) for d in datasets for stage in ("localization (region set)",
                                                                            "selective search")]
    runs += [shared.Run("rlsd", "localization (ft-RPN)", d, wave=1) for d in datasets if d in boxed]
    runs += [dataclasses.replace(r, wave=1) for r in baselines.grid(profile, datasets, seeds,
                                                                      rows=tuple(BASELINE_ROWS.values()), trunk=TRUNK)]
    runs += [shared.Run("rlsd", row, d, s, wave=2 if spec.init else 1) for row, spec in ROWS.items()
             for d in datasets if (spec.regions != "ft" or d in boxed) and (not spec.datasets or d in spec.datasets)
             for s in seeds]
    return runs


def _boxes_list(boxes: torch.Tensor, counts: torch.Tensor) -> list[torch.Tensor]:
    return [b[:int(n)] for b, n in zip(boxes, counts)]


@torch.no_grad()
def _batched(fn, x: torch.Tensor, *more, device: str = "cpu", batch: int = 256) -> torch.Tensor:
    """fn(x[i:i+b], *more[i:i+b]) over batches on ``device``, concatenated on the CPU."""
    return torch.cat([fn(x[i:i + batch].to(device).float(), *(m[i:i + batch] for m in more)).cpu()
                      for i in range(0, len(x), batch)])


def predict_scores(model: M.RLSD, maps: torch.Tensor, side: int, boxes=None, counts=None,
                   device: str = "cpu") -> torch.Tensor:
    """Fused p (Eq. 13) of every image, in eval mode, computed on ``device``; returned on the CPU."""
    model.to(device).eval()
    if boxes is None:
        return _batched(lambda x: model(x, side), maps, device=device)
    return _batched(lambda x, b, n: model(x, side, boxes=[r.to(device) for r in _boxes_list(b, n)]),
                    maps, boxes, counts, device=device)


def _whole_image_logits(head, maps: torch.Tensor, side: int, grid: int) -> torch.Tensor:
    """Multi-CNN (2-fc): the whole image read as CNN+LSTM reads it (bilinear grid, Sec. III-A-2b),
    the region encoder's two fc layers, then a linear layer to the labels."""
    whole = M.whole_image_box(side, maps).expand(len(maps), 1, 4)
    return head["out"](head["encoder"](M.bilinear_region_features(maps.float(), whole, side, grid, grid)[:, 0]))


def _fit_control(row: str, spec: Row, feats: dict, data, s: Settings, profile, side: int, *, seed: int,
                 train_seed: int, device: str, folder: Path) -> dict:
    """A Multi-CNN control, on Multi-CNN's own optimizer settings (``baselines.settings_for``):
    head "linear" (pooled maps, as Multi-CNN) or "2fc"; loss "bce" (as Multi-CNN) or "eq14"."""
    hs = baselines.settings_for(profile)
    L = data.train.num_classes
    torch.manual_seed(train_seed)
    if spec.head == "2fc":
        encoder = M.RLSD(model_config(s, feats["train"].shape[1], L, "global")).encoder
        model = torch.nn.ModuleDict({"encoder": encoder, "out": torch.nn.Linear(encoder.out_features, L)})
        logits = lambda m, x: _whole_image_logits(m, x, side, s.grid)  # noqa: E731
        x_train, x_test = feats["train"], feats["test"]
    else:
        model, logits = B.LinearHead(feats["train"].shape[1], L), lambda m, x: m(x)  # noqa: E731
        x_train, x_test = B.pooled(feats["train"]), B.pooled(feats["test"])
    if spec.loss == "bce":
        loss, prob = (lambda m, b: B.HEAD_LOSSES["bce"](logits(m, b[0]), b[1])), torch.sigmoid  # noqa: E731
    else:   # Eq. 14 on a softmax over the labels
        loss, prob = (lambda m, b: M.rlsd_loss(logits(m, b[0]).softmax(-1), b[1], b[2])), lambda z: z.softmax(-1)  # noqa: E731
    inputs = (x_train, data.train.labels, shared.ignore_mask(data.train))
    history = baselines.train_head(model, inputs, loss, hs, seed=seed, train_seed=train_seed, device=device,
                                   folder=folder, desc=row)
    dev = pick_device(device)
    model.to(dev).eval()
    return {"history": history, "scores": _batched(lambda x: prob(logits(model, x)), x_test, device=dev),
            "head_settings": dataclasses.asdict(hs)}


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, vg_root: str | None = None, proposals_root: str | None = None,
        settings: dict | None = None, force: bool = False) -> dict:
    """Train and evaluate one RLSD-family row (``ROWS``), or compute one stage (``STAGES``), cached.
    A row returns {"scores" [N_test, L] (p of Eq. 13, or the control's probabilities), "history",
    "config", "init" (tensors copied from CNN+LSTM), "state_dict"}."""
    if row in STAGES:
        if STAGES[row] == "ss":
            return proposals(dataset, profile, root, seed, force=force, proposals_root=proposals_root)
        return pretrain_localization(dataset, profile, root, seed, device, weights, vg_root, STAGES[row], force)
    profile = get_profile(profile)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))
    side = image_side(profile)
    dev = pick_device(device)
    data = splits(dataset, profile, root, seed)
    spec = ROWS[row]
    row_fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("serves", "datasets")}
    config = {**_base_config("row", dataset, profile, root, seed, weights, s), "method": row, "row": row_fields,
              "train_seed": train_seed, "vg": ("real" if vg_root else "generated") if spec.regions in ("vg", "ft") else None,
              "proposals": _folder_key(proposals_root) if spec.regions == "ss" else None}

    def compute(folder: Path) -> dict:
        feats = _features(dataset, profile, root, seed, device, weights)
        if spec.head != "lstm":                                                 # a Multi-CNN control
            return _fit_control(row, spec, feats, data, s, profile, side, seed=seed, train_seed=train_seed,
                                device=device, folder=folder)
        mode = "global" if spec.regions is None else "rlsd"
        torch.manual_seed(train_seed)
        model = M.RLSD(model_config(s, feats["train"].shape[1], data.train.num_classes, mode, spec.fusion))
        out: dict = {"config": dataclasses.asdict(model.cfg), "init": []}
        y = data.train.labels
        tensors = [feats["train"], y, shared.ignore_mask(data.train)]
        regions = None
        if spec.init:
            base = run("CNN+LSTM", dataset, profile, root=root, seed=seed, train_seed=train_seed, device=device,
                       weights=weights, vg_root=vg_root, settings=settings)
            out["init"] = model.init_from_global(base["state_dict"])            # Sec. III-D-b
        if spec.regions is not None:
            regions = run({v: k for k, v in STAGES.items()}[spec.regions], dataset, profile, root=root, seed=seed,
                          device=device, weights=weights, vg_root=vg_root, proposals_root=proposals_root)
            if spec.regions in ("vg", "ft"):
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

PROBABILITY_ROWS = ("Multi-CNN", *ROWS)   # scores are probabilities, so the 0.5 floor means something


def predictions(result: dict, row: str, floor: float | None = None, k: int = 3, ignore=None) -> torch.Tensor:
    """Top-k predictions [N, L], every row at exactly k labels (difficult entries take no slot); a
    sequence baseline (CNN-RNN): its top k continued past END. ``floor`` (the paper's t = 0.5, a
    variant): only labels scoring at least the floor, on the rows whose scores are probabilities."""
    if "sequences" in result:
        return result["pred"]
    return metrics.predict_labels(result["scores"], k=k, floor=floor if row in PROBABILITY_ROWS else None,
                                  valid=None if ignore is None else ~ignore)


def table_results(results: dict) -> dict:
    """Results keyed by the paper's row names: the baselines renamed (Multi-CNN, softmax, ...)."""
    names = {v: k for k, v in BASELINE_ROWS.items()}
    return {(d, names.get(row, row), s): r for (d, row, s), r in results.items()}


# --- evidence and claims -----------------------------------------------------------------------

TABLES = {"voc": "rlsd_table1_voc2007_ap", "coco": "rlsd_table3_coco_top3", "nuswide": "rlsd_table4_nuswide_top3"}
PUBLISHED_NAMES = {"SS-CNN+LSTM": "MCG-CNN+LSTM"}          # our row -> the paper's row it stands in for
STAGE_ROWS = {"localization layer": "localization (region set)", "selective search": "selective search"}
FIG8_CLASSES = ("bird", "fire hydrant", "kite")           # "visually small in the images of this dataset"
AREA_BINS = {"large objects": (0.25, 0.5), "objects filling the image": (0.5, 1.01)}   # box area / image area
MIN_PAIRS = 20            # (image, label) pairs an area bin needs before a recall in it is read
PUBLISHED_ONLY = "published only: the book does not train it (hand-crafted features, other papers' pipelines)"
HAND_PICKED = "the figures show images the authors chose; 06.small_objects.coco measures the same on every image"


def region_statistics(regions: torch.Tensor, counts: torch.Tensor, boxes, image_sizes, side: int) -> dict:
    """Per image with object boxes, over its regions (the whole image not counted): "objects"
    (object-box centres inside a region, mean), "multi" (share of regions holding two centres or
    more), "area" (region area / image area, mean); "images": their indices."""
    out = {"images": [], "objects": [], "multi": [], "area": []}
    for i, bs in enumerate(boxes):
        n = int(counts[i])
        if not bs or n == 0:
            continue
        W, H = image_sizes[i]
        c = torch.tensor([[(b.x + b.w / 2) * side / W, (b.y + b.h / 2) * side / H] for b in bs])
        r = regions[i, :n].float()
        inside = ((c[None, :, 0] >= r[:, None, 0]) & (c[None, :, 0] <= r[:, None, 2])
                  & (c[None, :, 1] >= r[:, None, 1]) & (c[None, :, 1] <= r[:, None, 3])).sum(1)
        out["images"].append(i)
        out["objects"].append(float(inside.float().mean()))
        out["multi"].append(float((inside >= 2).float().mean()))
        out["area"].append(float(((r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])).clamp_min(0).mean()) / side ** 2)
    return {k: torch.tensor(v, dtype=torch.long if k == "images" else torch.float64) for k, v in out.items()}


def area_bin_pairs(test, bins=AREA_BINS) -> dict:
    """(image, label) pairs with a box whose largest box falls in each area bin."""
    _, sizes, _ = metrics.object_size_hits(torch.zeros_like(test.labels, dtype=torch.bool), test.boxes, test.image_sizes)
    return {name: int(((sizes ** 2 >= lo) & (sizes ** 2 < hi)).sum()) for name, (lo, hi) in bins.items()}


def map_at_k_resampled(scores: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, k: int = 10,
                       chunk: int = 250) -> torch.Tensor:
    """``metrics.map_at_k`` (per class, normalised by min(k, positives)) on image resamples
    ``weights`` [R, N] (counts: an image drawn w times is w adjacent copies in its class's
    ranking) -> [R], from one sort per class. A relevant image with e copies in the top k after
    B copies (H of them relevant) adds sum_{u=1..e} (H + u) / (B + u) = e - (B - H)(h(B + e) - h(B)),
    h the harmonic numbers."""
    y = targets.double().t()                                                   # [C, N]
    order = torch.sort(scores.t().double(), dim=1, descending=True, stable=True).indices
    rel = torch.gather(y, 1, order)                                            # [C, N] in rank order
    depth = min(order.shape[1], 10 * k)                                        # ranks that can reach the top k
    harmonic = torch.cat([torch.zeros(1, dtype=torch.float64),
                          (1 / torch.arange(1, 2 * k + 1, dtype=torch.float64)).cumsum(0)])
    out = []
    for w in weights.double().split(chunk):
        wr = w[:, order[:, :depth]]                                            # [R, C, depth]
        d = depth if bool((wr.sum(-1) >= k).all()) else order.shape[1]         # rarely: every rank
        wr, r = w[:, order[:, :d]], rel[:, :d]
        before = (wr.cumsum(-1) - wr).clamp(max=k)                             # copies ranked above (capped)
        hits = (wr * r).cumsum(-1) - wr * r
        copies = torch.minimum(wr, k - before)                                 # copies inside the top k
        b, e = before.long(), copies.long()
        ap = (r * (copies - (before - hits) * (harmonic[b + e] - harmonic[b]))).sum(-1)   # [R, C]
        positives = w @ y.t()                                                  # [R, C]
        has = positives > 0
        out.append((ap / positives.clamp(max=k).clamp_min(1e-12) * has).sum(1) / has.sum(1).clamp_min(1))
    return torch.cat(out)


def _size_recall(pred, test, weights, metric: str) -> torch.Tensor:
    """Recall of the smallest third of the (image, label) pairs, or that minus the largest third's."""
    images, sizes, hits = metrics.object_size_hits(pred, test.boxes, test.image_sizes)
    bucket, _ = metrics.size_buckets(sizes)
    small = metrics.bucket_recall(hits, images, bucket, 0, weights)
    return small if metric == "recall of small objects" else small - metrics.bucket_recall(hits, images, bucket, 2, weights)


def _area_recall(pred, test, weights, area_bin: str) -> torch.Tensor:
    images, sizes, hits = metrics.object_size_hits(pred, test.boxes, test.image_sizes)
    lo, hi = AREA_BINS[area_bin]
    inside = ((sizes ** 2 >= lo) & (sizes ** 2 < hi)).long()
    return metrics.bucket_recall(hits, images, inside, 1, weights)


def _fig8_classes(test) -> list[int]:
    return [test.classes.index(c) for c in FIG8_CLASSES if c in test.classes]


def claim_values(claim: claims.Claim, results: dict, data: shared.Splits, seeds, weights: torch.Tensor) -> dict:
    """{metric: (better [S, 1+R], worse [S, 1+R])} for ``claim`` on image resamples ``weights``.

    ``results``: ``run_all``'s results (paper or baseline row names). Rows: ``ROWS``, the paper's
    names of the baselines, the stages as "localization layer" / "selective search" (fixed), and the
    object-area bins of ``AREA_BINS`` (with metrics "recall <row>", seed-paired). Metrics: "mAP",
    "mAP@10" (per class), "AP <class>", "AP Fig. 8 classes" (mean AP of those of ``FIG8_CLASSES`` in
    the data), "CP" ... "OF1" (top 3, no floor) and "<metric> (floor 0.5)", "recall of small
    objects" and "recall gain small − large" (smallest / largest third of the (image, label)
    pairs by box size), "region area", "multi-object regions", "epochs to the best hold-out loss"."""
    d, test = claim.dataset, data.test
    y, ign = test.labels, test.ignore

    def runs(row):   # results under the paper's names (``table_results``) or the baselines' own
        key = row if (d, row, seeds[0]) in results else BASELINE_ROWS.get(row, row)
        return [results[d, key, t] for t in seeds]

    def values(row: str, metric: str) -> torch.Tensor:
        if row in STAGE_ROWS:
            st = results[d, STAGE_ROWS[row], 0]
            stats = region_statistics(st["regions_test"], st["counts_test"], test.boxes, test.image_sizes, st["side"])
            key = {"region area": "area", "multi-object regions": "multi", "objects per region": "objects"}[metric]
            return metrics.weighted_mean(stats["images"], stats[key], weights)[None]
        if row in AREA_BINS:                                   # metric "recall <row>": that row's recall in the bin
            model = metric.removeprefix("recall ")
            return torch.stack([_area_recall(predictions(r, model, ignore=ign), test, weights, row)
                                for r in runs(model)])
        if metric == "epochs to the best hold-out loss":      # a property of training: no image variance
            return torch.tensor([[float(r["history"][-1]["best_epoch"])] for r in runs(row)]).expand(-1, len(weights))
        scores = [r["scores"] for r in runs(row)]
        if metric == "mAP":
            return claims.map_values(scores, y, weights, ign)
        if metric == "mAP@10":
            return torch.stack([map_at_k_resampled(sc, y, weights) for sc in scores])
        if metric.startswith("AP "):
            cls = _fig8_classes(test) if metric == "AP Fig. 8 classes" else [test.classes.index(metric[3:])]
            return torch.stack([metrics.average_precision(sc, y, ign, weights=weights)[:, cls].nanmean(1) for sc in scores])
        floor = 0.5 if metric.endswith(" (floor 0.5)") else None
        name = metric.removesuffix(" (floor 0.5)")
        preds = [predictions(r, row, floor, ignore=ign) for r in runs(row)]
        if name.startswith("recall ") and name != "recall":
            return torch.stack([_size_recall(p, test, weights, name) for p in preds])
        return claims.set_metric_values(preds, y, weights, name, ign)

    return {m: (values(claim.better, m), values(claim.worse, m)) for m in claim.metrics}


BOX_METRICS = ("recall of small objects", "recall gain small − large", "region area", "multi-object regions")


def testability(claim: claims.Claim, data: shared.Splits, trained) -> tuple[bool, str]:
    """(testable, why not): decided from the data and the rows this book trains, never from outputs."""
    test = data.test
    if "hand-picked examples" in claim.metrics:
        return False, HAND_PICKED
    missing = [r for r in (claim.better, claim.worse) if r not in trained and r not in STAGE_ROWS and r not in AREA_BINS]
    if missing:
        return False, f"{', '.join(missing)}: {PUBLISHED_ONLY}"
    needs_boxes = claim.better in AREA_BINS or claim.better in STAGE_ROWS or set(claim.metrics) & set(BOX_METRICS)
    if needs_boxes and test.boxes is None:
        return False, "this data set has no object boxes"
    if claim.better in AREA_BINS:
        pairs = area_bin_pairs(test)
        if min(pairs.values()) < MIN_PAIRS:
            return False, (f"too few objects in an area bin ({', '.join(f'{k}: {v}' for k, v in pairs.items())}; "
                           f"{MIN_PAIRS} needed)")
    absent = [m[3:] for m in claim.metrics if m.startswith("AP ") and m != "AP Fig. 8 classes" and m[3:] not in test.classes]
    if absent or ("AP Fig. 8 classes" in claim.metrics and not _fig8_classes(test)):
        return False, f"class not in this data set: {', '.join(absent) or ', '.join(FIG8_CLASSES)}"
    return True, ""


def published_deltas(claim: claims.Claim) -> dict:
    """{metric: the Δ (points) of the claim's two rows in the paper's own table, or None}."""
    tables = [TABLES[claim.dataset]] + (["rlsd_table2_voc2007_top3"] if claim.dataset == "voc" else [])
    out = {}
    for m in claim.metrics:
        column = m[3:] if m.startswith("AP ") else m
        found = [claims.published_delta(report.reference(t), PUBLISHED_NAMES.get(claim.better, claim.better),
                                        PUBLISHED_NAMES.get(claim.worse, claim.worse), column) for t in tables]
        out[m] = next((x for x in found if x is not None), None)
    return out


def control_claims(datasets) -> list[claims.Claim]:
    """``CONTROLS`` on ``datasets`` as claims of the book (mAP), evaluated the claims' way."""
    return [claims.Claim(f"06.control_{i}.{d}", "06_rlsd", d, what, f"control for {serves}", better, worse, ("mAP",),
                         quoted=False) for d in datasets for i, (better, worse, what, serves) in enumerate(CONTROLS)]


def claim_options(claim: claims.Claim, data: shared.Splits, trained) -> dict:
    """The keyword arguments of ``claims.evaluate`` besides the values: testable and why not, the
    paper's Δ and the scale (points for fractions; epochs and objects as they are)."""
    testable, why = testability(claim, data, trained)
    raw = {"epochs to the best hold-out loss"}
    return {"testable": testable, "why_not": why, "published": published_deltas(claim),
            "scale": 1.0 if set(claim.metrics) <= raw else 100.0}
