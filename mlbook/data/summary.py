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
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .base import DataFormatError, MultiLabelData


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


def summarize(dataset: str, root: str | Path, strict: bool = False) -> dict:
    """Both splits of ``dataset`` at ``root``; a split that cannot be read reports its error.

    Statistics come from the lists (see the module docstring); images missing on
    disk are counted in ``skipped["missing_image"]`` and left out of ``loaded``.
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
        missing = sum(not Path(p).is_file() for p in data.image_paths)
        s["labelled"] = len(data)   # the images the statistics below count
        s["loaded"] = len(data) - missing
        if missing:
            s["skipped"] = dict(sorted({**s["skipped"], "missing_image": missing}.items()))
        bad = malformed_values(data)
        if bad:
            s["malformed_values"] = [{"file": str(m.file), "line": m.line, "value": m.value,
                                      "read_as": m.read_as} for m in bad]
        result["splits"][split] = s
    return result


def unreadable_splits(summary: dict) -> list[str]:
    """The splits of a summary that could not be read (a check of a copy fails on any)."""
    return [split for split, s in summary["splits"].items() if "error" in s]


def format_summary(summary: dict) -> str:
    """The summary as text for a terminal."""
    lines = [f"{summary['dataset']} at {summary['root']}"]
    for split, s in summary["splits"].items():
        if "error" in s:
            lines.append(f"  {split}: not readable: {s['error']}")
            continue
        skipped = ", ".join(f"{n} {reason}" for reason, n in s["skipped"].items()) or "none"
        lpi = s["labels_per_image"]
        lines.append(f"  {split}: {s['listed']} listed, {s['loaded']} loaded (skipped: {skipped})")
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
