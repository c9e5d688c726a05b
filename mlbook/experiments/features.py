"""The shared backbone and its frozen maps: what every paper's rows read (DESIGN.md, "Experiments").

- ``shared_backbone``: the demo's stand-in for ImageNet pretraining, a SmallCNN trained
  once per data set from scratch with BCE **on the fit part only** (the hold-out tenth is
  never seen, so choices made there are not made on features fitted to it); the full
  profile loads the ImageNet trunk the paper names instead.
- ``backbone_features``: frozen conv maps of every image. Where they are kept is chosen per
  trunk from their size (``map_storage``): in memory (demo, smoke), written once to disk as a
  float16 file per split read lazily (``DiskMaps``), or, where even that would not fit the
  disk, never stored: computed by the frozen trunk per batch on the device (``StreamedMaps``).
  ``take``, ``map_rows``, ``map_apply`` and ``pooled`` read any of the three alike.
- ``run``: the "backbone features" stage as a run of a chapter's grid (``shared.feature_runs``).
"""
from __future__ import annotations

import abc
import functools
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .. import cache, profiles
from ..cache import atomic_write_text
from ..costs import RunCost, image_bytes, loader_bytes, maps_of, trunk_net
from ..data import SPLIT_SIZES
from ..metrics import mean_average_precision
from ..models import backbones
from ..profiles import Profile, get_profile, pick_device
from ..train import device_stage, fit, loader_workers, predict, to_device
from ..weights import WEIGHTS, weights_file
from . import shared

# --- the shared backbone and its frozen maps -----------------------------------------------------

def trunk_of(profile: Profile, trunk: str | None) -> str:
    """The network a row reads: the paper's ImageNet trunk in the full profile, the shared small
    CNN of the data set in demo and smoke (a deviation every chapter states)."""
    if profile.backbone == "small_cnn":
        return "small_cnn"
    return trunk or profile.backbone


def bce_loss(model, batch, keep_labels: torch.Tensor | None = None) -> torch.Tensor:
    """BCE over the labels that are not ignored (VOC difficult) and, with ``keep_labels`` [C]
    bool, only over those labels (a backbone that must never see held-out labels)."""
    images, labels, ignore = batch
    logits = model(shared.as_input(images, train=model.training))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    keep = (~ignore).float()
    if keep_labels is not None:
        keep = keep * keep_labels.to(keep.device).float()
    return (loss * keep).sum() / keep.sum().clamp_min(1)


def shared_backbone(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0,
                    device: str = "auto", weights=None, *, trunk: str | None = None,
                    exclude_labels: tuple[int, ...] = (), force: bool = False):
    """(backbone module in eval mode, result dict with history and test scores/mAP).

    Demo/smoke: a SmallCNN + global average pooling + linear classifier trained from scratch
    with BCE (Adam, cosine schedule) on the fit part of the training set, the stand-in for
    ImageNet pretraining that the chapters then freeze or fine-tune. ``exclude_labels``:
    labels left out of its loss (chapter 07's zero-shot labels: a backbone that never saw them).
    Full: the ImageNet network ``trunk`` (checked weights), not trained here.
    """
    profile = get_profile(profile)
    name = trunk_of(profile, trunk)
    if name != "small_cnn":
        return backbones.build_backbone(name, weights=weights).eval(), {"history": [], "test_mAP": None}

    ctx = shared.context(dataset, profile, root, seed)
    data, exclude = ctx.data, tuple(sorted(int(c) for c in exclude_labels))
    b_seed = profiles.backbone_seed(seed) if ctx.backbone_seed is None else ctx.backbone_seed   # shared.backbone_seed
    config = {"stage": "shared_backbone", "version": 2, **ctx.key,
              "image_size": profile.image_size, "epochs": profile.backbone_epochs, "batch_size": profile.batch_size,
              "train_seed": b_seed, "holdout": profile.holdout, **({"backbone_seed": b_seed} if b_seed != seed else {})}
    if exclude:
        config["exclude_labels"] = list(exclude)

    def compute(folder: Path) -> dict:
        torch.manual_seed(b_seed)
        model = backbones.GlobalPoolClassifier(backbones.SmallCNN(), data.train.num_classes, pool="avg")
        keep = torch.ones(data.train.num_classes, dtype=torch.bool)
        keep[list(exclude)] = False
        fit_idx, _ = ctx.holdout
        epochs = profile.backbone_epochs
        history = fit(
            model, Subset(shared.image_set(data.train, profile, train=True), fit_idx.tolist()),
            lambda m, b: bce_loss(m, b, keep if exclude else None),
            epochs=epochs, batch_size=profile.batch_size, device=device, seed=b_seed,
            make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=2e-3, weight_decay=1e-4),
            make_scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1)),
            checkpoint=folder / "checkpoint.pt", desc=f"backbone {dataset}", progress=False,
        )
        scores = predict(lambda b: model(shared.as_input(b[0], train=False)),
                         shared.image_set(data.test, profile, train=False), device=device)
        seen = keep.nonzero().flatten()
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "history": history, "test_scores": scores, "trained_images": len(fit_idx),
                "test_mAP": float(mean_average_precision(scores[:, seen], data.test.labels[:, seen],
                                                         None if data.test.ignore is None else data.test.ignore[:, seen]))}

    result = ctx.cached("shared_backbone", config, compute, code=(shared_backbone,), force=force)
    model = backbones.GlobalPoolClassifier(backbones.SmallCNN(), data.train.num_classes, pool="avg")
    model.load_state_dict(result["state_dict"])
    return model.backbone.eval(), result


def backbone_features(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0,
                      device: str = "auto", weights=None, *, trunk: str | None = None, upto: int | None = None,
                      exclude_labels: tuple[int, ...] = ()) -> dict:
    """Frozen conv maps of the row's trunk: {"train": [N, D, h, w], "test": ...} (float16).

    Kept where ``map_storage`` says: in memory (demo, smoke: tensors, cached whole), on disk
    (``DiskMaps``: one float16 file per split, written once, cached) or streamed
    (``StreamedMaps``: nothing stored, the trunk runs per batch on the device). The lazy
    kinds have ``shape``; read every kind with ``take``, ``map_rows``, ``map_apply``, ``pooled``.
    The result also says ``"storage"`` and, on disk, the ``"bytes"`` written.

    ``upto``: stop after that many conv blocks of the SmallCNN (None = all), for fine-tuning
    only the blocks above; then also ``"train_flipped"`` (the maps of the mirrored training
    images), so training keeps its random horizontal flips.
    """
    profile = get_profile(profile)
    name = trunk_of(profile, trunk)
    storage = map_storage(name, dataset, profile)
    if storage != "memory":
        return _lazy_features(dataset, profile, root, seed, device, weights, name, storage)
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    exclude = tuple(sorted(int(c) for c in exclude_labels))
    config = {"stage": "backbone_features", "version": 3, **ctx.key,
              "backbone": name, "image_size": profile.image_size, "backbone_epochs": profile.backbone_epochs,
              "weights": weights_name(weights, name), "upto": upto, "holdout": profile.holdout}
    if exclude:
        config["exclude_labels"] = list(exclude)

    def compute(folder: Path) -> dict:
        backbone, _ = shared_backbone(dataset, profile, root, seed, device, weights, trunk=name,
                                      exclude_labels=exclude)
        net = backbone if upto is None else backbone.first_blocks(upto)
        dev = pick_device(device)
        net.to(dev).eval()
        images = {"train": shared.image_set(data.train, profile, train=False),
                  "test": shared.image_set(data.test, profile, train=False)}
        out = {}
        for split, dataset_ in images.items():
            out[split] = predict(lambda b: net(shared.as_input(b[0], train=False)).half(), dataset_, device=dev,
                                 batch_size=profile.batch_size * 2).half()
        if upto is not None:
            out["train_flipped"] = predict(lambda b: net(shared.as_input(b[0], train=False).flip(-1)).half(),
                                           images["train"], device=dev, batch_size=profile.batch_size * 2).half()
        for split, maps in out.items():
            if not bool(torch.isfinite(maps).all()):
                raise FloatingPointError(f"backbone_features: the {name} maps of the {dataset} {split} "
                                         "images are not finite in float16 (wrong or missing weights?)")
        return out

    return ctx.cached("backbone_features", config, compute, code=(backbone_features,))


# --- frozen maps too large for memory: on disk, or streamed ---------------------------------------

MAP_DTYPE = torch.float16
MAP_DISK_ENV = "MLBOOK_MAP_DISK_GIB"
#: default disk the frozen maps of one trunk and data set may take: half the 64 GiB disk of the
#: GPU machine the full profile is planned for (the rest holds the data set, the environment, the
#: weights and the runs' checkpoints); ``MLBOOK_MAP_DISK_GIB`` overrides it.
MAP_DISK_GIB = 32.0


@functools.lru_cache(maxsize=None)
def map_shape(trunk: str, size: int) -> tuple[int, int, int]:
    """(C, h, w) of ``trunk``'s maps of a ``size`` x ``size`` image, from a meta-device forward."""
    with torch.device("meta"):
        net = backbones.random_backbone(trunk).eval()
        return tuple(net(torch.empty(1, 3, size, size)).shape[1:])


def map_bytes(trunk: str, size: int, images: int) -> int:
    """Bytes of the float16 maps of ``images`` images."""
    c, h, w = map_shape(trunk, size)
    return images * c * h * w * torch.finfo(MAP_DTYPE).bits // 8


def map_disk_budget() -> float:
    """Bytes the frozen maps of one trunk and data set may take on disk (``MAP_DISK_ENV``, GiB)."""
    return float(os.environ.get(MAP_DISK_ENV, "") or MAP_DISK_GIB) * 2 ** 30


def map_storage(trunk: str, dataset: str, profile: Profile) -> str:
    """Where the frozen maps of ``trunk`` on ``dataset`` are kept: "memory" (demo, smoke), "disk"
    when the maps of the real data set's train and test shared.splits (``data.SPLIT_SIZES``, whatever a root
    holds: a dry run on a few images takes the path the full run takes) fit ``map_disk_budget``,
    else "stream"."""
    if profile.in_memory:
        return "memory"
    images = sum(SPLIT_SIZES[dataset]) if dataset in SPLIT_SIZES else 0
    return "disk" if map_bytes(trunk, profile.size_for(trunk), images) <= map_disk_budget() else "stream"


@torch.no_grad()
def trunk_maps(trunk: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The frozen trunk's maps of normalised images, float16 (bf16 autocast on a GPU): one function
    for the maps written to disk and the maps streamed, so both paths see the same numbers."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=images.is_cuda):
        return trunk(images).to(MAP_DTYPE)


class LazyMaps(abc.ABC):
    """The frozen maps [N, C, h, w] of a split, never held whole in memory (``DiskMaps``,
    ``StreamedMaps``). ``index``: the split's images this view holds, in order."""

    def __init__(self, chw: tuple, index: torch.Tensor):
        self.chw, self.index = tuple(chw), torch.as_tensor(index, dtype=torch.long)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.index), *self.chw))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, index) -> "LazyMaps":
        view = object.__new__(type(self))   # a view: shares everything but the index
        view.__dict__.update(self.__dict__)
        view.index = self.index[torch.as_tensor(index, dtype=torch.long)]
        return view

    @abc.abstractmethod
    def rows(self, *columns) -> Dataset:
        """A Dataset of (maps or image, *columns[i]); ``columns`` aligned with this view."""

    def float(self):
        raise TypeError("frozen maps kept on disk or streamed are never materialised whole (tens of GB): "
                        "read them batch by batch with features.map_apply / map_rows / pooled")

    def __getitem__(self, index) -> torch.Tensor:
        """The float16 maps of a few images (an int, a slice, or a list / tensor of indices), computed
        or read now: for a figure's examples or one batch (``maps[i:i + b]``, as RLSD's code reads
        maps), never for a whole split (use ``map_apply``)."""
        if isinstance(index, int):
            return self[[index]][0]
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        return map_apply(lambda x: x.to(MAP_DTYPE), self.subset(index), device="auto")


class _Rows(Dataset):
    """(item(i), *columns[i]) for a lazy map set; carries the device stage and loader workers."""

    def __init__(self, item, n: int, columns, on_device=None, loader_workers: int = 0):
        if any(len(c) != n for c in columns):
            raise ValueError(f"columns of {[len(c) for c in columns]} rows beside {n} maps")
        self.item, self.n, self.columns = item, n, columns
        self.on_device, self.loader_workers = on_device, loader_workers

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return (self.item(i), *(c[i] for c in self.columns))


class DiskMaps(LazyMaps):
    """Maps in a file of raw float16 [N_split, C, h, w] (C order, readable as
    ``numpy.memmap(file, dtype=float16, shape=...)``); each item is read with one positioned read,
    so only the batches in use are in memory."""

    def __init__(self, file: Path, n_split: int, chw: tuple, index=None):
        super().__init__(chw, torch.arange(n_split) if index is None else index)
        self.file, self.n_split = Path(file), n_split
        self.item_bytes = int(np.prod(chw)) * 2

    def read(self, i: int) -> torch.Tensor:
        j = int(self.index[i])
        with open(self.file, "rb") as f:
            raw = os.pread(f.fileno(), self.item_bytes, j * self.item_bytes)
        return torch.from_numpy(np.frombuffer(raw, dtype=np.float16).reshape(self.chw).copy())

    def rows(self, *columns) -> Dataset:
        return _Rows(self.read, len(self), columns)

    def memmap(self) -> np.ndarray:
        """The whole split's file as a read-only ``numpy.memmap`` (for a user's own analysis)."""
        return np.memmap(self.file, dtype=np.float16, mode="r", shape=(self.n_split, *self.chw))


class StreamedMaps(LazyMaps):
    """Maps never stored: a Dataset of images whose ``on_device`` stage runs the frozen trunk on the
    batch where it trains (``train.fit``/``predict`` apply it), so the loss sees maps as from disk."""

    def __init__(self, images: Dataset, trunk_fn, chw: tuple, index=None, loader_workers: int = 0):
        super().__init__(chw, torch.arange(len(images)) if index is None else index)
        self.images, self.trunk_fn, self.loader_workers = images, trunk_fn, loader_workers

    def stage(self, batch):
        trunk = self.trunk_fn().to(batch[0].device)
        maps = trunk_maps(trunk, batch[0])
        if not bool(torch.isfinite(maps).all()):   # as write_maps checks what it stores: not a NaN loss later
            raise FloatingPointError(f"streamed {type(trunk).__name__} maps: not finite in float16 (wrong weights? "
                                     "random ones for a dry run: python -m mlbook weights random)")
        return (maps, *batch[1:])

    def rows(self, *columns) -> Dataset:
        return _Rows(lambda i: self.images[int(self.index[i])][0], len(self), columns, self.stage,
                     self.loader_workers)


def _lazy_features(dataset, profile, root, seed, device, weights, name: str, storage: str) -> dict:
    """``backbone_features`` of a trunk whose maps do not fit in memory (``map_storage``)."""
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    size = profile.size_for(name)
    chw = map_shape(name, size)
    images = {split: shared.image_set(getattr(data, split), profile, train=False, size=size) for split in ("train", "test")}
    trunk_fn = functools.partial(frozen_trunk, name, weights_name(weights, name), weights)
    if storage == "stream":
        start = time.perf_counter()
        trunk_fn()   # built (weights checked) now, so a missing or wrong file fails before any training
        return {"storage": "stream", "wall_s": time.perf_counter() - start, **{split: StreamedMaps(ds, trunk_fn, chw, loader_workers=profile.num_workers)
                                        for split, ds in images.items()}}
    config = {"stage": "backbone_maps_on_disk", "version": 1, **ctx.key,
              "backbone": name, "image_size": size, "weights": weights_name(weights, name)}

    def compute(folder: Path) -> dict:
        dev = pick_device(device)
        written = {split: write_maps(folder / f"{split}.f16", ds, trunk_fn, chw, dev, profile.batch_size * 2,
                                     f"{name} {dataset} {split}") for split, ds in images.items()}
        return {"storage": "disk", "files": {s: f"{s}.f16" for s in written}, "rows": written,
                "chw": list(chw), "bytes": sum(map_bytes(name, size, n) for n in written.values())}

    result = ctx.cached("backbone_maps", config, compute, code=(_lazy_features,))
    folder = cache.run_dir("backbone_maps", config)
    return {**result, **{split: DiskMaps(folder / file, result["rows"][split], tuple(result["chw"]))
                         for split, file in result["files"].items()}}


def frozen_trunk(name: str, weights_key, weights) -> torch.nn.Module:
    """The ImageNet trunk ``name`` in eval mode without gradients, built once per process and
    weights file (a chapter's runs share it instead of reloading 0.5 GB per run)."""
    path = weights_file(weights, name)
    return _built_trunk(name, None if path is None else str(path))


@functools.lru_cache(maxsize=4)
def _built_trunk(name: str, path: str | None) -> torch.nn.Module:
    return backbones.build_backbone(name, weights=path).eval().requires_grad_(False)


def write_maps(file: Path, images: Dataset, trunk_fn, chw: tuple, device: str, batch_size: int,
               what: str, chunk: int = 2048) -> int:
    """Write the trunk's float16 maps of every image to ``file`` (raw [N, C, h, w]); return N.

    Resumable and atomic: rows go to ``<file>.partial`` in chunks of ``chunk`` images, each
    followed by a one-line ``<file>.rows`` count; an interrupted write resumes after the last
    complete chunk, and the finished file is renamed into place."""
    n, item = len(images), int(np.prod(chw)) * 2
    partial, progress = file.with_name(file.name + ".partial"), file.with_name(file.name + ".rows")
    done = int(progress.read_text()) if partial.exists() and progress.exists() else 0
    trunk = trunk_fn().to(device)
    with open(partial, "r+b" if done else "wb") as f:
        f.truncate(n * item)
        for first in range(done, n, chunk):
            rows = range(first, min(n, first + chunk))

            def collect(row, maps, first=first):
                if not bool(torch.isfinite(maps).all()):
                    raise FloatingPointError(f"backbone maps of {what}: not finite in float16 (wrong weights?)")
                os.pwrite(f.fileno(), maps.cpu().contiguous().numpy().tobytes(), (first + row) * item)

            predict(lambda b: trunk_maps(trunk, b[0]), Subset(images, rows), device=device,
                    batch_size=batch_size, num_workers=loader_workers(images), collect=collect)
            f.flush()
            os.fsync(f.fileno())
            atomic_write_text(str(rows.stop), progress)
    os.replace(partial, file)
    progress.unlink(missing_ok=True)
    return n


# --- reading maps of any storage alike -------------------------------------------------------------

def take(maps, index):
    """The maps of the images ``index`` (a tensor's rows, or a lazy view)."""
    return maps.subset(index) if isinstance(maps, LazyMaps) else maps[index]


def map_rows(maps, *columns) -> Dataset:
    """A Dataset of (maps[i], *columns[i]): ``TensorDataset`` for tensors (as before), the lazy
    set's own rows otherwise (maps read from disk, or images whose maps the device stage computes)."""
    return maps.rows(*columns) if isinstance(maps, LazyMaps) else TensorDataset(maps, *columns)


@torch.no_grad()
def map_apply(fn, maps, *columns, device: str = "cpu", batch_size: int = 256):
    """``fn(maps as float32, *columns)`` over every image: for tensors one call on the whole
    set (as before); for lazy maps batch by batch on ``device``, the outputs (tensors, or tuples
    of tensors) concatenated on the CPU in their own dtypes."""
    if not isinstance(maps, LazyMaps):
        return fn(maps.float(), *columns)
    dev = pick_device(device)
    rows = map_rows(maps, *columns)
    stage = device_stage(rows)
    outs = []
    for batch in torch.utils.data.DataLoader(rows, batch_size=batch_size, shuffle=False,
                                             num_workers=loader_workers(rows)):
        batch = to_device(batch, dev)
        batch = stage(batch) if stage is not None else batch
        y = fn(batch[0].float(), *batch[1:])
        outs.append(tuple(t.cpu() for t in y) if isinstance(y, tuple) else y.cpu())
    if outs and isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)


def pooled_features(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0,
                    device: str = "auto", weights=None, *, trunk: str | None = None) -> dict:
    """{"train": [N, C], "test": [N, C]} globally average-pooled frozen maps (float32), what the
    baselines read. From maps in memory, pooled on each call (as before); from lazy maps, computed
    once and shared.cached (a streamed trunk's pass over a data set is worth keeping: [N, C] is small)."""
    profile = get_profile(profile)
    name = trunk_of(profile, trunk)
    feats = backbone_features(dataset, profile, root, seed, device, weights, trunk=name)
    if feats.get("storage", "memory") == "memory":
        return {"train": pooled(feats["train"]), "test": pooled(feats["test"])}
    ctx = shared.context(dataset, profile, root, seed)
    config = {"stage": "pooled_features", "version": 1, **ctx.key, "backbone": name,
              "image_size": profile.size_for(name), "weights": weights_name(weights, name)}

    def compute(folder: Path) -> dict:
        return {split: pooled(feats[split], device, profile.batch_size * 2) for split in ("train", "test")}

    return ctx.cached("pooled_features", config, compute, code=(pooled_features,))


def pooled(maps, device: str = "cpu", batch_size: int = 256) -> torch.Tensor:
    """Globally average-pooled maps [N, C] (float32), what the baselines' heads read."""
    if not isinstance(maps, LazyMaps):
        return maps.float().mean(dim=(2, 3)) if maps.ndim == 4 else maps.float()
    return map_apply(lambda x: x.mean(dim=(2, 3)), maps, device=device, batch_size=batch_size)


def weights_name(weights, name: str) -> str | None:
    """What a cache key records of the weights a trunk was built with: the checkpoint's file name
    (never a machine path; a file named with --weights and the torch hub cache's copy of the same
    checkpoint give the same key), or None for the small CNN."""
    if name == "small_cnn":
        return None
    path = weights_file(weights, name)
    return Path(path).name if path else WEIGHTS[name].file


OPTIONS = ()


def rows(profile) -> tuple[str, ...]:   # no table row: the frozen features are a stage every paper reads
    return ()


def stages(profile) -> tuple[str, ...]:
    return ("backbone features",)


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, trunk: str | None = None, upto: int | None = None,
        exclude_labels: tuple = (), force: bool = False) -> dict:
    """The shared stage as a run of a grid: "backbone features" (and, through it, the shared backbone)."""
    if row not in stages(profile):
        raise ValueError(f"unknown shared stage {row!r}; choose one of {stages(profile)}")
    return backbone_features(dataset, profile, root, seed, device, weights, trunk=trunk, upto=upto,
                             exclude_labels=tuple(exclude_labels))


# --- the full profile's cost (mlbook plan) ---

def cost(run, ctx):
    """The frozen maps of a trunk: written once to disk, or streamed (priced in the rows that read them)."""
    prof = ctx.profile
    trunk = trunk_of(prof, dict(run.options).get("trunk"))
    storage, size, chw = maps_of(ctx, trunk, run.dataset)
    n = sum(ctx.split(run.dataset))
    t = trunk_net(trunk, size)
    batch = ctx.batch(prof.batch_size * 2, run.dataset)
    loader = loader_bytes(prof.num_workers, batch, image_bytes(size))
    if storage == "stream":
        host, gpu = ctx.peaks(host=4 * t.params, gpu=0.0)
        return RunCost(ctx.chapter, f"{trunk} maps: streamed, computed in every pass of the rows that read them",
                       run.dataset, 0.0, n, 1, 1, host_bytes=host, gpu_bytes=gpu, maps=storage)
    disk = n * 2 * chw[0] * chw[1] * chw[2]
    host, gpu = ctx.peaks(host=2 * 4 * t.params + loader, gpu=4 * t.params + batch * t.activations)
    return RunCost(ctx.chapter, f"{trunk} maps at {size} px: forward once, written to disk", run.dataset, t.flops,
                   n, 1, 1, host_bytes=host, gpu_bytes=gpu, disk_bytes=disk, maps=storage, kept_bytes=disk)
