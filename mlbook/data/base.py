"""What every loader returns: a split of a multi-label data set (DESIGN.md, "Data").

``MultiLabelData`` holds, per image, its id as the data set names it, its file,
a label vector over the benchmark's classes (in the order of ``classes``), an
ignore mask where the benchmark has one (VOC "difficult"), its object boxes
where the benchmark has them, and its size; plus what the loader skipped, by
reason, so every drop is counted and reported instead of silent.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError


class DataFormatError(ValueError):
    """A data set file is missing or not in the format its owners publish.

    The message always names the file (and line, where there is one) and says
    what is expected there.
    """


@dataclasses.dataclass(frozen=True)
class Box:
    """An object box in pixels: top-left corner (x, y), width, height (COCO's convention)."""

    x: float
    y: float
    w: float
    h: float
    label: int               # class index into MultiLabelData.classes
    crowd: bool = False      # COCO iscrowd=1: a region holding many instances
    difficult: bool = False  # VOC <difficult>1</difficult>


@dataclasses.dataclass
class MultiLabelData:
    dataset: str                       # "coco", "nuswide" or "voc"
    split: str                         # "train" or "test"
    root: Path
    classes: list[str]                 # label names, in label-vector order
    image_ids: list[str]               # ids as the data set writes them
    image_paths: list[Path]
    labels: torch.Tensor               # [N, C] float32 in {0, 1}
    ignore: torch.Tensor | None = None           # [N, C] bool: not scored (VOC difficult)
    boxes: list[list[Box]] | None = None         # per image; None where the format has none
    image_sizes: list[tuple[int, int] | None] | None = None  # (width, height)
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> images dropped
    # label values read leniently (NUS-WIDE's known defect): nuswide.MalformedValue(file, line, value, read_as)
    malformed_values: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        n, c = len(self.image_ids), len(self.classes)
        if len(self.image_paths) != n or tuple(self.labels.shape) != (n, c):
            raise ValueError(f"{self.dataset}/{self.split}: {n} ids, {len(self.image_paths)} paths, "
                             f"labels {tuple(self.labels.shape)}, {c} classes do not agree")

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def listed(self) -> int:
        """Images the split's files name, before any was skipped."""
        return len(self) + sum(self.skipped.values())

    def subset(self, indices) -> "MultiLabelData":
        """The images at ``indices``, in that order (skipped counts are kept as they were)."""
        idx = [int(i) for i in indices]
        pick = (lambda xs: None if xs is None else [xs[i] for i in idx])
        return dataclasses.replace(
            self, image_ids=pick(self.image_ids), image_paths=pick(self.image_paths),
            labels=self.labels[idx], ignore=None if self.ignore is None else self.ignore[idx],
            boxes=pick(self.boxes), image_sizes=pick(self.image_sizes), skipped=dict(self.skipped),
            malformed_values=list(self.malformed_values))


def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image as RGB whatever its mode (grayscale, CMYK and palette JPEGs/PNGs occur)."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(f"{path}: not a readable image ({e})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(f"{path}: not a readable image ({e})") from None


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a DataFormatError naming it and saying what belongs there."""
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found; expected {what}")
    return path


def require_root(root: str | Path, dataset: str, expected: str) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: no such folder; expected the {dataset} root, holding {expected}")
    return root


def read_lines(path: Path) -> list[str]:
    """The file's lines with CRLF/LF endings and trailing blank lines removed."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines
