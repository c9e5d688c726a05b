"""The embedded default: a generated data set written in the real COCO, NUS-WIDE and VOC formats.

Nothing can be downloaded here, so the book's demo reads data made by this
module, through the same loaders that read the real benchmarks. What the images show (scenes
that decide which labels co-occur, objects in groups, a long tail, object sizes that mean
something, a box for every object, real class names) is drawn by ``synthetic_scenes``; this
module writes it in each data set's format, with the real data's warts, so the loaders meet
them: an unlabelled image per COCO split, crowd regions, a grayscale and a CMYK JPEG; NUS-WIDE
images listed but missing on disk, unlabelled images, Windows paths and CRLF line endings; VOC
"difficult" objects and CRLF class lists.

Deterministic: the same arguments give byte-identical files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .synthetic_scenes import SCENES, _Sampler, class_style

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
