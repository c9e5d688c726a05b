"""Figures and result tables of chapter 06 (RLSD): Figs. 4, 7, 8 and 9 of the paper redrawn from
the runs, the object sizes of the data the claims read, the reproduced Tables I-IV (mean over
training seeds) and the table that shows what the 0.5 floor does to Eq. 14's scores.

Boxes of this chapter are xyxy in pixels of the square network input (``image_side``); the
figures draw them over the image file scaled back to its own pixels.
"""
from __future__ import annotations

import dataclasses

import matplotlib.patches as patches
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .. import metrics
from ..data import open_rgb
from ..experiments import rlsd_evidence, rlsd_regions, rlsd_setup
from ..models import rlsd_localization

SIZE_KEYS = ("train_regions", "test_regions", "grid", "fc_dim", "dropout", "loc_hidden", "embed", "hidden",
             "max_steps", "anchor_batch", "lr", "epochs", "loc_epochs", "vg_images", "ss_mode", "ss_min_side")


def sizes_table(profiles=("smoke", "demo", "full")) -> pd.DataFrame:
    """The sizes of every profile (``rlsd_setup.settings_for``), one column each."""
    return pd.DataFrame({p: {k: getattr(rlsd_setup.settings_for(p), k) for k in SIZE_KEYS} for p in profiles})


PRF = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def _row_metrics(result: dict, row: str, test, columns, floor) -> dict:
    """One run's metrics in percent: class names -> AP, "mAP", "mAP@10" (per class), CP ... OF1 (top 3)."""
    out, ap = {}, None
    pred = rlsd_evidence.predictions(result, row, floor, ignore=test.ignore)
    prf = metrics.prf_of_predictions(pred, test.labels, test.ignore) if set(columns) & set(PRF) else {}
    for c in columns:
        if c in PRF:
            out[c] = prf[c]
        elif c == "mAP@10":
            out[c] = metrics.map_at_k(result["scores"], test.labels, 10, test.ignore)
        else:
            ap = metrics.average_precision(result["scores"], test.labels, test.ignore) if ap is None else ap
            out[c] = float(np.nanmean(ap.numpy())) if c == "mAP" else float(ap[test.classes.index(c)])
    return {k: 100 * float(v) for k, v in out.items()}


def reproduced_table(results: dict, dataset: str, test, rows, seeds, columns, floor: float | None = None) -> pd.DataFrame:
    """Rows x columns, the mean over the training seeds (``results`` keyed by the paper's row names,
    ``rlsd_evidence.table_results``); ``floor``: the 0.5-floor variant of the top-3 columns."""
    return pd.DataFrame({row: pd.DataFrame([_row_metrics(results[dataset, row, s], row, test, columns, floor)
                                            for s in seeds]).mean() for row in rows}).T[list(columns)]


def floor_table(scores: torch.Tensor, labels: torch.Tensor, floor: float = 0.5) -> pd.DataFrame:
    """What the floor does to Eq. 14's scores: per label count n of an image, the images, the
    target 1/n of each true label, the mean score of the true labels and the share at or above
    ``floor``."""
    n = labels.sum(1)
    rows = {}
    for k in sorted(int(v) for v in n.unique() if v > 0):
        sel = labels[n == k] > 0.5
        s = scores[n == k][sel]
        rows[k] = {"images": int((n == k).sum()), "Eq. 14 target 1/n": 1 / k, "mean score of a true label": float(s.mean()),
                   f"true labels scoring ≥ {floor:g}": float((s >= floor).float().mean())}
    return pd.DataFrame(rows).T.rename_axis("labels in the image")


def _draw(ax, image, boxes_xyxy, scale_x: float, scale_y: float, color: str, lw: float = 0.8) -> None:
    ax.imshow(image)
    for b in boxes_xyxy:
        x1, y1, x2, y2 = [float(v) for v in b]
        ax.add_patch(patches.Rectangle((x1 * scale_x, y1 * scale_y), (x2 - x1) * scale_x, (y2 - y1) * scale_y,
                                       fill=False, edgecolor=color, lw=lw))
    ax.set_xticks([])
    ax.set_yticks([])


def _label_names(split, i: int) -> str:
    return ", ".join(split.classes[j] for j in torch.nonzero(split.labels[i] > 0.5).flatten().tolist())


def regions_figure(test, indices, loc_stage: dict, ss_stage: dict, maps: torch.Tensor, s, side: int, top: int = 15):
    """Fig. 4: per test image, the top ``top`` regions of the frozen localization layer after NMS
    (left, green) and the first ``top`` selective-search proposals (right, orange); ``maps``: the
    test conv maps. The labels of the image label the row."""
    anchors = len(rlsd_localization.ANCHOR_SCALES) * len(rlsd_localization.ANCHOR_RATIOS)
    layer = rlsd_localization.LocalizationLayer(maps.shape[1], anchors, s.loc_hidden)
    layer.load_state_dict(loc_stage["state_dict"])
    loc_boxes, loc_counts = rlsd_regions.layer_regions(layer, maps[list(indices)],
                                                       dataclasses.replace(s, test_regions=top), side, train=False)
    fig, axes = plt.subplots(len(indices), 2, figsize=(4.4, 2.3 * len(indices)), squeeze=False)
    for r, i in enumerate(indices):
        img = np.asarray(open_rgb(test.image_paths[i]))
        H, W = img.shape[:2]
        panels = ((loc_boxes[r], loc_counts[r], "localization layer", "lime"),
                  (ss_stage["regions_test"][i], ss_stage["counts_test"][i], "selective search", "orange"))
        for c, (boxes, count, name, color) in enumerate(panels):
            n = min(int(count), top)
            _draw(axes[r, c], img, boxes[:n], W / side, H / side, color)
            axes[r, c].set_title(f"{name}: top {n}", fontsize=7)
        axes[r, 0].set_ylabel(_label_names(test, i), fontsize=6)
    fig.tight_layout()
    return fig


def clusters_figure(train, indices, side: int):
    """Fig. 7: per training image, its object boxes (left, red) and the clustered region ground
    truth of RLSD+ft-RPN (right, cyan; ``rlsd_regions.cluster_regions``, Sec. IV-A)."""
    fig, axes = plt.subplots(len(indices), 2, figsize=(4.4, 2.3 * len(indices)), squeeze=False)
    for r, i in enumerate(indices):
        img = np.asarray(open_rgb(train.image_paths[i]))
        H, W = img.shape[:2]
        bs = train.boxes[i]
        xywh = torch.tensor([[b.x, b.y, b.w, b.h] for b in bs], dtype=torch.float32)
        objects = rlsd_localization.xywh_to_xyxy(xywh)
        regions = rlsd_regions.cluster_regions(bs, W, H, side)
        _draw(axes[r, 0], img, objects, 1.0, 1.0, "red")
        axes[r, 0].set_title(f"{len(bs)} object boxes", fontsize=7)
        _draw(axes[r, 1], img, regions, W / side, H / side, "cyan", lw=1.2)
        axes[r, 1].set_title(f"{len(regions)} clustered regions", fontsize=7)
        axes[r, 0].set_ylabel(", ".join(sorted({train.classes[b.label] for b in bs})), fontsize=6)
    fig.tight_layout()
    return fig


def pr_curves(scores: dict, test, classes: list[int], highlight: str = "RLSD"):
    """Fig. 8: one panel per class, the precision-recall curve of every row (``scores``: {row:
    test scores [N, L]}, one training seed), the class's AP@10 in the legend."""
    fig, axes = plt.subplots(1, len(classes), figsize=(4 * len(classes), 3.4), squeeze=False)
    for ax, c in zip(axes[0], classes):
        for row, sc in scores.items():
            pr = metrics.pr_curve(sc, test.labels, cls=c)
            at10 = metrics.map_at_k(sc[:, [c]], test.labels[:, [c]], 10)
            ax.plot(pr["recall"].numpy(), pr["precision"].numpy(), lw=1.8 if row == highlight else 0.9,
                    label=f"{row} (AP@10 {100 * at10:.0f})")
        ax.set(title=test.classes[c], xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def recall_by_area(predictions: dict, test, edges, title: str = ""):
    """Fig. 9, both protocols side by side: recall of (image, label) pairs binned by the area of
    the label's largest box / image area. ``predictions``: {protocol: {row: [pred [N, L] per
    seed]}}; a line is the mean over seeds, the band the lowest and highest seed."""
    fig, axes = plt.subplots(1, len(predictions), figsize=(5.2 * len(predictions), 3.5), squeeze=False, sharey=True)
    counts = None
    for ax, (protocol, rows) in zip(axes[0], predictions.items()):
        for k, (row, preds) in enumerate(rows.items()):
            per_seed = [metrics.recall_by_area(p, test.boxes, test.image_sizes, edges) for p in preds]
            rec = np.array([r for r, _ in per_seed], dtype=float)
            counts = per_seed[0][1]
            x = np.arange(rec.shape[1])
            ax.plot(x, rec.mean(0), marker="o", ms=3, color=f"C{k}", label=row)
            ax.fill_between(x, rec.min(0), rec.max(0), color=f"C{k}", alpha=0.15, lw=0)
        ax.set_xticks(range(len(edges) - 1), [f"{a:g}–{b:g}\n(n={n})" for a, b, n in zip(edges[:-1], edges[1:], counts)],
                      fontsize=6)
        ax.set(title=protocol, xlabel="box area / image area", ylabel="recall", ylim=(0, 1.02))
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def sizes_by_class(split, title: str = "", highlight=()):
    """The relative side sqrt(box area / image area) of every object box, one box plot per class,
    classes ordered by their median; ``highlight``: class names drawn in red (the claims' classes)."""
    sizes = metrics.relative_sizes(split.boxes, split.image_sizes)
    order = sorted(sizes, key=lambda c: (np.median(sizes[c]), c))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(order)), 3.2))
    ax.boxplot([sizes[c] for c in order], showfliers=False, widths=0.6)
    ax.set_xticks(range(1, len(order) + 1), [split.classes[c] for c in order], rotation=70, fontsize=6)
    for tick, c in zip(ax.get_xticklabels(), order):
        tick.set_color("red" if split.classes[c] in highlight else "black")
    ax.set(ylabel="object side / image side", title=title)
    fig.tight_layout()
    return fig
