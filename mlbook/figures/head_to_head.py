"""Figures of chapter 08 (every method under one protocol): the forest plot of each row's Δ mAP
against the BCE network, with the claims' intervals, and accuracy against cost.

Both read what the chapter computed: the claims rows of "beats the BCE network" (Δ and interval
per data set, ``claims.evaluate``'s measurements) and the leaderboard records
(``experiments.head_to_head.leaderboard``: mean mAP over the training seeds, forward MFLOPs of
the head, trained parameters).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..claims import CONTRADICTED, NOT_RESOLVED, SUPPORTED

COLOURS = {SUPPORTED: "tab:green", CONTRADICTED: "tab:red", NOT_RESOLVED: "tab:gray"}
MARKERS = {"coco": "o", "nuswide": "s"}


def forest(deltas: list[dict], names: dict[str, str], baseline: str):
    """Δ mAP (points) of each row against ``baseline`` with its interval, one line per (row, data
    set), coloured by the claim's verdict. ``deltas``: {"row", "dataset", "delta", "low", "high",
    "verdict"}; ``names``: data set -> its display name."""
    rows = list(dict.fromkeys(d["row"] for d in deltas))
    datasets = list(dict.fromkeys(d["dataset"] for d in deltas))
    fig, ax = plt.subplots(figsize=(7.0, 0.42 * len(rows) + 1.0))
    step = 0.32
    for d in deltas:
        y = rows.index(d["row"]) + (datasets.index(d["dataset"]) - (len(datasets) - 1) / 2) * step
        colour = COLOURS.get(d["verdict"], "tab:gray")
        ax.plot([d["low"], d["high"]], [y, y], color=colour, lw=2)
        ax.plot(d["delta"], y, MARKERS.get(d["dataset"], "o"), color=colour, ms=5)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"Δ mAP against the {baseline} (points), 95% interval")
    handles = [plt.Line2D([], [], color="black", marker=MARKERS.get(d, "o"), ls="", label=names.get(d, d)) for d in datasets]
    handles += [plt.Line2D([], [], color=c, lw=2, label=v) for v, c in COLOURS.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def accuracy_and_cost(boards: dict[str, list[dict]], names: dict[str, str]):
    """mAP (mean over seeds) against the head's forward MFLOPs per image and against its trained
    parameters (log scales; a row without trained parameters, KNN, drawn at 1), one marker per data
    set, a row's two data sets joined by a line; rows of the same cost share one label."""
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.6))
    for ax, key, label in ((axes[0], "MFLOPs", "head forward MFLOPs per image (log)"),
                           (axes[1], "params", "trained parameters (log; none drawn at 1)")):
        floor = 1e-3 if key == "MFLOPs" else 1
        where: dict[str, list] = {}
        for dataset, board in boards.items():
            for r in board:
                where.setdefault(r["row"], []).append((max(r[key], floor), r["mAP"]))
            ax.scatter([max(r[key], floor) for r in board], [r["mAP"] for r in board],
                       marker=MARKERS.get(dataset, "o"), label=names.get(dataset, dataset), s=22, zorder=3)
        by_cost: dict[float, list] = {}
        for row, points in where.items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, color="0.75", lw=0.8, zorder=1)
            by_cost.setdefault(round(float(np.log10(xs[0])), 2), []).append((max(ys), row))
        placed: list[tuple[float, float]] = []      # (log10 x, y) of the labels drawn: a label near one moves down
        for group in sorted(by_cost.values(), key=lambda g: -max(y for y, _ in g)):
            x = max(where[group[0][1]])[0]
            top = max(y for y, _ in group)
            while any(abs(np.log10(x) - lx) < 0.8 and abs(top - ly) < 1.2 for lx, ly in placed):
                top -= 1.3
            placed.append((float(np.log10(x)), top))
            text = " / ".join(row for _, row in sorted(group, reverse=True))
            ax.annotate(text, (x, top), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("mAP (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
