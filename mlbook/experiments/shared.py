"""Stages every chapter reuses instead of retraining (DESIGN.md, "Profiles").

- ``splits``: the train/test MultiLabelData of a data set (generated on first use).
- ``data_key``: what identifies that data in a cache key, and ``data_fingerprint``
  what the images and labels actually were (a cached result made from other
  data is recomputed).
- ``image_set``: a torch Dataset of (image, labels, ignore) for a split; small
  profiles decode every image once into a uint8 tensor cache.
- ``holdout_split``: the part of the training set held out for early stopping and
  for every choice a method makes (thresholds, k of KNN); never the test split.
- ``shared_backbone``: the demo's stand-in for ImageNet pretraining, a SmallCNN
  trained once per data set from scratch with BCE; the full profile loads an
  ImageNet network instead. Cached.
- ``backbone_features``: frozen conv maps of every image, cached, so heads that
  keep the backbone frozen (Order-Free RNN, KNN, WARP, ...) train fast.

``seed`` here is always the *data* seed (which generated data set, which backbone);
training seeds of the methods are separate (``train_seed``), so the rows a claim
compares can be retrained with several seeds on fixed data and a fixed backbone.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from .. import cache, train as train_module
from ..models import backbones
from ..profiles import Profile, get_profile, pick_device
from ..train import fit, predict   # the training loop's two entry points


@dataclasses.dataclass
class Splits:
    train: "object"   # MultiLabelData
    test: "object"


def splits(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0) -> Splits:
    from ..data import load_splits

    profile = get_profile(profile)
    train, test = load_splits(dataset, profile, root=root, seed=seed)
    if profile.max_train is not None and len(train) > profile.max_train:
        train = train.subset(list(range(profile.max_train)))
    return Splits(train, test)


def data_key(dataset: str, profile: Profile, root: str | None, seed: int) -> dict:
    """The part of a config that names the data an experiment saw (no machine path)."""
    key = {"dataset": dataset, "real": bool(root), "max_train": profile.max_train}
    if not root:  # generated data: the generator's version, sizes and seed define it
        from ..data.synthetic import GENERATOR_VERSION

        key.update(profile=profile.name, gen=[profile.gen_train, profile.gen_test, profile.gen_classes,
                                              profile.gen_image_size], seed=seed, generator=GENERATOR_VERSION)
    return key


def data_fingerprint(data: Splits) -> str:
    """sha256 of what a model sees: image file names, labels, ignore masks and boxes of both splits."""
    h = hashlib.sha256()
    for split in (data.train, data.test):
        h.update("|".join(Path(p).name for p in split.image_paths).encode())
        h.update(split.labels.numpy().tobytes())
        if split.ignore is not None:
            h.update(split.ignore.numpy().tobytes())
        if split.boxes is not None:
            h.update(repr([[(b.x, b.y, b.w, b.h, b.label) for b in bs] for bs in split.boxes]).encode())
    return h.hexdigest()[:16]


def data_kind(root: str | None) -> str:
    """How a table caption names the data it ran on."""
    return "real" if root else "generated"


def as_input(images: torch.Tensor, train: bool) -> torch.Tensor:
    """uint8 image batches (in-memory path) -> normalised float, flipped at random in training.

    Float batches come from the on-disk path, whose transforms already did this.
    """
    from ..data.transforms import normalize_uint8, random_hflip

    if images.dtype != torch.uint8:
        return images
    if train:
        images = random_hflip(images)
    return normalize_uint8(images)


def image_set(data, profile: Profile, train: bool) -> Dataset:
    from ..data import ImageDataset, image_tensor_cache
    from ..data import transforms as T

    ignore = data.ignore if data.ignore is not None else torch.zeros_like(data.labels, dtype=torch.bool)
    if profile.in_memory:
        return TensorDataset(image_tensor_cache(data, profile.image_size), data.labels, ignore)
    return ImageDataset(data, T.image_transform(profile.image_size, train))


def holdout_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, hold-out indices) of the training set; depends on the data seed only,
    so every method and training seed holds out the same images."""
    g = torch.Generator().manual_seed(seed + 7919)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(n * fraction)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def bce_loss(model, batch) -> torch.Tensor:
    images, labels, ignore = batch
    logits = model(as_input(images, train=model.training))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    keep = (~ignore).float()
    return (loss * keep).sum() / keep.sum().clamp_min(1)


SHARED_CODE = (cache, train_module, backbones)


def shared_backbone(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0,
                    device: str = "auto", weights: str | None = None, force: bool = False):
    """(backbone module in eval mode, result dict with history and test scores/mAP).

    Demo/smoke: a SmallCNN + global average pooling + linear classifier trained
    from scratch with BCE (Adam, cosine schedule), the stand-in for ImageNet
    pretraining that the chapters then freeze or fine-tune.
    Full: the ImageNet network named by the profile, not trained here.
    """
    from ..metrics import mean_average_precision

    profile = get_profile(profile)
    if profile.backbone != "small_cnn":
        return backbones.build_backbone(profile.backbone, weights=weights).eval(), {"history": [], "test_mAP": None}

    data = splits(dataset, profile, root, seed)
    config = {"stage": "shared_backbone", "version": 1, **data_key(dataset, profile, root, seed),
              "image_size": profile.image_size, "epochs": profile.backbone_epochs,
              "batch_size": profile.batch_size, "train_seed": seed}

    def compute(folder: Path) -> dict:
        torch.manual_seed(seed)
        model = backbones.GlobalPoolClassifier(backbones.SmallCNN(), data.train.num_classes, pool="avg")
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
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "history": history, "test_scores": scores,
                "test_mAP": float(mean_average_precision(scores, data.test.labels, data.test.ignore))}

    result = cache.run("shared_backbone", config, compute, force=force, code=SHARED_CODE,
                       data=data_fingerprint(data))
    model = backbones.GlobalPoolClassifier(backbones.SmallCNN(), data.train.num_classes, pool="avg")
    model.load_state_dict(result["state_dict"])
    return model.backbone.eval(), result


def backbone_features(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0,
                      device: str = "auto", weights: str | None = None, upto: int | None = None) -> dict:
    """Frozen conv maps of the shared backbone: {"train": [N, D, h, w], "test": ...} (float16).

    ``upto``: stop after that many conv blocks of the SmallCNN (None = all), for
    fine-tuning only the blocks above; then also ``"train_flipped"`` (the maps of the
    mirrored training images), so training keeps its random horizontal flips.
    """
    profile = get_profile(profile)
    data = splits(dataset, profile, root, seed)
    config = {"stage": "backbone_features", "version": 2, **data_key(dataset, profile, root, seed),
              "backbone": profile.backbone, "image_size": profile.image_size,
              "backbone_epochs": profile.backbone_epochs, "weights": weights, "upto": upto}

    def compute(folder: Path) -> dict:
        backbone, _ = shared_backbone(dataset, profile, root, seed, device, weights)
        net = backbone if upto is None else backbone.first_blocks(upto)
        dev = pick_device(device)
        net.to(dev).eval()
        images = {"train": image_set(data.train, profile, train=False),
                  "test": image_set(data.test, profile, train=False)}
        out = {}
        for name, split in images.items():
            out[name] = predict(lambda b: net(as_input(b[0], train=False)).half(), split, device=dev,
                                batch_size=profile.batch_size * 2).half()
        if upto is not None:
            out["train_flipped"] = predict(lambda b: net(as_input(b[0], train=False).flip(-1)).half(),
                                           images["train"], device=dev, batch_size=profile.batch_size * 2).half()
        for name, maps in out.items():
            if not bool(torch.isfinite(maps).all()):
                raise FloatingPointError(f"backbone_features: the {profile.backbone} maps of the {dataset} {name} "
                                         "images are not finite in float16 (wrong or missing weights?)")
        return out

    return cache.run("backbone_features", config, compute, code=SHARED_CODE, data=data_fingerprint(data))


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


def _run_quietly(fn, args, kwargs):
    """One job in a worker process: one CPU thread, output discarded (the parent reports)."""
    import io
    import sys

    sys.stdout = sys.stderr = io.StringIO()
    torch.set_num_threads(1)
    fn(*args, **kwargs)
    return True


def run_all(jobs: list[tuple], workers: int | None = None, device: str = "auto") -> list:
    """Run cached experiments ``[(fn, args, kwargs), ...]`` and return their results in order.

    On a CPU the runs that are not cached yet are computed first by ``workers`` processes
    (default: one per core, each on one thread: small models train faster side by side than
    one after the other on shared threads), which write them to the cache; then every result
    is loaded here. With a GPU, or ``workers=1``, they run one after the other in this process.
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = workers or min(len(jobs), os.cpu_count() or 1)
    if workers > 1 and len(jobs) > 1 and pick_device(device) == "cpu":
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for f in [pool.submit(_run_quietly, fn, a, k) for fn, a, k in jobs]:
                f.result()   # re-raises a worker's error here
    return [fn(*a, **k) for fn, a, k in jobs]
