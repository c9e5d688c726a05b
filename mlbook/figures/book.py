"""The book's first page: the reproduction scorecard, computed from the paper chapters' claims files.

Every paper chapter writes ``figures/<chapter>/table_claims.csv`` (one row per claim, its id and
verdict) and ``claims_measurements.csv`` (per claim and primary metric: Δ, interval, the paper's
Δ); ``scorecard`` counts the verdicts per paper, and how many of them an independent rerun is
expected to change (``rerun_changes``: Σ (1 − P(same verdict on rerun)), ``claims.stability``, from
the measurements' own columns), and ``scorecard_figure`` draws every measured Δ with its interval
against the paper's own Δ. Nothing here is typed in: a claim that changes
verdict in a rerun changes the scorecard.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..claims import LEVEL, NOT_TESTABLE, VERDICTS, expected_changes, load
from ..papers import PAPERS
from ..profiles import project_root


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


def what_to_run_first(figures: Path, profile: str = "demo") -> str | None:
    """One line naming the paper chapters with no claims table under ``figures`` yet and the command that
    writes them (None when every paper chapter has run): the scorecard of a folder they have not filled
    counts nothing, and a reader should learn why from one sentence, not from empty panels."""
    missing = [c[:2] for c in paper_chapters() if not (Path(figures) / c / "table_claims.csv").is_file()]
    if not missing:
        return None
    chapters = ",".join(missing)
    try:   # the project's own folders by their short names (a notebook's output holds no machine path)
        figures = Path(figures).resolve().relative_to(project_root().resolve())
    except ValueError:
        pass
    return (f"no claims yet from chapter(s) {chapters} in {figures}/: run `python -m mlbook reproduce --profile "
            f"{profile} --chapters {chapters}` first (`make reproduce` runs the whole book); the scorecard "
            "counts only the chapters that have run")


BOOK_OWN = "the book's own questions (all papers)"   # the scorecard's row of claims that quote no paper


def quoted(table: pd.DataFrame) -> pd.Series:
    """Per row of a claims table: whether the claim is a sentence of the paper (the registry's
    ``quoted``; a row the registry no longer holds, from an older run, by its quotation marks)."""
    registry = {c.id: c.quoted for c in load()}
    if table.empty:
        return pd.Series(dtype=bool)
    by_text = table.get("claim", pd.Series("", index=table.index)).astype(str).str.startswith("“")
    return pd.Series([registry.get(i, text) for i, text in zip(table["id"], by_text)], index=table.index, dtype=bool)


def scorecard(figures: Path, label: str = "demo") -> pd.DataFrame:
    """Per paper: how many of its own sentences are supported / contradicted / not resolved / not
    testable; the book's own questions (its readings of tables, its controls, its options: not
    the papers' words) are counted apart, on the last row, so that no paper is scored on them."""
    table = read_claims(figures)
    names = paper_chapters()
    own = quoted(table) if len(table) else pd.Series(dtype=bool)
    papers = table[own] if len(table) else table
    counts = pd.crosstab(papers["chapter"], papers["verdict"]).reindex(index=list(names),
                                                                      columns=list(VERDICTS), fill_value=0)
    book_own = table[~own]["verdict"].value_counts().reindex(list(VERDICTS), fill_value=0) if len(table) else (
        pd.Series(0, index=list(VERDICTS)))
    counts = pd.concat([counts, book_own.to_frame(BOOK_OWN).T]).fillna(0).astype(int)
    counts["claims"] = counts.sum(axis=1)
    ids = set(table["id"][own]) if len(table) else set()
    changes = rerun_changes(figures, ids).reindex(list(names))
    book_changes = rerun_changes(figures, set(table["id"][~own]) if len(table) else set())
    counts[f"changed by a rerun, expected ({label})"] = [*changes.round(1).values,
                                                         round(book_changes.sum(), 1) if len(book_changes) else float("nan")]
    counts.index = [f"[{names[c]}]({c})" for c in names] + [BOOK_OWN]
    counts.index.name = "paper"
    counts.columns = [f"{c} ({label})" if c in VERDICTS else c for c in counts.columns]
    return counts


def expected_wrong(figures: Path) -> tuple[int, float]:
    """(tested claims, the verdicts expected wrong by chance among them at the book's level): each
    tested claim without a true effect is supported or contradicted with probability 1 − LEVEL
    (measured, tests/test_claims.py), so n · (1 − LEVEL) is what chance alone gives if none had one."""
    table = read_claims(figures)
    n = int((table["verdict"] != NOT_TESTABLE).sum()) if len(table) else 0
    return n, n * (1 - LEVEL)


def rerun_changes(figures: Path, ids: set | None = None) -> pd.Series:
    """Per paper chapter that has run: the number of its verdicts an independent rerun (another
    ``--seed``) is expected to change, Σ over its claims of 1 − P(same verdict on rerun), computed
    from its ``claims_measurements.csv`` (files written before the P column recompute it, with
    the claims data's direction; NaN where even that is missing). Not-testable claims never change."""
    m = read_measurements(figures)
    if not m.empty and ids is not None:     # only these claims (the papers' sentences, or the book's own)
        m = m[m["id"].isin(ids)]
    if m.empty or "chapter" not in m:
        return pd.Series(dtype=float, name="expected changes")
    return expected_changes(m)["expected changes"]


def rerun_text(figures: Path) -> str:
    """The prose's words for ``rerun_changes``: "about 10.4 of 73 tested verdicts (Paper 1.2, ...)",
    or why there is no number."""
    changes = rerun_changes(figures)
    if changes.empty:
        return "not available (no paper chapter has run)"
    if changes.isna().any():
        return "not available (a claims file lacks what the formula needs)"
    names = paper_chapters()
    tested = len(read_measurements(figures).drop_duplicates(["chapter", "id"]))
    parts = ", ".join(f"{names[c]} {n:.1f}" for c, n in changes.items())
    return f"about {changes.sum():.1f} of {tested} tested verdicts ({parts})"


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
    claims = read_claims(figures)
    # a measurements file without its claims table (a chapter stopped between the two) draws grey
    verdicts = claims.set_index("id")["verdict"] if len(m) and "id" in claims else pd.Series(dtype=str)
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
