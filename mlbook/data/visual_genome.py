"""Visual Genome region descriptions: the data the RLSD localization layer is pre-trained on (Sec. III-D-a).

Layout, as the Visual Genome release: ``<root>/image_data.json`` (a list of
{"image_id", "width", "height", "url", ...}), ``<root>/region_descriptions.json``
(a list of {"id": image_id, "regions": [{"region_id", "image_id", "phrase", "x",
"y", "width", "height"}, ...]}) and the images as ``<image_id>.jpg`` in
``VG_100K/``, ``VG_100K_2/`` (the two parts of the release) or ``images/``.

``read_regions`` reads them; ``write_generated_regions`` writes a generated stand-in
in the same format, whose regions group nearby objects as VG's described regions do.

Decisions, stated once:
- Region boxes are kept as written (top-left x, y, width, height, pixels); regions
  with a width or height <= 0 are dropped and counted (``skipped["empty_region"]``).
- An image listed in image_data.json without a region_descriptions entry has no
  regions; a region_descriptions entry for an image not in image_data.json is an error.
- Images are ordered as image_data.json lists them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from .base import DataFormatError, require_file, require_root

IMAGE_FOLDERS = ("VG_100K", "VG_100K_2", "images")
GENERATED_ID_OFFSET = 10_000_000     # generated VG ids: clear of the generated COCO / VOC / NUS-WIDE ids
GENERATED_STREAM = (86, 71)          # "VG": the rng stream, apart from synthetic._rng's


@dataclasses.dataclass
class VGImage:
    image_id: int
    path: Path
    width: int
    height: int
    boxes: torch.Tensor              # [n, 4] float32, top-left x, y, width, height
    phrases: list[str]
    region_ids: list[int]


@dataclasses.dataclass
class VGRegions:
    root: Path
    images: list[VGImage]
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> regions dropped

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        return iter(self.images)


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: not valid JSON ({e})") from None


def _field(entry, key: str, kind, path: Path, where: str):
    """entry[key] checked to be of ``kind``, else a DataFormatError naming the file, the place and the field."""
    if not isinstance(entry, dict) or key not in entry:
        raise DataFormatError(f"{path}: {where}: missing field '{key}'")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataFormatError(f"{path}: {where}: field '{key}' is {value!r}, expected {names}")
    return value


def _image_path(root: Path, image_id: int, url) -> Path:
    """The image's file: the folder that holds it, else the one its url names, else VG_100K."""
    name = f"{image_id}.jpg"
    for folder in IMAGE_FOLDERS:
        if (root / folder / name).is_file():
            return root / folder / name
    parts = str(url or "").split("/")
    folder = parts[-2] if len(parts) >= 2 and parts[-2] in IMAGE_FOLDERS else IMAGE_FOLDERS[0]
    return root / folder / name


def read_regions(vg_root: str | Path, check_images: bool = False) -> VGRegions:
    """Every image of a Visual Genome root with its file, size and region boxes.

    ``check_images``: raise DataFormatError for an image file that is not on disk.
    """
    root = require_root(vg_root, "Visual Genome", "image_data.json, region_descriptions.json and VG_100K/")
    img_file = require_file(root / "image_data.json", "the Visual Genome image list (image_data.json)")
    reg_file = require_file(root / "region_descriptions.json",
                            "the Visual Genome region descriptions (region_descriptions.json)")
    num = (int, float)

    listing = _load_json(img_file)
    if not isinstance(listing, list):
        raise DataFormatError(f"{img_file}: expected a list of images, got {type(listing).__name__}")
    images, index = [], {}
    for i, entry in enumerate(listing):
        image_id = _field(entry, "image_id", int, img_file, f"image #{i}")
        where = f"image #{i} (image_id {image_id})"
        width, height = (_field(entry, k, int, img_file, where) for k in ("width", "height"))
        path = _image_path(root, image_id, entry.get("url"))
        if check_images and not path.is_file():
            raise DataFormatError(f"{path}: image file not found (image_id {image_id} of {img_file})")
        index[image_id] = len(images)
        images.append(VGImage(image_id, path, width, height, torch.zeros(0, 4), [], []))

    described = _load_json(reg_file)
    if not isinstance(described, list):
        raise DataFormatError(f"{reg_file}: expected a list of images, got {type(described).__name__}")
    skipped: dict[str, int] = {}
    for i, entry in enumerate(described):
        image_id = _field(entry, "id", int, reg_file, f"entry #{i}")
        where = f"entry #{i} (image id {image_id})"
        if image_id not in index:
            raise DataFormatError(f"{reg_file}: {where}: image id not listed in {img_file.name}")
        regions = _field(entry, "regions", list, reg_file, where)
        rows, phrases, ids = [], [], []
        for j, r in enumerate(regions):
            rwhere = f"{where}, region #{j}"
            rid = _field(r, "region_id", int, reg_file, rwhere)
            rwhere = f"{rwhere} (region_id {rid})"
            if _field(r, "image_id", int, reg_file, rwhere) != image_id:
                raise DataFormatError(f"{reg_file}: {rwhere}: field 'image_id' is {r['image_id']}, "
                                      f"expected {image_id}")
            phrase = _field(r, "phrase", str, reg_file, rwhere)
            box = [float(_field(r, k, num, reg_file, rwhere)) for k in ("x", "y", "width", "height")]
            if box[2] <= 0 or box[3] <= 0:
                skipped["empty_region"] = skipped.get("empty_region", 0) + 1
                continue
            rows.append(box)
            phrases.append(phrase)
            ids.append(rid)
        img = images[index[image_id]]
        img.boxes = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
        img.phrases, img.region_ids = phrases, ids
    return VGRegions(root, images, skipped)


# --- the generated stand-in -----------------------------------------------------------------

def _phrase(names: list[str]) -> str:
    """"cup", "cup and bowl", "cup, bowl and chair"."""
    unique = list(dict.fromkeys(names))
    return unique[0] if len(unique) == 1 else ", ".join(unique[:-1]) + " and " + unique[-1]


def write_generated_regions(root: str | Path, n_images: int = 64, image_size: int = 48, seed: int = 0,
                            n_classes: int = 10) -> Path:
    """Write a generated region set at ``root`` in the Visual Genome format; return ``root``.

    Images are drawn by the COCO generator (``synthetic._Sampler("coco", ...)``) from an
    rng stream of their own and get ids from ``GENERATED_ID_OFFSET`` on, so they never
    coincide with the target data set's images. Regions: each cluster of two or more
    nearby objects (``rlsd.cluster_box_centres`` / ``merge_clusters``) as one box
    described by its objects' names ("cup and bowl"), plus every single object.
    Deterministic: the same arguments give the same files.
    """
    from ..models.rlsd import cluster_box_centres, merge_clusters
    from .synthetic import _Sampler, _save_jpeg

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sampler = _Sampler("coco", n_classes, image_size)
    rng = np.random.default_rng([seed, *GENERATED_STREAM])
    listing, described, region_id = [], [], GENERATED_ID_OFFSET
    for i in range(n_images):
        image_id = GENERATED_ID_OFFSET + i + 1
        img, objects, _ = sampler.image(rng)
        _save_jpeg(img, root / "VG_100K" / f"{image_id}.jpg")
        listing.append({"image_id": image_id, "width": image_size, "height": image_size,
                        "url": f"generated/VG_100K/{image_id}.jpg", "coco_id": None, "flickr_id": None})
        boxes = [[ob["x"], ob["y"], ob["w"], ob["h"]] for ob in objects]
        names = [sampler.classes[ob["label"]] for ob in objects]
        ids = cluster_box_centres(boxes, image_size=image_size).tolist()
        merged = merge_clusters(boxes, torch.tensor(ids)).tolist()
        regions = []
        for c, box in enumerate(merged):
            members = [names[j] for j in range(len(objects)) if ids[j] == c]
            if len(members) >= 2:
                regions.append((box, _phrase(members)))
        regions += [(b, n) for b, n in zip(boxes, names)]
        out = []
        for (x, y, w, h), phrase in regions:
            region_id += 1
            out.append({"region_id": region_id, "image_id": image_id, "phrase": phrase,
                        "x": int(round(x)), "y": int(round(y)), "width": int(round(w)), "height": int(round(h))})
        described.append({"id": image_id, "regions": out})
    (root / "image_data.json").write_text(json.dumps(listing))
    (root / "region_descriptions.json").write_text(json.dumps(described))
    return root
