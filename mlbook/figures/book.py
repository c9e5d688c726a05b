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
from ..papers import PAPERS


def paper_chapters() -> dict[str, str]:
    """{chapter: the paper's short name}, the registry's papers in book order."""
    return {p.chapter: p.title for p in PAPERS}


def read_claims(figures: Path) -> pd.DataFrame:
    """Every paper chapter's claims table under ``figures`` (one row per claim), with its chapter;
    a chapter that has not been run yet is missing, not an error."""
    frames = []
    for chapter in paper_chapters():
        path = Path(figures) / chapter / "table_claims.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(chapter=chapter))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["chapter", "verdict"])


def read_measurements(figures: Path) -> pd.DataFrame:
    frames = []
    for chapter in paper_chapters():
        path = Path(figures) / chapter / "claims_measurements.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(chapter=chapter))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def scorecard(figures: Path, label: str = "demo") -> pd.DataFrame:
    """Per paper: how many claims are supported / contradicted / not resolved / not testable."""
    table = read_claims(figures)
    names = paper_chapters()
    counts = pd.crosstab(table["chapter"], table["verdict"]).reindex(index=list(names),
                                                                    columns=list(VERDICTS), fill_value=0)
    counts = counts.fillna(0).astype(int)
    counts["claims"] = counts.sum(axis=1)
    counts.index = [f"[{names[c]}]({c})" for c in counts.index]
    counts.index.name = "paper"
    counts.columns = [f"{c} ({label})" if c in VERDICTS else c for c in counts.columns]
    return counts


def _short_id(claim_id: str) -> str:
    """A claim id without its chapter prefix (the panel names the paper): '06.rlsd_vs_cnnlstm.voc'
    -> 'rlsd_vs_cnnlstm.voc'."""
    head, _, rest = str(claim_id).partition(".")
    return rest if head.isdigit() and rest else str(claim_id)


def scorecard_figure(figures: Path, width: float = 8.0, row_height: float = 0.16, fontsize: float = 8):
    """One panel per paper, stacked (readable at the book's page width, about 8 in): each claim's
    measured Δ (points) with its interval, coloured by the claim's verdict, and the paper's own Δ
    where its tables give one (a cross). A panel's height grows with its number of measurements."""
    m = read_measurements(figures)
    verdicts = read_claims(figures).set_index("id")["verdict"] if len(m) else pd.Series(dtype=str)
    colours = dict(zip(VERDICTS, ("tab:green", "tab:red", "tab:gray", "lightgray")))
    names = paper_chapters()
    empty = pd.DataFrame(columns=["id", "metric", "delta", "low", "high"])   # a chapter not run yet
    parts = {c: (m[m["chapter"] == c].dropna(subset=["delta"]) if len(m) else empty) for c in names}
    rows = [max(len(part), 1) for part in parts.values()]
    overhead = 0.9      # inches per panel: its title, its x axis and its label
    heights = [r * row_height + overhead for r in rows]
    fig, axes = plt.subplots(len(names), 1, squeeze=False, figsize=(width, sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights})
    for ax, (chapter, paper) in zip(axes[:, 0], names.items()):
        part = parts[chapter]
        y = np.arange(len(part))[::-1]
        for yi, (_, r) in zip(y, part.iterrows()):
            colour = colours.get(verdicts.get(r["id"], "not resolved"), "tab:gray")
            ax.plot([r["low"], r["high"]], [yi, yi], color=colour, lw=2.2, solid_capstyle="butt")
            ax.plot(r["delta"], yi, "o", color=colour, ms=4.5)
            if pd.notna(r.get("published_delta")):
                ax.plot(r["published_delta"], yi, "x", color="black", ms=5.5, mew=1.3)
        ax.axvline(0, color="black", lw=0.7)
        ax.set_yticks(y, [f"{_short_id(i)} · {mm}" for i, mm in zip(part["id"], part["metric"])], fontsize=fontsize)
        ax.set_ylim(-0.7, max(len(part), 1) - 0.3)
        ax.tick_params(axis="x", labelsize=fontsize)
        ax.grid(axis="x", color="0.9", lw=0.6)
        ax.set_axisbelow(True)
        ax.set_title(f"{chapter[:2]} · {paper}", fontsize=fontsize + 2, loc="left", fontweight="bold")
        ax.set_xlabel("Δ, points (better − worse)", fontsize=fontsize)
    handles = [plt.Line2D([], [], color=c, lw=2.2, marker="o", ms=4.5, label=v) for v, c in colours.items()]
    handles.append(plt.Line2D([], [], color="black", marker="x", lw=0, ms=5.5, mew=1.3, label="the paper's own Δ"))
    fig.legend(handles=handles, loc="upper center", ncol=5, fontsize=fontsize, frameon=False,
               bbox_to_anchor=(0.5, 1.0), handlelength=1.6, columnspacing=1.2)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()), h_pad=1.2)
    return fig
