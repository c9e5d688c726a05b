"""`python -m mlbook data summary`: what a loader read from a data set root.

Run it on a copy before a long training run: per split the images listed and
loaded, the images skipped by reason, positives (and difficult labels) per
class, labels per image, and boxes.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from .base import DataFormatError, MultiLabelData


def split_summary(data: MultiLabelData) -> dict:
    """A JSON-ready description of one loaded split."""
    per_image = data.labels.sum(1).long().tolist()
    hist = Counter(per_image)
    positives = data.labels.sum(0).long().tolist()
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


def summarize(dataset: str, root: str | Path) -> dict:
    """Both splits of ``dataset`` at ``root``; a split that cannot be read reports its error."""
    from . import load

    result = {"dataset": dataset, "root": str(root), "splits": {}}
    for split in ("train", "test"):
        try:
            data = load(dataset, root, split)
        except DataFormatError as e:
            result["splits"][split] = {"error": str(e)}
            continue
        result["classes"] = data.classes
        result["splits"][split] = split_summary(data)
    return result


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
        lines.append(f"    classes: {s['classes']} ({s['classes_present']} with a positive); labels per image "
                     f"min {lpi['min']}, mean {lpi['mean']}, max {lpi['max']}; histogram "
                     + " ".join(f"{k}:{v}" for k, v in lpi["histogram"].items()))
        if "boxes" in s:
            lines.append(f"    boxes: {s['boxes']} ({s['crowd_boxes']} crowd); "
                         f"images without boxes: {s['images_without_boxes']}")
        width = max((len(c) for c in s["positives"]), default=0)
        lines.append("    positives per class" + (" (difficult)" if "difficult" in s else "") + ":")
        for c, n in sorted(s["positives"].items(), key=lambda kv: -kv[1]):
            extra = f" ({s['difficult'][c]})" if "difficult" in s else ""
            lines.append(f"      {c:<{width}} {n}{extra}")
    return "\n".join(lines)
