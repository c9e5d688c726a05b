"""The book's first page: the reproduction scorecard, computed from the paper chapters' claims files.

Every paper chapter writes ``figures/<chapter>/table_claims.csv`` (one row per claim, its id and
verdict) and ``claims_measurements.csv`` (per claim and primary metric: Δ, interval, the paper's
Δ); ``scorecard`` counts the verdicts per paper and ``scorecard_figure`` draws every measured Δ
with its interval against the paper's own Δ. Nothing here is typed in: a claim that changes
verdict in a rerun changes the scorecard.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..claims import VERDICTS

PAPER_CHAPTERS = {  # chapter -> the paper's short name (the four papers of the book, in book order)
    "04_order_free_rnn": "Order-Free RNN (AAAI 2018)",
    "05_cadm": "CADM + LCE (ICME 2019)",
    "06_rlsd": "RLSD (TMM 2018)",
    "07_transformation_ranking": "Transformation ranking",
}


def read_claims(figures: Path) -> pd.DataFrame:
    """Every paper chapter's claims table under ``figures`` (one row per claim), with its chapter;
    a chapter that has not been run yet is missing, not an error."""
    frames = []
    for chapter in PAPER_CHAPTERS:
        path = Path(figures) / chapter / "table_claims.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(chapter=chapter))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["chapter", "verdict"])


def read_measurements(figures: Path) -> pd.DataFrame:
    frames = []
    for chapter in PAPER_CHAPTERS:
        path = Path(figures) / chapter / "claims_measurements.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(chapter=chapter))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def scorecard(figures: Path, label: str = "demo") -> pd.DataFrame:
    """Per paper: how many claims are supported / contradicted / not resolved / not testable."""
    table = read_claims(figures)
    counts = pd.crosstab(table["chapter"], table["verdict"]).reindex(index=list(PAPER_CHAPTERS),
                                                                    columns=list(VERDICTS), fill_value=0)
    counts = counts.fillna(0).astype(int)
    counts["claims"] = counts.sum(axis=1)
    counts.index = [f"[{PAPER_CHAPTERS[c]}]({c})" for c in counts.index]
    counts.index.name = "paper"
    counts.columns = [f"{c} ({label})" if c in VERDICTS else c for c in counts.columns]
    return counts


def scorecard_figure(figures: Path):
    """One panel per paper: each claim's measured Δ (points) with its interval, coloured by the
    claim's verdict, and the paper's own Δ where its tables give one (a cross)."""
    m = read_measurements(figures)
    verdicts = read_claims(figures).set_index("id")["verdict"] if len(m) else pd.Series(dtype=str)
    colours = dict(zip(VERDICTS, ("tab:green", "tab:red", "tab:gray", "lightgray")))
    fig, axes = plt.subplots(1, len(PAPER_CHAPTERS), figsize=(4.2 * len(PAPER_CHAPTERS), 6.5), squeeze=False)
    for ax, (chapter, paper) in zip(axes[0], PAPER_CHAPTERS.items()):
        part = m[m["chapter"] == chapter].dropna(subset=["delta"]) if len(m) else m
        y = np.arange(len(part))[::-1]
        for yi, (_, r) in zip(y, part.iterrows()):
            colour = colours.get(verdicts.get(r["id"], "not resolved"), "tab:gray")
            ax.plot([r["low"], r["high"]], [yi, yi], color=colour, lw=2)
            ax.plot(r["delta"], yi, "o", color=colour, ms=4)
            if pd.notna(r.get("published_delta")):
                ax.plot(r["published_delta"], yi, "x", color="black", ms=5)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_yticks(y, [f"{i} · {mm}" for i, mm in zip(part["id"], part["metric"])], fontsize=5)
        ax.set(title=paper, xlabel="Δ, points (better − worse)")
        ax.title.set_fontsize(9)
    handles = [plt.Line2D([], [], color=c, lw=2, label=v) for v, c in colours.items()]
    handles.append(plt.Line2D([], [], color="black", marker="x", lw=0, label="the paper's own Δ"))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
