"""Visual Genome region descriptions: the data the RLSD localization layer is pre-trained on (Sec. III-D-a).

Layout, as the Visual Genome release: ``<root>/image_data.json`` (a list of
{"image_id", "width", "height", "url", ...}), ``<root>/region_descriptions.json``
(a list of {"id": image_id, "regions": [{"region_id", "image_id", "phrase", "x",
"y", "width", "height"}, ...]}) and the images as ``<image_id>.jpg`` in
``VG_100K/``, ``VG_100K_2/`` (the two parts of the release) or ``images/``.

``read_regions`` reads them; ``read_objects`` reads the release's ``objects.json``
(object boxes), which only ``region_object_counts`` needs. ``write_generated_regions``
(``generate_for_profile``: ``python -m mlbook data generate --dataset vg``) writes a
generated stand-in in the same format whose regions are VG-like: most hold two
or three nearby objects ("cup and bowl"), some one object with an attribute ("red cup"),
some only background ("blue sky"), drawn by a rule of their own (``describe_regions``),
not by the ft-RPN clustering the RLSD chapter fine-tunes on.

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

from ..profiles import get_profile
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


# --- objects.json: the objects a region set's images hold -------------------------------------

def read_objects(vg_root: str | Path) -> dict[int, torch.Tensor]:
    """image_id -> its object boxes [n, 4] float32 (top-left x, y, width, height) from
    ``<root>/objects.json``, in the release's layout (v1.2 on): a list of {"image_id",
    "objects": [{"object_id", "x", "y", "w", "h", "names", ...}, ...]}."""
    root = require_root(vg_root, "Visual Genome", "objects.json")
    path = require_file(root / "objects.json", "the Visual Genome objects (objects.json)")
    listing = _load_json(path)
    if not isinstance(listing, list):
        raise DataFormatError(f"{path}: expected a list of images, got {type(listing).__name__}")
    out = {}
    for i, entry in enumerate(listing):
        image_id = _field(entry, "image_id", int, path, f"entry #{i}")
        where = f"entry #{i} (image_id {image_id})"
        rows = [[float(_field(ob, k, (int, float), path, f"{where}, object #{j}")) for k in ("x", "y", "w", "h")]
                for j, ob in enumerate(_field(entry, "objects", list, path, where))]
        out[image_id] = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
    return out


def centres_inside(regions_xywh, objects_xywh) -> torch.Tensor:
    """How many objects have their box centre inside each region (edges included): [R] long."""
    r = torch.as_tensor(regions_xywh, dtype=torch.float32).reshape(-1, 1, 4)
    o = torch.as_tensor(objects_xywh, dtype=torch.float32).reshape(1, -1, 4)
    c = o[..., :2] + o[..., 2:] / 2
    inside = (c >= r[..., :2]) & (c <= r[..., :2] + r[..., 2:])
    return inside.all(-1).sum(1)


def region_object_counts(vg_root: str | Path) -> list[int]:
    """Objects per region (``centres_inside``) of every region of a root holding objects.json,
    image by image in the order of image_data.json: how VG-like a region set is (a VG
    region "normally contains several object and visual concepts", RLSD Sec. III-D-a)."""
    objects = read_objects(vg_root)
    return [int(n) for im in read_regions(vg_root)
            for n in centres_inside(im.boxes, objects.get(im.image_id, torch.zeros(0, 4)))]


# --- the generated stand-in -----------------------------------------------------------------

# How the stand-in's regions are drawn (``describe_regions``), the book's choice, tuned so that
# about two regions in three hold two or more objects (Visual Genome's regions "normally
# contain several object and visual concepts"); none of it is the ft-RPN clustering rule.
# Visual Genome's images are dense (35 objects per image on average, by its paper): the
# stand-in's images draw more labels than the generated COCO's (P(1..5) 0.45, 0.30, 0.14, ...)
LABELS_PER_IMAGE = np.array([0.15, 0.30, 0.25, 0.20, 0.10])
PARTNERS = 2          # an object's region partners: its nearest objects by box edge distance ...
NEAR_GAP = 0.15       # ... at most this far apart, edge to edge, as a fraction of the image side
TRIPLE_CHANCE = 0.4   # a region around an object with two near partners holds all three
SINGLE_CHANCE = 0.1   # an object already in a group also gets a region of its own ("red cup")
STUFF_CHANCE = 0.3    # an image gets a background region without any object ("blue sky")
STUFF_SIDE = (0.25, 0.5)   # a background region's sides, as fractions of the image side
REGION_MARGIN = 0.04  # annotators' boxes are loose: up to this fraction of the image side is added
# synthetic_scenes's background painters, as VG's "stuff" phrases describe such areas
BACKGROUND_PHRASES = {"road": "grey road", "tiles": "tiled floor", "stripes": "striped wallpaper",
                      "waves": "green lawn", "sand": "sandy ground", "grass": "green grass",
                      "sky": "blue sky", "slope": "mountain slope"}
_IRREGULAR_PLURALS = {"person": "people", "sheep": "sheep", "skis": "skis"}
_NUMBERS = ("", "one", "two", "three", "four", "five")


def _plural(name: str) -> str:
    if name in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[name]
    return name + ("es" if name.endswith(("s", "ch", "sh", "x")) else "s")


def _phrase(names: list[str]) -> str:
    """A region's objects in words: "cup", "cup and bowl", "two cups and bowl", "cup, bowl and chair"."""
    counts = {n: names.count(n) for n in dict.fromkeys(names)}
    parts = [n if k == 1 else f"{_NUMBERS[min(k, 5)]} {_plural(n)}" for n, k in counts.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def edge_distances(boxes_xywh) -> np.ndarray:
    """[n, n] Euclidean gap between box edges (0 where boxes touch or overlap)."""
    b = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    lo, hi = b[:, :2], b[:, :2] + b[:, 2:]
    gap = np.maximum(0.0, np.maximum(lo[:, None] - hi[None], lo[None] - hi[:, None]))   # [n, n, 2]
    return np.hypot(gap[..., 0], gap[..., 1])


def _object_groups(boxes, image_size: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """Member sets of the multi-object regions: each object (in a random order) with its nearest
    near partner, or its two when there are two and a triple is drawn; each set once."""
    gaps = edge_distances(boxes)
    groups: list[tuple[int, ...]] = []
    for i in rng.permutation(len(boxes)).tolist():
        nearest = [j for j in np.argsort(gaps[i], kind="stable").tolist() if j != i]
        partners = [j for j in nearest[:PARTNERS] if gaps[i, j] <= NEAR_GAP * image_size]
        if not partners:
            continue
        take = 2 if len(partners) == 2 and rng.random() < TRIPLE_CHANCE else 1
        members = tuple(sorted([i, *partners[:take]]))
        if members not in groups:
            groups.append(members)
    return groups


def _loose_box(boxes, image_size: int, rng: np.random.Generator) -> list[int]:
    """The union box of ``boxes`` (xywh), widened on each side by up to REGION_MARGIN, in the image."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    pad = rng.integers(0, int(REGION_MARGIN * image_size) + 1, size=4)
    x0, y0 = np.maximum(0, b[:, :2].min(0) - pad[:2])
    x1, y1 = np.minimum(image_size, (b[:, :2] + b[:, 2:]).max(0) + pad[2:])
    return [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]


def _stuff_box(boxes, image_size: int, rng: np.random.Generator, tries: int = 8) -> list[int] | None:
    """A background region holding no object centre, or None where no try finds one."""
    for _ in range(tries):
        w, h = (int(round(v * image_size)) for v in rng.uniform(*STUFF_SIDE, size=2))
        x, y = int(rng.integers(0, image_size - w + 1)), int(rng.integers(0, image_size - h + 1))
        if not len(boxes) or int(centres_inside([x, y, w, h], boxes).sum()) == 0:
            return [x, y, w, h]
    return None


def describe_regions(boxes, names: list[str], attributes: list[str], background: str, image_size: int,
                     rng: np.random.Generator) -> list[tuple[list[int], str]]:
    """The described regions of one generated image: [(xywh box in pixels, phrase)].

    ``boxes`` [n, 4] xywh, ``names`` and ``attributes`` (a word such as a colour) per
    object, ``background`` the image's background painter (``BACKGROUND_PHRASES``).
    As Visual Genome's annotators do: regions around two or three objects near each
    other (k nearest neighbours by box edge distance, ``_object_groups``), phrased by
    their names ("cup and bowl"); a region of its own for every object left out of
    them and for a few others ("red cup"); sometimes a background region without
    an object ("blue sky"). Object regions are loose union boxes (``REGION_MARGIN``).
    """
    groups = _object_groups(boxes, image_size, rng)
    regions = [(_loose_box([boxes[j] for j in g], image_size, rng), _phrase([names[j] for j in g]))
               for g in groups]
    grouped = {j for g in groups for j in g}
    for j in range(len(boxes)):
        if j not in grouped or rng.random() < SINGLE_CHANCE:
            regions.append((_loose_box([boxes[j]], image_size, rng), f"{attributes[j]} {names[j]}"))
    if rng.random() < STUFF_CHANCE:
        box = _stuff_box(boxes, image_size, rng)
        if box is not None:
            regions.append((box, BACKGROUND_PHRASES[background]))
    return regions


def write_generated_regions(root: str | Path, n_images: int = 64, image_size: int = 48, seed: int = 0,
                            n_classes: int = 10) -> Path:
    """Write a generated region set at ``root`` in the Visual Genome format; return ``root``.

    Images are drawn by the COCO generator (``synthetic_scenes._Sampler("coco", ...)``) from an
    rng stream of their own and get ids from ``GENERATED_ID_OFFSET`` on, so they never
    coincide with the target data set's images. Regions: ``describe_regions``, drawn
    by a rule of their own, not the ft-RPN clustering of RLSD's model file. About 70% of
    the regions hold two or more objects (object centres inside the region: 68% on 200
    images of 64 px with 24 classes and seed 0, 68-71% over seeds 0-3), about 20% one
    object and about 10% none (background); ``region_object_counts`` measures it. The objects are written too, as the release's
    objects.json. Deterministic: the same arguments give the same files.
    """
    from .synthetic import _save_jpeg
    from .synthetic_scenes import COLOUR_NAMES, COLOURS, _Sampler

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sampler = _Sampler("coco", n_classes, image_size)
    rng = np.random.default_rng([seed, *GENERATED_STREAM])
    listing, described, objects_doc = [], [], []
    region_id = object_id = GENERATED_ID_OFFSET
    for i in range(n_images):
        image_id = GENERATED_ID_OFFSET + i + 1
        drawn = sampler.image(rng, labels_per_image=LABELS_PER_IMAGE)
        _save_jpeg(drawn.image, root / "VG_100K" / f"{image_id}.jpg")
        listing.append({"image_id": image_id, "width": image_size, "height": image_size,
                        "url": f"generated/VG_100K/{image_id}.jpg", "coco_id": None, "flickr_id": None})
        boxes = [[ob["x"], ob["y"], ob["w"], ob["h"]] for ob in drawn.objects]
        names = [sampler.classes[ob["label"]] for ob in drawn.objects]
        colours = [COLOUR_NAMES[COLOURS.index(ob["colour"])] for ob in drawn.objects]
        out = []
        for (x, y, w, h), phrase in describe_regions(boxes, names, colours, drawn.background, image_size, rng):
            region_id += 1
            out.append({"region_id": region_id, "image_id": image_id, "phrase": phrase,
                        "x": x, "y": y, "width": w, "height": h})
        described.append({"id": image_id, "regions": out})
        obs = []
        for (x, y, w, h), name in zip(boxes, names):
            object_id += 1
            obs.append({"object_id": object_id, "x": x, "y": y, "w": w, "h": h, "names": [name]})
        objects_doc.append({"image_id": image_id, "objects": obs})
    (root / "image_data.json").write_text(json.dumps(listing))
    (root / "region_descriptions.json").write_text(json.dumps(described))
    (root / "objects.json").write_text(json.dumps(objects_doc))
    return root


def generate_for_profile(profile, root: str | Path, seed: int = 0) -> Path:
    """``write_generated_regions`` at the sizes of a profile's generated data sets (as many images as
    its generated training split, of its image side and classes): ``python -m mlbook data generate``'s
    Visual Genome stand-in; the full profile has none."""
    prof = get_profile(profile)
    if prof.gen_train <= 0:
        raise ValueError(f"the {prof.name} profile reads real data; it has no generated data set")
    return write_generated_regions(root, n_images=prof.gen_train, image_size=prof.gen_image_size, seed=seed,
                                   n_classes=prof.gen_classes)
