"""The one reporting module: published numbers, paper-vs-reproduced tables,
figure saving and claims tables (DESIGN.md, "Reporting").

Published tables are package data (``mlbook/reference/*.csv``, percentages as
printed, an empty cell is a '-' in the paper). Reproduced numbers are passed
in as percentages with the same column names.
"""
from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import pandas as pd

from .experiments import atomic_path, atomic_write_text
from .profiles import figures_dir

VERDICTS = ("holds", "does not hold", "not testable at this profile")


# --- published numbers ---------------------------------------------------------

def reference_files() -> list[str]:
    """Names (without .csv) of every published table shipped with the package."""
    folder = resources.files("mlbook.reference")
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".csv") and p.name != "tables.csv")


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
    return df.to_markdown()


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


def save_table(df: pd.DataFrame, chapter: str, n: int | str, caption: str = "", show: bool = True) -> None:
    """Write figures/<chapter>/table_<n>.csv and .md (atomically) and display it.

    Returns nothing, so a notebook cell ending with it shows no machine-specific path.
    """
    folder = chapter_dir(chapter)
    buf = io.StringIO()
    df.to_csv(buf)
    atomic_write_text(buf.getvalue(), folder / f"table_{n}.csv")
    atomic_write_text((f"{caption}\n\n" if caption else "") + to_markdown(df) + "\n", folder / f"table_{n}.md")
    if show:
        _display(df, caption)


def save_figure(fig, chapter: str, n: int | str, name: str, dpi: int = 120) -> Path:
    """Save a matplotlib figure as figures/<chapter>/fig_<n>_<name>.png (atomically)."""
    path = chapter_dir(chapter) / f"fig_{n}_{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return path


# --- claims ---------------------------------------------------------------------

def verdict(holds: bool | None) -> str:
    """True -> 'holds', False -> 'does not hold', None -> 'not testable at this profile'."""
    return VERDICTS[2] if holds is None else VERDICTS[0] if holds else VERDICTS[1]


def claims_table(rows: list[dict]) -> pd.DataFrame:
    """rows: dicts with 'claim', 'evidence' and 'verdict' (one of VERDICTS, or a bool/None)."""
    table = []
    for row in rows:
        v = row["verdict"]
        v = verdict(v) if v is None or isinstance(v, bool) else v
        if v not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {v!r}")
        table.append({"claim": row["claim"], "evidence": row["evidence"], "verdict": v})
    return pd.DataFrame(table, columns=["claim", "evidence", "verdict"])


def save_claims(df: pd.DataFrame, chapter: str, show: bool = True) -> None:
    save_table(df.set_index("claim"), chapter, "claims", "Claims and verdicts", show=show)
