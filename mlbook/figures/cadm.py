"""Figures of chapter 05 (CADM): Fig. 2 (CADMs sorted by summed activation) and Fig. 4 (CADMs
without and with the label correlation embedding).

Both read the CADMs a run stored for a few test images (``fig_index``, ``fig_cadm`` of
``mlbook.experiments.cadm.run``) and draw them over the image on a diverging scale centred
on 0 (red > 0 > blue), so a map that is negative everywhere shows as such rather than blank.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..data import open_rgb


def input_image(split, i: int, size: int) -> np.ndarray:
    """Test image ``i`` of ``split`` at the network's input size, as an [size, size, 3] array."""
    return np.asarray(open_rgb(split.image_paths[i]).resize((size, size)))


def show_map(ax, image: np.ndarray, cadm: np.ndarray, vmax: float, title: str, color: str = "black") -> None:
    """One CADM upsampled over ``image`` on the symmetric scale [-vmax, vmax]."""
    size = image.shape[0]
    ax.imshow(image)
    ax.imshow(cadm, extent=(0, size, size, 0), cmap="RdBu_r", alpha=0.6, vmin=-vmax, vmax=vmax,
              interpolation="bilinear")
    ax.set_title(title, fontsize=7, color=color)
    ax.axis("off")


def _image_cell(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(image)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def sorted_cadms(result: dict, test, image_size: int, n_images: int = 4, n_maps: int = 8):
    """Fig. 2: for the first ``n_images`` figure images of one run, its ``n_maps`` CADMs with the
    largest summed activation, in descending order, one colour scale per row; green titles are
    the image's true labels, grey ones negatives."""
    classes, labels = result["classes"], test.labels
    n_maps = min(n_maps, len(classes))
    index = result["fig_index"][:n_images]
    fig, axes = plt.subplots(len(index), n_maps + 1, figsize=(1.3 * (n_maps + 1), 1.45 * len(index)),
                             squeeze=False)
    for row, (i, maps) in enumerate(zip(index, result["fig_cadm"].float())):
        image = input_image(test, i, image_size)
        order = maps.sum(dim=(1, 2)).argsort(descending=True)[:n_maps]
        vmax = float(maps[order].abs().max().clamp_min(1e-6))
        truth = [classes[c] for c in labels[i].nonzero().flatten().tolist()]
        _image_cell(axes[row, 0], image, ", ".join(truth)[:40])
        for col, c in enumerate(order.tolist(), start=1):
            positive = bool(labels[i, c] > 0.5)
            show_map(axes[row, col], image, maps[c].numpy(), vmax, f"{classes[c]}\nsum {float(maps[c].sum()):.1f}",
                     "green" if positive else "dimgray")
    fig.tight_layout()
    return fig


def apparent_labels(test, i: int, k: int = 2) -> list[int]:
    """The ``k`` positive labels of test image ``i`` with the largest annotated object area (the
    paper's labels "apparent to be observed", Sec. 3.4); without boxes, the first ``k`` positives."""
    positives = test.labels[i].nonzero().flatten().tolist()
    area = {c: 0.0 for c in positives}
    for box in (test.boxes[i] if test.boxes is not None else []):
        if box.label in area:
            area[box.label] += box.w * box.h
    return sorted(positives, key=lambda c: -area[c])[:k]


def with_and_without_embedding(without: dict, with_embedding: dict, test, image_size: int, n_images: int = 3):
    """Fig. 4: for ``n_images`` figure images with two apparent labels, the CADM of each label
    from the run ``without`` the embedding (lambda = 0, left of each pair) and the run
    ``with_embedding`` (lambda = 0.5, right), one colour scale per label; titles give each map's peak."""
    classes = without["classes"]
    index = [i for i in without["fig_index"] if len(apparent_labels(test, i)) == 2][:n_images]
    fig, axes = plt.subplots(max(len(index), 1), 5, figsize=(7.5, 1.6 * max(len(index), 1)), squeeze=False)
    for row, i in enumerate(index):
        j = without["fig_index"].index(i)
        image = input_image(test, i, image_size)
        _image_cell(axes[row, 0], image, f"test image {i}")
        for k, c in enumerate(apparent_labels(test, i)):
            pair = (without["fig_cadm"][j, c].float(), with_embedding["fig_cadm"][j, c].float())
            vmax = float(torch.maximum(pair[0].abs().max(), pair[1].abs().max()).clamp_min(1e-6))
            for col, (m, tag) in enumerate(zip(pair, ("λ=0", "λ=0.5"))):
                show_map(axes[row, 1 + 2 * k + col], image, m.numpy(), vmax,
                         f"{classes[c]} {tag}\npeak {float(m.max()):.2f}")
    fig.tight_layout()
    return fig
