"""What every paper's experiments share (DESIGN.md, "Experiments and caching").

- ``splits``: the train/test MultiLabelData of a data set (generated on first use);
  ``data_key`` names that data in a cache key, ``data_fingerprint`` says what the images
  and labels actually were (a result made from other data is recomputed).
- ``image_set``: a torch Dataset of (image, labels, ignore) for a split.
- ``holdout_split``: the tenth of the training set held out for early stopping and for
  every choice a method makes (thresholds, KNN's k, margins); depends on the data seed only.
- ``shared_backbone``: the demo's stand-in for ImageNet pretraining, a SmallCNN trained
  once per data set from scratch with BCE **on the fit part only** (the hold-out tenth is
  never seen, so choices made there are not made on features fitted to it); the full
  profile loads the ImageNet trunk the paper names instead.
- ``backbone_features``: frozen conv maps of every image, cached.
- ``cached``: ``mlbook.cache.run`` with the computation pinned (``pinned``): a fixed
  number of CPU threads and deterministic algorithms, so a result does not depend on the
  machine's core count or on which process computed it.
- ``Run`` / ``Setting`` / ``run_all``: the grid of a chapter (every row, data set and
  training seed it needs, from each paper's ``grid``) and the one way to compute it, one
  process per worker, waves in order.

``seed`` is always the *data* seed (which generated data set, which backbone); training
seeds of the methods are ``train_seed``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .. import cache
from ..data import ImageDataset, image_tensor_cache, load_splits
from ..data import transforms as T
from ..data.synthetic import GENERATOR_VERSION
from ..metrics import mean_average_precision
from ..models import backbones
from ..profiles import Profile, get_profile, pick_device
from ..train import fit, predict, seed_everything

PAPERS = ("shared", "baselines", "order_free_rnn", "cadm", "rlsd", "transformation_ranking")


# --- data ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class Splits:
    train: "object"   # MultiLabelData
    test: "object"


def splits(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0) -> Splits:
    profile = get_profile(profile)
    train, test = load_splits(dataset, profile, root=root, seed=seed)
    if profile.max_train is not None and len(train) > profile.max_train:
        train = train.subset(list(range(profile.max_train)))
    if profile.max_test is not None and len(test) > profile.max_test:
        test = test.subset(list(range(profile.max_test)))
    return Splits(train, test)


def data_key(dataset: str, profile: Profile, root: str | None, seed: int) -> dict:
    """The part of a config that names the data an experiment saw (no machine path)."""
    key = {"dataset": dataset, "real": bool(root), "max_train": profile.max_train}
    if profile.max_test is not None:
        key["max_test"] = profile.max_test
    if not root:  # generated data: the generator's version, sizes and seed define it
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


def ignore_mask(split) -> torch.Tensor:
    """The split's ignore mask (VOC difficult), all False where the format has none."""
    return split.ignore if split.ignore is not None else torch.zeros_like(split.labels, dtype=torch.bool)


def as_input(images: torch.Tensor, train: bool) -> torch.Tensor:
    """uint8 image batches (in-memory path) -> normalised float, flipped at random in training.

    Float batches come from the on-disk path, whose transforms already did this.
    """
    if images.dtype != torch.uint8:
        return images
    if train:
        images = T.random_hflip(images)
    return T.normalize_uint8(images)


def image_set(data, profile: Profile, train: bool) -> Dataset:
    if profile.in_memory:
        return TensorDataset(image_tensor_cache(data, profile.image_size), data.labels, ignore_mask(data))
    return ImageDataset(data, T.image_transform(profile.image_size, train))


def holdout_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, hold-out indices) of the training set; depends on the data seed only,
    so every method, training seed and the shared backbone hold out the same images."""
    g = torch.Generator().manual_seed(seed + 7919)
    perm = torch.randperm(n, generator=g)
    n_val = max(1, int(round(n * fraction)))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


# --- pinned computation and the cache ------------------------------------------------------------

@contextlib.contextmanager
def pinned(profile: Profile):
    """Compute with the profile's fixed CPU thread count (demo and smoke: 1) and deterministic
    algorithms, then restore. A float reduction split over another number of threads adds in
    another order, so results would depend on the machine's cores and on which process
    computed a shared prerequisite; pinned, they do not."""
    old_threads = torch.get_num_threads()
    old_det, old_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if profile.threads is not None:
        torch.set_num_threads(profile.threads)
    # on CUDA some kernels have no deterministic version: warn instead of failing (DESIGN.md, "Determinism")
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def cached(method: str, config: dict, compute, profile: Profile, *, code, data, force: bool = False) -> dict:
    """``cache.run`` with ``compute`` pinned (``pinned``) and every random generator (torch, numpy,
    random) seeded from the config first, so that nothing a computation draws without its own seed
    depends on what the process computed before it."""
    def pinned_compute(folder: Path) -> dict:
        seed_everything(int(cache.config_hash(config)[:8], 16))
        with pinned(profile):
            return compute(folder)
    return cache.run(method, config, pinned_compute, code=code, data=data, force=force)


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
    logits = model(as_input(images, train=model.training))
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

    data = splits(dataset, profile, root, seed)
    exclude = tuple(sorted(int(c) for c in exclude_labels))
    config = {"stage": "shared_backbone", "version": 2, **data_key(dataset, profile, root, seed),
              "image_size": profile.image_size, "epochs": profile.backbone_epochs,
              "batch_size": profile.batch_size, "train_seed": seed, "holdout": profile.holdout}
    if exclude:
        config["exclude_labels"] = list(exclude)

    def compute(folder: Path) -> dict:
        torch.manual_seed(seed)
        model = backbones.GlobalPoolClassifier(backbones.SmallCNN(), data.train.num_classes, pool="avg")
        keep = torch.ones(data.train.num_classes, dtype=torch.bool)
        keep[list(exclude)] = False
        fit_idx, _ = holdout_split(len(data.train), profile.holdout, seed)
        epochs = profile.backbone_epochs
        history = fit(
            model, Subset(image_set(data.train, profile, train=True), fit_idx.tolist()),
            lambda m, b: bce_loss(m, b, keep if exclude else None),
            epochs=epochs, batch_size=profile.batch_size, device=device, seed=seed,
            make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=2e-3, weight_decay=1e-4),
            make_scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1)),
            checkpoint=folder / "checkpoint.pt", desc=f"backbone {dataset}", progress=False,
        )
        scores = predict(lambda b: model(as_input(b[0], train=False)),
                         image_set(data.test, profile, train=False), device=device)
        seen = keep.nonzero().flatten()
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "history": history, "test_scores": scores, "trained_images": len(fit_idx),
                "test_mAP": float(mean_average_precision(scores[:, seen], data.test.labels[:, seen],
                                                         None if data.test.ignore is None else data.test.ignore[:, seen]))}

    result = cached("shared_backbone", config, compute, profile, code=(shared_backbone,),
                    data=data_fingerprint(data), force=force)
    model = backbones.GlobalPoolClassifier(backbones.SmallCNN(), data.train.num_classes, pool="avg")
    model.load_state_dict(result["state_dict"])
    return model.backbone.eval(), result


def backbone_features(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0,
                      device: str = "auto", weights=None, *, trunk: str | None = None, upto: int | None = None,
                      exclude_labels: tuple[int, ...] = ()) -> dict:
    """Frozen conv maps of the row's trunk: {"train": [N, D, h, w], "test": ...} (float16).

    ``upto``: stop after that many conv blocks of the SmallCNN (None = all), for fine-tuning
    only the blocks above; then also ``"train_flipped"`` (the maps of the mirrored training
    images), so training keeps its random horizontal flips.
    """
    profile = get_profile(profile)
    name = trunk_of(profile, trunk)
    data = splits(dataset, profile, root, seed)
    exclude = tuple(sorted(int(c) for c in exclude_labels))
    config = {"stage": "backbone_features", "version": 3, **data_key(dataset, profile, root, seed),
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
        images = {"train": image_set(data.train, profile, train=False),
                  "test": image_set(data.test, profile, train=False)}
        out = {}
        for split, dataset_ in images.items():
            out[split] = predict(lambda b: net(as_input(b[0], train=False)).half(), dataset_, device=dev,
                                 batch_size=profile.batch_size * 2).half()
        if upto is not None:
            out["train_flipped"] = predict(lambda b: net(as_input(b[0], train=False).flip(-1)).half(),
                                           images["train"], device=dev, batch_size=profile.batch_size * 2).half()
        for split, maps in out.items():
            if not bool(torch.isfinite(maps).all()):
                raise FloatingPointError(f"backbone_features: the {name} maps of the {dataset} {split} "
                                         "images are not finite in float16 (wrong or missing weights?)")
        return out

    return cached("backbone_features", config, compute, profile, code=(backbone_features,),
                  data=data_fingerprint(data))


def weights_name(weights, name: str) -> str | None:
    """What a cache key records of the weights a trunk was built with: the checkpoint's file name
    (never a machine path; a file named with --weights and the torch hub cache's copy of the same
    checkpoint give the same key), or None for the small CNN."""
    if name == "small_cnn":
        return None
    path = backbones.weights_file(weights, name)
    return Path(path).name if path else backbones.WEIGHTS[name].file


# --- the grid of a chapter and the one way to compute it -----------------------------------------

@dataclasses.dataclass(frozen=True)
class Run:
    """One cached experiment of a chapter: a row of a paper's table (or a stage several rows
    share) on one data set with one training seed. ``options``: further keyword arguments of
    the paper's ``run`` as (name, value) pairs (a baseline's trunk). ``wave``: runs of a later
    wave start from results of an earlier one (RLSD's region rows from its CNN+LSTM), so
    waves run in order."""
    paper: str
    row: str
    dataset: str
    train_seed: int = 0
    options: tuple = ()
    wave: int = 0

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.dataset, self.row, self.train_seed)


@dataclasses.dataclass
class Setting:
    """What every run of a chapter shares: profile, data roots, data seed, device, weights
    ({trunk name: file}) and the paper-specific options a chapter passes (``vg_root``,
    ``word_vectors``); each paper's ``run`` takes the options it names in its ``OPTIONS``."""
    profile: Profile
    roots: dict
    seed: int = 0
    device: str = "auto"
    weights: dict | None = None
    options: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.profile = get_profile(self.profile)


ROWS = ()
STAGES = ("backbone features",)
OPTIONS = ()


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, trunk: str | None = None, upto: int | None = None,
        exclude_labels: tuple = (), force: bool = False) -> dict:
    """The shared stage as a run of a grid: "backbone features" (and, through it, the shared backbone)."""
    if row not in STAGES:
        raise ValueError(f"unknown shared stage {row!r}; choose one of {STAGES}")
    return backbone_features(dataset, profile, root, seed, device, weights, trunk=trunk, upto=upto,
                             exclude_labels=tuple(exclude_labels))


def feature_runs(datasets, **options) -> list[Run]:
    """Wave -1 of a grid: the frozen features (and backbones) the rows read, computed once each
    before the rows start, so parallel workers do not compute the same backbone twice."""
    opts = tuple(sorted((k, v) for k, v in options.items() if v not in (None, ())))
    return [Run("shared", "backbone features", d, options=opts, wave=-1) for d in datasets]


def paper_module(paper: str):
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; choose one of {', '.join(PAPERS)}")
    return sys.modules[__name__] if paper == "shared" else importlib.import_module(f"mlbook.experiments.{paper}")


def call(run: Run, setting: Setting, force: bool = False) -> dict:
    """Compute or load one run through its paper's ``run``."""
    module = paper_module(run.paper)
    options = {k: v for k, v in setting.options.items() if k in getattr(module, "OPTIONS", ())}
    options.update(run.options)
    return module.run(run.row, run.dataset, setting.profile, root=setting.roots.get(run.dataset),
                      seed=setting.seed, train_seed=run.train_seed, device=setting.device,
                      weights=setting.weights, force=force, **options)


def _call_quietly(run: Run, setting: Setting) -> bool:
    """One run in a worker process, its output discarded (the parent reports)."""
    sys.stdout = sys.stderr = io.StringIO()
    call(run, setting)
    return True


def workers(default: int | None = None) -> int:
    """Worker processes for ``run_all``: ``MLBOOK_WORKERS`` if set, else one per core. The
    numbers do not depend on it (every computation is pinned), only the wall time does."""
    env = os.environ.get("MLBOOK_WORKERS", "")
    return max(1, int(env) if env else (default or os.cpu_count() or 1))


def run_all(runs: list[Run], setting: Setting, n_workers: int | None = None) -> dict:
    """Compute every run of a grid that is not cached yet, then load them all: {run.key: result}.

    Waves run in order. On a CPU the runs still to compute go to ``workers()`` forked
    processes (one core each: small models train faster side by side than one after the
    other on shared threads); on a GPU, or with one worker, they run here one after the other.
    Either way each computation is pinned to the same thread count, so the numbers are identical.
    """
    n = n_workers or workers()
    results: dict = {}
    for wave in sorted({r.wave for r in runs}):
        batch = [r for r in runs if r.wave == wave]
        todo = [r for r in batch if cache.would_compute(call, r, setting)]
        if n > 1 and len(todo) > 1 and pick_device(setting.device) == "cpu":
            with ProcessPoolExecutor(max_workers=min(n, len(todo)),
                                     mp_context=multiprocessing.get_context("fork")) as pool:
                for future in [pool.submit(_call_quietly, r, setting) for r in todo]:
                    future.result()   # re-raises a worker's error here
        for r in batch:
            results.setdefault(r.key, call(r, setting))
    return results
