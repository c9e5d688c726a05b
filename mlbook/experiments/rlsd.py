"""Training and evaluating the RLSD rows of Tables I-IV (Zhang et al., TMM 2018; chapter 06). Its region
sources live in ``rlsd_regions.py`` and its claims' evidence in ``rlsd_evidence.py``; both are re-exported here.

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
from pathlib import Path

import torch

from .. import metrics
from ..models import backbones
from ..models import baselines as B
from ..models import rlsd as M
from ..profiles import get_profile, pick_device
from ..train import fit
from . import baselines, features, shared

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
    encoder_init: str = "random"      # the region encoder's start (``ENCODER_INITS``); "vgg16": VGG16's own
                                      # ImageNet fc6/fc7 (Sec. III-A-3), needs grid 7, fc_dim 4096 on vgg16 maps
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
                    encoder_init="vgg16", loc_hidden=256, embed=64, hidden=512, max_steps=4, anchor_batch=256,
                    loc_epochs=10, vg_images=5000, ss_mode="fast", ss_min_side=128, ss_size=None)


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


ENCODER_INITS = ("random", "vgg16")


def region_encoder(s: Settings, weights) -> M.RegionEncoder | None:
    """The region encoder a new model starts from (Sec. III-A-3): None for ``encoder_init="random"``
    (the model draws its own, in the order it always did), or VGG16's own ImageNet fc6/fc7 from
    the checked vgg16 file of ``weights``. The file is read again for every model, so each gets its
    own copy: the rows fine-tune the encoder, and a copy shared within a process would hand the
    next seed or row weights another run had trained (results would depend on the run order)."""
    if s.encoder_init not in ENCODER_INITS:
        raise ValueError(f"encoder_init must be one of {ENCODER_INITS}, not {s.encoder_init!r}")
    if s.encoder_init == "random":
        return None
    return M.RegionEncoder.from_vgg16(backbones.vgg16_fc67(weights))


def _base_config(stage, dataset, profile, root, seed, weights, s: Settings, keys=None) -> dict:
    name = features.trunk_of(profile, TRUNK)
    chosen = dataclasses.asdict(s) if keys is None else {k: getattr(s, k) for k in keys}
    return {"chapter": "06_rlsd", "stage": stage, "version": 3, **shared.data_key(dataset, profile, root, seed),
            "backbone": name, "image_size": profile.image_size, "weights": features.weights_name(weights, name),
            "holdout": profile.holdout, "settings": chosen}


def _features(dataset, profile, root, seed, device, weights):
    return features.backbone_features(dataset, profile, root, seed, device, weights, trunk=TRUNK)


# --- the region sources: rlsd_regions.py (they read the settings above) ---------------------------

from .rlsd_regions import (  # noqa: E402  (the chapter reads them here, as from every paper)
    _folder_key, cluster_regions, generated_vg_root, layer_regions, pretrain_localization, proposals,
    ranked_training_regions, visual_genome)


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
                 train_seed: int, device: str, weights, folder: Path) -> dict:
    """A Multi-CNN control, on Multi-CNN's own optimizer settings (``baselines.settings_for``):
    head "linear" (pooled maps, as Multi-CNN) or "2fc" (the region encoder as RLSD's starts,
    ``region_encoder``); loss "bce" (as Multi-CNN) or "eq14"."""
    hs = baselines.settings_for(profile)
    L = data.train.num_classes
    torch.manual_seed(train_seed)
    if spec.head == "2fc":
        encoder = region_encoder(s, weights)
        if encoder is None:   # random: drawn as the global model draws it
            encoder = M.RLSD(model_config(s, feats["train"].shape[1], L, "global")).encoder
        model = torch.nn.ModuleDict({"encoder": encoder, "out": torch.nn.Linear(encoder.out_features, L)})
        logits = lambda m, x: _whole_image_logits(m, x, side, s.grid)  # noqa: E731
        x_train, x_test = feats["train"], feats["test"]
    else:
        model, logits = B.LinearHead(feats["train"].shape[1], L), lambda m, x: m(x)  # noqa: E731
        x_train, x_test = (features.pooled(feats[split], device) for split in ("train", "test"))   # lazy maps too
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
                                device=device, weights=weights, folder=folder)
        mode = "global" if spec.regions is None else "rlsd"
        torch.manual_seed(train_seed)
        model = M.RLSD(model_config(s, feats["train"].shape[1], data.train.num_classes, mode, spec.fusion),
                       encoder=region_encoder(s, weights))          # the init rows then copy CNN+LSTM's
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


# --- evidence and claims: rlsd_evidence.py (it reads the rows above) ------------------------------

from .rlsd_evidence import (  # noqa: E402  (the chapter reads them here, as from every paper)
    AREA_BINS, BOX_METRICS, FIG8_CLASSES, HAND_PICKED, MIN_PAIRS, PUBLISHED_NAMES, PUBLISHED_ONLY, STAGE_ROWS, TABLES,
    area_bin_pairs, claim_options, claim_values, control_claims, map_at_k_resampled, published_deltas, published_table,
    region_statistics, testability)
