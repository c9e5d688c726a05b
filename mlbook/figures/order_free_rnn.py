"""Figures of chapter 04 (Order-Free RNN): Fig. 3, predictions with one attention map per label.

``pick_examples`` chooses the test images (exact label sets vs a wrong or a missed label),
``attention_figure`` draws them, ``attention_shift`` measures how far the attention moves from
one emitted label to the next (the number behind the figure's reading).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from ..data import open_rgb
from ..experiments.features import map_apply
from ..models.order_free_rnn import OrderFreeRNN

SCALES = ("shared", "own")


def pick_examples(pred: torch.Tensor, labels: torch.Tensor, n: int = 2) -> tuple[list[int], list[int]]:
    """(correct, incorrect) test indices among images with at least two labels: exact label-set
    matches vs images with a wrong or a missed label; images with more labels first (then by
    index), ``n`` of each. ``pred`` [N, C] bool: the predictions the figure shows."""
    y = labels > 0.5
    count = y.sum(1)
    exact = (pred == y).all(1) & (count >= 2)
    wrong = (pred != y).any(1) & (count >= 2)
    order = sorted(range(len(y)), key=lambda i: (-int(count[i]), i))
    return [i for i in order if exact[i]][:n], [i for i in order if wrong[i]][:n]


def _image_panel(ax, image, data, i: int, shown: set, tag: str) -> None:
    """The test image with its true labels below it, "(missed)" after those not emitted."""
    truth = torch.nonzero(data.labels[i] > 0.5).flatten().tolist()
    names = [data.classes[c] + ("" if c in shown else " (missed)") for c in truth]
    ax.imshow(image)
    ax.set_title(tag, fontsize=8)
    ax.set_xlabel("\n".join(", ".join(names[j:j + 2]) for j in range(0, len(names), 2)), fontsize=7)


def _attention_panel(ax, image, alpha: torch.Tensor, hw: tuple[int, int], vmax: float, title: str,
                     correct: bool) -> None:
    """One attention map (Eq. 4) upsampled onto the image."""
    H, W = image.shape[:2]
    a = F.interpolate(alpha.view(1, 1, *hw), size=(H, W), mode="bilinear", align_corners=False)[0, 0]
    ax.imshow(image)
    ax.imshow(a.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=vmax)
    ax.set_title(title, fontsize=7, color="black" if correct else "red")


def attention_figure(model: OrderFreeRNN, maps: torch.Tensor, sequences: torch.Tensor, data,
                     rows: list[tuple[int, str]], top_k: int | None = None, scale: str = "shared"):
    """As the paper's Fig. 3: one row per (test index, tag), the image with its true labels,
    then the attention map of each emitted label in emission order (wrong labels in red).

    ``sequences`` [N, T]: the decoded labels (-1 padded), cut to ``top_k`` if given.
    ``scale="shared"``: one colour scale for the whole figure, so a flat map looks flat;
    ``"own"``: each map scaled to its own maximum. Each title gives the map's peak as a
    multiple of a uniform map (1x = no focus).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")
    if not rows:                                    # e.g. no exactly right prediction on a tiny test set
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.text(0.5, 0.5, "no test image to show", ha="center", va="center")
        ax.axis("off")
        return fig
    idx = [i for i, _ in rows]
    seqs = sequences[idx] if top_k is None else sequences[idx, :top_k]
    alphas = model.replay(maps[idx].float(), seqs)                  # [rows, T, m]
    hw = tuple(maps.shape[2:])
    m = hw[0] * hw[1]
    T = max(int((seqs >= 0).sum(1).max()), 1)
    fig, axes = plt.subplots(len(rows), T + 1, figsize=(1.9 * (T + 1), 2.6 * len(rows)), squeeze=False)
    for r, (i, tag) in enumerate(rows):
        image = np.asarray(open_rgb(data.image_paths[i]))
        _image_panel(axes[r, 0], image, data, i, set(seqs[r][seqs[r] >= 0].tolist()), tag)
        for t in range(T):
            label = int(seqs[r, t])
            if label < 0:
                axes[r, t + 1].axis("off")
                continue
            peak = float(alphas[r, t].max())
            vmax = float(alphas.max()) if scale == "shared" else max(peak, 1e-12)
            _attention_panel(axes[r, t + 1], image, alphas[r, t], hw, vmax,
                             f"{t + 1}. {data.classes[label]}\npeak {peak * m:.1f}x uniform",
                             bool(data.labels[i, label] > 0.5))
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def attention_shift(model: OrderFreeRNN, maps: torch.Tensor, sequences: torch.Tensor, k: int = 3) -> dict:
    """How far the attention moves between consecutive emitted labels of one image.

    Total-variation distance (0: the same map, 1: disjoint maps) between the maps of labels
    t and t + 1 of each image, averaged over the images and steps where both exist, next to
    the distance between the first maps of two different test images (a scale for
    "different"). Returns {"consecutive labels, same image", "first label, two images"}.
    """
    seqs = sequences[:, :k]
    alphas = map_apply(model.replay, maps, seqs)        # [N, k, m]; maps on disk or streamed: batch by batch
    both = (seqs[:, 1:] >= 0) & (seqs[:, :-1] >= 0)
    tv_steps = 0.5 * (alphas[:, 1:] - alphas[:, :-1]).abs().sum(-1)
    first = alphas[:, 0]
    tv_images = 0.5 * (first - first.roll(1, dims=0)).abs().sum(-1)
    return {"consecutive labels, same image": float(tv_steps[both].mean()),
            "first label, two images": float(tv_images.mean())}
