"""MS-COCO 2014 (and 2017 file names) read with pycocotools.

Layout: ``<root>/annotations/instances_{train,val}2014.json`` with the images in
``<root>/train2014/`` and ``<root>/val2014/``. The multi-label literature trains
on train2014 and tests on val2014, so ``split="test"`` reads val2014. Where the
2014 files are absent the 2017 names (``instances_train2017.json``,
``train2017/``) are read instead; coco128 uses them.

Decisions, stated once:
- The 80 category ids (1..90, with gaps) map to label indices 0..79 in
  ascending id order, so index 0 is "person" (id 1) and "toothbrush" (id 90) is
  index 79; ``classes`` lists the names in that order.
- Crowd regions (``iscrowd=1``) are annotations of real instances of their
  class, so they make the class present; their boxes are kept with
  ``crowd=True`` so size statistics can leave them out.
- Images without any annotation are dropped and counted (``no_labels``): this
  is what turns 82,783 / 40,504 listed images into the literature's
  82,081 / 40,137. Images listed in the json but absent on disk are dropped and
  counted too (``missing_image``).
- Images are ordered by image id.

``split_root`` turns a root with one annotation file (coco128: train2017 only)
into this layout with a stated, seeded hold-out (``python -m mlbook data split``).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .base import Box, DataFormatError, MultiLabelData, require_root

SPLIT_NAMES = {"train": "train", "test": "val"}
YEARS = ("2014", "2017")
#: images (train2014, val2014) of the real COCO 2014 as this loader reads it (unlabelled ones dropped)
SPLIT_SIZES = (82081, 40137)
NUM_CLASSES = 80


def annotation_file(root: Path, split: str) -> tuple[Path, Path]:
    """(instances json, image folder) for ``split``, preferring the 2014 release."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    name = SPLIT_NAMES[split]
    for year in YEARS:
        ann = root / "annotations" / f"instances_{name}{year}.json"
        if ann.is_file():
            return ann, root / f"{name}{year}"
    expected = root / "annotations" / f"instances_{name}2014.json"
    raise DataFormatError(f"{expected}: file not found (nor instances_{name}2017.json); expected the COCO "
                          f"instances annotations of the {name} split, with the images in {root / (name + '2014')}/")


def _read_coco(path: Path):
    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            return COCO(str(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: not valid JSON ({e})") from None
    except (KeyError, TypeError, AssertionError) as e:
        raise DataFormatError(f"{path}: not a COCO instances file (missing or malformed {e})") from None


def load(root: str | Path, split: str, check_images: bool = True) -> MultiLabelData:
    root = require_root(root, "COCO", "annotations/instances_{train,val}2014.json and train2014/, val2014/")
    ann_file, image_dir = annotation_file(root, split)
    api = _read_coco(ann_file)
    for key in ("images", "annotations", "categories"):
        if key not in api.dataset:
            raise DataFormatError(f"{ann_file}: no '{key}' list; expected a COCO instances file")

    cat_ids = sorted(api.getCatIds())
    index = {cid: i for i, cid in enumerate(cat_ids)}
    classes = [api.cats[cid]["name"] for cid in cat_ids]

    ids, paths, rows, boxes, sizes = [], [], [], [], []
    skipped: dict[str, int] = {}
    for img_id in sorted(api.getImgIds()):
        info = api.imgs[img_id]
        anns = api.imgToAnns.get(img_id, [])  # crowd regions included on purpose
        if not anns:
            skipped["no_labels"] = skipped.get("no_labels", 0) + 1
            continue
        path = image_dir / info["file_name"]
        if check_images and not path.is_file():
            skipped["missing_image"] = skipped.get("missing_image", 0) + 1
            continue
        row = torch.zeros(len(classes))
        image_boxes = []
        for a in anns:
            if a["category_id"] not in index:
                raise DataFormatError(f"{ann_file}: annotation {a.get('id')} names category "
                                      f"{a['category_id']}, which is not in 'categories'")
            k = index[a["category_id"]]
            row[k] = 1
            x, y, w, h = a["bbox"]
            image_boxes.append(Box(x, y, w, h, k, crowd=bool(a.get("iscrowd", 0))))
        ids.append(str(img_id))
        paths.append(path)
        rows.append(row)
        boxes.append(image_boxes)
        sizes.append((int(info["width"]), int(info["height"])))

    labels = torch.stack(rows) if rows else torch.zeros(0, len(classes))
    return MultiLabelData("coco", split, root, classes, ids, paths, labels, None, boxes, sizes, skipped)


#: how ``split_root`` picks the test images, as its help and SPLIT.json state it
SPLIT_RULE = ("the images of the annotation file sorted by id, permuted by numpy.random.default_rng(SEED)"
              ".permutation; the first round(F x N) of the permutation form val2014 (the test split), "
              "the rest train2014")


def _single_annotation_file(root: Path) -> Path:
    """The one instances_{train,val}{2014,2017}.json under ``root/annotations``."""
    names = [f"instances_{n}{y}.json" for y in YEARS for n in SPLIT_NAMES.values()]
    found = [root / "annotations" / n for n in names if (root / "annotations" / n).is_file()]
    if not found:
        raise DataFormatError(f"{root / 'annotations'}/: holds none of {', '.join(names)}; "
                              f"expected the one COCO instances file to split (coco128: instances_train2017.json)")
    if len(found) > 1:
        raise ValueError(f"--root {root}: holds {' and '.join(f.name for f in found)}, a split already; "
                         f"data split makes one from a root with a single annotation file")
    return found[0]


def split_root(root: str | Path, out: str | Path, test_fraction: float = 0.2, seed: int = 0,
               copy: bool = False) -> dict:
    """Write a COCO-2014-layout root at ``out`` from ``root``, which holds one annotation file.

    The test images are chosen as ``SPLIT_RULE`` says (F = ``test_fraction``). ``out``
    gets annotations/instances_{train,val}2014.json (the source's entries of each
    image, its categories and info as they were) and train2014/, val2014/ holding the
    images as symlinks to the source files (``copy=True``: copies); an image absent in
    the source stays listed and the loader counts it missing. ``out/SPLIT.json``
    records the source, the fraction, the seed and the rule. Written into a temporary
    folder beside ``out`` and renamed when complete. Returns the counts.
    """
    root = require_root(root, "COCO", "annotations/ with one instances_*.json and its image folder")
    if not 0 < test_fraction < 1:
        raise ValueError(f"--test-fraction must lie strictly between 0 and 1, not {test_fraction}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out}: already exists and is not empty; name a new folder")
    ann = _single_annotation_file(root)
    image_dir = root / ann.stem.removeprefix("instances_")
    try:
        doc = json.loads(ann.read_text())
        if not isinstance(doc, dict) or "categories" not in doc:
            raise KeyError("categories")
        images = sorted(doc["images"], key=lambda im: im["id"])
        names = [(im["id"], im["file_name"]) for im in images]
        image_of = [a["image_id"] for a in doc["annotations"]]
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{ann}: not valid JSON ({e})") from None
    except (KeyError, TypeError) as e:
        raise DataFormatError(f"{ann}: not a COCO instances file (missing or malformed {e})") from None
    n_test = round(test_fraction * len(images))
    if not 0 < n_test < len(images):
        raise ValueError(f"--test-fraction {test_fraction} of the {len(images)} images of {ann} leaves a split "
                         f"empty ({n_test} test images); choose a fraction that keeps both")
    order = np.random.default_rng(seed).permutation(len(images))
    test_ids = {names[i][0] for i in order[:n_test].tolist()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    counts = {}
    try:
        (tmp / "annotations").mkdir()
        for split, keep in (("train2014", lambda i: i not in test_ids), ("val2014", lambda i: i in test_ids)):
            part = [im for im in images if keep(im["id"])]
            wanted = {im["id"] for im in part}
            doc_part = {**doc, "images": part,
                        "annotations": [a for a, i in zip(doc["annotations"], image_of) if i in wanted]}
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc_part))
            (tmp / split).mkdir()
            for im in part:
                src, dst = image_dir / im["file_name"], tmp / split / im["file_name"]
                if src.is_file():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dst) if copy else os.symlink(src.resolve(), dst)
            counts[split] = len(part)
        record = {"source": str(ann.resolve()), "test_fraction": test_fraction, "seed": seed, "rule": SPLIT_RULE,
                  "images": counts, "images_are": "copies" if copy else "symlinks"}
        (tmp / "SPLIT.json").write_text(json.dumps(record, indent=2) + "\n")
        if out.exists():
            out.rmdir()   # empty, checked above
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {"out": str(out), "source": str(ann), **counts}
