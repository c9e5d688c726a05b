"""Backbones: conv feature extractors that every chapter's head sits on.

A backbone ("trunk") maps images [B, 3, S, S] to conv feature maps [B, D, h, w] and
exposes ``out_channels`` (D) and ``stride`` (input pixels per map cell, so h = S / stride
up to the networks' rounding). ``build_backbone(name, weights, download)`` builds them:

- ``small_cnn``: ``SmallCNN``, the demo/smoke stand-in for an ImageNet-pretrained network,
  a 4-layer CNN trained once per data set from scratch (``experiments.shared``).
- ``resnet50`` / ``resnet101`` / ``resnet152``: conv5_x, 2048 channels, stride 32
  (Order-Free RNN: frozen ResNet-152; CADM: ResNet-101 at 448 px).
- ``vgg16``: conv5_3 + ReLU without the last max-pool, 512 channels, stride 16, the maps
  RLSD reads (Sec. III-A-1); ``vgg16_fc67`` gives VGG's own fc6/fc7, its region encoder.
- ``alexnet``: conv5 + max-pool + the 6 x 6 pooling that fc6 reads (pool5), 256 channels
  (the ranking paper's network, Table 1).

ImageNet weights, by name (``WEIGHTS``): ``weights`` is None (the torch hub cache), a
state-dict file, or a dict {network name: file}, what ``reproduce --weights NAME=FILE``
hands the chapters. Every file is checked before use (``check_weights_file``): readable
with ``torch.load(weights_only=True)``, its sha256 matching the hash prefix of a
torchvision-style file name, its keys and shapes those of the named network. Nothing is
downloaded unless ``download=True`` or ``MLBOOK_DOWNLOAD_WEIGHTS=1`` (``--download-weights``).
torchvision is imported on first use only (it costs about a second).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

DOWNLOAD_ENV = "MLBOOK_DOWNLOAD_WEIGHTS"


# --- the trunks -----------------------------------------------------------------------------------

class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks (32-64-128-128 channels), stride 8 overall.

    At 48 px the output is a 6 x 6 grid of 128-d vectors: the "conv maps" the
    attention and CADM heads work on, like ResNet's 7 x 7 / 14 x 14 conv5 maps.
    """

    stride = 8   # three 2x max-pools

    def __init__(self, widths=(32, 64, 128, 128)):
        super().__init__()
        layers, c_in = [], 3
        for i, c_out in enumerate(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channels_last(self.body, x)

    def _block_end(self, n: int) -> int:
        """Index in ``body`` just after conv block ``n`` (its pooling included)."""
        ends = [i + 1 for i, m in enumerate(self.body) if isinstance(m, (nn.MaxPool2d,))]
        ends.append(len(self.body))
        if not 0 <= n <= len(ends):
            raise ValueError(f"SmallCNN has {len(ends)} blocks, not {n}")
        return 0 if n == 0 else ends[n - 1]

    def first_blocks(self, n: int) -> nn.Sequential:
        """The first ``n`` conv blocks (shared weights): a frozen stem whose output can be cached."""
        return self.body[:self._block_end(n)]

    def last_blocks(self, n: int) -> "SmallCNNTop":
        """The blocks after the first ``n`` (shared weights), as a backbone on cached stem maps."""
        return SmallCNNTop(self.body[self._block_end(n):], self.out_channels, self.stride)


class SmallCNNTop(nn.Module):
    """The top blocks of a SmallCNN, fine-tuned on the cached output of its frozen first blocks.

    ``stride`` is in pixels of the *image* (the whole SmallCNN's, 8), not of the stem maps it
    reads: its output cells cover the same image pixels as the full network's.
    """

    def __init__(self, body: nn.Sequential, out_channels: int, stride: int = SmallCNN.stride):
        super().__init__()
        self.body, self.out_channels, self.stride = body, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channels_last(self.body, x)


def _channels_last(body: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``body(x)`` computed in channels-last layout, returned contiguous: oneDNN's convolutions
    are faster on it (a SmallCNN training step at 48 px, batch 64, one thread: 300-330 img/s
    contiguous, 430-460 channels-last on the book's 2-core CPU). The values differ from the
    contiguous layout's in float rounding only, and repeat bit for bit."""
    return body(x.contiguous(memory_format=torch.channels_last)).contiguous()


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and fc: conv5_x maps [B, 2048, S/32, S/32]."""

    stride = 32
    out_channels = 2048   # ResNet-50/101/152 (bottleneck blocks); set from the network's fc below

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*(list(resnet.children())[:-2]))
        self.out_channels = resnet.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class VGG16Trunk(nn.Module):
    """torchvision VGG16's ``features`` without the last max-pool: conv5_3 + ReLU, [B, 512, S/16, S/16].

    RLSD's image features (Sec. III-A-1: "the output of the last convolutional layer",
    C = 512, H' = floor(H / 16)); regions are then sampled from these maps to 7 x 7 and
    fed to VGG's fc6/fc7 (``vgg16_fc67``), as Fast R-CNN reads conv5_3.
    """

    stride = 16
    out_channels = 512

    def __init__(self, vgg: nn.Module):
        super().__init__()
        if not isinstance(vgg.features[-1], nn.MaxPool2d):
            raise ValueError("expected a torchvision VGG whose features end with the pool5 max-pool")
        self.body = vgg.features[:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AlexNetTrunk(nn.Module):
    """torchvision AlexNet's ``features`` (conv5 + its max-pool) and adaptive 6 x 6 pooling: pool5 [B, 256, 6, 6].

    What fc6 reads (Table 1 of the ranking paper: 6 x 6 x 256 = 9216 inputs). ``stride``
    32 is the network's own downsampling (conv1 stride 4, three 2x max-pools); at the
    224 / 227 px inputs AlexNet is made for, the maps are 6 x 6 and the adaptive pooling
    is the identity; at other sizes it resamples them to 6 x 6.
    """

    stride = 32
    out_channels = 256

    def __init__(self, alexnet: nn.Module):
        super().__init__()
        self.body = nn.Sequential(alexnet.features, alexnet.avgpool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


_TRUNKS = {"resnet50": ResNetTrunk, "resnet101": ResNetTrunk, "resnet152": ResNetTrunk,
           "vgg16": VGG16Trunk, "alexnet": AlexNetTrunk}


def trunk_shape(name: str) -> tuple[int, int]:
    """(out_channels, stride) of the trunk ``name``, without building it."""
    if name == "small_cnn":
        return 128, SmallCNN.stride
    if name not in _TRUNKS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {backbone_names()}")
    return _TRUNKS[name].out_channels, _TRUNKS[name].stride


def backbone_names() -> list[str]:
    return ["small_cnn", *_TRUNKS]


# --- ImageNet weights by name ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageNetWeights:
    """One network's ImageNet checkpoint in torchvision: the builder ``torchvision.models.<arch>``
    and the weights enum member ``enum``; ``file`` (the checkpoint's file name in the torch hub
    cache, e.g. ``resnet101-63fe2227.pth``) is read from the installed torchvision's enum."""
    arch: str
    enum: str      # "<Enum class>.<member>" in torchvision.models

    @property
    def builder(self):
        import torchvision

        return getattr(torchvision.models, self.arch)

    @property
    def weights(self):
        import torchvision

        cls, member = self.enum.split(".")
        return getattr(getattr(torchvision.models, cls), member)

    @property
    def url(self) -> str:
        return self.weights.url

    @property
    def file(self) -> str:
        return os.path.basename(self.url)


# torchvision's V1 weights: the original ImageNet training, as in the papers' time (V2 is a later recipe).
WEIGHTS: dict[str, ImageNetWeights] = {
    "resnet50": ImageNetWeights("resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
    "resnet101": ImageNetWeights("resnet101", "ResNet101_Weights.IMAGENET1K_V1"),
    "resnet152": ImageNetWeights("resnet152", "ResNet152_Weights.IMAGENET1K_V1"),
    "vgg16": ImageNetWeights("vgg16", "VGG16_Weights.IMAGENET1K_V1"),
    "alexnet": ImageNetWeights("alexnet", "AlexNet_Weights.IMAGENET1K_V1"),
}


class PaperTrunk(NamedTuple):
    trunk: str
    description: str


#: The trunk each paper chapter's method rows use in the full profile (the papers' own networks).
PAPER_TRUNKS: dict[str, PaperTrunk] = {
    "04_order_free_rnn": PaperTrunk("resnet152", "ResNet-152 conv5 maps, ImageNet weights, frozen (not fine-tuned)"),
    "05_cadm": PaperTrunk("resnet101", "ResNet-101 conv5 maps at 448 px (14 x 14), ImageNet weights, fine-tuned"),
    "06_rlsd": PaperTrunk("vgg16", "VGG16 conv5_3 maps (stride 16); VGG's own fc6/fc7 encode the 7 x 7 regions"),
    "07_transformation_ranking": PaperTrunk("alexnet", "AlexNet, ImageNet weights, fine-tuned, fc8 replaced by "
                                                       "the k x d transformation"),
}


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or not the named network's; the message is one line
    (per file) naming the file, the network and the flag that names it."""


class WeightsNotFound(WeightsError, FileNotFoundError):
    """ImageNet weights that are neither given nor in the torch hub cache (and no download allowed)."""


def _spec(name: str) -> ImageNetWeights:
    if name not in WEIGHTS:
        raise WeightsError(f"no ImageNet weights known for {name!r}; networks with weights: {sorted(WEIGHTS)}")
    return WEIGHTS[name]


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision keeps the ImageNet checkpoint of ``name`` in the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _spec(name).file


def weights_file(weights, name: str) -> Path | None:
    """The file a user named for network ``name``, or None (then the torch hub cache is used).

    ``weights``: None; a path (str or PathLike: the file of whichever network is built); or a
    dict {network name: path} (``reproduce --weights NAME=FILE``), of which ``name``'s entry.
    """
    if weights is None:
        return None
    if isinstance(weights, dict):
        path = weights.get(name)
        return None if path is None else Path(path)
    if isinstance(weights, (str, os.PathLike)):
        return Path(weights)
    raise TypeError(f"weights must be None, a file path or a dict {{name: path}}, not {type(weights).__name__}")


def download_allowed(download: bool | None) -> bool:
    """``download`` if given, else whether ``MLBOOK_DOWNLOAD_WEIGHTS=1`` (set by --download-weights)."""
    return os.environ.get(DOWNLOAD_ENV, "") == "1" if download is None else bool(download)


def _source(name: str, path: Path, given: bool, flag: str) -> str:
    """How an error names a file: as the user gave it, or as the hub cache's."""
    return f"{flag} {name}={path}" if given else f"{name} weights in the torch hub cache ({path})"


_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.pth$")   # torchvision's "<arch>-<sha256 prefix>.pth"


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file (memoised per size and modification time: a 500 MB file is hashed once)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def _expected_shapes(name: str) -> dict[str, tuple]:
    """Keys and shapes of ``name``'s 1000-class ImageNet state dict (built on the meta device: no memory)."""
    with torch.device("meta"):
        net = _spec(name).builder(weights=None)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _differences(have: dict[str, tuple], want: dict[str, tuple]) -> list[str]:
    """What differs between two key -> shape maps, in ``want``'s key order, unexpected keys last."""
    out = []
    for k, shape in want.items():
        if k not in have:
            out.append(f"{k} missing")
        elif have[k] != shape:
            out.append(f"{k} has shape {list(have[k])}, not {list(shape)}")
    out += [f"{k} unexpected" for k in have if k not in want]
    return out


def _load_state(path: Path, source: str) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` of a state dict (or of a checkpoint holding one as "state_dict")."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(f"{source}: refused by torch.load(weights_only=True): the file holds Python objects, "
                           "not only tensors (not a plain state dict; not loaded, for safety)") from None
    except Exception as err:   # truncated zip, EOF, not a torch file at all: all mean "unreadable"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise WeightsError(f"{source}: cannot be read as a PyTorch file (truncated or corrupted? {first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{source}: not a state dict (a {type(state).__name__} that is not a dict of tensors)")
    return state


def _check_structure(name: str, state: dict[str, torch.Tensor], source: str) -> None:
    have = {k: tuple(v.shape) for k, v in state.items()}
    diff = _differences(have, _expected_shapes(name))
    if not diff:
        return
    shown = diff[0] + (f", and {len(diff) - 1} more" if len(diff) > 1 else "")
    other = next((n for n in WEIGHTS if n != name and not _differences(have, _expected_shapes(n))), None)
    what = f"the file is a {other} state dict" if other else f"not a {name} state dict"
    raise WeightsError(f"{source}: {what} (keys/shapes differ: {shown})")


def check_weights_file(name: str, path, flag: str = "--weights", *, given: bool = True) -> dict[str, torch.Tensor]:
    """Check a weights file of network ``name`` and return its state dict; else raise ``WeightsError``.

    The file must exist and load with ``torch.load(weights_only=True)``; if its name carries
    torchvision's hash prefix (``<arch>-<8+ hex digits>.pth``) the file's sha256 must start
    with it (torch.hub's rule); in every case its keys and shapes must be those of
    ``builder(weights=None).state_dict()`` (the 1000-class ImageNet network). ``flag`` and
    ``given`` only shape the message: ``--weights NAME=FILE`` for a file the user named,
    the hub cache otherwise.
    """
    path = Path(path)
    _spec(name)
    source = _source(name, path, given, flag)
    if not path.is_file():
        raise WeightsNotFound(f"{source}: no such file; nothing is downloaded unless --download-weights is given")
    prefix = _HASH_IN_NAME.search(path.name)
    if prefix:
        stat = path.stat()
        digest = _sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if not digest.startswith(prefix.group(1)):
            raise WeightsError(f"{source}: sha256 of the file starts with {digest[:len(prefix.group(1))]}, not "
                               f"{prefix.group(1)} as its name says (corrupted or incomplete download?)")
    state = _load_state(path, source)
    _check_structure(name, state, source)
    return state


def missing_weights(names, weights) -> list[str]:
    """The networks among ``names`` whose weights file is neither given (``weights``) nor in the
    torch hub cache; a given file that does not exist counts as missing. ``small_cnn`` needs none."""
    missing = []
    for name in names:
        if name == "small_cnn":
            continue
        path = weights_file(weights, name) or imagenet_weights_file(name)
        if not path.is_file():
            missing.append(name)
    return missing


def _missing_message(missing: list[str], weights, flag: str) -> str:
    where = []
    for name in missing:
        given = weights_file(weights, name)
        where.append(f"{name} ({flag} {name}={given}: no such file)" if given else
                     f"{name} (not given; not in the torch hub cache as {imagenet_weights_file(name)})")
    fixes = " ".join(f"{flag} {name}=FILE" for name in missing)
    return (f"ImageNet weights missing for {', '.join(missing)}: {'; '.join(where)}. Name each file with "
            f"{flag} NAME=FILE (repeatable: {fixes}), put it in the torch hub cache under its torchvision name, "
            f"or allow a download with --download-weights (needs network); nothing is downloaded silently")


def _download(name: str) -> None:
    """Fetch ``name``'s checkpoint into the torch hub cache (torch.hub checks the hash of its name)."""
    torch.hub.load_state_dict_from_url(_spec(name).url, progress=True, check_hash=True, weights_only=True)


def require_weights(names, weights, download: bool | None = None, flag: str = "--weights") -> None:
    """Before any work: every network in ``names`` has an ImageNet weights file, and each is checked.

    Raises one ``WeightsNotFound`` listing every missing network and the flags that fix it
    (``--weights NAME=FILE``, repeatable, or ``--download-weights``), or one ``WeightsError``
    with a line per bad file, or for networks (given or asked for) without known weights.
    ``download`` (None: ``MLBOOK_DOWNLOAD_WEIGHTS=1``) fetches the missing ones into the hub cache.
    """
    names = [n for n in dict.fromkeys(names) if n != "small_cnn"]
    asked = names + [n for n in (weights if isinstance(weights, dict) else {}) if n not in names]
    unknown = [n for n in asked if n not in WEIGHTS]
    if unknown:
        raise WeightsError(f"no ImageNet weights known for {', '.join(map(repr, unknown))} ({flag}); "
                           f"networks with weights: {', '.join(sorted(WEIGHTS))}")
    missing = missing_weights(names, weights)
    if missing and download_allowed(download):
        for name in [n for n in missing if weights_file(weights, n) is None]:
            _download(name)
        missing = missing_weights(names, weights)
    if missing:
        raise WeightsNotFound(_missing_message(missing, weights, flag))
    errors = []
    for name in names:
        given = weights_file(weights, name)
        try:
            check_weights_file(name, given or imagenet_weights_file(name), flag, given=given is not None)
        except WeightsError as err:
            errors.append(str(err))
    if errors:
        raise WeightsError("\n".join(errors))


def imagenet_state_dict(name: str, weights=None, download: bool | None = None,
                        flag: str = "--weights") -> dict[str, torch.Tensor]:
    """The checked ImageNet state dict of ``name``: the file ``weights`` names for it, else the torch
    hub cache, else (only if ``download`` / ``MLBOOK_DOWNLOAD_WEIGHTS=1``) a download into the cache."""
    given = weights_file(weights, name)
    path = given or imagenet_weights_file(name)
    if not path.is_file() and given is None and download_allowed(download):
        _download(name)
    if not path.is_file():
        raise WeightsNotFound(_missing_message([name], weights, flag))
    return check_weights_file(name, path, flag, given=given is not None)


def imagenet_network(name: str, weights=None, download: bool | None = None, flag: str = "--weights") -> nn.Module:
    """The whole torchvision network ``name`` (1000-way head) with its checked ImageNet weights."""
    state = imagenet_state_dict(name, weights, download, flag)     # checked before building anything
    with torch.device("meta"):                                     # no random init of weights replaced anyway
        net = _spec(name).builder(weights=None)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}   # a half file too
    net.load_state_dict(state, assign=True)                        # strict: every tensor comes from the file
    return net


# --- building ---------------------------------------------------------------------------------------

def _trunk_of(name: str, network: nn.Module) -> nn.Module:
    return _TRUNKS[name](network)


def build_backbone(name: str, weights=None, download: bool | None = None) -> nn.Module:
    """The trunk ``name`` (see the module docstring); the ImageNet ones with checked weights.

    ``weights``: None (the torch hub cache), a file, or {network name: file}. ``small_cnn`` is
    returned untrained (its weights come from the shared-backbone stage, not from a file).
    """
    if name == "small_cnn":
        if weights is not None and not isinstance(weights, dict):
            raise WeightsError(f"small_cnn has no ImageNet weights file (got {weights}); its weights are "
                               "trained by the shared-backbone stage")
        return SmallCNN()
    if name not in _TRUNKS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {backbone_names()}")
    return _trunk_of(name, imagenet_network(name, weights, download))


def random_backbone(name: str) -> nn.Module:
    """The trunk ``name`` with random weights: for shapes, FLOP counts and speed, never for results.
    Works on the meta device (``with torch.device("meta"): random_backbone(...)``)."""
    if name == "small_cnn":
        return SmallCNN()
    if name not in _TRUNKS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {backbone_names()}")
    return _trunk_of(name, _spec(name).builder(weights=None))


def fc67_layers(vgg: nn.Module) -> nn.Sequential:
    """fc6 (25088 -> 4096), ReLU, Dropout, fc7 (4096 -> 4096), ReLU, Dropout of a torchvision VGG
    (its ``classifier`` without fc8), sharing its weights. Reads a flattened 512 x 7 x 7 region
    in (channel, row, column) order, as VGG flattens pool5."""
    layers = vgg.classifier[:6]
    kinds = [type(m) for m in layers]
    if kinds != [nn.Linear, nn.ReLU, nn.Dropout] * 2:
        raise ValueError(f"not a torchvision VGG classifier: {kinds}")
    return layers


def vgg16_fc67(weights=None, download: bool | None = None) -> nn.Sequential:
    """VGG16's pretrained fc6/fc7 with their ReLU/Dropout: RLSD's region encoder (Sec. III-A-3,
    "two 4096-d fully-connected layers ... regularized by dropout"), on a flattened 7 x 7 x 512
    region. ``weights`` as ``build_backbone``'s (the vgg16 file, checked)."""
    return fc67_layers(imagenet_network("vgg16", weights, download))


# --- heads --------------------------------------------------------------------------------------------

class GlobalPoolClassifier(nn.Module):
    """Backbone + global pooling + linear: the "ResNet baseline" of the papers.

    ``pool="avg"`` is what torchvision's ResNet does; CADM's baseline uses
    global max pooling (``pool="max"``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, pool: str = "avg"):
        super().__init__()
        self.backbone, self.pool = backbone, pool
        self.fc = nn.Linear(backbone.out_channels, num_classes)

    def pooled(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.amax(dim=(2, 3)) if self.pool == "max" else maps.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(self.backbone(x)))
