"""`python -m mlbook plan --profile full [--machine h200]`: what the full book costs, before renting a GPU.

The plan reads the grids the chapters compute (``X.grid(profile, datasets, seeds)`` of every
paper module, the same ones ``train`` and the chapters read) and prices every run of them,
grouped by what it trains, on which data set:

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
  memory, disk or streaming from their size, the same rule the runs use), the checkpoint
  (weights, optimizer, best weights) and the results of every run.
- **Selective search** (RLSD's SS-CNN+LSTM): CPU hours at the measured rate per image
  (``SS_SECONDS``), over the machine's cores (the cost scales about linearly with them).

``fits`` refuses a plan in which a run would not fit a named machine (``MACHINES``): one line
per offending run group. A dry run (``--limit-images``, ``--max-steps``) is planned the same
way, with the data and steps it is limited to.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

#: dense bf16 peak of the GPUs a user is likely to rent (vendor data sheets), FLOP/s
GPU_PEAK = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12}
#: images per split of the real data sets as the loaders read them (after dropping unlabelled ones)
SPLITS = {"coco": (82081, 40137), "nuswide": (125449, 83898), "voc": (5011, 4952)}
CLASSES = {"coco": 80, "nuswide": 81, "voc": 20}
#: the data sets each paper chapter runs (its tables), and the paper module that runs it
CHAPTERS = {"04_order_free_rnn": ("order_free_rnn", ("nuswide", "coco")),
            "05_cadm": ("cadm", ("coco", "nuswide")),
            "06_rlsd": ("rlsd", ("voc", "coco", "nuswide")),
            "07_transformation_ranking": ("transformation_ranking", ("nuswide",))}
GIB = 2 ** 30
#: RSS of a chapter's process before any run: python, torch, torchvision, pandas, matplotlib,
#: the kernel (measured on the CPU machine: 0.7 GiB for python + torch + mlbook after one fit)
PROCESS_GIB = 1.0
#: host memory the CUDA context and its libraries (cuBLAS, cuDNN) add to a GPU process (estimate)
CUDA_HOST_GIB = 3.0
#: selective search "fast", seconds per genuine COCO image on one core, measured (models/proposals.py):
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


_MEASURED: dict = {}


def measured(key: tuple, build, inputs: tuple, train: bool, frozen: tuple = ()) -> Net:
    """``measure``, once per ``key`` (the runs of a group share one network)."""
    full_key = (key, inputs, train, frozen)
    if full_key not in _MEASURED:
        _MEASURED[full_key] = measure(build, inputs, train, frozen)
    return _MEASURED[full_key]


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
    from .models.backbones import random_backbone

    return measure(lambda: random_backbone(name), ((1, 3, size, size),), train)


@functools.lru_cache(maxsize=None)
def weights_file_bytes(name: str) -> int:
    """Bytes of the float32 ImageNet state dict of the whole network ``name``: what a run that starts
    layers from its weights (RLSD's fc6/fc7, the ranking head's) loads and checks."""
    from .models.backbones import WEIGHTS

    with torch.device("meta"):
        net = WEIGHTS[name].builder(weights=None)
    return 4 * sum(v.numel() for v in net.state_dict().values())


def map_shape(name: str, size: int) -> tuple[int, int, int]:
    from .experiments.features import map_shape as shape

    return shape(name, size)


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

    @property
    def flops(self) -> float:
        return (self.flops_per_image * self.images * self.epochs + self.extra_flops) * self.runs


@dataclasses.dataclass(frozen=True)
class Context:
    """What every run of a plan shares: the profile (a dry run's limits included), the device
    kind ("cuda" or "cpu": on a CPU the GPU's share is host memory) and the training seeds."""
    profile: object
    device: str = "cuda"

    def split(self, dataset: str) -> tuple[int, int]:
        """(train, test) images a run sees: the real data set's, or a dry run's limit."""
        n_train, n_test = SPLITS[dataset]
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
    from .experiments.features import map_storage

    size = ctx.profile.size_for(trunk)
    return map_storage(trunk, dataset, ctx.profile), size, map_shape(trunk, size)


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


# --- per paper ----------------------------------------------------------------------------------------

def _features_cost(run, ctx: Context, chapter: str) -> RunCost:
    """The frozen maps of a trunk: written once to disk, or streamed (priced in the rows that read them)."""
    from .experiments.features import trunk_of

    prof = ctx.profile
    trunk = trunk_of(prof, dict(run.options).get("trunk"))
    storage, size, chw = maps_of(ctx, trunk, run.dataset)
    n = sum(ctx.split(run.dataset))
    t = trunk_net(trunk, size)
    batch = ctx.batch(prof.batch_size * 2, run.dataset)
    loader = loader_bytes(prof.num_workers, batch, image_bytes(size))
    if storage == "stream":
        host, gpu = ctx.peaks(host=4 * t.params, gpu=0.0)
        return RunCost(chapter, f"{trunk} maps: streamed, computed in every pass of the rows that read them",
                       run.dataset, 0.0, n, 1, 1, host_bytes=host, gpu_bytes=gpu, maps=storage)
    disk = n * 2 * chw[0] * chw[1] * chw[2]
    host, gpu = ctx.peaks(host=2 * 4 * t.params + loader, gpu=4 * t.params + batch * t.activations)
    return RunCost(chapter, f"{trunk} maps at {size} px: forward once, written to disk", run.dataset, t.flops, n, 1, 1,
                   host_bytes=host, gpu_bytes=gpu, disk_bytes=disk, maps=storage, kept_bytes=disk)


class _StepLoss(torch.nn.Module):
    """The Order-Free RNN unrolled for 3 steps (about the mean label count of COCO, 2.9):
    M_map, then M_att and M_pred per step, as its training loss runs them."""

    def __init__(self, model, num_classes: int, steps: int = 3):
        super().__init__()
        self.model, self.C, self.steps = model, num_classes, steps

    def forward(self, maps):
        context, state, logits = self.model.begin(maps)
        emitted = torch.zeros(maps.shape[0], self.C, dtype=torch.bool, device=maps.device)
        total = logits.sum()
        for _ in range(self.steps):
            p, state, _ = self.model.step(context, state, emitted)
            total = total + p.sum()
        return total


def _order_free_cost(run, ctx: Context) -> RunCost:
    from .experiments import order_free_rnn as X
    from .models.order_free_rnn import OrderFreeConfig, OrderFreeRNN

    s = X.settings_for(ctx.profile)
    C = CLASSES[run.dataset]
    trunk = X.TRUNK
    reads = map_input(ctx, trunk, run.dataset, ctx.batch(s.batch_size, run.dataset))
    chw = reads["chw"]
    head = measured(("order_free", C, run.row, dataclasses.astuple(s)), lambda: _StepLoss(OrderFreeRNN(OrderFreeConfig(
        num_classes=C, feat_dim=chw[0], hidden=s.hidden, att_dim=s.att_dim, pred_hidden=s.pred_hidden,
        **X.ROWS[run.row])), C), ((1, *chw),), train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    n_train, n_test = ctx.split(run.dataset)
    forward = head.flops / 3 + reads["flops"]
    # hold-out loss every epoch, the threshold chosen over its grid, four decodings of the test split
    extra = epochs * (n_train - n_fit) * forward + (n_train - n_fit) * len(s.thresholds) * s.beam * forward \
        + n_test * 4 * s.beam * forward
    host, gpu = training_memory(head, ctx.batch(s.batch_size, run.dataset), "adam")
    host, gpu = ctx.peaks(host=host + reads["host"] + outputs_bytes(n_train + n_test, C),
                          gpu=gpu + reads["gpu"])
    peak, kept = row_disk(reads, head, "adam", 4 * head.params + n_test * (6 * 8 * 4))   # weights, sequences
    return RunCost("04", f"Order-Free RNN on {_maps_label(trunk, reads['storage'])}", run.dataset,
                   head.flops + reads["flops"], n_fit, epochs, 1, extra, host, gpu, peak,
                   maps=reads["storage"], kept_bytes=kept)


def _maps_label(trunk: str, storage: str) -> str:
    return f"frozen {trunk} maps ({storage})"


def _pooled_cost(ctx: Context, trunk: str, dataset: str, chapter: str) -> RunCost:
    """The pooled features [N, C] the baselines read, computed once per trunk and data set."""
    reads = map_input(ctx, trunk, dataset, ctx.batch(ctx.profile.batch_size * 2, dataset))
    n = sum(ctx.split(dataset))
    pooled = n * reads["chw"][0] * 4
    host, gpu = ctx.peaks(host=reads["host"] + 2 * pooled, gpu=reads["gpu"])
    return RunCost(chapter, f"pooled {trunk} features ({reads['storage']} maps), once", dataset, reads["flops"], n,
                   1, 1, host_bytes=host, gpu_bytes=gpu, disk_bytes=pooled + reads.get("disk", 0.0),
                   maps=reads["storage"], kept_bytes=pooled)


def _baseline_cost(run, ctx: Context, chapter: str) -> RunCost:
    from .experiments import baselines as B
    from .experiments.features import trunk_of
    from .models import baselines as M

    s = B.settings_for(ctx.profile)
    trunk = trunk_of(ctx.profile, dict(run.options).get("trunk"))
    C = CLASSES[run.dataset]
    D = maps_of(ctx, trunk, run.dataset)[2][0]
    n_train, n_test = ctx.split(run.dataset)
    kind, _ = B.ROWS[run.row]
    features = (n_train + n_test) * D * 4 * 2       # pooled features, and the fit/hold-out copies
    if kind == "knn":                                # cosine similarities, 1024 test images at a time
        flops = 2 * D * n_train * (1 + len(s.knn_ks))
        chunk = min(1024, n_test) * n_train * 4 * 3
        host, gpu = ctx.peaks(host=features + chunk + outputs_bytes(n_train + n_test, C), gpu=0.0)
        return RunCost(chapter, f"KNN on pooled {trunk} features", run.dataset, flops, n_test, 1, 1,
                       host_bytes=host, gpu_bytes=gpu, disk_bytes=n_test * C * 4, kept_bytes=n_test * C * 4)
    if kind == "head":
        net = measured(("linear", D, C), lambda: M.LinearHead(D, C), ((1, D),), train=True)
    else:
        net = measured(("cnn_rnn", D, C, s.rnn_embed, s.rnn_hidden), lambda: _CNNRNNLoss(M.CNNRNN(D, C, s.rnn_embed, s.rnn_hidden), C), ((1, D),), train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    host, gpu = training_memory(net, ctx.batch(s.batch_size, run.dataset), "adam")
    host, gpu = ctx.peaks(host=host + features + outputs_bytes(n_train + n_test, C), gpu=gpu)
    what = "linear heads" if kind == "head" else "CNN-RNN"
    peak, kept = row_disk({}, net, "adam", n_test * C * 4 * 2)
    return RunCost(chapter, f"{what} on pooled {trunk} features", run.dataset, net.flops, n_fit, epochs, 1,
                   n_test * net.flops * s.beam, host, gpu, peak, kept_bytes=kept)


class _CNNRNNLoss(torch.nn.Module):
    """CNN-RNN's teacher-forced loss on 3 labels, for counting."""

    def __init__(self, model, num_classes: int, steps: int = 3):
        super().__init__()
        self.model, self.C, self.steps = model, num_classes, steps

    def forward(self, x):
        seq = torch.zeros(x.shape[0], self.steps, dtype=torch.long, device=x.device)
        return self.model.loss(x, seq)


def _cadm_cost(run, ctx: Context) -> RunCost:
    from .experiments import cadm as X
    from .models import cadm as M
    from .models.backbones import random_backbone

    s = X.settings_for(ctx.profile)
    C = CLASSES[run.dataset]
    size = ctx.profile.image_size
    _, h, w = map_shape(X.TRUNK, size)
    net = measured(("cadm", run.row, C), lambda: M.make_model(run.row, random_backbone(X.TRUNK), C, (h, w)),
                   ((1, 3, size, size),), train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    n_train, n_test = ctx.split(run.dataset)
    forward = net.flops / 3
    host, gpu = training_memory(net, ctx.batch(s.batch_size, run.dataset), "sgd")
    loader = loader_bytes(ctx.profile.num_workers, ctx.batch(max(s.batch_size, 128), run.dataset), image_bytes(size))
    host, gpu = ctx.peaks(host=host + 4 * net.params + loader + outputs_bytes(n_train + n_test, C, 6), gpu=gpu)
    peak, kept = row_disk({}, net, "sgd", outputs_bytes(n_test, C) + 6 * C * h * w * 2)   # outputs, Fig. 2 maps
    return RunCost("05", f"CADM fine-tuning {X.TRUNK} at {size} px", run.dataset, net.flops, n_fit, epochs, 1,
                   epochs * (n_train - n_fit) * forward + n_test * forward, host, gpu, peak, kept_bytes=kept)


class _RLSDRows(torch.nn.Module):
    """RLSD on maps and M training regions per image, as its rows train it."""

    def __init__(self, cfg, side: int):
        super().__init__()
        from .models.rlsd import RLSD

        self.m, self.side = RLSD(cfg), side

    def forward(self, maps, boxes):
        return self.m(maps, self.side, boxes=list(boxes) if self.m.cfg.mode != "global" else None)


def _rlsd_cost(run, ctx: Context) -> RunCost:
    from .experiments import rlsd as X
    from .models.rlsd import ANCHOR_RATIOS, ANCHOR_SCALES, LocalizationLayer

    prof = ctx.profile
    s = X.settings_for(prof)
    C = CLASSES[run.dataset]
    side = prof.size_for(X.TRUNK)
    reads = map_input(ctx, X.TRUNK, run.dataset, ctx.batch(s.batch_size, run.dataset))
    chw = reads["chw"]
    n_train, n_test = ctx.split(run.dataset)
    label = _maps_label(X.TRUNK, reads["storage"])
    if run.row == "selective search":
        seconds = (n_train + n_test) * ss_seconds(getattr(s, "ss_size", None))
        host, gpu = ctx.peaks(host=(n_train + n_test) * (s.train_regions + s.test_regions) * 16 * 2, gpu=0.0)
        return RunCost("06", f"selective search ({s.ss_mode}, {_ss_size_label(getattr(s, 'ss_size', None))})",
                       run.dataset, 0.0, 0, 0, 1, host_bytes=host, gpu_bytes=gpu,
                       disk_bytes=(n_train + n_test) * s.test_regions * 16 * 2, ss_core_seconds=seconds,
                       kept_bytes=(n_train + n_test) * s.test_regions * 16 * 2)   # the per-image cache and the result
    if run.row in X.STAGES:
        loc = measured(("loc", dataclasses.astuple(s)), lambda: _Localization(LocalizationLayer(chw[0], len(ANCHOR_SCALES) * len(ANCHOR_RATIOS),
                                                              s.loc_hidden), side), ((1, *chw),), train=True)
        region_set = X.STAGES[run.row] == "vg"
        images = min(s.vg_images, prof.max_train or s.vg_images) if region_set else n_train
        epochs = ctx.epochs(s.loc_epochs, images, s.batch_size)
        # the region set's maps are computed once and held; the target images' maps are read every epoch
        once = images * trunk_net(X.TRUNK, side).flops if region_set else 0.0
        fwd = 0.0 if region_set else reads["flops"]
        host, gpu = training_memory(loc, ctx.batch(s.batch_size, run.dataset), "adam")
        maps = images * 2 * chw[0] * chw[1] * chw[2] if region_set else 0.0   # the region set's maps, held
        anchors = images * chw[1] * chw[2] * len(ANCHOR_SCALES) * len(ANCHOR_RATIOS) * (4 * 4 + 8)   # targets, labels
        host, gpu = ctx.peaks(host=host + maps + anchors + (n_train + n_test) * s.train_regions * 16 * 2
                              + reads["host"], gpu=gpu + reads["gpu"])
        peak, kept = row_disk(reads, loc, "adam", 4 * loc.params + (n_train + n_test) * s.train_regions * 16)
        return RunCost("06", f"localization layer ({run.row.split('(')[1].rstrip(')')}) on {label}", run.dataset,
                       loc.flops + fwd, images, epochs, 1, once + (n_train + n_test) * (loc.flops / 3 + reads["flops"]),
                       host, gpu, peak, maps=reads["storage"], kept_bytes=kept)
    spec = X.ROWS[run.row]
    if spec.head != "lstm":
        if spec.head == "linear":   # Multi-CNN (Eq. 14): Multi-CNN's linear head on the pooled maps of the trunk
            return _baseline_cost(dataclasses.replace(run, row="Resnet-baseline", options=(("trunk", X.TRUNK),)),
                                  ctx, "06")
        return _rlsd_control_cost(run, ctx, s, reads, label)
    mode = "global" if spec.regions is None else "rlsd"
    cfg = X.model_config(s, chw[0], C, mode, spec.fusion)
    # a random encoder has the shapes of VGG16's fc6/fc7 (``X.region_encoder``): the same count
    net = measured(("rlsd", dataclasses.astuple(cfg), side), lambda: _RLSDRows(cfg, side), ((1, *chw), (1, s.train_regions, 4)), train=True,
                  frozen=("m.loc",))
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    forward = net.flops / 3 + reads["flops"]
    host, gpu = training_memory(net, ctx.batch(s.batch_size, run.dataset), "adam")
    regions = (n_train + n_test) * (s.train_regions + s.test_regions) * 16
    host, gpu = ctx.peaks(host=host + reads["host"] + regions + outputs_bytes(n_train + n_test, C)
                          + _encoder_file_bytes(s), gpu=gpu + reads["gpu"])
    what = "RLSD (regions)" if mode == "rlsd" else "CNN+LSTM (global)"
    peak, kept = row_disk(reads, net, "adam", 4 * net.trainable + n_test * C * 4)   # weights (the rows start from them)
    return RunCost("06", f"{what} on {label}, {_encoder_label(s)}, M = {s.train_regions}", run.dataset,
                   net.flops + reads["flops"], n_fit, epochs, 1,
                   epochs * (n_train - n_fit) * forward + n_test * forward, host, gpu, peak,
                   maps=reads["storage"], kept_bytes=kept)


class _Localization(torch.nn.Module):
    """The localization layer's outputs its loss reads (box deltas and confidences)."""

    def __init__(self, loc, side: int):
        super().__init__()
        self.loc, self.side = loc, side

    def forward(self, maps):
        out = self.loc(maps, self.side, details=True)
        return out["deltas"].sum() + out["scores"].sum()


def _encoder_label(s) -> str:
    """RLSD's region encoder in a plan row: its width and where it starts (``Settings.encoder_init``)."""
    return f"fc6/fc7 {s.fc_dim} ({'random' if s.encoder_init == 'random' else s.encoder_init + ' ImageNet'})"


def _encoder_file_bytes(s) -> int:
    """The weights file a model whose encoder starts from a network's fc6/fc7 loads (0: random)."""
    return 0 if s.encoder_init == "random" else weights_file_bytes(s.encoder_init)


def _rlsd_control_cost(run, ctx, s, reads, label) -> RunCost:
    """Multi-CNN (2-fc): the region encoder on the whole image, then a linear layer."""
    from .experiments import rlsd as X
    from .models.rlsd import RLSD

    chw, C = reads["chw"], CLASSES[run.dataset]
    enc = measured(("2fc", dataclasses.astuple(s), C), lambda: torch.nn.Sequential(RLSD(X.model_config(s, chw[0], C, "global")).encoder,
                                              torch.nn.Linear(s.fc_dim, C)),
                  ((1, chw[0], s.grid, s.grid),), train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    n_train, n_test = ctx.split(run.dataset)
    host, gpu = training_memory(enc, ctx.batch(s.batch_size, run.dataset), "adam")
    host, gpu = ctx.peaks(host=host + reads["host"] + outputs_bytes(n_train + n_test, C) + _encoder_file_bytes(s),
                          gpu=gpu + reads["gpu"])
    return RunCost("06", f"Multi-CNN (2-fc) on {label}, {_encoder_label(s)}", run.dataset, enc.flops + reads["flops"],
                   n_fit, epochs, 1,
                   n_test * (enc.flops / 3 + reads["flops"]), host, gpu, row_disk(reads, enc, "adam", n_test * C * 4)[0],
                   maps=reads["storage"], kept_bytes=n_test * C * 4)


def ss_seconds(size: int | None) -> float:
    """Selective search "fast" seconds per image on one core at a shorter side of ``size`` px
    (None: the original size), scaled by the pixels searched from the measured 224 px rate."""
    if size is None:
        return SS_SECONDS["original"]
    return min(SS_SECONDS["original"], SS_SECONDS[224] * (size / 224) ** 2)


def _ss_size_label(size: int | None) -> str:
    return "original size" if size is None else f"{size} px shorter side"


class _RankingLoss(torch.nn.Module):
    """A ranking head on frozen maps and the norms ||A w_l|| its rank loss reads (Eq. 3)."""

    def __init__(self, ranker, labels: int):
        super().__init__()
        self.ranker = ranker
        self.W = torch.nn.Parameter(torch.zeros(labels, ranker.d), requires_grad=False)

    def forward(self, maps):
        return self.ranker.norms(maps, self.W)


def _linear_widths(build) -> str:
    """"9216 -> 4096 -> ...": the widths of the linear layers of ``build()``, in order (meta device)."""
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "no ImageNet weights": random weights on purpose
        linears = [m for m in build().modules() if isinstance(m, torch.nn.Linear)]
    return " -> ".join(str(n) for n in (linears[0].in_features, *(m.out_features for m in linears)))


def _ranking_cost(run, ctx: Context) -> RunCost:
    """Chapter 07: the head ``X.new_ranker`` builds (full profile: AlexNet's fc6 9216 -> 4096, fc7
    4096 -> 4096, a new fc8 4096 -> k x d, Sec. 3.2 and Table 1) trained on the frozen AlexNet maps
    at 224 px, one fit per margin of the grid (the margin stages) and per row; word vectors of
    d = 384 (MiniLM)."""
    from .experiments import transformation_ranking as X

    prof = ctx.profile
    s = X.settings_for(prof)
    C = CLASSES[run.dataset]
    if run.row.startswith("zero-shot features"):
        return RunCost("07", "zero-shot splits: the ImageNet trunk never saw a label (nothing to compute)",
                       run.dataset, 0.0, 0, 0, 1, rows=(run.row,))
    fits, rs = 1, s
    if run.paper == "transformation_ranking" and run.row.startswith("margin ("):
        fits = len(s.margins)
    elif run.row in X.rows(prof):
        rs = X.row_settings(s, X.rows(prof)[run.row])
    d = 384
    batch = ctx.batch(s.batch_size, run.dataset)
    reads = map_input(ctx, X.TRUNK, run.dataset, batch)
    chw = reads["chw"]
    in_features = chw[0] if rs.pool else math.prod(chw)
    build = functools.partial(X.new_ranker, in_features, d, rs, pretrained=False)
    net = measured(("ranking", dataclasses.astuple(rs), d, C, chw), lambda: _RankingLoss(build(), C), ((1, *chw),),
                   train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    n_train, n_test = ctx.split(run.dataset)
    host, gpu = training_memory(net, batch, "adam")
    file = weights_file_bytes(X.TRUNK) if rs.fc_init != "random" else 0
    host, gpu = ctx.peaks(host=host + reads["host"] + file + outputs_bytes(n_train + n_test, C, 6),
                          gpu=gpu + reads["gpu"])
    what = "margin choice: one fit per margin" if fits > 1 else f"rows, k = {rs.k}"
    kept_layers = "fc7" if rs.pool else "fc6/fc7"          # pooled maps cannot feed AlexNet's fc6: a new one
    start = "random" if rs.fc_init == "random" else f"{kept_layers} from {rs.fc_init}"
    fc = f"{'pooled ' if rs.pool else ''}{_linear_widths(build)} (k x d), {start}"
    peak, kept = row_disk(reads, net, "adam", outputs_bytes(n_test, C, 5))
    return RunCost("07", f"head on {_maps_label(X.TRUNK, reads['storage'])}: {fc} ({what})",
                   run.dataset, (net.flops + reads["flops"]) * fits, n_fit, epochs, 1,
                   fits * (epochs * (n_train - n_fit) + n_test) * (net.flops / 3 + reads["flops"]), host, gpu,
                   peak, maps=reads["storage"], kept_bytes=kept)


# --- the whole book -------------------------------------------------------------------------------------

def grid_runs(profile, seeds: int = 3) -> list[tuple[str, object]]:
    """(chapter, run) of every run of every paper chapter's grid, in the chapters' order."""
    from .experiments import shared

    out = []
    for chapter, (paper, datasets) in CHAPTERS.items():
        module = shared.paper_module(paper)
        out += [(chapter, r) for r in module.grid(profile, list(datasets), list(range(seeds)))]
    return out


def run_cost(chapter: str, run, ctx: Context) -> RunCost:
    """The cost of one run of a grid (its paper's model, data set and storage of the maps it reads)."""
    number = chapter[:2]
    if run.paper == "features":
        cost = _features_cost(run, ctx, number)
    elif run.paper == "baselines":
        cost = _baseline_cost(run, ctx, number)
    elif run.paper == "order_free_rnn":
        cost = _order_free_cost(run, ctx)
    elif run.paper == "cadm":
        cost = _cadm_cost(run, ctx)
    elif run.paper == "rlsd":
        cost = _rlsd_cost(run, ctx)
    elif run.paper == "transformation_ranking":
        cost = _ranking_cost(run, ctx)
    else:
        raise ValueError(f"no cost model for paper {run.paper!r}")
    cost.rows = (run.row,)
    return cost


def full_book_runs(seeds: int = 3, profile=None, device: str = "cuda") -> list[RunCost]:
    """Every run of the chapters' grids, priced and grouped: one ``RunCost`` per (chapter, what it
    trains, data set), ``runs`` the grid runs in it and ``rows`` their row names; the pooled
    features the baselines read are one more group per trunk and data set."""
    from .experiments.features import trunk_of
    from .profiles import get_profile

    ctx = Context(get_profile(profile or "full"), device)
    groups: dict[tuple, RunCost] = {}
    pooled: set = set()
    grid = grid_runs(ctx.profile, seeds)
    for chapter, run in grid:
        costs = [run_cost(chapter, run, ctx)]
        if run.paper == "baselines" or (run.paper == "rlsd" and run.row.startswith("Multi-CNN (Eq")):
            trunk = trunk_of(ctx.profile, dict(run.options).get("trunk") or _paper_trunk(run.paper, chapter))
            if (trunk, run.dataset) not in pooled:
                pooled.add((trunk, run.dataset))
                costs.insert(0, _pooled_cost(ctx, trunk, run.dataset, chapter[:2]))
        for cost in costs:
            key = (cost.chapter, cost.run, cost.dataset)
            if key in groups:
                g = groups[key]
                g.runs += 1
                g.rows = g.rows + tuple(r for r in cost.rows if r not in g.rows)
                g.host_bytes, g.gpu_bytes = max(g.host_bytes, cost.host_bytes), max(g.gpu_bytes, cost.gpu_bytes)
                g.disk_bytes = max(g.disk_bytes, cost.disk_bytes)
                g.kept_bytes += cost.kept_bytes
                g.ss_core_seconds += cost.ss_core_seconds
                g.flops_per_image = max(g.flops_per_image, cost.flops_per_image)
                g.extra_flops = max(g.extra_flops, cost.extra_flops)
            else:
                groups[key] = cost
    loaded = results_loaded(ctx, grid)
    if ctx.device != "cpu":   # on a GPU the runs train in the chapter's process, beside its loaded results
        for (number, _, _), g in groups.items():
            g.host_bytes += loaded[number][1]
    processes = []
    for chapter, (_, datasets) in CHAPTERS.items():
        n, read = loaded[chapter[:2]]
        processes.append(RunCost(chapter[:2], f"the chapter's process: {n} results loaded (memory-mapped, scores "
                                 "read), tables, figures, claims", ", ".join(datasets), 0.0, 0, 0, 1,
                                 host_bytes=ctx.base_host() + read))
    return list(groups.values()) + processes


#: [N_test, C] float32 arrays of one loaded result that a chapter reads (its scores, and the top-k
#: predictions and per-image values the tables and the claims' bootstrap derive from them)
RESULT_ARRAYS_READ = 3


def results_loaded(ctx: Context, grid: list) -> dict[str, tuple[int, float]]:
    """{chapter number: (results, bytes)} its own process holds after its grid: every run's result
    loaded (``cache.load_result`` memory-maps the tensors, so the weights some results keep cost
    nothing until read; what is read is the test scores and what the tables, figures and claims
    derive from them). On a GPU the runs train in that same process, one after the other, so each
    run group's host peak carries them too (at most all of the chapter's)."""
    loaded = {chapter[:2]: (0, 0.0) for chapter in CHAPTERS}
    for chapter, r in grid:
        if r.paper != "features":
            n, read = loaded[chapter[:2]]
            loaded[chapter[:2]] = (n + 1, read + outputs_bytes(ctx.split(r.dataset)[1], CLASSES[r.dataset],
                                                               RESULT_ARRAYS_READ))
    return loaded


def _paper_trunk(paper: str, chapter: str) -> str:
    from .models.backbones import PAPER_TRUNKS

    return PAPER_TRUNKS[chapter].trunk


def plan(gpu: str = "h100", utilisation: float = 0.4, seeds: int = 3, *, machine: str | None = None,
         profile=None, device: str = "cuda", rows: bool = False) -> pd.DataFrame:
    """The cost table: one row per run group (GPU hours at ``utilisation`` of the GPU's bf16 peak,
    peak host and GPU memory and disk of one run of the group, selective-search hours on the
    machine's cores) and a total. ``machine`` (a key of ``MACHINES``, default the GPU's) gives the cores.
    ``profile``: the full profile, or a dry run of it (``Profile.limited``); ``device="cpu"`` plans a
    CPU run (the device's memory is host memory); ``rows``: a last column naming the grid rows of each group."""
    if gpu not in GPU_PEAK:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of {sorted(GPU_PEAK)}")
    cores = MACHINES[machine or gpu].cores
    rate = GPU_PEAK[gpu] * utilisation
    runs = full_book_runs(seeds, profile, device)
    table = [{"chapter": r.chapter, "run": r.run, "data set": r.dataset,
             "GFLOPs / image": f"{r.flops_per_image / 1e9:.4g}",
             "images x epochs x runs": f"{r.images:,} x {r.epochs} x {r.runs}",
             "PFLOPs": round(r.flops / 1e15, 3), "GPU hours": round(r.flops / rate / 3600, 2),
             "host GiB": round(r.host_bytes / GIB, 2), "GPU GiB": round(r.gpu_bytes / GIB, 2),
             "disk GiB": round(r.disk_bytes / GIB, 2),
             "SS hours": round(r.ss_core_seconds / cores / 3600, 2), "rows": ", ".join(r.rows)} for r in runs]
    table.append({"chapter": "", "run": f"total ({gpu.upper()}, {utilisation:.0%} of {GPU_PEAK[gpu] / 1e12:.0f} "
                 f"TFLOP/s bf16; selective search on {cores} cores)", "data set": "", "GFLOPs / image": "",
                 "images x epochs x runs": "", "PFLOPs": round(sum(r.flops for r in runs) / 1e15, 1),
                 "GPU hours": round(sum(r.flops for r in runs) / rate / 3600, 1),
                 "host GiB": round(max(r.host_bytes for r in runs) / GIB, 2),
                 "GPU GiB": round(max(r.gpu_bytes for r in runs) / GIB, 2),
                 "disk GiB": round((sum(r.kept_bytes for r in runs) + max(r.disk_bytes for r in runs)) / GIB, 2),
                 "SS hours": round(sum(r.ss_core_seconds for r in runs) / cores / 3600, 2), "rows": ""})
    table = pd.DataFrame(table)
    return table if rows else table.drop(columns="rows")


def fits(table: pd.DataFrame, machine: str) -> list[str]:
    """One line per run group that would not fit ``machine`` (host memory, GPU memory or disk of
    one run of the group); empty when the plan fits. The total disk of every cached result of
    the book is ``disk_note``'s business (a user may clear runs/ between chapters)."""
    m = MACHINES[machine]
    problems = []
    for _, r in table.iterrows():
        if not r["chapter"]:
            continue
        where = f"{r['chapter']} {r['run']} on {r['data set']}"
        for column, limit, what in (("host GiB", m.ram_bytes, "host memory"), ("GPU GiB", m.gpu_bytes, "GPU memory"),
                                    ("disk GiB", m.disk_bytes, "disk")):
            if r[column] * GIB > limit:
                problems.append(f"{where}: {what} {r[column]:.1f} GiB > {limit / GIB:.1f} GiB ({machine})")
    return problems


def disk_note(table: pd.DataFrame, machine: str) -> str:
    """A line when every cached result of the book together (the total row) exceeds the machine's disk."""
    total = table.loc[table["chapter"] == "", "disk GiB"].iloc[0]
    limit = MACHINES[machine].disk_bytes / GIB
    if total <= limit:
        return ""
    return (f"note: every cached result of the book together takes {total:.1f} GiB, more than the {limit:.0f} GiB "
            f"disk of {machine} (and the data sets take their own): run the chapters one or a few at a time and "
            "move runs/ off the machine in between")
