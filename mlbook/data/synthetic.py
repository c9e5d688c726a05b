"""The embedded default: a generated data set written in the real COCO, NUS-WIDE and VOC formats.

Nothing can be downloaded here, so the book's demo reads data made by this
module, through the same loaders that read the real benchmarks. The data are
built to contain what the four papers are about:

- **co-occurrence through scenes**: each image draws a scene (street, kitchen,
  farm, ...) that decides which labels appear together, as context does in
  photographs; the background is drawn independently of the scene (since
  version 4), so the scene, and with it the co-occurring labels, can be inferred
  only from the objects themselves, which is what the label-dependency models
  of the four papers are for;
- **objects in groups**: half of an image's later objects are placed near an
  earlier one, so a region can hold several labels (RLSD's multi-label regions);
- **a long tail**: label frequencies fall off as a Zipf law over the classes,
  listed most frequent first;
- **object sizes that mean something** (since version 5): each class has a typical
  size from its real-world kind (``TYPICAL_SIDE``: bottles, cups, traffic lights and
  birds small; chairs, TVs and potted plants small-to-medium; buses, trains, couches,
  tables and scenes such as sky or sunset large), an object's side is log-normal
  around its class's median (``SIZE_SPREAD``), so sizes of different classes
  overlap and run from 2 pixels to 60% of the image side;
- **a box for every object**, and **real class names** (a subset of COCO's
  80, NUS-WIDE's 81 concepts, VOC's 20), so label-name word vectors mean
  something; each class is drawn as its own coloured shape (12 colours, 8 shapes:
  two classes share a colour only with very different shapes);
- the real data's warts, so the loaders meet them: an unlabelled image per COCO
  split, crowd regions, a grayscale and a CMYK JPEG; NUS-WIDE images listed but
  missing on disk, unlabelled images, Windows paths and CRLF line endings; VOC
  "difficult" objects and CRLF class lists.

Deterministic: the same arguments give byte-identical files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

GENERATOR_VERSION = 5  # bump on any change to what is written: caches key on it

# (id, name, supercategory) of the 80 COCO categories, ids as in instances_*.json
COCO_CATEGORIES = [
    (1, "person", "person"), (2, "bicycle", "vehicle"), (3, "car", "vehicle"), (4, "motorcycle", "vehicle"),
    (5, "airplane", "vehicle"), (6, "bus", "vehicle"), (7, "train", "vehicle"), (8, "truck", "vehicle"),
    (9, "boat", "vehicle"), (10, "traffic light", "outdoor"), (11, "fire hydrant", "outdoor"),
    (13, "stop sign", "outdoor"), (14, "parking meter", "outdoor"), (15, "bench", "outdoor"),
    (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"), (19, "horse", "animal"),
    (20, "sheep", "animal"), (21, "cow", "animal"), (22, "elephant", "animal"), (23, "bear", "animal"),
    (24, "zebra", "animal"), (25, "giraffe", "animal"), (27, "backpack", "accessory"),
    (28, "umbrella", "accessory"), (31, "handbag", "accessory"), (32, "tie", "accessory"),
    (33, "suitcase", "accessory"), (34, "frisbee", "sports"), (35, "skis", "sports"),
    (36, "snowboard", "sports"), (37, "sports ball", "sports"), (38, "kite", "sports"),
    (39, "baseball bat", "sports"), (40, "baseball glove", "sports"), (41, "skateboard", "sports"),
    (42, "surfboard", "sports"), (43, "tennis racket", "sports"), (44, "bottle", "kitchen"),
    (46, "wine glass", "kitchen"), (47, "cup", "kitchen"), (48, "fork", "kitchen"), (49, "knife", "kitchen"),
    (50, "spoon", "kitchen"), (51, "bowl", "kitchen"), (52, "banana", "food"), (53, "apple", "food"),
    (54, "sandwich", "food"), (55, "orange", "food"), (56, "broccoli", "food"), (57, "carrot", "food"),
    (58, "hot dog", "food"), (59, "pizza", "food"), (60, "donut", "food"), (61, "cake", "food"),
    (62, "chair", "furniture"), (63, "couch", "furniture"), (64, "potted plant", "furniture"),
    (65, "bed", "furniture"), (67, "dining table", "furniture"), (70, "toilet", "furniture"),
    (72, "tv", "electronic"), (73, "laptop", "electronic"), (74, "mouse", "electronic"),
    (75, "remote", "electronic"), (76, "keyboard", "electronic"), (77, "cell phone", "electronic"),
    (78, "microwave", "appliance"), (79, "oven", "appliance"), (80, "toaster", "appliance"),
    (81, "sink", "appliance"), (82, "refrigerator", "appliance"), (84, "book", "indoor"),
    (85, "clock", "indoor"), (86, "vase", "indoor"), (87, "scissors", "indoor"), (88, "teddy bear", "indoor"),
    (89, "hair drier", "indoor"), (90, "toothbrush", "indoor"),
]

# ConceptsList/Concepts81.txt of the official NUS-WIDE release (alphabetical)
NUSWIDE_CONCEPTS81 = [
    "airport", "animal", "beach", "bear", "birds", "boats", "book", "bridge", "buildings", "cars", "castle",
    "cat", "cityscape", "clouds", "computer", "coral", "cow", "dancing", "dog", "earthquake", "elk", "fire",
    "fish", "flags", "flowers", "food", "fox", "frost", "garden", "glacier", "grass", "harbor", "horses",
    "house", "lake", "leaf", "map", "military", "moon", "mountain", "nighttime", "ocean", "person", "plane",
    "plants", "police", "protest", "railroad", "rainbow", "reflection", "road", "rocks", "running", "sand",
    "sign", "sky", "snow", "soccer", "sports", "statue", "street", "sun", "sunset", "surf", "swimmers",
    "tattoo", "temple", "tiger", "tower", "town", "toy", "train", "tree", "valley", "vehicle", "water",
    "waterfall", "wedding", "whales", "window", "zebra",
]

# Per data set: the classes the generator uses, most frequent first, each with the
# scenes it occurs in. The first n are a profile's classes.
CLASS_SCENES = {
    "coco": [
        ("person", "street kitchen living park"), ("car", "street"), ("chair", "kitchen living"),
        ("bird", "park sky farm"), ("dining table", "kitchen"), ("cup", "kitchen living"),
        ("dog", "park living"), ("bottle", "kitchen"), ("umbrella", "beach street"), ("bench", "park street"),
        ("truck", "street"), ("bowl", "kitchen"), ("couch", "living"), ("bicycle", "street park"),
        ("boat", "beach"), ("potted plant", "living"), ("cow", "farm"), ("traffic light", "street"),
        ("tv", "living"), ("sheep", "farm"), ("kite", "beach park sky"), ("bus", "street"),
        ("horse", "farm"), ("airplane", "sky"), ("surfboard", "beach"), ("clock", "living kitchen"),
        ("motorcycle", "street"), ("laptop", "living"), ("train", "street"), ("handbag", "street"),
        ("frisbee", "park beach"), ("oven", "kitchen"),
    ],
    "nuswide": [
        ("sky", "sky beach mountain city lake"), ("clouds", "sky mountain"), ("person", "city beach indoor"),
        ("water", "beach lake"), ("animal", "nature"), ("grass", "nature lake"), ("buildings", "city"),
        ("window", "city indoor"), ("plants", "nature indoor"), ("birds", "sky nature lake"), ("lake", "lake"),
        ("street", "city"), ("reflection", "lake"), ("flowers", "nature"), ("rocks", "mountain beach"),
        ("tree", "nature lake"), ("ocean", "beach"), ("road", "city"), ("mountain", "mountain"),
        ("house", "city"), ("sunset", "sky beach"), ("snow", "mountain"), ("beach", "beach"),
        ("sun", "sky"), ("cars", "city"), ("boats", "lake beach"), ("dog", "indoor nature"), ("toy", "indoor"),
        ("food", "indoor"), ("train", "city"), ("bridge", "city lake"), ("horses", "nature"),
    ],
    "voc": [
        ("person", "street indoor farm water"), ("car", "street"), ("chair", "indoor"), ("dog", "indoor farm"),
        ("bird", "farm water"), ("cat", "indoor"), ("pottedplant", "indoor"), ("bicycle", "street"),
        ("aeroplane", "water"), ("boat", "water"), ("tvmonitor", "indoor"), ("sofa", "indoor"),
        ("bottle", "indoor"), ("horse", "farm"), ("motorbike", "street"), ("diningtable", "indoor"),
        ("sheep", "farm"), ("bus", "street"), ("train", "street"), ("cow", "farm"),
    ],
}
# scene -> background painter and how often it is drawn
SCENES = {
    "coco": {"street": ("road", 3), "kitchen": ("tiles", 2), "living": ("stripes", 2), "park": ("waves", 2),
             "beach": ("sand", 1), "farm": ("grass", 1), "sky": ("sky", 1)},
    "nuswide": {"sky": ("sky", 3), "city": ("road", 2), "nature": ("grass", 2), "beach": ("sand", 1),
                "lake": ("waves", 1), "mountain": ("slope", 1), "indoor": ("stripes", 1)},
    "voc": {"street": ("road", 2), "indoor": ("stripes", 3), "farm": ("grass", 1), "water": ("sky", 1)},
}
# ordered so that shapes i and i + 4 (the classes that share a colour) differ most
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "hexagon", "diamond")
COLOURS = ((230, 40, 40), (250, 225, 40), (40, 80, 240), (40, 200, 60), (220, 60, 220), (60, 220, 230),
           (250, 140, 20), (245, 245, 245), (15, 15, 15), (130, 30, 200), (140, 80, 30), (255, 150, 190))
COLOUR_NAMES = ("red", "yellow", "blue", "green", "magenta", "cyan", "orange", "white", "black", "purple",
                "brown", "pink")   # COLOURS in words, for region phrases ("red cup")
GROUPED = 0.5               # chance that a later object is placed next to an earlier one
LABELS_PER_IMAGE = np.array([0.45, 0.30, 0.14, 0.08, 0.03])  # P(1..5 labels)
ZIPF_EXPONENT = 1.0
OFF_SCENE_WEIGHT = 0.04     # a class outside its scenes still appears, rarely

# The typical size of each class, as the median of (object side / image side): the
# book's choice, from common sense about the categories as photographed (COCO's own
# detection statistics: 41% of its instances are small, under 32 x 32 px). Shared by
# the three data sets through the class name; VOC's own names (tvmonitor, pottedplant, ...)
# are listed too, and VOC's bottle, tvmonitor, chair and pottedplant are small to
# medium so that RLSD's small-object claim (Table I: bottle, TV, chair) has meaning.
# NUS-WIDE concepts that are scenes or stuff (sky, sunset, lake, ...) are large.
_SIZE_TABLE = (
    (0.07, ("bottle", "cup", "traffic light", "kite", "frisbee", "clock", "sun")),
    (0.09, ("bird", "birds", "handbag", "flowers", "toy", "window")),
    (0.13, ("chair", "potted plant", "pottedplant", "tv", "tvmonitor", "bowl", "car", "cars", "food",
            "laptop", "boats")),
    (0.20, ("person", "umbrella", "bench", "bicycle", "boat", "sheep", "surfboard", "plants", "rocks",
            "animal")),
    (0.28, ("dog", "cat", "cow", "motorcycle", "motorbike", "oven", "horse", "horses", "truck", "house",
            "tree", "reflection")),
    (0.40, ("dining table", "diningtable", "couch", "sofa", "bus", "train", "airplane", "aeroplane",
            "bridge", "buildings", "street", "road", "grass", "water", "lake", "ocean", "beach", "snow",
            "mountain", "sky", "clouds", "sunset")),
)
TYPICAL_SIDE = {name: side for side, names in _SIZE_TABLE for name in names}
SIZE_SPREAD = 0.4               # sd of log(side) around the class median: neighbouring kinds overlap
MIN_SIDE, MAX_SIDE = 0.03, 0.6  # object side / image side, the drawn size clipped to this range
SUPERSAMPLE = 2


def class_names(dataset: str, n_classes: int) -> list[str]:
    """The generated classes of ``dataset``, most frequent first (VOC: always its 20)."""
    names = [c for c, _ in CLASS_SCENES[dataset]]
    if dataset == "voc":
        return names
    if not 1 <= n_classes <= len(names):
        raise ValueError(f"{dataset}: between 1 and {len(names)} generated classes, not {n_classes}")
    return names[:n_classes]


def class_style(rank: int) -> tuple[str, tuple[int, int, int]]:
    """(shape, colour) of the class at frequency rank ``rank``: classes r and r + 12 share a
    colour and have shapes 4 apart in ``SHAPES`` (circle/cross, square/ring, ...); the
    first 12 classes all differ in colour."""
    return SHAPES[rank % len(SHAPES)], COLOURS[rank % len(COLOURS)]


# --- drawing -------------------------------------------------------------------------

def _background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A scene's background, float RGB [size, size, 3]."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    jitter = rng.uniform(0.85, 1.15)
    if kind == "road":
        horizon = rng.uniform(0.3, 0.5)
        img[:] = (92, 92, 98)
        img[yy < horizon] = (165, 155, 140)
        lane = (np.abs(yy - (horizon + 1) / 2) < 0.02) & ((xx * 8 + rng.uniform()) % 1 < 0.5)
        img[lane] = (200, 200, 190)
    elif kind == "tiles":
        cell = rng.integers(6, 10)
        check = ((yy * cell).astype(int) + (xx * cell).astype(int)) % 2 == 0
        img[:] = (88, 64, 50)
        img[check] = (125, 94, 72)
    elif kind == "stripes":
        check = ((xx * rng.integers(7, 12)).astype(int) % 2) == 0
        img[:] = (68, 54, 70)
        img[check] = (92, 76, 94)
    elif kind == "waves":
        band = np.sin(2 * np.pi * (yy * rng.uniform(5, 8) + 0.3 * np.sin(6 * xx))) > 0
        img[:] = (92, 100, 55)
        img[band] = (115, 122, 70)
    elif kind == "sand":
        img[:] = (145, 104, 62)
        dots = rng.random((size, size)) < 0.02
        img[dots] = (200, 180, 150)
    elif kind == "grass":
        img[:] = (38, 92, 40)
        img += rng.normal(0, 22, (size, size, 1)) * np.array([0.5, 1.0, 0.4])
    elif kind == "sky":
        top, bottom = np.array([120, 165, 215]), np.array([60, 95, 160])
        img[:] = top + (bottom - top) * yy[..., None]
    elif kind == "slope":
        img[:] = (175, 190, 205)
        ridge = yy > 0.55 - 0.25 * np.abs(np.sin(np.pi * (xx * rng.uniform(1, 2) + rng.uniform())))
        img[ridge] = (105, 100, 105)
    else:
        raise ValueError(kind)
    return img * jitter


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], colour) -> None:
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2

    def poly(n, start, radii=(1.0,)):
        pts = []
        for i in range(n * len(radii)):
            a = start + 2 * np.pi * i / (n * len(radii))
            rr = r * radii[i % len(radii)]
            pts.append((cx + rr * np.cos(a), cy + rr * np.sin(a)))
        draw.polygon(pts, fill=colour)

    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=colour)
    elif shape == "star":
        poly(5, -np.pi / 2, radii=(1.0, 0.45))
    elif shape == "ring":  # the layer is RGBA: a transparent fill punches the hole
        draw.ellipse(box, fill=colour)
        draw.ellipse((cx - 0.5 * r, cy - 0.5 * r, cx + 0.5 * r, cy + 0.5 * r), fill=(0, 0, 0, 0))
    elif shape == "cross":
        t = 0.35 * r
        draw.rectangle((x0, cy - t, x1, cy + t), fill=colour)
        draw.rectangle((cx - t, y0, cx + t, y1), fill=colour)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=colour)
    elif shape == "hexagon":
        poly(6, 0.0)
    else:
        raise ValueError(shape)


def _render(background: np.ndarray, objects: list[dict], rng: np.random.Generator) -> Image.Image:
    """Background + objects (largest first, so small ones stay visible), supersampled, plus noise."""
    size = background.shape[0]
    s = SUPERSAMPLE
    big = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8)).resize((size * s, size * s),
                                                                                Image.NEAREST)
    canvas = big.convert("RGBA")
    for ob in sorted(objects, key=lambda o: -o["w"] * o["h"]):
        layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        for (x, y, w, h) in ob.get("parts", [(ob["x"], ob["y"], ob["w"], ob["h"])]):
            _draw_shape(draw, ob["shape"], (x * s, y * s, (x + w) * s - 1, (y + h) * s - 1), ob["colour"] + (255,))
        canvas = Image.alpha_composite(canvas, layer)
    img = np.asarray(canvas.convert("RGB").resize((size, size), Image.BOX), dtype=np.float64)
    img += rng.normal(0, 5, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


# --- sampling ------------------------------------------------------------------------

class _Sampler:
    """Draws the images of one data set: scene -> labels -> objects."""

    def __init__(self, dataset: str, n_classes: int, image_size: int):
        self.dataset, self.size = dataset, image_size
        self.classes = class_names(dataset, n_classes)
        self.log_median_side = np.log([TYPICAL_SIDE[c] for c in self.classes])
        scenes_of = dict(CLASS_SCENES[dataset])
        self.scenes = list(SCENES[dataset])
        zipf = 1.0 / np.arange(1, len(self.classes) + 1) ** ZIPF_EXPONENT
        self.weights = {}   # scene -> class weights
        for sc in self.scenes:
            member = np.array([sc in scenes_of[c].split() for c in self.classes], dtype=float)
            self.weights[sc] = zipf * np.where(member > 0, 1.0, OFF_SCENE_WEIGHT)
        sw = np.array([SCENES[dataset][sc][1] for sc in self.scenes], dtype=float)
        self.scene_p = sw / sw.sum()

    def objects_of(self, rng: np.random.Generator, k_labels: int, scene: str) -> list[dict]:
        w = self.weights[scene]
        k = min(k_labels, int((w > 0).sum()))
        chosen = rng.choice(len(self.classes), size=k, replace=False, p=w / w.sum())
        objects = []
        for c in chosen:
            shape, colour = class_style(int(c))
            for _ in range(1 if rng.random() < 0.8 else 2):
                side = max(2, int(round(self.size * self.relative_side(rng, int(c)))))
                x, y = (int(v) for v in rng.integers(0, self.size - side + 1, size=2))
                if objects and rng.random() < GROUPED:   # next to an earlier object: a multi-label region
                    near = objects[int(rng.integers(0, len(objects)))]
                    cx = near["x"] + near["w"] / 2 + rng.uniform(-0.6, 0.6) * (near["w"] + side)
                    cy = near["y"] + near["h"] / 2 + rng.uniform(-0.6, 0.6) * (near["h"] + side)
                    x = int(np.clip(round(cx - side / 2), 0, self.size - side))
                    y = int(np.clip(round(cy - side / 2), 0, self.size - side))
                objects.append(dict(label=int(c), x=x, y=y, w=side, h=side, shape=shape, colour=colour,
                                    crowd=False, difficult=False))
        return objects

    def relative_side(self, rng: np.random.Generator, label: int) -> float:
        """An object's side / image side: log-normal around its class's typical size, clipped."""
        side = np.exp(self.log_median_side[label] + SIZE_SPREAD * rng.standard_normal())
        return float(np.clip(side, MIN_SIDE, MAX_SIDE))

    def crowd_of(self, rng: np.random.Generator, label: int) -> dict:
        """A COCO crowd region: a cluster of tiny instances of one class under one box."""
        shape, colour = class_style(label)
        side = max(8, self.size // 3)
        x, y = (int(v) for v in rng.integers(0, self.size - side + 1, size=2))
        tiny = max(2, side // 4)
        parts = [(x + int(rng.integers(0, side - tiny + 1)), y + int(rng.integers(0, side - tiny + 1)), tiny, tiny)
                 for _ in range(5)]
        return dict(label=label, x=x, y=y, w=side, h=side, shape=shape, colour=colour, crowd=True,
                    difficult=False, parts=parts)

    def image(self, rng: np.random.Generator, labelled: bool = True, crowd: bool = False,
              labels_per_image: np.ndarray = LABELS_PER_IMAGE) -> "Drawn":
        """One image; ``labels_per_image``: P(1, 2, ... labels) (the region set draws denser images)."""
        scene = self.scenes[rng.choice(len(self.scenes), p=self.scene_p)]
        painters = sorted({kind for kind, _ in SCENES[self.dataset].values()})
        painter = painters[int(rng.integers(0, len(painters)))]   # not the scene's: see the module docstring
        background = _background(painter, self.size, rng)
        objects = []
        if labelled:
            k = 1 + int(rng.choice(len(labels_per_image), p=labels_per_image))
            objects = self.objects_of(rng, k, scene)
        if crowd:
            objects.append(self.crowd_of(rng, objects[0]["label"]))
        return Drawn(_render(background, objects, rng), objects, scene, painter)


class Drawn(NamedTuple):
    """One generated image: the picture, its objects (dicts with label, x, y, w, h in pixels,
    shape, colour, crowd, difficult), the scene it was drawn from and its background painter."""

    image: Image.Image
    objects: list[dict]
    scene: str
    background: str


def _rng(seed: int, dataset: str, split: str) -> np.random.Generator:
    return np.random.default_rng([seed, ("coco", "nuswide", "voc").index(dataset), ("train", "test").index(split)])


def _crlf(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


def _save_jpeg(img: Image.Image, path: Path, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert(mode).save(path, format="JPEG", quality=92)


# --- the three formats ------------------------------------------------------------------

def _write_coco(root: Path, sampler: _Sampler, seed: int, n: dict) -> None:
    cats = {name: (cid, sup) for cid, name, sup in COCO_CATEGORIES}
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, folder in (("train", "train2014"), ("test", "val2014")):
        rng = _rng(seed, "coco", split)
        total = n[split] + 1
        ids = np.sort(rng.choice(np.arange(1, 600_000), size=total, replace=False))
        unlabelled = int(rng.integers(0, total))
        crowd = set(rng.choice([i for i in range(total) if i != unlabelled], size=2, replace=False).tolist())
        special = [i for i in range(total) if i != unlabelled and i not in crowd]
        gray = int(special[int(rng.integers(0, len(special)))])  # one grayscale JPEG (train), one CMYK (test)
        images, anns = [], []
        for i, image_id in enumerate(ids.tolist()):
            img, objects, *_ = sampler.image(rng, labelled=i != unlabelled, crowd=i in crowd)
            name = f"COCO_{folder}_{image_id:012d}.jpg"
            _save_jpeg(img, root / folder / name, ("L" if split == "train" else "CMYK") if i == gray else "RGB")
            images.append({"id": image_id, "file_name": name, "width": sampler.size, "height": sampler.size})
            for ob in objects:
                x, y, w, h = ob["x"], ob["y"], ob["w"], ob["h"]
                anns.append({"id": len(anns) + 1 + 1_000_000 * (split == "test"), "image_id": image_id,
                             "category_id": cats[sampler.classes[ob["label"]]][0],
                             "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h),
                             "iscrowd": int(ob["crowd"]),
                             "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
        doc = {"info": {"description": "mlbook generated stand-in for COCO 2014", "version": str(GENERATOR_VERSION)},
               "licenses": [], "images": images, "annotations": anns,
               "categories": [{"id": cats[c][0], "name": c, "supercategory": cats[c][1]}
                              for c in sorted(sampler.classes, key=lambda c: cats[c][0])]}
        (root / "annotations" / f"instances_{folder[:-4]}2014.json").write_text(json.dumps(doc))


def _write_nuswide(root: Path, sampler: _Sampler, seed: int, n: dict) -> None:
    rows = {}    # split -> [(folder, file name, label set, on disk)]
    for split in ("train", "test"):
        rng = _rng(seed, "nuswide", split)
        total = n[split] + 4
        odd = rng.choice(total, size=4, replace=False).tolist()
        missing, unlabelled = set(odd[:2]), set(odd[2:])
        entries = []
        for i in range(total):
            img, objects, scene, _ = sampler.image(rng, labelled=i not in unlabelled)
            name = f"{i + (0 if split == 'train' else n['train'] + 4):04d}_{int(rng.integers(10**8, 10**10))}.jpg"
            if i not in missing:
                _save_jpeg(img, root / "Flickr" / scene / name)
            entries.append((scene, name, {ob["label"] for ob in objects}))
        rows[split] = entries
    concepts = sorted(sampler.classes)   # Concepts81.txt is alphabetical
    column = {c: sampler.classes.index(c) for c in concepts}
    # Imagelist.txt lists every image, by folder, train and test interleaved as in the release
    everything = sorted((folder, name, labels) for split in ("train", "test") for folder, name, labels in rows[split])
    (root / "ConceptsList").mkdir(parents=True)
    (root / "ConceptsList" / "Concepts81.txt").write_bytes(_crlf(concepts))
    (root / "ImageList").mkdir()
    (root / "ImageList" / "Imagelist.txt").write_bytes(
        _crlf([f"C:\\ImageData\\Flickr\\{f}\\{name}" for f, name, _ in everything]))
    tt, al = root / "Groundtruth" / "TrainTestLabels", root / "Groundtruth" / "AllLabels"
    tt.mkdir(parents=True)
    al.mkdir()
    for split, tag in (("train", "Train"), ("test", "Test")):
        listed = sorted(rows[split])
        (root / "ImageList" / f"{tag}Imagelist.txt").write_bytes(_crlf([f"{f}\\{name}" for f, name, _ in listed]))
        for c in concepts:
            (tt / f"Labels_{c}_{tag}.txt").write_text("".join(f"{int(column[c] in y)}\n" for *_, y in listed))
    for c in concepts:
        (al / f"Labels_{c}.txt").write_text("".join(f"{int(column[c] in y)}\n" for *_, y in everything))


def _voc_xml(image_id: str, size: int, objects: list[dict], classes: list[str]) -> str:
    parts = [f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
             f"\t<source>\n\t\t<database>mlbook generated stand-in for VOC2007</database>\n\t</source>\n"
             f"\t<size>\n\t\t<width>{size}</width>\n\t\t<height>{size}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
             f"\t<segmented>0</segmented>\n"]
    for ob in objects:
        parts.append(f"\t<object>\n\t\t<name>{classes[ob['label']]}</name>\n\t\t<pose>Unspecified</pose>\n"
                     f"\t\t<truncated>0</truncated>\n\t\t<difficult>{int(ob['difficult'])}</difficult>\n"
                     f"\t\t<bndbox>\n\t\t\t<xmin>{ob['x'] + 1}</xmin>\n\t\t\t<ymin>{ob['y'] + 1}</ymin>\n"
                     f"\t\t\t<xmax>{ob['x'] + ob['w']}</xmax>\n\t\t\t<ymax>{ob['y'] + ob['h']}</ymax>\n"
                     f"\t\t</bndbox>\n\t</object>\n")
    return "".join(parts) + "</annotation>\n"


def _write_voc(root: Path, sampler: _Sampler, seed: int, n: dict) -> None:
    from .voc import VOC_CLASSES

    rng = _rng(seed, "voc", "train")
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    total = n["train"] + n["test"]
    is_test = np.zeros(total, dtype=bool)
    is_test[rng.choice(total, size=n["test"], replace=False)] = True   # ids of the two splits interleave
    ids = {"train": [], "test": []}
    values = {}  # image id -> per class 1 / 0 / -1
    for i in range(total):
        split = "test" if is_test[i] else "train"
        image_id = f"{2 * i + 1 + int(rng.integers(0, 2)):06d}"
        img, objects, *_ = sampler.image(rng)
        for j, ob in enumerate(objects):   # the first object always stays scored
            small = ob["w"] < 0.12 * sampler.size
            ob["difficult"] = j > 0 and rng.random() < (0.25 if small else 0.03)
        _save_jpeg(img, root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, sampler.size, objects,
                                                                       sampler.classes))
        row = {}
        for c, name in enumerate(sampler.classes):
            obs = [ob for ob in objects if ob["label"] == c]
            row[name] = -1 if not obs else (1 if any(not ob["difficult"] for ob in obs) else 0)
        values[image_id] = row
        ids[split].append(image_id)
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    half = len(ids["train"]) // 2
    sets = {"trainval": ids["train"], "test": ids["test"], "train": ids["train"][:half], "val": ids["train"][half:]}
    for set_name, set_ids in sets.items():
        (main / f"{set_name}.txt").write_bytes(_crlf(set_ids))
        for name in VOC_CLASSES:
            (main / f"{name}_{set_name}.txt").write_bytes(_crlf([f"{i} {values[i][name]:2d}" for i in set_ids]))


WRITERS = {"coco": _write_coco, "nuswide": _write_nuswide, "voc": _write_voc}


def generate(dataset: str, root: str | Path, seed: int = 0, n_train: int = 48, n_test: int = 24,
             n_classes: int = 10, image_size: int = 40) -> Path:
    """Write the generated ``dataset`` under ``root`` in its real format; return ``root``.

    ``n_train``/``n_test`` count the images the loader keeps; the COCO and
    NUS-WIDE splits list a few more (unlabelled or missing) so those drops are
    exercised. VOC always has its 20 classes (``n_classes`` is ignored there).
    """
    if dataset not in WRITERS:
        raise ValueError(f"unknown data set {dataset!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sampler = _Sampler(dataset, n_classes, image_size)
    WRITERS[dataset](root, sampler, seed, {"train": n_train, "test": n_test})
    meta = {"dataset": dataset, "args": _args(n_train, n_test, n_classes, image_size, seed),
            "classes": sampler.classes,
            "class_styles": {c: " ".join(map(str, class_style(i))) for i, c in enumerate(sampler.classes)},
            "scenes": {sc: SCENES[dataset][sc][0] for sc in sampler.scenes}}
    (root / "generated.json").write_text(json.dumps(meta, indent=1))
    return root


def _args(n_train: int, n_test: int, n_classes: int, image_size: int, seed: int) -> dict:
    return {"generator_version": GENERATOR_VERSION, "n_train": n_train, "n_test": n_test,
            "n_classes": n_classes, "image_size": image_size, "seed": seed}


def generation_args(profile, seed: int = 0) -> dict:
    """What ``generate_for_profile`` records in generated.json for this profile and seed."""
    from ..profiles import get_profile

    prof = get_profile(profile)
    return _args(prof.gen_train, prof.gen_test, prof.gen_classes, prof.gen_image_size, seed)


def generate_for_profile(dataset: str, profile, root: str | Path, seed: int = 0) -> Path:
    """``generate`` with the sizes of a profile (a name or a Profile); the full profile has none."""
    from ..profiles import get_profile

    prof = get_profile(profile)
    if prof.gen_train <= 0:
        raise ValueError(f"the {prof.name} profile reads real data; it has no generated data set")
    return generate(dataset, root, seed=seed, n_train=prof.gen_train, n_test=prof.gen_test,
                    n_classes=prof.gen_classes, image_size=prof.gen_image_size)
