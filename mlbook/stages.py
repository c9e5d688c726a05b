"""Shared stages the chapters reuse instead of retraining (DESIGN.md, "Profiles").

- ``splits``: the train/test MultiLabelData of a data set (generated on first use).
- ``image_set``: a torch Dataset of (image, labels, ignore) for a split; small
  profiles decode every image once into a uint8 tensor cache.
- ``shared_backbone``: the demo's stand-in for ImageNet pretraining, a SmallCNN
  trained once per data set from scratch with BCE; the full profile loads an
  ImageNet ResNet instead. Cached as an experiment.
- ``backbone_features``: frozen conv maps of every image, cached, so heads
  that keep the backbone frozen (Order-Free RNN, KNN, WARP, ...) train fast.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from . import experiments
from .profiles import Profile, pick_device
from .train import fit, predict


@dataclasses.dataclass
class Splits:
    train: "object"   # MultiLabelData
    test: "object"


def splits(dataset: str, profile: Profile, root: str | None = None, seed: int = 0) -> Splits:
    from .data import load_splits

    train, test = load_splits(dataset, profile, root=root, seed=seed)
    if profile.max_train is not None and len(train) > profile.max_train:
        train = train.subset(list(range(profile.max_train)))
    return Splits(train, test)


def data_key(dataset: str, profile: Profile, root: str | None, seed: int) -> dict:
    """The part of a config that identifies the data an experiment saw."""
    key = {"dataset": dataset, "root": str(Path(root).resolve()) if root else None,
           "max_train": profile.max_train}
    if not root:  # generated data: the generator's version, sizes and seed define it
        from .data.synthetic import GENERATOR_VERSION

        key.update(profile=profile.name, gen=[profile.gen_train, profile.gen_test, profile.gen_classes,
                                              profile.gen_image_size], seed=seed, generator=GENERATOR_VERSION)
    return key


def as_input(images: torch.Tensor, train: bool) -> torch.Tensor:
    """uint8 image batches (in-memory path) -> normalised float, flipped at random in training.

    Float batches come from the on-disk path, whose transforms already did this.
    """
    from .data.transforms import normalize_uint8, random_hflip

    if images.dtype != torch.uint8:
        return images
    if train:
        images = random_hflip(images)
    return normalize_uint8(images)


def image_set(data, profile: Profile, train: bool) -> Dataset:
    from .data import ImageDataset, image_tensor_cache
    from .data import transforms as T

    ignore = data.ignore if data.ignore is not None else torch.zeros_like(data.labels, dtype=torch.bool)
    if profile.in_memory:
        return TensorDataset(image_tensor_cache(data, profile.image_size), data.labels, ignore)
    return ImageDataset(data, T.image_transform(profile.image_size, train))


def holdout_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, validation indices): a held-out part of the training set.

    Thresholds and other choices are tuned on it, never on the test split.
    """
    g = torch.Generator().manual_seed(seed + 7919)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(n * fraction)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def bce_loss(model, batch) -> torch.Tensor:
    images, labels, ignore = batch
    logits = model(as_input(images, train=True))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    keep = (~ignore).float()
    return (loss * keep).sum() / keep.sum().clamp_min(1)


def shared_backbone(dataset: str, profile: Profile, root: str | None = None, seed: int = 0,
                    device: str = "auto", weights: str | None = None, force: bool = False):
    """(backbone module in eval mode, result dict with history and test mAP).

    Demo/smoke: a SmallCNN + global average pooling + linear classifier
    trained from scratch with BCE (Adam, lr 1e-3, cosine), the stand-in for
    ImageNet pretraining that the chapters then freeze or fine-tune.
    Full: the ImageNet ResNet named by the profile, not trained here.
    """
    from .metrics import mean_average_precision
    from .models.backbones import GlobalPoolClassifier, SmallCNN, resnet_backbone

    if profile.backbone != "small_cnn":
        return resnet_backbone(profile.backbone, weights).eval(), {"history": [], "test_mAP": None}

    data = splits(dataset, profile, root, seed)
    config = {"stage": "shared_backbone", "version": 1, **data_key(dataset, profile, root, seed),
              "image_size": profile.image_size, "epochs": profile.backbone_epochs,
              "batch_size": profile.batch_size, "train_seed": seed}

    def compute(folder: Path) -> dict:
        torch.manual_seed(seed)
        model = GlobalPoolClassifier(SmallCNN(), data.train.num_classes, pool="avg")
        epochs = profile.backbone_epochs
        history = fit(
            model, image_set(data.train, profile, train=True), bce_loss,
            epochs=epochs, batch_size=profile.batch_size, device=device, seed=seed,
            make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=2e-3, weight_decay=1e-4),
            make_scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1)),
            checkpoint=folder / "checkpoint.pt", desc=f"backbone {dataset}",
        )
        scores = predict(lambda b: model(as_input(b[0], train=False)),
                         image_set(data.test, profile, train=False), device=device)
        ignore = data.test.ignore
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "history": history, "test_scores": scores,
                "test_mAP": float(mean_average_precision(scores, data.test.labels, ignore))}

    result = experiments.run("shared_backbone", config, compute, force=force)
    model = GlobalPoolClassifier(SmallCNN(), data.train.num_classes, pool="avg")
    model.load_state_dict(result["state_dict"])
    return model.backbone.eval(), result


def shared_classifier(dataset: str, profile: Profile, root: str | None = None, seed: int = 0,
                      device: str = "auto"):
    """The shared backbone together with its trained GAP + linear head (demo/smoke)."""
    from .models.backbones import GlobalPoolClassifier

    backbone, result = shared_backbone(dataset, profile, root, seed, device)
    data = splits(dataset, profile, root, seed)
    model = GlobalPoolClassifier(backbone, data.train.num_classes, pool="avg")
    model.load_state_dict(result["state_dict"])
    return model.eval(), result


def backbone_features(dataset: str, profile: Profile, root: str | None = None, seed: int = 0,
                      device: str = "auto", weights: str | None = None) -> dict:
    """Frozen conv maps of the shared backbone: {"train": [N, D, h, w], "test": ...} (float16)."""
    data = splits(dataset, profile, root, seed)
    config = {"stage": "backbone_features", "version": 1, **data_key(dataset, profile, root, seed),
              "backbone": profile.backbone, "image_size": profile.image_size,
              "backbone_epochs": profile.backbone_epochs, "weights": weights}

    def compute(folder: Path) -> dict:
        backbone, _ = shared_backbone(dataset, profile, root, seed, device, weights)
        dev = pick_device(device)
        backbone.to(dev).eval()
        out = {}
        for name, split in (("train", data.train), ("test", data.test)):
            out[name] = predict(lambda b: backbone(as_input(b[0], train=False)).half(),
                                image_set(split, profile, train=False), device=dev,
                                batch_size=profile.batch_size * 2).half()
        return out

    return experiments.run("backbone_features", config, compute)


@contextlib.contextmanager
def cpu_threads(n: int | None = 1):
    """Run small sequential models with ``n`` intra-op threads on CPU, then restore.

    These heads are tiny (a few hundred kB); with two or more OpenMP threads on a CPU
    shared with other processes, each small op waits for descheduled spinning threads
    and a run can become 10-100x slower. ``n=None`` leaves the setting alone.
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def head_on_frozen_features(compute, dataset: str, profile: Profile, root: str | None = None, seed: int = 0,
                            device: str = "auto", weights: str | None = None):
    """Wrap a head's ``compute(folder)``: the frozen features are computed (or loaded) first with
    every thread, then the small head trains and decodes on one CPU thread (see ``cpu_threads``)."""
    def wrapped(folder: Path) -> dict:
        backbone_features(dataset, profile, root, seed, device, weights)
        with cpu_threads(1 if pick_device(device) == "cpu" else None):
            return compute(folder)
    return wrapped
