"""The one reporting module: published numbers, paper-vs-reproduced tables and
figure saving (DESIGN.md, "Reporting"); claims tables come from ``mlbook.claims``.

Published tables are package data (``mlbook/reference/*.csv``, percentages as
printed, an empty cell is a '-' in the paper). Reproduced numbers are passed
in as percentages with the same column names.

A table is shown to the reader as Markdown (cells like ``59.0 (78.3)``) and saved
as ``table_<n>.md``; its CSV is tidy, one number per cell (``save_comparison``:
table, data set, method, metric, reproduced, published, Δ), so every result of the
book loads with one ``pandas.read_csv`` loop. Figures and tables go to
``figures_dir()``: ``figures/`` for the published demo run, the run's own output
folder otherwise (``mlbook reproduce`` sets ``MLBOOK_FIGURES``).
"""
from __future__ import annotations

import inspect
import io
import os
from importlib import resources
from pathlib import Path

import pandas as pd

from . import claims
from .cache import atomic_path, atomic_write_text
from .profiles import TIMINGS_FILE, dry_run_note, figures_dir, get_profile

# --- published numbers ---------------------------------------------------------

def reference_files() -> list[str]:
    """Names (without .csv) of every published table shipped with the package."""
    return sorted(f[:-4] for f in reference_index()["file"])


def reference_index() -> pd.DataFrame:
    """tables.csv: file, paper, table, dataset, protocol, caption."""
    with resources.files("mlbook.reference").joinpath("tables.csv").open() as f:
        return pd.read_csv(f)


def reference(name: str) -> pd.DataFrame:
    """A published table, indexed by method; ``name`` like 'cadm_table1_coco'."""
    name = name[:-4] if name.endswith(".csv") else name
    path = resources.files("mlbook.reference").joinpath(f"{name}.csv")
    if not path.is_file():
        raise KeyError(f"no published table {name!r}; available: {', '.join(reference_files())}")
    with path.open() as f:
        return pd.read_csv(f).set_index("method")


# --- side by side --------------------------------------------------------------

def show_source(*objects) -> None:
    """Print the source of functions or classes of the package (a chapter shows the code next to
    the equation it implements)."""
    for obj in objects:
        print(inspect.getsource(obj))


def _fmt(x) -> str:
    return "–" if x is None or pd.isna(x) else f"{x:.1f}"


def side_by_side(reproduced: pd.DataFrame, published: pd.DataFrame, *, style: str = "paren") -> pd.DataFrame:
    """Merge reproduced and published numbers, one row per method.

    style="paren": each cell reads ``reproduced (paper)``;
    style="delta": columns ``<m>``, ``<m> paper``, ``<m> Δ`` (reproduced - paper).
    Methods only in one of the two tables keep '–' for the other.
    Columns are those of the published table that the reproduced one has too,
    in the published order, then any extra reproduced columns.
    """
    cols = [c for c in published.columns if c in reproduced.columns]
    cols += [c for c in reproduced.columns if c not in cols]
    methods = list(reproduced.index) + [m for m in published.index if m not in reproduced.index]
    out = pd.DataFrame(index=pd.Index(methods, name="method"))
    for c in cols:
        r = reproduced[c].reindex(methods) if c in reproduced else pd.Series(index=methods, dtype=float)
        p = published[c].reindex(methods) if c in published else pd.Series(index=methods, dtype=float)
        if style == "paren":
            out[c] = [f"{_fmt(a)} ({_fmt(b)})" for a, b in zip(r, p)]
        elif style == "delta":
            out[c] = r.round(1)
            out[f"{c} paper"] = p
            out[f"{c} Δ"] = (r - p).round(1)
        else:
            raise ValueError(f"style must be 'paren' or 'delta', not {style!r}")
    return out


def to_markdown(df: pd.DataFrame) -> str:
    """A pipe table; a '|' inside a cell is escaped so it cannot split the columns."""
    escape = lambda v: v.replace("|", "\\|") if isinstance(v, str) else v  # noqa: E731
    return df.map(escape).to_markdown()


def chapter_dir(chapter: str) -> Path:
    folder = figures_dir() / chapter
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _display(df: pd.DataFrame, caption: str | None) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # plain python: print
        get_ipython = lambda: None  # noqa: E731
    if get_ipython() is not None:
        display(Markdown((f"**{caption}**\n\n" if caption else "") + to_markdown(df)))
    else:
        print((caption + "\n" if caption else "") + to_markdown(df))


def caption_suffix(profile=None) -> str:
    """The caption suffix of a dry run (``--limit-images`` / ``--max-steps``), "" for a real run: every
    table a dry run saves says "DRY RUN" (``save_table``, ``save_comparison`` add it). ``profile``: a
    Profile or a name (default the chapters' ``MLBOOK_PROFILE``, with the limits ``reproduce`` hands them)."""
    note = dry_run_note(get_profile(profile or os.environ.get("MLBOOK_PROFILE", "demo")))
    return f" -- {note}" if note else ""


def save_table(df: pd.DataFrame, chapter: str, n: int | str, caption: str = "", show: bool = True) -> None:
    """Write figures/<chapter>/table_<n>.csv and .md (atomically) and display it.

    Returns nothing, so a notebook cell ending with it shows no machine-specific path.
    """
    suffix = caption_suffix()
    if suffix:
        caption = (caption or f"Table {n}") + suffix
    folder = chapter_dir(chapter)
    buf = io.StringIO()
    df.to_csv(buf)
    atomic_write_text(buf.getvalue(), folder / f"table_{n}.csv")
    atomic_write_text((f"{caption}\n\n" if caption else "") + to_markdown(df) + "\n", folder / f"table_{n}.md")
    if show:
        _display(df, caption)


def tidy(reproduced: pd.DataFrame, published: pd.DataFrame | None, table: str, dataset: str) -> pd.DataFrame:
    """One number per row: table, data set, method, metric, reproduced, published, Δ."""
    rows = []
    for method in reproduced.index:
        for metric in reproduced.columns:
            r = reproduced.loc[method, metric]
            p = (published.loc[method, metric] if published is not None and method in published.index
                 and metric in published.columns else float("nan"))
            rows.append({"table": table, "data set": dataset, "method": method, "metric": metric,
                         "reproduced": round(float(r), 2), "published": p,
                         "delta": round(float(r) - float(p), 2) if pd.notna(p) else float("nan")})
    return pd.DataFrame(rows)


def save_comparison(reproduced: pd.DataFrame, published: pd.DataFrame, chapter: str, n: int | str,
                    caption: str, dataset: str, show: bool = True) -> None:
    """A reproduced-vs-published table: Markdown cells ``reproduced (paper)`` for the reader,
    a tidy CSV (``tidy``) for machines."""
    caption += caption_suffix()
    folder = chapter_dir(chapter)
    shown = side_by_side(reproduced, published)
    atomic_write_text(tidy(reproduced, published, f"table_{n}", dataset).to_csv(index=False),
                      folder / f"table_{n}.csv")
    atomic_write_text(f"{caption}\n\n{to_markdown(shown)}\n", folder / f"table_{n}.md")
    if show:
        _display(shown, caption)


def save_claims(rows: list[dict], chapter: str, caption: str = "Claims and verdicts (mlbook.claims)",
                show: bool = True) -> pd.DataFrame:
    """A chapter's claims: ``table_claims.csv``/``.md`` (one row per claim, with its id and verdict)
    and ``claims_measurements.csv`` (one row per claim and primary metric: Δ, interval, seeds, the
    paper's Δ), from ``mlbook.claims.evaluate`` rows. Returns the table (chapter 00's scorecard and
    ``mlbook verify`` read the files)."""
    table = claims.table(rows)
    save_table(table.set_index("id"), chapter, "claims", caption, show=show)
    atomic_write_text(claims.tidy(rows).to_csv(index=False), chapter_dir(chapter) / "claims_measurements.csv")
    return table


def save_timings(chapter: str, rows: list[dict]) -> None:
    """Write the chapter's run log ``figures/<chapter>/timings.csv`` (atomically), one row per dict,
    e.g. ``{"what": "backbone coco", "seconds": 12.3, "img/s": 800}``; columns are the union of the
    dicts' keys in first-seen order. Wall times and throughputs differ run to run, so they live here,
    never in a results table. Returns and shows nothing."""
    table = pd.DataFrame(rows)
    atomic_write_text(table.to_csv(index=False), chapter_dir(chapter) / TIMINGS_FILE)


def save_figure(fig, chapter: str, n: int | str, name: str, dpi: int = 120) -> Path:
    """Save a matplotlib figure as figures/<chapter>/fig_<n>_<name>.png (atomically)."""
    path = chapter_dir(chapter) / f"fig_{n}_{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path


def learning_curves(histories: dict[str, list[list[dict]]], terms: tuple[str, ...] = ("loss", "val_loss"),
                    title: str = ""):
    """Per-epoch curves of every run: ``histories[row] = [history of seed 0, seed 1, ...]``.

    One panel per term (e.g. the training loss, the hold-out loss, a loss term such as
    CADM's pull); one colour per row, one line per seed; the epoch whose weights were kept
    (early stopping) is marked with a dot. Drawn with seaborn on a tidy frame.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    rows = []
    for name, runs in histories.items():
        for seed, history in enumerate(runs):
            for rec in history:
                for term in terms:
                    if term in rec:
                        rows.append({"row": name, "seed": seed, "epoch": rec["epoch"], "term": term,
                                     "value": rec[term], "kept": rec.get("best_epoch") == rec["epoch"]})
    df = pd.DataFrame(rows)
    present = [t for t in terms if t in set(df["term"])] if len(df) else []
    order = list(histories)
    palette = dict(zip(order, sns.color_palette("tab10", len(order))))   # one colour per row in every panel
    fig, axes = plt.subplots(1, max(len(present), 1), figsize=(3.6 * max(len(present), 1) + 2.2, 3.0),
                             squeeze=False)
    for ax, term in zip(axes[0], present):
        part = df[df["term"] == term]
        sns.lineplot(data=part, x="epoch", y="value", hue="row", hue_order=order, palette=palette, units="seed",
                     estimator=None, lw=1.1, ax=ax, legend=False)
        kept = part[part["kept"]]
        sns.scatterplot(data=kept, x="epoch", y="value", hue="row", hue_order=order, palette=palette, ax=ax,
                        legend=False, s=22, zorder=3)
        ax.set(title=term, ylabel="")
    handles = [plt.Line2D([], [], color=palette[r], lw=2, label=r) for r in order]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
