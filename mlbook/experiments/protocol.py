"""The one protocol of the head-to-head chapter (08): what every row shares, whatever its paper.

Every row reads the same frozen maps of the same trunk (demo/smoke: the data set's small CNN,
trained once per training seed, so that a seed varies the whole network and every row of a seed
reads the same backbone: the rows are paired by seed; full: ResNet-101 at 448 px with its ImageNet
weights), without augmentation; every row trains
with Adam (no weight decay) for the same epoch budget, stops early on the same hold-out part of
the training set by its own loss, and gets its learning rate (and its method's own knob, where
it has one) from the same small grid, chosen on that hold-out part by one rule (``SELECT_BY``)
with the first training seed. Every row outputs one score per label for the test images and for
the hold-out images (where the threshold of the thresholded metrics is chosen, ``threshold``).

A paper takes part through two functions of its face: ``protocol_knobs(profile)`` (its own knob
grid, ``({},)`` if none) and ``protocol_run(dataset, profile, protocol, *, lr, knob, ...)`` (one
cached run under this protocol, returning ``record``'s fields). This module imports no paper.
"""
from __future__ import annotations

import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

from .. import metrics
from ..papers import COMPARISON_TRUNK
from ..profiles import Profile, get_profile, pick_device
from . import features, shared

SELECT_BY = "mAP"        # the hold-out criterion of every row's learning rate and knob
#: Adam's learning rates, by trunk: the demo's budget is half the paper chapters' epochs, and its heads on
#: the small CNN's maps learn in it at 3e-3 to 1e-2; on ResNet-101's maps the usual 1e-3 to 3e-3
LEARNING_RATES = {"small_cnn": (3e-3, 1e-2), COMPARISON_TRUNK: (1e-3, 3e-3)}
FULL_TRUNK = COMPARISON_TRUNK   # the full profile's trunk of every row (448 px, as most published work today)


@dataclasses.dataclass(frozen=True)
class Protocol:
    trunk: str                  # every row reads this trunk's frozen maps
    epochs: int                 # budget; early stopping on the hold-out part (the row's own loss)
    patience: int
    batch_size: int
    holdout: float
    lrs: tuple = LEARNING_RATES["small_cnn"]   # Adam's learning rate, chosen per row on the hold-out part
    weight_decay: float = 0.0
    top_k: int = 3
    seeded_backbone: bool = False   # each training seed trains its own backbone, which all rows of that seed read

    def backbone_seed(self, train_seed: int, seed: int = 0) -> int | None:
        """The backbone seed of a run with ``train_seed`` on data seed ``seed`` (``shared.backbone_seed``):
        the first training seed reads the shared backbone (trained with the data seed), the next ones
        a backbone of their own; None where the trunk is fixed (ImageNet weights, not trained here)."""
        return seed + train_seed if self.seeded_backbone else None

    def backbone(self, train_seed: int, seed: int = 0):
        """The context a run of ``train_seed`` trains and reads its maps in: its seed's backbone."""
        return shared.backbone_seed(self.backbone_seed(train_seed, seed))

    def fit_settings(self, lr: float) -> dict:
        """The fields a paper's ``Settings`` takes from the protocol (every paper names them alike)."""
        return {"epochs": self.epochs, "patience": self.patience, "batch_size": self.batch_size,
                "holdout": self.holdout, "lr": lr}

    def key(self, lr: float, knob: dict) -> dict:
        """What a protocol run's cache key records of the protocol and its grid point."""
        return {"protocol": dataclasses.asdict(self), "lr": lr, "knob": dict(sorted(knob.items()))}


def protocol_for(profile: Profile | str) -> Protocol:
    """The protocol of a profile: the trunk every row reads, its learning rates, the profile's batch,
    patience and hold-out part; the epoch budget is the profile's head budget, halved on the small CNN
    (the demo's: 15 epochs, so that eleven rows, two learning rates and three seeds on two data sets
    fit its minutes). The small CNN is trained per training seed (``seeded_backbone``)."""
    profile = get_profile(profile)
    small = profile.backbone == "small_cnn"
    trunk = "small_cnn" if small else FULL_TRUNK
    return Protocol(trunk=trunk, epochs=max(1, profile.head_epochs // 2) if small else profile.head_epochs,
                    patience=profile.patience, batch_size=profile.batch_size, holdout=profile.holdout,
                    lrs=LEARNING_RATES[trunk], seeded_backbone=small)


def point_label(lr: float, knob: dict) -> str:
    """A grid point as a row's name prints it: "lr=0.001", "lr=0.003; margin=1", "k=10" (no learning rate).
    No comma: a plan row lists its grid rows comma-separated."""
    knobs = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(knob.items())]
    return "; ".join([*([f"lr={lr:g}"] if lr else []), *knobs])


def forward_flops(fn, *inputs) -> int:
    """FLOPs of one call ``fn(*inputs)`` counted by torch's FlopCounterMode (matrix products and
    convolutions; elementwise work is not counted): deterministic, from the shapes. Counted with
    autograd on (its module tracker fails under ``no_grad``); the graph is dropped."""
    with FlopCounterMode(display=False) as counter:
        fn(*inputs)
    return int(counter.get_total_flops())


def first_test_image(maps, device: str = "cpu") -> torch.Tensor:
    """The first image's maps [1, D, h, w] as float32 on ``device`` (of maps in memory, on disk or
    streamed): the input on which a row's forward FLOPs are counted."""
    dev = pick_device(device)
    return features.map_apply(lambda x: x.float(), features.take(maps, torch.arange(1)), device=dev).to(dev)


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def record(scores: torch.Tensor, holdout_scores: torch.Tensor, history: list, *, params: int, flops: int,
           **extra) -> dict:
    """What every protocol run stores: test and hold-out scores [N, C] (float32, higher = more
    likely), the training history, the trained parameters and the forward FLOPs per image of the
    row's head (the trunk is the same for every row)."""
    for name, s in (("test", scores), ("hold-out", holdout_scores)):
        if not bool(torch.isfinite(s).all()):
            raise FloatingPointError(f"a protocol run's {name} scores are not finite")
    return {"scores": scores.float().contiguous(), "holdout_scores": holdout_scores.float().contiguous(),
            "history": history, "params": int(params), "flops": int(flops), **extra}


def holdout_value(result: dict, labels: torch.Tensor, ignore: torch.Tensor | None = None) -> float:
    """The selection criterion (``SELECT_BY``) of a run on the hold-out images."""
    return float(metrics.mean_average_precision(result["holdout_scores"], labels, ignore))


def threshold(holdout_scores: torch.Tensor, labels: torch.Tensor, ignore: torch.Tensor | None = None) -> float:
    """The one threshold rule of every row: among the hold-out scores themselves (each a candidate,
    so the rule does not depend on a row's scale), the one whose "score >= t" predictions give the
    highest CF1 + OF1 on the hold-out images (the smallest such t on a tie)."""
    flat = holdout_scores.flatten()
    valid = torch.ones_like(flat, dtype=torch.bool) if ignore is None else ~ignore.flatten()
    candidates = torch.unique(flat[valid])
    if len(candidates) > 512:                        # quantiles beyond 512 distinct values: the same rule, cheaper
        grid = torch.linspace(0, 1, 512, dtype=torch.double)
        candidates = torch.unique(torch.quantile(candidates.double(), grid).float())
    if not len(candidates):
        return 0.0
    m = metrics.prf_of_thresholds(holdout_scores, labels, candidates, ignore)   # every candidate at once
    value = (m["CF1"] + m["OF1"]).nan_to_num(float("-inf"))
    return float(candidates[int(torch.argmax(value))])              # the first (smallest) maximum
