"""The estimator ``mlbook plan`` prices runs with: one network measured on the meta device, and the
memory, disk and time of one run from the shapes. Each experiments module's ``cost(run, ctx)`` builds
its runs' ``RunCost`` from these; ``mlbook.plan`` groups them into the book's table.

- **FLOPs** of one image (forward, and forward + backward where the network trains; the frozen
  trunk's forward too where its maps are streamed), counted by
  ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (random networks, no memory,
  nothing typed in); times the images, epoch budgets and runs; turned into GPU hours at a
  stated utilisation of the GPU's dense bf16 peak. Epochs are budgets (early stopping can only
  end a run sooner) and data loading is not counted: an upper estimate at that utilisation.
- **Peak GPU memory**, from the shapes: weights, gradients and optimizer state of what trains,
  the frozen trunk's weights, and the activations a batch saves for backward (measured per
  image on the meta device with ``saved_tensors_hooks``, float32: bf16 autocast roughly
  halves them) or, for a forward only, twice the largest layer output.
- **Peak host memory**, from the shapes: the process itself (``PROCESS_GIB``, measured, plus
  ``CUDA_HOST_GIB`` on a GPU), the checked weights file, the host copies ``train.fit`` keeps
  (the best epoch's weights, the checkpoint), labels and outputs of both splits, the data
  loader's prefetched batches, features held in memory (pooled features, KNN's similarity
  chunk). On a CPU (``device="cpu"``, a dry run) the GPU's share is host memory too.
- **Disk**: the frozen maps a trunk writes once (``experiments.features.map_storage`` chooses
  memory, disk or streaming from their size, the same rule the runs use; the plan passes it in
  through ``Context``, this layer sits below the experiments), the checkpoint (weights,
  optimizer, best weights) and the results of every run.
- **Selective search**: CPU hours at the measured rate per image (``SS_SECONDS``), over the
  machine's cores (the cost scales about linearly with them).

A dry run (``--limit-images``, ``--max-steps``) is priced the same way, with the data and steps
it is limited to (``Context``).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from .data import SPLIT_SIZES
from .models.backbones import random_backbone
from .weights import WEIGHTS

#: dense bf16 peak of the GPUs a user is likely to rent (vendor data sheets), FLOP/s
GPU_PEAK = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12}
GIB = 2 ** 30
#: RSS of a chapter's process before any run: python, torch, torchvision, pandas, matplotlib,
#: the kernel (measured on the CPU machine: 0.7 GiB for python + torch + mlbook after one fit)
PROCESS_GIB = 1.0
#: host memory the CUDA context and its libraries (cuBLAS, cuDNN) add to a GPU process (estimate)
CUDA_HOST_GIB = 3.0
#: selective search "fast", seconds per genuine COCO image on one core, measured (data/proposals.py):
#: 1.7-2.0 s at the original size (about 640 x 480), 0.26-0.33 s at a 224 px shorter side; the upper
#: ends are used, and other sizes scale with the pixels searched
SS_SECONDS = {"original": 2.0, 224: 0.33}
#: bytes of optimizer state per trained weight: Adam two moments, SGD with momentum one
OPTIMIZER_STATE = {"adam": 8, "sgd": 4}
PREFETCH = 2   # DataLoader's prefetch_factor: batches each worker keeps ready


@dataclasses.dataclass(frozen=True)
class Machine:
    name: str
    gpu: str            # a key of GPU_PEAK
    gpu_bytes: float
    ram_bytes: float
    disk_bytes: float
    cores: int


#: the machines a plan is checked against: the GPU machine this project lends (H200) and, on the
#: same host (128 GiB RAM, 64 GiB disk, 16 cores), the GPUs a user might rent instead
MACHINES = {
    "h200": Machine("1 x H200 141 GB, 128 GiB RAM, 64 GiB disk, 16 cores", "h200", 141e9, 128 * GIB, 64 * GIB, 16),
    "h100": Machine("1 x H100 80 GB, 128 GiB RAM, 64 GiB disk, 16 cores", "h100", 80e9, 128 * GIB, 64 * GIB, 16),
    "a100": Machine("1 x A100 80 GB, 128 GiB RAM, 64 GiB disk, 16 cores", "a100", 80e9, 128 * GIB, 64 * GIB, 16),
    "l4": Machine("1 x L4 24 GB, 128 GiB RAM, 64 GiB disk, 16 cores", "l4", 24e9, 128 * GIB, 64 * GIB, 16),
}


# --- one network, measured on the meta device ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Net:
    """What a plan needs of one network and input: FLOPs of one image (forward, + backward when
    trained), its weights (all, and those that train), and activation bytes per image."""
    flops: float
    params: int
    trainable: int
    activations: float   # train: tensors saved for backward; eval: twice the largest layer output (fp32)


def count_flops(build, inputs: tuple, train: bool) -> float:
    """FLOPs of one forward (and backward if ``train``) of ``build()`` on meta-device inputs."""
    return measure(build, inputs, train).flops


_measured: dict = {}


def measured(key: tuple, build, inputs: tuple, train: bool, frozen: tuple = ()) -> Net:
    """``measure``, once per ``key`` (the runs of a group share one network)."""
    full_key = (key, inputs, train, frozen)
    if full_key not in _measured:
        _measured[full_key] = measure(build, inputs, train, frozen)
    return _measured[full_key]


def measure(build, inputs: tuple, train: bool, frozen: tuple = ()) -> Net:
    """Count ``build()`` on meta-device ``inputs`` (shapes; a tuple holding ints is a long tensor of
    that shape, for box counts and the like): FLOPs, weights and activation bytes per image.
    ``frozen``: names of submodules that do not train (their weights get no gradient)."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "no ImageNet weights": random weights on purpose
        model = build()
        args = tuple(torch.empty(s, device="meta") for s in inputs)
    for name in frozen:
        part = dict(model.named_modules()).get(name)
        if part is not None:
            part.requires_grad_(False)
    model.train(train)
    saved, outputs = [], []
    weights = {id(p) for p in model.parameters()}

    def pack(t):
        base = t._base if t._base is not None else t
        if id(base) not in weights:               # weights (and their transposed views) are counted as weights
            saved.append(t.numel() * t.element_size())
        return t

    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(
        o.numel() * o.element_size() if torch.is_tensor(o) else 0)) for m in model.modules()]
    with FlopCounterMode(display=False) as counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.set_grad_enabled(train):
            out = model(*args)
        if train:
            (out if torch.is_tensor(out) else out["logits"]).sum().backward()
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    batch = inputs[0][0] if inputs and inputs[0] else 1
    act = sum(saved) if train else 2 * max(outputs, default=0)
    return Net(float(counter.get_total_flops()) / batch, params, trainable, act / batch)


@functools.lru_cache(maxsize=None)
def trunk_net(name: str, size: int, train: bool = False) -> Net:
    """A torchvision trunk (``backbones.random_backbone``) on one ``size`` px image."""
    return measure(lambda: random_backbone(name), ((1, 3, size, size),), train)


@functools.lru_cache(maxsize=None)
def weights_file_bytes(name: str) -> int:
    """Bytes of the float32 ImageNet state dict of the whole network ``name``: what a run that starts
    layers from its weights (RLSD's fc6/fc7, the ranking head's) loads and checks."""
    with torch.device("meta"):
        net = WEIGHTS[name].builder(weights=None)
    return 4 * sum(v.numel() for v in net.state_dict().values())

# --- the cost of one run ----------------------------------------------------------------------------

@dataclasses.dataclass
class RunCost:
    """One run (or stage) of a grid: its FLOPs and its peaks. ``flops_per_image`` is one training
    pass of one image (forward + backward of what trains, the streamed trunk's forward);
    ``extra_flops`` the run's other passes (hold-out, test, decoding), once per run."""
    chapter: str
    run: str
    dataset: str
    flops_per_image: float
    images: int
    epochs: int
    runs: int                # runs of the group (rows x training seeds)
    extra_flops: float = 0.0
    host_bytes: float = 0.0
    gpu_bytes: float = 0.0
    disk_bytes: float = 0.0  # peak disk of one run: the maps it reads, its checkpoint, its result
    ss_core_seconds: float = 0.0
    maps: str = ""           # where the frozen maps it reads are: memory, disk, stream, "" (images)
    rows: tuple = ()         # the grid rows in the group
    kept_bytes: float = 0.0  # what stays on disk after one run: its result (maps it wrote; the checkpoint is removed)
    pooled_trunk: str = ""   # the trunk whose pooled features it reads (priced once by ``pooled_cost``)

    @property
    def flops(self) -> float:
        return (self.flops_per_image * self.images * self.epochs + self.extra_flops) * self.runs


@dataclasses.dataclass(frozen=True)
class Context:
    """What every run of a plan shares: the profile (a dry run's limits included), the rules the runs
    follow to keep and shape a trunk's frozen maps (``experiments.features.map_storage(trunk, dataset,
    profile)`` and ``map_shape(trunk, size)``, passed in), the device kind ("cuda" or "cpu": on a CPU
    the GPU's share is host memory) and the chapter whose grid the run is priced in (its number,
    "04": the shared stages' groups print it)."""
    profile: object
    map_storage: Callable[[str, str, object], str]
    map_shape: Callable[[str, int], tuple[int, int, int]]
    device: str = "cuda"
    chapter: str = ""

    def split(self, dataset: str) -> tuple[int, int]:
        """(train, test) images a run sees: the real data set's, or a dry run's limit."""
        n_train, n_test = SPLIT_SIZES[dataset]
        p = self.profile
        return (min(n_train, p.max_train or n_train), min(n_test, p.max_test or n_test))

    def epochs(self, budget: int, n_fit: int, batch: int) -> int:
        """Epochs a run trains: the budget, or fewer under a dry run's step cap."""
        if self.profile.max_steps is None:
            return budget
        return max(1, min(budget, math.ceil(self.profile.max_steps / max(1, math.ceil(n_fit / batch)))))

    def train_images(self, dataset: str, budget: int, batch: int) -> tuple[int, int]:
        """(images per epoch, epochs) of a training run on the fit part of the training set."""
        n_fit = self.split(dataset)[0] - max(1, round(self.split(dataset)[0] * self.profile.holdout))
        epochs = self.epochs(budget, n_fit, batch)
        if self.profile.max_steps is not None:
            n_fit = min(n_fit, math.ceil(self.profile.max_steps * batch / epochs))
        return n_fit, epochs

    def batch(self, size: int, dataset: str) -> int:
        """A batch as large as the data allow (a dry run's few images make smaller ones)."""
        return max(1, min(size, max(self.split(dataset))))

    def base_host(self) -> float:
        return (PROCESS_GIB + (CUDA_HOST_GIB if self.device != "cpu" else 0.0)) * GIB

    def peaks(self, *, host: float, gpu: float) -> tuple[float, float]:
        """(host, GPU) bytes: on a CPU the device's share lives in host memory."""
        if self.device == "cpu":
            return self.base_host() + host + gpu, 0.0
        return self.base_host() + host, gpu


def training_memory(net: Net, batch: int, optimizer: str) -> tuple[float, float]:
    """(host, GPU) bytes of training ``net``: on the device its weights, the gradients and optimizer
    state of what trains and a batch's saved activations; on the host the copies ``train.fit``
    keeps (the best epoch's weights, the checkpoint: weights + optimizer state + best weights)."""
    state = OPTIMIZER_STATE[optimizer] * net.trainable
    gpu = 4 * net.params + 4 * net.trainable + state + batch * net.activations
    host = 4 * net.params * 3 + state
    return host, gpu


def checkpoint_bytes(net: Net, optimizer: str) -> float:
    """``train.fit``'s checkpoint: the weights, the optimizer state and the best epoch's weights."""
    return 4 * net.params * 2 + OPTIMIZER_STATE[optimizer] * net.trainable


def row_disk(reads: dict, net: Net, optimizer: str, result: float) -> tuple[float, float]:
    """(peak, kept) disk of a training run: the disk maps it reads, its checkpoint while it trains
    (removed once the result is written, ``experiments.shared.cached``), and its result."""
    return reads.get("disk", 0.0) + checkpoint_bytes(net, optimizer) + result, result


def loader_bytes(workers: int, batch: int, item_bytes: float) -> float:
    """Batches the data loader keeps ready (and the one in use)."""
    return (max(workers, 1) * PREFETCH + 1) * batch * item_bytes


def image_bytes(size: int) -> int:
    return 3 * size * size * 4


def maps_of(ctx: Context, trunk: str, dataset: str) -> tuple[str, int, tuple]:
    """(storage, input side, map shape (C, h, w)) of ``trunk``'s frozen maps on ``dataset``."""
    size = ctx.profile.size_for(trunk)
    return ctx.map_storage(trunk, dataset, ctx.profile), size, ctx.map_shape(trunk, size)


def map_input(ctx: Context, trunk: str, dataset: str, batch: int) -> dict:
    """What reading the frozen maps costs a run, per its storage: the trunk's forward per image
    when streamed (FLOPs, its weights and activations on the device, image batches in the loader),
    a map batch read from disk otherwise."""
    storage, size, chw = maps_of(ctx, trunk, dataset)
    item = 2 * chw[0] * chw[1] * chw[2]
    workers = ctx.profile.num_workers
    if storage == "stream":
        t = trunk_net(trunk, size)
        return {"storage": storage, "flops": t.flops, "gpu": 4 * t.params + batch * t.activations,
                "host": loader_bytes(workers, batch, image_bytes(size)) + 4 * t.params, "chw": chw}
    disk = sum(ctx.split(dataset)) * item if storage == "disk" else 0.0
    return {"storage": storage, "flops": 0.0, "gpu": 0.0, "host": loader_bytes(0, batch, item), "chw": chw,
            "disk": disk}


def outputs_bytes(n: int, classes: int, arrays: int = 4) -> float:
    """Labels, ignore masks and a run's outputs ([N, C] float32 each)."""
    return n * classes * 4 * arrays



def maps_label(trunk: str, storage: str) -> str:
    """How a run's group names the frozen maps it reads."""
    return f"frozen {trunk} maps ({storage})"


def pooled_cost(ctx: Context, trunk: str, dataset: str) -> RunCost:
    """The pooled features [N, C] the baselines read, computed once per trunk and data set."""
    reads = map_input(ctx, trunk, dataset, ctx.batch(ctx.profile.batch_size * 2, dataset))
    n = sum(ctx.split(dataset))
    pooled = n * reads["chw"][0] * 4
    host, gpu = ctx.peaks(host=reads["host"] + 2 * pooled, gpu=reads["gpu"])
    return RunCost(ctx.chapter, f"pooled {trunk} features ({reads['storage']} maps), once", dataset, reads["flops"], n,
                   1, 1, host_bytes=host, gpu_bytes=gpu, disk_bytes=pooled + reads.get("disk", 0.0),
                   maps=reads["storage"], kept_bytes=pooled)


def ss_seconds(size: int | None) -> float:
    """Selective search "fast" seconds per image on one core at a shorter side of ``size`` px
    (None: the original size), scaled by the pixels searched from the measured 224 px rate."""
    if size is None:
        return SS_SECONDS["original"]
    return min(SS_SECONDS["original"], SS_SECONDS[224] * (size / 224) ** 2)
