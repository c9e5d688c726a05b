"""The book's first page: the reproduction scorecard, computed from the paper chapters' claims files.

Every paper chapter writes ``figures/<chapter>/table_claims.csv`` (one row per claim, its id and
verdict) and ``claims_measurements.csv`` (per claim and primary metric: Δ, interval, the paper's
Δ, the run's minimum detectable effect, that metric's own verdict); ``scorecard`` counts the
verdicts per paper, the not resolved ones split by power (``claims.replication.power_label``:
could the run have seen the paper's effect?), and how many of them an independent rerun is
expected to change (``rerun_changes``: Σ (1 − P(same verdict on rerun)), ``claims.stability``,
from the measurements' own columns); ``replication_card`` counts the intervals whose paper's Δ is
inside, above or below them (``claims.replication.reading``); ``scorecard_figure`` draws every
measured Δ with its interval, coloured by that metric's own verdict, against the paper's own Δ,
one unit per axis. Nothing here is typed in: a claim that changes verdict in a rerun changes the
scorecard.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..claims import (CONTRADICTED, LEVEL, NOT_RESOLVED, NOT_TESTABLE, SUPPORTED, boundaries,
                      expected_changes, load)
from ..claims import replication
from ..papers import COMPARISON_CHAPTER, PAPERS
from ..profiles import project_root


def paper_chapters() -> dict[str, str]:
    """{chapter: the paper's short name}, the registry's papers in book order."""
    return {p.chapter: p.title for p in PAPERS}


def claim_chapters() -> list[str]:
    """The chapters with claims: the papers', then the comparison chapter's (the book's own questions)."""
    return [*paper_chapters(), COMPARISON_CHAPTER]


def read_claims(figures: Path) -> pd.DataFrame:
    """Every claims table under ``figures`` (one row per claim: the paper chapters' and the comparison
    chapter's), with its chapter; a chapter that has not been run yet is missing, not an error."""
    frames = []
    for chapter in claim_chapters():
        path = Path(figures) / chapter / "table_claims.csv"
        if path.is_file():
            frames.append(pd.read_csv(path).assign(chapter=chapter))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["chapter", "verdict"])


def read_measurements(figures: Path) -> pd.DataFrame:
    frames = []
    for chapter in claim_chapters():
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
#: the scorecard's row of the comparison chapter's questions (the book's own too, counted on their own line)
HEAD_TO_HEAD = f"the book's own questions: [every method under one protocol]({COMPARISON_CHAPTER})"


def quoted(table: pd.DataFrame) -> pd.Series:
    """Per row of a claims table: whether the claim is a sentence of the paper (the registry's
    ``quoted``; a row the registry no longer holds, from an older run, by its quotation marks)."""
    registry = {c.id: c.quoted for c in load()}
    if table.empty:
        return pd.Series(dtype=bool)
    by_text = table.get("claim", pd.Series("", index=table.index)).astype(str).str.startswith("“")
    return pd.Series([registry.get(i, text) for i, text in zip(table["id"], by_text)], index=table.index, dtype=bool)


#: the scorecard's verdict columns: not resolved split by power (``claims.replication.POWER_SPLIT``)
SCORE_WORDS = (SUPPORTED, CONTRADICTED, *replication.POWER_SPLIT, NOT_TESTABLE)


def score_words(figures: Path) -> pd.DataFrame:
    """Every claim of ``read_claims`` with ``score``: its verdict, a not resolved one replaced by
    its place in ``claims.replication.POWER_SPLIT`` (from the chapter's ``claims_measurements.csv``;
    a not resolved claim without measurements there counts as "no published Δ": nothing sizes it),
    and ``quoted`` (a sentence of the paper, or the book's own question)."""
    table = read_claims(figures)
    if table.empty:
        return pd.DataFrame({"id": pd.Series(dtype=object), "chapter": pd.Series(dtype=object),
                             "verdict": pd.Series(dtype=object), "score": pd.Series(dtype=object),
                             "quoted": pd.Series(dtype=bool)})
    m = read_measurements(figures)
    split = replication.power_labels(m) if len(m) else pd.Series(dtype=object)
    score = [(split.get(i) or replication.NO_REFERENCE) if v == NOT_RESOLVED else v
             for i, v in zip(table["id"], table["verdict"])]
    return table.assign(score=score, quoted=quoted(table))


def scorecard(figures: Path, label: str = "demo") -> pd.DataFrame:
    """Per paper: how many of its own sentences are supported / contradicted / not resolved (split:
    the run could have seen the paper's effect, could not, or no published Δ to size it) / not
    testable (``SCORE_WORDS``, the first columns); the book's own questions (its readings of tables,
    its controls, its options: not the papers' words) are counted apart, on the last row, so that no
    paper is scored on them."""
    table = score_words(figures)
    names = paper_chapters()
    own = table["quoted"].astype(bool)
    head = table["chapter"] == COMPARISON_CHAPTER
    papers = table[own]
    counts = pd.crosstab(papers["chapter"], papers["score"]).reindex(index=list(names), columns=list(SCORE_WORDS),
                                                                    fill_value=0)
    lines = {BOOK_OWN: ~own & ~head, HEAD_TO_HEAD: head}
    for line, part in lines.items():
        counts = pd.concat([counts, table[part]["score"].value_counts().reindex(list(SCORE_WORDS), fill_value=0)
                            .to_frame(line).T])
    counts = counts.fillna(0).astype(int)
    counts["claims"] = counts.sum(axis=1)
    changes = rerun_changes(figures, set(table["id"][own])).reindex(list(names))
    apart = [rerun_changes(figures, set(table["id"][part])) for part in lines.values()]
    counts[f"changed by a rerun, expected ({label})"] = [*changes.round(1).values,
                                                         *(round(c.sum(), 1) if len(c) else float("nan") for c in apart)]
    counts.index = [f"[{names[c]}]({c})" for c in names] + list(lines)
    counts.index.name = "paper"
    counts.columns = [f"{c} ({label})" if c in SCORE_WORDS else c for c in counts.columns]
    return counts


def replication_card(figures: Path, label: str = "demo") -> pd.DataFrame:
    """Per paper (its own sentences) and for the book's own questions (last row): how many measured
    intervals (claim × primary metric) hold the paper's Δ, lie below it (effect smaller than
    published), above it (larger), or have no published Δ (``claims.replication.reading``, read on
    the claim's signed scale), recomputed from the ``claims_measurements.csv`` files; a column of
    intervals without a verdict (too few seeds) appears only where there are some."""
    m = read_measurements(figures)
    names = paper_chapters()
    columns = list(replication.READINGS)
    if m.empty:
        counts = pd.DataFrame(0, index=[*names, BOOK_OWN, HEAD_TO_HEAD], columns=columns)
    else:
        registry = {c.id: c.quoted for c in load()}
        claims_table = read_claims(figures)
        by_table = dict(zip(claims_table["id"], quoted(claims_table))) if len(claims_table) else {}
        own = m["id"].map(lambda i: by_table.get(i, registry.get(i, True))).astype(bool)
        words = replication.readings(m)
        if (words == replication.NO_READING).any():
            columns.append(replication.NO_READING)
        head = m["chapter"] == COMPARISON_CHAPTER
        papers = pd.crosstab(m["chapter"][own], words[own]).reindex(index=list(names), columns=columns, fill_value=0)
        apart = [words[~own & ~head].value_counts().reindex(columns, fill_value=0).to_frame(BOOK_OWN).T,
                 words[head].value_counts().reindex(columns, fill_value=0).to_frame(HEAD_TO_HEAD).T]
        counts = pd.concat([papers, *apart]).fillna(0).astype(int)
    counts["intervals"] = counts.sum(axis=1)
    counts.index = [f"[{names[c]}]({c})" for c in names] + [BOOK_OWN, HEAD_TO_HEAD]
    counts.index.name = "paper"
    counts.columns = [f"{c} ({label})" if c != "intervals" else c for c in counts.columns]
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
    """The prose's words for the scorecard's last column: "about 10.4 of the papers' 62 tested verdicts
    (Paper 1.2, ...) and 2.3 of the book's own 10", or why there is no number. The papers' sentences
    and the book's own questions are counted apart, as in the scorecard."""
    if rerun_changes(figures).empty:
        return "not available (no paper chapter has run)"
    table = score_words(figures)
    own = table["quoted"].astype(bool)
    changes = rerun_changes(figures, set(table["id"][own]))
    book_changes = rerun_changes(figures, set(table["id"][~own]))
    if changes.isna().any() or book_changes.isna().any():
        return "not available (a claims file lacks what the formula needs)"
    names = paper_chapters()
    tested = table["verdict"] != NOT_TESTABLE
    parts = ", ".join(f"{names[c]} {n:.1f}" for c, n in changes.items())
    return (f"about {changes.sum():.1f} of the papers' {int((tested & own).sum())} tested verdicts ({parts}) and "
            f"{book_changes.sum():.1f} of the book's own {int((tested & ~own).sum())}")


def _short_id(claim_id: str) -> str:
    """A claim id without its chapter prefix (the panel names the paper): '06.rlsd_vs_cnnlstm.voc'
    -> 'rlsd_vs_cnnlstm.voc'."""
    head, _, rest = str(claim_id).partition(".")
    return rest if head.isdigit() and rest else str(claim_id)


#: metrics not in points of a classification metric: (the unit an axis carries, its short name);
#: every other metric is in points (values × 100 of a share: mAP, F1, precision, recall, Jaccard)
OTHER_UNITS = {
    "peak, all positive CADMs": ("CADM peak, logits", "CADM peak (logit)"),
    "peak, weak positive CADMs": ("CADM peak, logits", "CADM peak (logit)"),
    "share of pairs won": ("percentage points of the pairs won", "share of pairs won"),
    "region area": ("percentage points of the image's area", "region area"),
    "multi-object regions": ("percentage points of the regions", "multi-object regions"),
    "epochs to the best hold-out loss": ("epochs", "epochs to the best hold-out loss"),
}
POINTS = "points"
COLOURS = {SUPPORTED: "tab:green", CONTRADICTED: "tab:red", NOT_RESOLVED: "0.55"}


def unit_of(metric: str) -> str:
    """The unit of a metric's Δ on the scorecard's axes (``OTHER_UNITS``, else points)."""
    return OTHER_UNITS.get(metric, (POINTS,))[0]


def _metric_verdicts(m: pd.DataFrame, claims_table: pd.DataFrame) -> pd.Series:
    """Each measurement's own verdict (``metric_verdict``); older files without it take the
    claim's verdict from the claims table, and a measurement without either draws as not resolved."""
    own = m["metric_verdict"] if "metric_verdict" in m else pd.Series(np.nan, index=m.index)
    claim = m["id"].map(claims_table.set_index("id")["verdict"]) if len(claims_table) and "id" in claims_table else (
        pd.Series(np.nan, index=m.index))
    return own.fillna(claim).fillna(NOT_RESOLVED).where(lambda v: v.isin(list(COLOURS)), NOT_RESOLVED)


def _draw(ax, part: pd.DataFrame, labels: list[str], xlabel: str, fontsize: float):
    """One panel: per measurement its interval and Δ in its own verdict's colour, the paper's Δ
    (a cross), a margin test's decision boundaries (short ticks), 0."""
    y = np.arange(len(part))[::-1]
    for yi, (_, r) in zip(y, part.iterrows()):
        colour = COLOURS[r["colour_verdict"]]
        ax.plot([r["low"], r["high"]], [yi, yi], color=colour, lw=2.2, solid_capstyle="butt")
        ax.plot(r["delta"], yi, "o", color=colour, ms=4.5)
        if pd.notna(r.get("published_delta")):
            ax.plot(r["published_delta"], yi, "x", color="black", ms=5.5, mew=1.3)
        test, margin = r.get("test"), r.get("margin")
        if test in ("non-inferiority", "equivalence") and pd.notna(margin) and margin > 0:
            direction = r.get("direction") if r.get("direction") in ("higher", "lower") else "higher"
            for b in boundaries(test, float(margin), direction):
                ax.plot([b, b], [yi - 0.4, yi + 0.4], color="tab:blue", lw=1.2)
    ax.axvline(0, color="black", lw=0.7)
    ax.set_yticks(y, labels, fontsize=fontsize)
    ax.set_ylim(-0.7, max(len(part), 1) - 0.3)
    ax.tick_params(axis="x", labelsize=fontsize)
    ax.grid(axis="x", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.set_xlabel(xlabel, fontsize=fontsize)


def _label(r, chapter_prefix: bool = False, metric: bool = True) -> str:
    text = (f"{str(r['chapter'])[:2]} " if chapter_prefix else "") + _short_id(r["id"])
    text += f" · {r['metric']}" if metric else ""
    return text + (" (lower better)" if r.get("direction") == "lower" else "")


def scorecard_figure(figures: Path, width: float = 8.0, row_height: float = 0.17, fontsize: float = 8):
    """The scorecard as intervals, one unit per axis (readable at the book's page width, about 8 in,
    no text under ``fontsize`` points): one panel per paper for the metrics in points, stacked, then
    one panel per other unit (``OTHER_UNITS``: CADM logits, epochs, shares of pairs or regions).
    Each measurement: its Δ and interval coloured by **that metric's own verdict**
    (``metric_verdict``; a claim with several primary metrics is supported only if all are), the
    paper's own Δ where its tables give one (a cross), a non-inferiority or equivalence margin's
    boundaries (blue ticks). A panel's height grows with its number of measurements."""
    m = read_measurements(figures)
    claims_table = read_claims(figures)
    names = paper_chapters()
    if len(m):
        m = m.dropna(subset=["delta"]).copy()
        m["colour_verdict"] = _metric_verdicts(m, claims_table)
        m["unit"] = m["metric"].map(unit_of)
    empty = pd.DataFrame(columns=["id", "metric", "delta", "low", "high", "chapter", "unit", "colour_verdict"])
    points = {c: (m[(m["chapter"] == c) & (m["unit"] == POINTS)] if len(m) else empty) for c in names}
    others = {}
    for metric, (unit, short) in OTHER_UNITS.items():
        part = m[m["metric"] == metric] if len(m) else empty
        if len(part):
            title, rows = others.get(unit, (short, empty.iloc[:0]))
            others[unit] = (title, pd.concat([rows, part]) if len(rows) else part)
    overhead = 0.95      # inches per panel: its title, its x axis and its label
    panels = [(f"{chapter[:2]} · {paper}" + ("" if len(points[chapter]) else ": no measurements yet"),
               points[chapter], False, "Δ, points (better − worse)") for chapter, paper in names.items()]
    panels += [(f"other units · {title}", part, True, f"Δ, {unit} (better − worse)")
               for unit, (title, part) in others.items()]
    heights = [max(len(part), 1) * row_height + overhead for _, part, _, _ in panels]
    fig, axes = plt.subplots(len(panels), 1, squeeze=False, figsize=(width, sum(heights) + 0.6),
                             gridspec_kw={"height_ratios": heights})
    for ax, (title, part, across, xlabel) in zip(axes[:, 0], panels):
        # a panel of another unit gathers papers: its labels name the chapter, and the metric only
        # where one claim has two metrics of that unit
        metric = not across or part.duplicated("id", keep=False).any()
        _draw(ax, part, [_label(r, across, metric) for _, r in part.iterrows()], xlabel, fontsize)
        ax.set_title(title, fontsize=fontsize + 2, loc="left", fontweight="bold")
    handles = [plt.Line2D([], [], color=c, lw=2.2, marker="o", ms=4.5, label=f"{v} (that metric)")
               for v, c in COLOURS.items()]
    handles += [plt.Line2D([], [], color="black", marker="x", lw=0, ms=5.5, mew=1.3, label="the paper's own Δ"),
                plt.Line2D([], [], color="tab:blue", marker="|", lw=0, ms=8, mew=1.2, label="a margin's boundary")]
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=fontsize, frameon=False,
               bbox_to_anchor=(0.5, 1.0), handlelength=1.6, columnspacing=1.2)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.55 / fig.get_figheight()), h_pad=1.2)
    return fig
