"""The three benchmarks, read from their real on-disk formats (DESIGN.md, "Data").

``load(dataset, root, split)`` reads a split; ``prepare`` returns the root to
read (the user's real data, or the generated default, written on first use);
``load_splits`` does both. ``image_tensor_cache`` decodes a split once into a
uint8 tensor for the small profiles; ``ImageDataset`` reads from disk for the
full one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import coco, nuswide, synthetic, voc
from .base import Box, DataFormatError, MultiLabelData, open_rgb
from ..profiles import Profile, data_dir, get_profile, runs_dir

DATASETS = ("coco", "nuswide", "voc")
LOADERS = {"coco": coco.load, "nuswide": nuswide.load, "voc": voc.load}
#: images per split (train, test) and classes of the real data sets as the loaders read them
#: (after dropping unlabelled images)
SPLIT_SIZES = {"coco": coco.SPLIT_SIZES, "nuswide": nuswide.SPLIT_SIZES, "voc": voc.SPLIT_SIZES}
NUM_CLASSES = {"coco": coco.NUM_CLASSES, "nuswide": nuswide.NUM_CLASSES, "voc": voc.NUM_CLASSES}
COMPLETE_MARKER = ".complete"

__all__ = ["DATASETS", "NUM_CLASSES", "SPLIT_SIZES", "Box", "DataFormatError", "ImageDataset", "MultiLabelData",
           "generated_ready", "image_tensor_cache", "load", "load_splits", "open_rgb", "prepare", "coco", "nuswide", "voc", "synthetic"]


def load(dataset: str, root: str | Path, split: str, check_images: bool = True) -> MultiLabelData:
    if dataset not in LOADERS:
        raise ValueError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    return LOADERS[dataset](root, split, check_images=check_images)


def generated_ready(dataset: str, profile: str | Profile, seed: int = 0) -> bool:
    """Whether the profile's generated ``dataset`` is written, complete and current: ``prepare`` would
    read it as it is, without generating anything."""
    prof = get_profile(profile)
    target = data_dir() / "generated" / f"{prof.name}-s{seed}" / dataset
    return (target / COMPLETE_MARKER).exists() and _generated_args(target) == synthetic.generation_args(prof, seed)


def prepare(dataset: str, profile: str | Profile, seed: int = 0, root: str | Path | None = None) -> Path:
    """The root to read: ``root`` if given (checked), else the generated data set of the profile.

    Generated data go to ``<data>/generated/<profile>-s<seed>/<dataset>``: written
    into a temporary folder beside it and renamed when complete, so an
    interrupted generation never leaves a half data set that looks finished.
    """
    prof = get_profile(profile)
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise DataFormatError(f"{root}: no such folder; expected the {dataset} data set root")
        return root
    if prof.gen_train <= 0:
        raise DataFormatError(f"the {prof.name} profile reads real data: pass the {dataset} root "
                              f"(--{dataset}-root / {dataset}_root)")
    target = data_dir() / "generated" / f"{prof.name}-s{seed}" / dataset
    wanted = synthetic.generation_args(prof, seed)
    if (target / COMPLETE_MARKER).exists() and _generated_args(target) == wanted:
        return target   # written by this generator version with these sizes; else written again
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dataset}.", dir=target.parent))
    try:
        synthetic.generate_for_profile(dataset, prof, tmp, seed=seed)
        (tmp / COMPLETE_MARKER).write_text("")
        if (target / COMPLETE_MARKER).exists() and _generated_args(target) == wanted:
            return target   # another process (a parallel chapter or test) finished the same data first
        if target.exists():  # an incomplete or outdated earlier attempt
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def _generated_args(root: Path) -> dict | None:
    """The generator version and arguments a generated folder was written with (None if unreadable)."""
    try:
        return json.loads((root / "generated.json").read_text())["args"]
    except (OSError, ValueError, KeyError):
        return None


def load_splits(dataset: str, profile: str | Profile, root: str | Path | None = None,
                seed: int = 0) -> tuple[MultiLabelData, MultiLabelData]:
    """(train, test) of ``dataset``: the real data at ``root``, or the generated default."""
    path = prepare(dataset, profile, seed=seed, root=root)
    return load(dataset, path, "train"), load(dataset, path, "test")


# --- decoding ---------------------------------------------------------------------

def _cache_key(data: MultiLabelData, size: int) -> str:
    h = hashlib.sha256(f"v1|{size}".encode())
    for p in data.image_paths:
        st = os.stat(p)
        h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def image_tensor_cache(data: MultiLabelData, size: int) -> torch.Tensor:
    """Every image of ``data`` decoded, resized to size x size: a uint8 tensor [N, 3, size, size].

    Cached under ``runs/image_cache/`` (keyed by size, paths, file sizes and
    times), written atomically; ``transforms.normalize_uint8`` turns it into the
    tensors ``transforms.image_transform`` gives for the file.
    """
    from torchvision.transforms import functional as TF   # here: torchvision costs a process 1.7 s to import

    from ..cache import atomic_torch_save

    path = runs_dir() / "image_cache" / f"{data.dataset}-{data.split}-{size}-{_cache_key(data, size)}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    out = torch.empty(len(data), 3, size, size, dtype=torch.uint8)
    for i, p in enumerate(data.image_paths):
        img = TF.resize(open_rgb(p), [size, size])
        out[i] = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    atomic_torch_save(out, path)
    return out


class ImageDataset(Dataset):
    """(image tensor, labels, ignore) read from disk, for data too large to keep decoded."""

    def __init__(self, data: MultiLabelData, transform):
        self.data, self.transform = data, transform
        self.ignore = data.ignore if data.ignore is not None else torch.zeros_like(data.labels, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.transform(open_rgb(self.data.image_paths[i])), self.data.labels[i], self.ignore[i]

