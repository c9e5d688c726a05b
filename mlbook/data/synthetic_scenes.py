"""What the generated data sets show: classes, scenes, object sizes, and the drawing of each image.

The data are built to contain what the four papers are about (``synthetic`` writes them in the
real COCO, NUS-WIDE and VOC formats):

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
  two classes share a colour only with very different shapes).

Deterministic: the same random generator gives the same images. A change here changes what is
written: bump ``synthetic.GENERATOR_VERSION`` (caches key on it).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

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
