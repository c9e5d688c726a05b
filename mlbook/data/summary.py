"""`python -m mlbook data summary`: what a loader read from a data set root.

Run it on a copy before a long training run: per split the images listed and
loaded, the images skipped by reason, positives (and difficult labels) per
class, labels per image, boxes, and any label value read leniently.

Where the statistics come from: the split's lists and annotations, as the
data sets' owners count them (VOC 2007's published statistics, NUS-WIDE's
label files), whether or not each image is on disk. Images absent on disk are
counted apart (``skipped["missing_image"]``) and ``loaded`` is what a training
run would read (labelled and on disk). So a copy that holds only the lists
(``../shared/data/voc2007``) still reports the released statistics.

VOC: ``positives`` counts label 1 only (the official statistics); an image whose
only objects of a class are "difficult" (label 0 in the class list) is counted
apart, in ``difficult``, not as a positive. ``labels_per_image`` counts the
loader's label vector (difficult included, as the loader sets it to 1).

Every image on disk is decoded (``Image.open(...).load()``, at a JPEG's smallest
draft scale, threads across the cores; coco128 in about a second): one that does
not decode (a truncated or corrupt file) is counted in
``skipped["unreadable_image"]``, named in ``unreadable_images`` (the first
few) and left out of ``loaded``. A split fails the check (``failed_splits``, the
CLI's exit 1) when it cannot be read, when any image is unreadable, or when it
loads no image: ``no_images`` then says why in one line, naming the folder that
is missing or empty. ``notes`` name a missing folder that is not fatal (VOC's
``Annotations/``: no boxes). A Visual Genome root (``summarize_regions``) is checked the same
way, its images and regions in one part, "regions", instead of two splits.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from .base import DataFormatError, MultiLabelData
from .visual_genome import read_regions

#: unreadable images named per split (all are counted)
NAMED_UNREADABLE = 10


def split_summary(data: MultiLabelData) -> dict:
    """A JSON-ready description of one loaded split."""
    per_image = data.labels.sum(1).long().tolist()
    hist = Counter(per_image)
    scored = data.labels if data.ignore is None else data.labels * (~data.ignore)
    positives = scored.sum(0).long().tolist()   # VOC: label 1 only; difficult (label 0) apart
    out = {
        "listed": data.listed, "loaded": len(data), "skipped": dict(sorted(data.skipped.items())),
        "classes": data.num_classes, "classes_present": int(sum(p > 0 for p in positives)),
        "labels_per_image": {"min": min(per_image, default=0), "max": max(per_image, default=0),
                             "mean": round(sum(per_image) / max(len(per_image), 1), 3),
                             "histogram": {str(k): hist[k] for k in sorted(hist)}},
        "positives": dict(zip(data.classes, positives)),
    }
    if data.ignore is not None:
        out["difficult"] = dict(zip(data.classes, data.ignore.sum(0).long().tolist()))
    if data.boxes is not None:
        out["boxes"] = sum(len(b) for b in data.boxes)
        out["crowd_boxes"] = sum(b.crowd for bs in data.boxes for b in bs)
        out["images_without_boxes"] = sum(not b for b in data.boxes)
    return out


def _load(dataset: str, root: str | Path, split: str, strict: bool) -> MultiLabelData:
    from . import load, nuswide

    if dataset == "nuswide":
        return nuswide.load(root, split, check_images=False, strict=strict)
    return load(dataset, root, split, check_images=False)


def image_problem(path: str | Path) -> str | None:
    """None if ``path`` is a file that decodes; "missing" if it is not a file; else why it does not decode."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as img:
            img.draft(None, (1, 1))   # JPEG: decode every coefficient at 1/8 scale (a truncation still fails)
            img.load()
    except Exception as e:   # a checker: whatever PIL raises (OSError, SyntaxError, DecompressionBombError, ...)
        return f"{type(e).__name__}: {e}"
    return None


def _image_problems(paths: list[Path]) -> list[str | None]:
    """``image_problem`` of every path, in order, decoded on a few threads (PIL releases the GIL)."""
    if len(paths) < 16:
        return [image_problem(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(image_problem, paths, chunksize=32))


def _image_folder(root: Path, path: Path) -> Path:
    """The folder right under ``root`` that holds ``path`` (train2014/, JPEGImages/, Flickr/)."""
    try:
        return root / Path(path).relative_to(root).parts[0]
    except (ValueError, IndexError):
        return Path(path).parent


def _no_images(root: Path, data: MultiLabelData, problems: list[str | None]) -> str:
    """One line: why a split loads no image."""
    if not len(data):
        return f"none of the {data.listed} listed images has a label (skipped: " + \
            ", ".join(f"{n} {r}" for r, n in sorted(data.skipped.items())) + ")"
    return _none_on_disk(root, data.image_paths, problems, "the split's")


def _none_on_disk(root: Path, paths: list, problems: list[str | None], whose: str) -> str:
    """One line: why none of ``paths`` (listed, not empty) loads: no folder, no file, or no decoding."""
    first = Path(paths[0])
    folder = _image_folder(root, first)
    if not folder.is_dir():
        return f"{folder}/: no such folder; expected {whose} {len(paths)} images there (e.g. {first.name})"
    if all(p == "missing" for p in problems):
        return f"none of {whose} {len(paths)} images is in {folder}/ (e.g. {first.name} is not)"
    path, why = next((p, w) for p, w in zip(paths, problems) if w != "missing")
    return f"none of {whose} images on disk decodes (e.g. {path}: {why})"


def _notes(dataset: str, root: Path) -> list[str]:
    """Missing folders that leave the split usable, one line each."""
    if dataset == "voc" and root.is_dir() and not (root / "Annotations").is_dir():
        return [f"{root / 'Annotations'}/: no such folder; no boxes read (the labels come from ImageSets/Main/)"]
    return []


def summarize(dataset: str, root: str | Path, strict: bool = False) -> dict:
    """Both splits of ``dataset`` at ``root``; a split that cannot be read reports its error.

    Statistics come from the lists (see the module docstring); images missing on
    disk are counted in ``skipped["missing_image"]``, images that do not decode in
    ``skipped["unreadable_image"]`` (the first few named in ``unreadable_images``),
    and both are left out of ``loaded``.
    ``strict`` (NUS-WIDE) rejects the release's known malformed label value instead
    of reading it as 0; without it each such value is listed in ``malformed_values``.
    """
    from .nuswide import malformed_values

    result = {"dataset": dataset, "root": str(root), "strict": strict, "splits": {}}
    for split in ("train", "test"):
        try:
            data = _load(dataset, root, split, strict)
        except DataFormatError as e:
            result["splits"][split] = {"error": str(e)}
            continue
        result["classes"] = data.classes
        s = split_summary(data)
        s["skipped"], unreadable, problems = _checked_images(data.image_paths, s["skipped"])
        s["labelled"] = len(data)   # the images the statistics below count
        s["loaded"] = len(data) - problems.count("missing") - len(unreadable)
        if unreadable:
            s["unreadable_images"] = [{"file": str(p), "error": why} for p, why in unreadable[:NAMED_UNREADABLE]]
        if not s["loaded"]:
            s["no_images"] = _no_images(Path(root), data, problems)
        notes = _notes(dataset, Path(root))
        if notes:
            s["notes"] = notes
        bad = malformed_values(data)
        if bad:
            s["malformed_values"] = [{"file": str(m.file), "line": m.line, "value": m.value,
                                      "read_as": m.read_as} for m in bad]
        result["splits"][split] = s
    return result


def _checked_images(paths: list, listed_skipped: dict) -> tuple[dict, list, list]:
    """Every one of ``paths`` decoded (``image_problem``): (``listed_skipped`` with the images missing
    and not decoding added, [(path, why)] of those that do not decode, the problem of each path)."""
    problems = _image_problems(paths)
    unreadable = [(p, why) for p, why in zip(paths, problems) if why not in (None, "missing")]
    extra = {k: n for k, n in (("missing_image", problems.count("missing")), ("unreadable_image", len(unreadable)))
             if n}
    return dict(sorted({**listed_skipped, **extra}.items())), unreadable, problems


def summarize_regions(root: str | Path) -> dict:
    """A Visual Genome root (``--vg-root``, RLSD's region set) as ``read_regions`` reads it, in the
    shape of ``summarize`` with one part, "regions", for the splits (the release has none): the images
    image_data.json lists, those on disk that decode (``loaded``), the regions read, those dropped
    (``skipped``), regions per image."""
    result = {"dataset": "vg", "root": str(root), "strict": False, "splits": {}}
    try:
        vg = read_regions(root)
    except DataFormatError as e:
        result["splits"]["regions"] = {"error": str(e)}
        return result
    paths = [im.path for im in vg]
    skipped, unreadable, problems = _checked_images(paths, vg.skipped)
    counts = [len(im.boxes) for im in vg]
    s = {"listed": len(vg), "loaded": len(vg) - problems.count("missing") - len(unreadable), "skipped": skipped,
         "regions": sum(counts), "images_without_regions": counts.count(0),
         "regions_per_image": {"min": min(counts, default=0), "max": max(counts, default=0),
                               "mean": round(sum(counts) / max(len(counts), 1), 3)}}
    if unreadable:
        s["unreadable_images"] = [{"file": str(p), "error": why} for p, why in unreadable[:NAMED_UNREADABLE]]
    if not s["loaded"]:
        s["no_images"] = (_none_on_disk(Path(root), paths, problems, "image_data.json's") if paths
                          else "image_data.json lists no image")
    result["splits"]["regions"] = s
    return result


def failed_splits(summary: dict) -> dict[str, str]:
    """{split: one line} for each split a check of a copy fails on: unreadable, an image that does not
    decode, or no image loaded."""
    out = {}
    for split, s in summary["splits"].items():
        if "error" in s:
            out[split] = f"not readable: {s['error']}"
        elif s.get("unreadable_images"):
            first = s["unreadable_images"][0]
            out[split] = (f"{s['skipped']['unreadable_image']} unreadable image(s), e.g. {first['file']} "
                          f"({first['error']})")
        elif not s["loaded"]:
            out[split] = f"no image loaded: {s['no_images']}"
    return out


def _format_loaded(split: str, s: dict) -> list[str]:
    """The lines every part of a summary starts with: listed, loaded, skipped, why none, unreadable."""
    skipped = ", ".join(f"{n} {reason}" for reason, n in s["skipped"].items()) or "none"
    lines = [f"  {split}: {s['listed']} listed, {s['loaded']} loaded (skipped: {skipped})"]
    if "no_images" in s:
        lines.append(f"    no image loaded: {s['no_images']}")
    if s.get("unreadable_images"):
        bad = s["unreadable_images"]
        lines.append(f"    unreadable images: {s['skipped']['unreadable_image']}"
                     + (f" (the first {len(bad)}):" if len(bad) < s["skipped"]["unreadable_image"] else ":"))
        lines.extend(f"      {u['file']}: {u['error']}" for u in bad)
    return lines


def format_summary(summary: dict) -> str:
    """The summary as text for a terminal."""
    lines = [f"{summary['dataset']} at {summary['root']}"]
    for split, s in summary["splits"].items():
        if "error" in s:
            lines.append(f"  {split}: not readable: {s['error']}")
            continue
        lines.extend(_format_loaded(split, s))
        if "regions" in s:   # Visual Genome (summarize_regions)
            rpi = s["regions_per_image"]
            lines.append(f"    regions: {s['regions']}; per image min {rpi['min']}, mean {rpi['mean']}, max "
                         f"{rpi['max']}; images without regions: {s['images_without_regions']}")
            continue
        lpi = s["labels_per_image"]
        lines.extend(f"    note: {n}" for n in s.get("notes", ()))
        if s.get("malformed_values"):
            bad = s["malformed_values"]
            lines.append(f"    malformed label values: {len(bad)}, each read as 0 (absent); "
                         f"--strict rejects them:")
            lines.extend(f"      {m['file']}, line {m['line']}: {m['value']!r} read as {m['read_as']}" for m in bad)
        if "labelled" in s and s["labelled"] != s["loaded"]:
            lines.append(f"    statistics below: the {s['labelled']} labelled images of the lists, "
                         f"on disk or not")
        lines.append(f"    classes: {s['classes']} ({s['classes_present']} with a positive); labels per image "
                     f"min {lpi['min']}, mean {lpi['mean']}, max {lpi['max']}; histogram "
                     + " ".join(f"{k}:{v}" for k, v in lpi["histogram"].items()))
        if "boxes" in s:
            lines.append(f"    boxes: {s['boxes']} ({s['crowd_boxes']} crowd); "
                         f"images without boxes: {s['images_without_boxes']}")
        width = max((len(c) for c in s["positives"]), default=0)
        lines.append("    positives per class" + (" (label 1; in brackets difficult-only, label 0)"
                                                   if "difficult" in s else "") + ":")
        for c, n in sorted(s["positives"].items(), key=lambda kv: -kv[1]):
            extra = f" ({s['difficult'][c]})" if "difficult" in s else ""
            lines.append(f"      {c:<{width}} {n}{extra}")
    return "\n".join(lines)
