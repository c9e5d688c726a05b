"""NUS-WIDE, read from the files of the official release.

Layout under ``<root>``:
- ``ConceptsList/Concepts81.txt``: the 81 concept names, one a line; the label
  vector follows this order.
- ``ImageList/TrainImagelist.txt`` and ``TestImagelist.txt``: one image a line,
  written as Windows paths (``actor\\0001_2124494179.jpg``); ``Imagelist.txt``
  lists all images as ``C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg``.
- Labels, either ``Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt``
  (one 0/1 a line, aligned with the Train/Test image list) or
  ``Groundtruth/AllLabels/Labels_<concept>.txt`` (aligned with Imagelist.txt).
- The images under ``Flickr/<folder>/<file>.jpg``.

Official split: 161,789 train / 107,859 test. Two kinds of image are dropped and
counted: images with none of the 81 concepts (``no_labels``; the papers drop
them) and images listed but absent on disk (``missing_image``; every
circulating copy misses some dead Flickr images). An image that is both is
counted as ``no_labels``. A label file whose length disagrees with its image
list is an error naming the file.

Label values. ``0`` and ``1`` (surrounding blanks ignored) are the format. The
official release has one known defect: ``-1130179`` on one line of
``Groundtruth/TrainTestLabels/Labels_lake_Train.txt``. The rule for it: a value
that is a negative integer (``-`` then digits, nothing else) is read as 0
(the concept absent), and every such value is reported in
``data.malformed_values`` (a list of :class:`MalformedValue`: file, 1-based
line, the value as written, the value it was read as) so it is counted, never
silent; ``strict=True`` rejects it instead. Any other value (``2``, ``x``,
``0.5``, an empty line) is an error naming the file and line, strict or not.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .base import DataFormatError, MultiLabelData, read_lines, require_file, require_root

SPLIT_NAMES = {"train": "Train", "test": "Test"}
#: images (train, test) of the real NUS-WIDE as this loader reads it (unlabelled ones dropped)
SPLIT_SIZES = (125449, 83898)
NUM_CLASSES = 81


def image_relpath(entry: str) -> Path:
    """A list entry (Windows path, with or without the C:\\ImageData prefix) -> ``Flickr/<folder>/<file>``."""
    parts = [p for p in re.split(r"[\\/]", entry.strip()) if p]
    if "Flickr" in parts:
        parts = parts[parts.index("Flickr") + 1:]
    if len(parts) < 2:
        raise ValueError(f"not a NUS-WIDE image entry (expected <folder>\\<file>.jpg): {entry!r}")
    return Path("Flickr", parts[-2], parts[-1])


def listed_count(data: MultiLabelData) -> int:
    """Images the split's list names (loaded + skipped): 161,789 / 107,859 for the official split."""
    return data.listed


def read_concepts(root: Path) -> list[str]:
    path = require_file(root / "ConceptsList" / "Concepts81.txt", "the concept names, one a line")
    names = [line.strip() for line in read_lines(path) if line.strip()]
    if not names or len(set(names)) != len(names):
        raise DataFormatError(f"{path}: expected distinct concept names, one a line")
    return names


class MalformedValue(NamedTuple):
    """A label value outside the format that was read leniently (the release's known defect)."""

    file: Path     # the label file
    line: int      # 1-based line number
    value: str     # the value as written (blanks stripped)
    read_as: int   # what the loader used instead: always 0 (absent)


# the known-defect class: a negative integer, e.g. -1130179 in Labels_lake_Train.txt
_NEGATIVE_INT = re.compile(r"-[0-9]+")


def read_label_file(path: Path, expected: int, aligned_with: str, strict: bool = False,
                    malformed: list[MalformedValue] | None = None) -> np.ndarray:
    """One 0/1 value a line -> uint8 array; the line count must equal ``expected``.

    A negative integer is read as 0 and appended to ``malformed`` (unless ``strict``,
    where it is an error like any other value that is not 0 or 1).
    """
    lines = read_lines(require_file(path, f"one 0 or 1 a line, aligned with {aligned_with}"))
    values = [line.strip() for line in lines]
    if not set(values) <= {"0", "1"}:
        for n, v in enumerate(values):
            if v in ("0", "1"):
                continue
            if _NEGATIVE_INT.fullmatch(v) and not strict:
                if malformed is not None:
                    malformed.append(MalformedValue(path, n + 1, v, 0))
                values[n] = "0"
                continue
            hint = (" (a negative integer: the known defect of the official release, read as 0 "
                    "unless strict)" if _NEGATIVE_INT.fullmatch(v) else "")
            raise DataFormatError(f"{path}, line {n + 1}: expected 0 or 1, found {lines[n]!r}{hint}")
    if len(values) != expected:
        raise DataFormatError(f"{path}: {len(values)} lines, expected {expected} (one per line of {aligned_with})")
    return np.frombuffer("".join(values).encode(), dtype=np.uint8) - ord("0")


def _split_labels(root: Path, split: str, entries: list[str], concepts: list[str], strict: bool,
                  malformed: list[MalformedValue]) -> np.ndarray:
    """[N, C] 0/1 labels of the split's entries, from TrainTestLabels/ or else AllLabels/."""
    tag = SPLIT_NAMES[split]
    list_name = f"ImageList/{tag}Imagelist.txt"
    per_split = root / "Groundtruth" / "TrainTestLabels"
    if per_split.is_dir():
        cols = [read_label_file(per_split / f"Labels_{c}_{tag}.txt", len(entries), list_name,
                                strict, malformed) for c in concepts]
        return np.stack(cols, axis=1) if cols else np.zeros((len(entries), 0), np.uint8)
    all_dir = root / "Groundtruth" / "AllLabels"
    if not all_dir.is_dir():
        raise DataFormatError(f"{per_split}: no such folder (nor {all_dir}); expected the label files "
                              f"Labels_<concept>_{{Train,Test}}.txt or Labels_<concept>.txt")
    all_list = require_file(root / "ImageList" / "Imagelist.txt", "every image of the release, one a line "
                            "(needed to align Groundtruth/AllLabels with the split lists)")
    all_entries = read_lines(all_list)
    position = {image_relpath(e): i for i, e in enumerate(all_entries)}
    rows = []
    for n, e in enumerate(entries):
        rel = image_relpath(e)
        if rel not in position:
            raise DataFormatError(f"{root / list_name}, line {n + 1}: {e.strip()!r} is not in {all_list}")
        rows.append(position[rel])
    cols = [read_label_file(all_dir / f"Labels_{c}.txt", len(all_entries), "ImageList/Imagelist.txt",
                            strict, malformed)[rows]
            for c in concepts]
    return np.stack(cols, axis=1) if cols else np.zeros((len(entries), 0), np.uint8)


def load(root: str | Path, split: str, check_images: bool = True, strict: bool = False) -> MultiLabelData:
    """One split of the official release.

    ``strict=False`` (the default) reads the release's known defect (a negative
    integer label value) as 0 and lists each occurrence in the returned data's
    ``malformed_values``; ``strict=True`` raises DataFormatError on it instead.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = require_root(root, "NUS-WIDE", "ConceptsList/, ImageList/, Groundtruth/ and Flickr/")
    concepts = read_concepts(root)
    list_file = require_file(root / "ImageList" / f"{SPLIT_NAMES[split]}Imagelist.txt",
                             "the split's images as Windows paths, one a line")
    entries = read_lines(list_file)
    for n, e in enumerate(entries):
        if not e.strip():
            raise DataFormatError(f"{list_file}, line {n + 1}: empty line inside the list")
    malformed: list[MalformedValue] = []
    labels = _split_labels(root, split, entries, concepts, strict, malformed)

    keep, skipped = [], {}
    for i, e in enumerate(entries):
        if not labels[i].any():
            reason = "no_labels"
        elif check_images and not (root / image_relpath(e)).is_file():
            reason = "missing_image"
        else:
            keep.append(i)
            continue
        skipped[reason] = skipped.get(reason, 0) + 1
    ids = [entries[i].strip() for i in keep]
    paths = [root / image_relpath(entries[i]) for i in keep]
    y = torch.from_numpy(labels[keep].astype(np.float32)) if keep else torch.zeros(0, len(concepts))
    data = MultiLabelData("nuswide", split, root, concepts, ids, paths, y, None, None, None, skipped)
    # Not a "skipped" reason: no image is dropped for it (and ``listed`` sums ``skipped``).
    data.malformed_values = malformed
    return data


def malformed_values(data: MultiLabelData) -> list[MalformedValue]:
    """The label values of ``data`` that were read leniently (empty for a clean copy or another loader)."""
    return list(getattr(data, "malformed_values", None) or [])
