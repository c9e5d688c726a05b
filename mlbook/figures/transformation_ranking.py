"""Figures of chapter 07 (transformation ranking): Fig. 7 (t-SNE of the label vectors), the
margin's hold-out curve, Fig. 8 (the k sweep), Fig. 9 (the rows' Jaccard overlap against its
chance level) and the zero-shot APs per held-out label.

Every function returns a matplotlib figure and draws what it is given: the numbers come from
``mlbook.experiments.transformation_ranking`` (the runs) and ``transformation_ranking_evidence``
(the tables). The t-SNE map is deterministic (exact
gradients, PCA initialisation, a fixed seed), so a rerun draws the same map.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.manifold import TSNE

# the animal concepts the paper names in Fig. 7's caption text, and the other animals of the 81
ANIMALS = frozenset({"dog", "cat", "tiger", "cow", "horses", "bear", "zebra", "fox", "elk", "animal", "birds", "fish",
                     "whales"})
MARKERS = "os^vDx"


def tsne_map(vectors: np.ndarray, seed: int = 0, perplexity: float = 15.0) -> np.ndarray:
    """[L, 2] t-SNE coordinates of the label vectors: exact gradients and PCA initialisation with a
    fixed seed, so the map does not depend on threads or on what ran before."""
    return TSNE(n_components=2, perplexity=min(perplexity, len(vectors) - 1), init="pca", method="exact",
                random_state=seed).fit_transform(np.asarray(vectors, dtype=np.float64))


def similarity_within_between(vectors: np.ndarray, members: np.ndarray) -> tuple[float, float]:
    """Mean cosine similarity of the marked labels among themselves (pairs of distinct labels) and
    to the other labels: the check of Fig. 7 that does not depend on the map."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    sim = v @ v.T
    inner = sim[np.ix_(members, members)]
    within = inner[~np.eye(len(inner), dtype=bool)].mean()
    return float(within), float(sim[np.ix_(members, ~members)].mean())


def tsne_figure(xy: np.ndarray, names: list[str], members: np.ndarray, source: str):
    """Fig. 7: the t-SNE map of the label vectors, the marked labels (animals) in red."""
    fig, ax = plt.subplots(figsize=(8, 6.5))
    ax.scatter(*xy[~members].T, s=14, c="tab:blue", label="other concepts")
    ax.scatter(*xy[members].T, s=30, c="tab:red", marker="^", label="animals")
    for (x, y), name, marked in zip(xy, names, members):
        ax.annotate(name, (x, y), fontsize=6.5, color="tab:red" if marked else "0.25", xytext=(2, 2),
                    textcoords="offset points")
    ax.set(xticks=[], yticks=[], title=f"Fig. 7: t-SNE of the {source} vectors of the {len(names)} NUS-WIDE concepts")
    ax.legend(loc="best", fontsize=8)
    return fig


def margin_figure(curves: pd.DataFrame, chosen: dict[str, float], labels: dict[str, str]):
    """The hold-out criterion (top-3 C-F1 + O-F1) of every margin of the grid, one line per word
    source, the chosen margin circled."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for (source, values), marker in zip(curves.items(), MARKERS):
        ax.plot(values.index, values.values, marker=marker, label=labels.get(source, source))
        ax.scatter([chosen[source]], [values.loc[chosen[source]]], s=160, facecolors="none", edgecolors="k")
    ax.set(xscale="log", xlabel="margin m (log scale)", ylabel="hold-out C-F1 + O-F1 (points)",
           title="The margin, chosen on the hold-out part (circled)")
    ax.set_xticks(list(curves.index), [f"{m:g}" for m in curves.index])
    ax.legend(fontsize=8)
    return fig


def k_sweep_figure(sweep: pd.DataFrame, title: str):
    """Fig. 8: metrics against k, top-3 and top-5; ``sweep`` has columns k, protocol, metric, mean, sd
    (over training seeds), drawn as a line with a band of ± one sd."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, (tag, protocol) in zip(axes, (("a", "top-3"), ("b", "top-5"))):
        part = sweep[sweep["protocol"] == protocol]
        for (metric, rows), marker in zip(part.groupby("metric", sort=False), MARKERS):
            ax.plot(rows["k"], rows["mean"], marker=marker, label=metric)
            ax.fill_between(rows["k"], rows["mean"] - rows["sd"], rows["mean"] + rows["sd"], alpha=0.15)
        ax.set(title=f"({tag}) {protocol} prediction", xlabel="k (rows of A)", ylabel="%")
        ax.set_xticks(sorted(part["k"].unique()))
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def jaccard_figure(per_seed: list[np.ndarray], chance: float, n_labels: int, paper: tuple[float, float],
                   paper_chance: float, title: str):
    """Fig. 9: histogram of the per-image mean pairwise Jaccard (every seed's test images), its
    mean, the chance level of random top-5 sets of ``n_labels`` labels, and the paper's mean with
    its own chance level (81 labels). The axis spans the data and the reference lines, not [0, 1]."""
    values = np.concatenate(per_seed)
    lines = [values.mean(), chance, paper[0], paper_chance]
    low, high = min(values.min(), *lines), max(values.max(), *lines)
    pad = 0.05 * (high - low)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.hist(values, bins=50, range=(low - pad, high + pad), color="tab:blue", alpha=0.8)
    ax.axvline(values.mean(), color="k", lw=1.2, label=f"mean {values.mean():.3f} (sd {values.std():.3f}), "
                                                       f"{len(per_seed)} seeds")
    ax.axvline(chance, color="tab:red", ls="--", lw=1.2, label=f"chance, random top-5 sets of {n_labels} labels: "
                                                               f"{chance:.3f}")
    ax.axvline(paper[0], color="0.4", ls="-.", lw=1, label=f"paper: mean {paper[0]:.4f} (sd {paper[1]:.4f})")
    ax.axvline(paper_chance, color="tab:orange", ls=":", lw=1.2, label=f"chance with the paper's 81 labels: "
                                                                       f"{paper_chance:.3f}")
    ax.set(xlim=(low - pad, high + pad), xlabel="mean pairwise Jaccard of the rows' top-5 sets (per test image)",
           ylabel="test images", title=title)
    ax.legend(fontsize=7)
    return fig


def zero_shot_figure(table: pd.DataFrame, title: str):
    """Per held-out label (grouped by split): AP with the book's vectors and with random vectors,
    and the exact AP of a random ranking as a black tick."""
    labels = [f"{label}\n(split {split})" for split, label in table.index]
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(table)), 3.8))
    ap_columns = [c for c in table.columns if c.startswith("AP")]
    width = 0.8 / len(ap_columns)
    for i, column in enumerate(ap_columns):
        ax.bar(x + (i - (len(ap_columns) - 1) / 2) * width, table[column], width, label=column)
    ax.scatter(x, table["random ranking (exact)"], marker="_", s=400, color="k", zorder=3,
               label="random ranking (exact expected AP)")
    ax.set_xticks(x, labels, fontsize=7, rotation=60, ha="right")
    ax.set(ylabel="AP (%)", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
