"""ImageNet weights files, by name: which file, its download, its hash and its checks.

``WEIGHTS`` names each network's ImageNet checkpoint in torchvision. ``weights`` (the argument
every builder takes) is None (the torch hub cache), a state-dict file, or a dict {network
name: file}, what ``reproduce --weights NAME=FILE`` hands the chapters. Every file is checked
before use (``check_weights_file``): readable with ``torch.load(weights_only=True)``, its sha256
matching the hash prefix of a torchvision-style file name, its keys and shapes those of the
named network. Nothing is downloaded unless ``download=True`` or ``MLBOOK_DOWNLOAD_WEIGHTS=1``
(``--download-weights``). ``require_weights`` checks every file a run needs before any work;
``imagenet_network`` builds a whole torchvision network from its checked file (the trunks that
read it are in ``models.backbones``); ``write_random_weights`` writes a random stand-in file for a
dry run (``python -m mlbook weights random``). torchvision is imported on first use only (it costs
about a second).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import re
from pathlib import Path

import torch
from torch import nn

DOWNLOAD_ENV = "MLBOOK_DOWNLOAD_WEIGHTS"


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
#: how a torch.save file starts: a zip archive (PyTorch 1.6 on), or a pickle whose first object is this
#: magic number (the older format)
ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


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
    with open(path, "rb") as f:
        head = f.read(32)
    if not (head.startswith(ZIP_MAGIC) or (head.startswith(b"\x80") and LEGACY_MAGIC in head)):
        raise WeightsError(f"{source}: not a PyTorch weights file (torch.save writes a zip archive, or before "
                           "PyTorch 1.6 a pickle; the file starts as neither)")
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


RANDOM_SUFFIX = "-random-init.pth"   # no hex hash in the name: the check tests keys and shapes only


def write_random_weights(name: str, folder, seed: int = 0) -> Path:
    """``<folder>/<name>-random-init.pth``: ``name`` as torchvision initialises it, saved as a state dict
    (the check accepts it), for a dry run of the full profile without ImageNet's files (its numbers
    mean nothing). ResNets get zero-initialised residual branches: with torchvision's default init a
    random ResNet-152's conv5 maps reach about 7e8 on a 448 px image, past float16 (65504), the
    frozen maps' storage, where every loss is NaN; zero-initialised, they stay below 1."""
    kw = {"zero_init_residual": True} if name.startswith("resnet") else {}
    spec = _spec(name)
    path = Path(folder) / f"{name}{RANDOM_SUFFIX}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):   # seeded without moving the caller's random stream
        torch.manual_seed(seed)
        torch.save(spec.builder(weights=None, **kw).state_dict(), path)
    return path


def imagenet_network(name: str, weights=None, download: bool | None = None, flag: str = "--weights") -> nn.Module:
    """The whole torchvision network ``name`` (1000-way head) with its checked ImageNet weights."""
    state = imagenet_state_dict(name, weights, download, flag)     # checked before building anything
    with torch.device("meta"):                                     # no random init of weights replaced anyway
        net = _spec(name).builder(weights=None)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}   # a half file too
    net.load_state_dict(state, assign=True)                        # strict: every tensor comes from the file
    return net
