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
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch

from .base import Box, DataFormatError, MultiLabelData, require_root

SPLIT_NAMES = {"train": "train", "test": "val"}
YEARS = ("2014", "2017")


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
