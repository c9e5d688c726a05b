"""PASCAL VOC 2007 classification, read from ImageSets/Main and Annotations/.

Layout under ``<root>`` (the ``VOC2007`` folder of VOCdevkit):
- ``ImageSets/Main/{trainval,test}.txt``: the split's image ids;
  ``ImageSets/Main/<class>_{trainval,test}.txt``: per line an id and 1
  (present), -1 (absent) or 0 (present, but only as "difficult" objects).
  Circulating copies have Windows line endings; both are read.
- ``Annotations/<id>.xml``: object boxes (1-based inclusive corners, converted
  here to 0-based x, y, w, h) with their difficult flag, and the image size.
- ``JPEGImages/<id>.jpg``.

``split="train"`` reads trainval (5,011 images), ``split="test"`` reads test
(4,952). A 0 ("difficult") sets the label to 1 and the ignore mask to True: the
VOC protocol neither rewards nor penalises it (metrics take ``ignore``). The
official statistics count label 1 only as a positive; ``data summary`` does the
same and reports difficult-only images (label 0) apart.
Images absent on disk are dropped and counted (``missing_image``) unless
``check_images=False``; an image without an xml keeps its labels, with no boxes.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from .base import Box, DataFormatError, MultiLabelData, image_size, read_lines, require_file, require_root

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
SPLIT_NAMES = {"train": "trainval", "test": "test"}
#: images (trainval, test) of the real VOC 2007 as this loader reads it
SPLIT_SIZES = (5011, 4952)
NUM_CLASSES = len(VOC_CLASSES)   # 20


def read_class_file(path: Path, ids: list[str]) -> dict[str, int]:
    """{image id: 1 / 0 / -1} of one ``<class>_<set>.txt``; every id of the split must appear once."""
    lines = read_lines(require_file(path, "per line an image id and 1, -1 or 0 (difficult)"))
    values: dict[str, int] = {}
    for n, line in enumerate(lines):
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("1", "-1", "0"):
            raise DataFormatError(f"{path}, line {n + 1}: expected '<image id> <1|-1|0>', found {line!r}")
        values[fields[0]] = int(fields[1])
    if len(values) != len(ids) or any(i not in values for i in ids):
        missing = next((i for i in ids if i not in values), None)
        detail = f"image {missing} of the split is missing" if missing else "ids differ from the split list"
        raise DataFormatError(f"{path}: {len(lines)} lines for {len(ids)} images of the split; {detail}")
    return values


def read_annotation(path: Path, classes=VOC_CLASSES) -> tuple[list[Box], tuple[int, int]]:
    """(boxes, (width, height)) of one Annotations/<id>.xml."""
    try:
        tree = ET.parse(path).getroot()
        size = tree.find("size")
        wh = (int(size.findtext("width")), int(size.findtext("height")))
        boxes = []
        for obj in tree.iter("object"):
            name = obj.findtext("name").strip()
            if name not in classes:
                raise DataFormatError(f"{path}: unknown class {name!r}; expected one of the 20 VOC classes")
            bb = obj.find("bndbox")
            x0, y0, x1, y1 = (int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append(Box(x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1, classes.index(name),
                             difficult=obj.findtext("difficult", "0").strip() == "1"))
        return boxes, wh
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        if isinstance(e, DataFormatError):
            raise
        raise DataFormatError(f"{path}: not a VOC annotation (expected <size> and <object><name>, "
                              f"<bndbox> with xmin/ymin/xmax/ymax; {e})") from None


def load(root: str | Path, split: str, check_images: bool = True) -> MultiLabelData:
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = require_root(root, "VOC 2007", "ImageSets/Main/, Annotations/ and JPEGImages/")
    name = SPLIT_NAMES[split]
    main = root / "ImageSets" / "Main"
    id_file = require_file(main / f"{name}.txt", f"the image ids of the {name} split, one a line")
    ids = [line.strip() for line in read_lines(id_file)]
    # keyed by id, so a class file in another order than the split list still lines up
    values = {c: read_class_file(main / f"{c}_{name}.txt", ids) for c in VOC_CLASSES}
    table = torch.tensor([[values[c][i] for c in VOC_CLASSES] for i in ids],
                         dtype=torch.int8).reshape(len(ids), len(VOC_CLASSES))

    keep, boxes, sizes, skipped = [], [], [], {}
    for n, image_id in enumerate(ids):
        if not (table[n] >= 0).any():
            skipped["no_labels"] = skipped.get("no_labels", 0) + 1
            continue
        jpg = root / "JPEGImages" / f"{image_id}.jpg"
        if check_images and not jpg.is_file():
            skipped["missing_image"] = skipped.get("missing_image", 0) + 1
            continue
        xml = root / "Annotations" / f"{image_id}.xml"
        if xml.is_file():
            b, wh = read_annotation(xml)
        else:
            b, wh = [], (image_size(jpg) if check_images else None)
        keep.append(n)
        boxes.append(b)
        sizes.append(wh)
    kept = table[keep] if keep else torch.zeros(0, len(VOC_CLASSES), dtype=torch.int8)
    return MultiLabelData(
        "voc", split, root, list(VOC_CLASSES), [ids[n] for n in keep],
        [root / "JPEGImages" / f"{ids[n]}.jpg" for n in keep],
        (kept >= 0).float(), kept == 0, boxes, sizes, skipped)
