"""What every paper's experiments share (DESIGN.md, "Experiments and caching").

- ``splits``: the train/test MultiLabelData of a data set (generated on first use);
  ``data_key`` names that data in a cache key, ``data_fingerprint`` says what the images
  and labels actually were (a result made from other data is recomputed).
- ``image_set``: a torch Dataset of (image, labels, ignore) for a split.
- ``holdout_split``: the tenth of the training set held out for early stopping and for
  every choice a method makes (thresholds, KNN's k, margins); depends on the data seed only.
- the shared backbone and its frozen maps live in ``features.py``.
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
import contextvars
import dataclasses
import functools
import hashlib
import io
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch.utils.data import Dataset, TensorDataset

from .. import cache, numerics
from ..papers import experiment_module
from ..data import ImageDataset, image_tensor_cache, load_splits
from ..data import transforms
from ..data.synthetic import GENERATOR_VERSION
from ..profiles import Profile, get_profile, pick_device
from ..train import seed_everything, step_limit

# --- data ----------------------------------------------------------------------------------------

@dataclasses.dataclass
class Splits:
    train: "object"   # MultiLabelData
    test: "object"


def splits(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0) -> Splits:
    """The train/test data of a data set, read once per process (every run of a grid asks for it)."""
    return _splits(dataset, get_profile(profile), root, seed)


@functools.lru_cache(maxsize=16)
def _splits(dataset: str, profile: Profile, root: str | None, seed: int) -> Splits:
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
    if profile.max_steps is not None:   # a dry run's results are never mistaken for a real run's
        key["max_steps"] = profile.max_steps
    if not root:  # generated data: the generator's version, sizes and seed define it
        key.update(profile=profile.name, gen=[profile.gen_train, profile.gen_test, profile.gen_classes,
                                              profile.gen_image_size], seed=seed, generator=GENERATOR_VERSION)
    return key


_fingerprints: dict[int, tuple[Splits, str]] = {}   # id -> (the data, kept alive; its fingerprint)


def _file_size(path) -> int:
    """The size of an image file in bytes; -1 where it is not on disk (a root that holds only lists)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def data_fingerprint(data: Splits) -> str:
    """sha256 of what a model sees: image file names and sizes (a changed or truncated image is other
    data; the generated files are byte-identical run to run), labels, ignore masks and boxes of both
    splits (computed once per Splits object: ``splits`` hands every run the same one)."""
    known = _fingerprints.get(id(data))
    if known is not None and known[0] is data:
        return known[1]
    h = hashlib.sha256()
    for split in (data.train, data.test):
        h.update("|".join(Path(p).name for p in split.image_paths).encode())
        h.update("|".join(str(_file_size(p)) for p in split.image_paths).encode())
        h.update(split.labels.numpy().tobytes())
        if split.ignore is not None:
            h.update(split.ignore.numpy().tobytes())
        if split.boxes is not None:
            h.update(repr([[(b.x, b.y, b.w, b.h, b.label) for b in bs] for bs in split.boxes]).encode())
    _fingerprints[id(data)] = (data, h.hexdigest()[:16])
    return _fingerprints[id(data)][1]


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What every run on one data set shares, computed once per (data set, profile, root, data seed)
    and passed down (``context``): the data (``data``: its train/test Splits), the part of a cache key
    that names it (``key``), what the images and labels were (``fingerprint``) and the hold-out tenth
    of the training set (``holdout``: fit and hold-out indices). ``cached`` stores a run under it."""
    dataset: str
    profile: Profile
    root: str | None = None
    seed: int = 0
    backbone_seed: int | None = None    # the demo backbone's training seed where not the data seed's

    @functools.cached_property
    def data(self) -> Splits:
        return _splits(self.dataset, self.profile, self.root, self.seed)

    @functools.cached_property
    def key(self) -> dict:
        key = data_key(self.dataset, self.profile, self.root, self.seed)
        # a run above another backbone is another run: every key under this context names it
        return key if self.backbone_seed is None else {**key, "backbone_seed": self.backbone_seed}

    @functools.cached_property
    def fingerprint(self) -> str:
        return data_fingerprint(self.data)

    @functools.cached_property
    def holdout(self) -> tuple[torch.Tensor, torch.Tensor]:
        return holdout_split(len(self.data.train), self.profile.holdout, self.seed)

    def cached(self, method: str, config: dict, compute, *, code, force: bool = False, **data) -> dict:
        """``cached`` with this data's fingerprint (and any further ones, e.g. ``vg=...``)."""
        fingerprint = {"data": self.fingerprint, **data} if data else self.fingerprint
        return cached(method, config, compute, self.profile, code=code, data=fingerprint, force=force)


    @classmethod
    def over(cls, data: Splits, dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0,
             fingerprint: str | None = None) -> "RunContext":
        """A context over data already in hand (a test's stand-in data, a subset): its fingerprint is
        ``fingerprint`` or computed from ``data``."""
        ctx = cls(dataset, get_profile(profile), root, seed)
        ctx.__dict__.update(data=data, fingerprint=fingerprint or data_fingerprint(data))
        return ctx


_BACKBONE_SEED: contextvars.ContextVar[int | None] = contextvars.ContextVar("backbone_seed", default=None)


@contextlib.contextmanager
def backbone_seed(seed: int | None):
    """Within it, every run reads the demo backbone (``features.shared_backbone``) trained with
    ``seed``, and every cache key under ``context`` names that seed: chapter 08's training seeds
    vary the whole network, backbone included, through every paper's own code unchanged. None (or
    the data seed) is the shared backbone every chapter reads."""
    token = _BACKBONE_SEED.set(seed)
    try:
        yield
    finally:
        _BACKBONE_SEED.reset(token)


def context(dataset: str, profile: Profile | str, root: str | None = None, seed: int = 0) -> RunContext:
    """The run context of a data set, one object per process and (data set, profile, root, seed,
    the backbone seed in force: ``backbone_seed``)."""
    b = _BACKBONE_SEED.get()
    return _context(dataset, get_profile(profile), root, seed, None if b == seed else b)


@functools.lru_cache(maxsize=32)
def _context(dataset: str, profile: Profile, root: str | None, seed: int, backbone: int | None) -> RunContext:
    return RunContext(dataset, profile, root, seed, backbone)


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
        images = transforms.random_hflip(images)
    return transforms.normalize_uint8(images)


def image_set(data, profile: Profile, train: bool, size: int | None = None) -> Dataset:
    """(image, labels, ignore) of a split at ``size`` px (default the profile's): decoded once into
    memory (demo, smoke) or read from disk per item with ``profile.num_workers`` loader workers."""
    size = size or profile.image_size
    if profile.in_memory:
        return TensorDataset(image_tensor_cache(data, size), data.labels, ignore_mask(data))
    images = ImageDataset(data, transforms.image_transform(size, train))
    images.loader_workers = profile.num_workers   # read by train.fit / predict (train.loader_workers)
    return images


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
    computed a shared prerequisite; pinned, they do not. In a portable profile (demo, smoke) with the
    portable mode on (the default, ``mlbook.numerics``) oneDNN and NNPACK are off too: the same
    bits on any x86-64 CPU."""
    old_threads = torch.get_num_threads()
    old_det, old_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    if profile.threads is not None:
        torch.set_num_threads(profile.threads)
    # on CUDA some kernels have no deterministic version: warn instead of failing (DESIGN.md, "Determinism")
    torch.use_deterministic_algorithms(True, warn_only=torch.cuda.is_available())
    backends = numerics.apply_portable_backends() if numerics_mode(profile) == "portable" else None
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        if backends is not None:
            numerics.restore_backends(backends)


def numerics_mode(profile: Profile) -> str:
    """"portable" where the profile asks for portable numerics and the mode is on (and in force: set
    before numpy and torch loaded), else "native"; part of every cached result's fingerprint, so a
    result of one mode is never read as the other's."""
    portable = profile.portable and numerics.portable_enabled() and numerics.environment_in_force()
    return "portable" if portable else "native"


def cached(method: str, config: dict, compute, profile: Profile, *, code, data, force: bool = False) -> dict:
    """``cache.run`` with ``compute`` pinned (``pinned``) and every random generator (torch, numpy,
    random) seeded from the config first, so that nothing a computation draws without its own seed
    depends on what the process computed before it. A dry run's step cap (``Profile.max_steps``)
    holds for every ``train.fit`` inside. In the full profile a finished run's checkpoints are
    removed (they only serve to resume an interrupted run; hundreds of them would fill the disk)."""
    def pinned_compute(folder: Path) -> dict:
        seed_everything(int(cache.config_hash(config)[:8], 16))
        with pinned(profile), step_limit(profile.max_steps):   # a dry run caps every fit inside
            result = compute(folder)
        if not profile.in_memory:   # full profile: a finished run's checkpoint (weights + optimizer) only
            for ckpt in folder.glob("checkpoint*.pt"):   # took disk; the result is written next
                ckpt.unlink()
        return result
    return cache.run(method, config, pinned_compute, code=code, data=data, numerics=numerics_mode(profile),
                     force=force)


# --- what a chapter's claims read ----------------------------------------------------------------

@dataclasses.dataclass
class Evidence:
    """What a chapter's claims are measured on, the same for every paper: its grid's results
    ({(data set, row, training seed): result}), the data of each data set ({data set: Splits}),
    the training seeds, and the rows trained on each data set (a claim whose rows were not
    trained there is not testable). Every paper's ``claim_values(claim, evidence, weights)``
    and ``claim_options(claim, evidence)`` read it."""
    results: dict
    data: dict
    seeds: tuple
    trained: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.seeds = tuple(self.seeds)
        if not self.trained:
            trained: dict = {}
            for dataset, row, _ in self.results:
                trained.setdefault(dataset, set()).add(row)
            self.trained = trained


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


def feature_runs(datasets, **options) -> list[Run]:
    """Wave -1 of a grid: the frozen features (and backbones) the rows read, computed once each
    before the rows start, so parallel workers do not compute the same backbone twice."""
    opts = tuple(sorted((k, v) for k, v in options.items() if v not in (None, ())))
    return [Run("features", "backbone features", d, options=opts, wave=-1) for d in datasets]


def call(run: Run, setting: Setting, force: bool = False) -> dict:
    """Compute or load one run through its paper's ``run``."""
    module = experiment_module(run.paper)
    options = {k: v for k, v in setting.options.items() if k in getattr(module, "OPTIONS", ())}
    options.update(run.options)
    return module.run(run.row, run.dataset, setting.profile, root=setting.roots.get(run.dataset),
                      seed=setting.seed, train_seed=run.train_seed, device=setting.device,
                      weights=setting.weights, force=force, **options)


def _call_quietly(run: Run, setting: Setting) -> bool:
    """One run in a worker process, its output discarded (the parent reports). One CPU thread from
    the start: a forked child inherits the parent's OpenMP team size but not its threads, and the
    first parallel op before ``pinned`` would wait for them forever."""
    torch.set_num_threads(1)
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
    with cache.quiet():
        return _run_all(runs, setting, n_workers or workers())


def _run_all(runs: list[Run], setting: Setting, n: int) -> dict:
    results: dict = {}
    for wave in sorted({r.wave for r in runs}):
        batch = [r for r in runs if r.wave == wave]
        probed = {}
        for r in batch:   # stored runs are loaded here; the rest go to the workers
            computes, value = cache.probe_through(call, r, setting)
            if not computes:
                probed[r.key] = value
        todo = [r for r in batch if r.key not in probed]
        if n > 1 and len(todo) > 1 and pick_device(setting.device) == "cpu":
            with ProcessPoolExecutor(max_workers=min(n, len(todo)),
                                     mp_context=multiprocessing.get_context("fork")) as pool:
                for future in [pool.submit(_call_quietly, r, setting) for r in todo]:
                    future.result()   # re-raises a worker's error here
        for r in batch:
            results.setdefault(r.key, probed[r.key] if r.key in probed else call(r, setting))
    return results
