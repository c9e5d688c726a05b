"""What every RLSD run shares (chapter 06), the lowest layer of its experiments: the settings
(``Settings``, ``settings_for``), the inputs every stage and row reads (``splits``, ``image_side``,
the frozen maps of the trunk ``frozen_features``, the cache key's common part ``base_config``, the
model's configuration ``model_config`` and its region encoder ``region_encoder``) and the rows'
specifications (``Row``, ``ROW_SPECS``, ``CONTROLS``, ``STAGE_KEYS``, ``BASELINE_ROWS``).
``rlsd_regions`` (the stages), ``rlsd_evidence`` (the claims) and ``rlsd`` (the face) read them."""
from __future__ import annotations

import dataclasses

from ..models import backbones
from ..models import rlsd as rlsd_model
from ..profiles import get_profile
from . import features, shared

TRUNK = "vgg16"           # Sec. IV: VGG16 conv5 maps; its fc6/fc7 encode the regions (full profile)


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
    """The settings of a profile: smoke the smallest, demo (the shared small CNN) the defaults, full the
    paper's sizes (Sec. IV)."""
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


def image_side(profile) -> int:
    """The network input side: every box of this chapter is in pixels of that square input."""
    return get_profile(profile).image_size


def model_config(s: Settings, in_channels: int, num_labels: int, mode: str = "rlsd",
                 fusion: str = "max") -> rlsd_model.RLSDConfig:
    return rlsd_model.RLSDConfig(in_channels=in_channels, num_labels=num_labels, mode=mode,
                                 loc_hidden=s.loc_hidden, train_regions=s.train_regions,
                                 test_regions=s.test_regions, nms_iou=s.nms_iou, grid=s.grid, fc_dim=s.fc_dim,
                                 dropout=s.dropout, embed=s.embed, hidden=s.hidden, max_steps=s.max_steps,
                                 fusion=fusion)


ENCODER_INITS = ("random", "vgg16")


def region_encoder(s: Settings, weights) -> rlsd_model.RegionEncoder | None:
    """The region encoder a new model starts from (Sec. III-A-3): None for ``encoder_init="random"``
    (the model draws its own from the training seed), or VGG16's own ImageNet fc6/fc7 from
    the checked vgg16 file of ``weights``. The file is read again for every model, so each gets its
    own copy: the rows fine-tune the encoder, and a copy shared within a process would hand the
    next seed or row weights another run had trained (results would depend on the run order)."""
    if s.encoder_init not in ENCODER_INITS:
        raise ValueError(f"encoder_init must be one of {ENCODER_INITS}, not {s.encoder_init!r}")
    if s.encoder_init == "random":
        return None
    return rlsd_model.RegionEncoder.from_vgg16(backbones.vgg16_fc67(weights))


def base_config(stage, dataset, profile, root, seed, weights, s: Settings, keys=None) -> dict:
    """The part of a stage's or a row's cache key they all share (``keys``: the settings it reads; None: all)."""
    name = features.trunk_of(profile, TRUNK)
    chosen = dataclasses.asdict(s) if keys is None else {k: getattr(s, k) for k in keys}
    return {"chapter": "06_rlsd", "stage": stage, "version": 3, **shared.context(dataset, profile, root, seed).key,
            "backbone": name, "image_size": profile.image_size, "weights": features.weights_name(weights, name),
            "holdout": profile.holdout, "settings": chosen}


def frozen_features(dataset, profile, root, seed, device, weights):
    """The frozen conv maps of the trunk (``features.backbone_features``) every stage and row reads."""
    return features.backbone_features(dataset, profile, root, seed, device, weights, trunk=TRUNK)


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
ROW_SPECS = {  # table row name -> Row
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
#: the stages (runs several rows read) -> the short key of their regions (``Row.regions``)
STAGE_KEYS = {"localization (region set)": "vg", "localization (ft-RPN)": "ft", "selective search": "ss"}
BASELINE_ROWS = {"Multi-CNN": "Resnet-baseline", "WARP": "WARP", "CNN-RNN": "CNN-RNN", "KNN": "KNN",
                 "softmax": "Softmax"}   # the paper's name -> the baseline row that stands in for it
