"""`python -m mlbook verify`: the book reproduces itself.

Re-runs the chosen chapters (``mlbook reproduce``) into a scratch folder and compares
every results CSV they write with the committed ones (``figures/<chapter>/*.csv``),
number by number and verdict by verdict; prints a scorecard per chapter and a table
of every difference, then what they mean (``verify_explain``: which claims changed verdict, old → new,
and whether every changed number lies inside the intervals the book prints, so that noise reads apart
from a broken result); exit status 0 when everything is identical, 1 otherwise.

Conventions of the comparison (``compare_trees``):

- Files: every ``<chapter>/*.csv`` of either tree, except the run log ``timings.csv``
  (wall times differ run to run and are never compared). A file on one side only is a
  difference.
- Columns are matched by header name; a column on one side only is a difference.
- Rows are matched by the value of their first column (exact text) and their position
  among the rows sharing that value (the n-th "NUS-WIDE" row with the n-th "NUS-WIDE" row; for a
  tidy table whose first column is constant this is plain position). A row on one side
  only is a difference. Rows are numbered from 1, the header not counted.
- A column named ``verdict`` (or ending in ``_verdict`` / `` verdict``) holds verdicts:
  compared as exact strings.
- Every other cell is split into numbers and text: a number is an optional sign
  (``+``, ``-`` or the Unicode minus ``−``), digits, an optional decimal part and an
  optional exponent, not glued to a letter, digit, ``_`` or ``.`` on its left nor joined
  to a letter by a hyphen (so ``table_1``, ``CF1``, ``ResNet-101``, ``cadm-2`` and
  ``128x6x6``'s trailing sixes are text, and ``0.12-0.25`` reads as 0.12 and 0.25); a
  whole cell ``nan``/``inf`` is a number too. The text around the
  numbers must match exactly; the numbers are compared as numbers, so ``3711`` equals
  ``3711.0``. An empty cell is text (pandas writes a missing value as an empty cell).
- Numbers are equal when ``rtol == 0`` (the default, for CPU reruns) only if identical;
  with ``rtol > 0`` (GPU runs, real data) when ``|a − b| <= max(rtol·max(|a|, |b|), rtol·1e-3)``,
  which is ``math.isclose(a, b, rel_tol=rtol, abs_tol=rtol*1e-3)``. NaN equals NaN.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from .profiles import TIMINGS_FILE, project_root
from .reproduce import chapters as book_chapters, select
from .verify_explain import explain

# a number: not glued on its left to a word character or '.', nor hyphenated to a letter
# ('cadm-2', 'ResNet-101' and 'top-3' are names; '0.12-0.25' is two numbers)
NUMBER = re.compile(r"(?<![\w.])(?<![^\W\d][-−])[-+−]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+−]?\d+)?")
WHOLE_CELL_SPECIALS = {"nan", "inf", "+inf", "-inf", "−inf"}
PLACEHOLDER = "\x00"       # stands for a number in a cell's text skeleton
MAX_SHOWN = 50             # difference rows printed; the rest are counted
EXCERPT = 36               # characters of context shown around a difference in a long cell


# --- one cell -------------------------------------------------------------------------------

def to_number(token: str) -> float:
    return float(token.replace("−", "-"))


def split_cell(cell: str) -> tuple[str, list[float]]:
    """(the text with every number replaced by a placeholder, the numbers in order)."""
    if NUMBER.fullmatch(cell.strip()) or cell.strip().lower() in WHOLE_CELL_SPECIALS:
        return PLACEHOLDER, [to_number(cell.strip().lower())]
    return NUMBER.sub(PLACEHOLDER, cell), [to_number(m) for m in NUMBER.findall(cell)]


def numbers_equal(a: float, b: float, rtol: float = 0.0) -> bool:
    """Exact when rtol is 0; else ``math.isclose(a, b, rel_tol=rtol, abs_tol=rtol*1e-3)``. NaN == NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if rtol == 0:
        return a == b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=rtol * 1e-3)


def is_verdict_column(name: str) -> bool:
    name = name.strip().lower()
    return name == "verdict" or name.endswith("_verdict") or name.endswith(" verdict")


# --- tallies and differences ----------------------------------------------------------------

@dataclasses.dataclass
class Difference:
    """One difference: ``kind`` is number, verdict, text, file, row or column."""
    file: str          # <chapter>/<name>.csv
    row: str           # "row 3 (NUS-WIDE, …)" or "–" for a whole file / column
    column: str
    kind: str
    committed: str
    now: str
    # the committed row (header -> cell) of a cell difference: what verify_explain judges it by
    cells: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass
class ChapterScore:
    """Counts over one chapter's results files: what was compared and how much was identical."""
    files: int = 0
    numbers: int = 0
    numbers_identical: int = 0
    verdicts: int = 0
    verdicts_identical: int = 0
    texts: int = 0
    texts_identical: int = 0
    differences: list[Difference] = dataclasses.field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


@dataclasses.dataclass
class Report:
    committed: Path
    now: Path
    rtol: float
    chapters: dict[str, ChapterScore]

    @property
    def identical(self) -> bool:
        return all(score.identical for score in self.chapters.values())

    @property
    def differences(self) -> list[Difference]:
        return [d for score in self.chapters.values() for d in score.differences]


def count_one_side(score: ChapterScore, header: list[str], rows: list[list[str]]) -> None:
    """Cells present on one side only: every number, verdict and text in them counts as compared
    and not identical, so the scorecard's totals cover both trees."""
    for row in rows:
        for column, cell in zip(header, row):
            if is_verdict_column(column):
                score.verdicts += 1
                continue
            text, numbers = split_cell(cell)
            score.numbers += len(numbers)
            score.texts += bool(text.replace(PLACEHOLDER, "").strip())


def compare_cell(score: ChapterScore, column: str, a: str, b: str, rtol: float) -> str | None:
    """Tally one pair of cells; return the kind of difference, or None when they agree."""
    if is_verdict_column(column):
        score.verdicts += 1
        score.verdicts_identical += a == b
        return None if a == b else "verdict"
    text_a, numbers_a = split_cell(a)
    text_b, numbers_b = split_cell(b)
    same_numbers = sum(numbers_equal(x, y, rtol) for x, y in zip(numbers_a, numbers_b))
    score.numbers += max(len(numbers_a), len(numbers_b))
    score.numbers_identical += same_numbers
    has_text = bool(text_a.replace(PLACEHOLDER, "").strip() or text_b.replace(PLACEHOLDER, "").strip())
    score.texts += has_text
    score.texts_identical += has_text and text_a == text_b
    if text_a != text_b:
        bare = {PLACEHOLDER, ""}   # a bare number against an empty (missing) cell is a number difference
        return "number" if {text_a, text_b} <= bare else "text"
    return None if same_numbers == len(numbers_a) else "number"


# --- one file -------------------------------------------------------------------------------

def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header (duplicate names made unique with '#2', '#3') and rows padded to the header's width."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = list(csv.reader(f))
    if not lines:
        return [], []
    seen: Counter = Counter()
    header = []
    for name in lines[0]:
        seen[name] += 1
        header.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    width = len(header)
    return header, [row + [""] * (width - len(row)) for row in lines[1:]]


def keyed_rows(rows: list[list[str]]) -> dict[tuple[str, int], int]:
    """(first cell, its occurrence number) -> row index."""
    seen: Counter = Counter()
    keys = {}
    for i, row in enumerate(rows):
        first = row[0] if row else ""
        keys[(first, seen[first])] = i
        seen[first] += 1
    return keys


def row_label(index: int, row: list[str]) -> str:
    """'row 3 (table_3, coco (generated), WARP, CP)': the row's number and its first cells without numbers."""
    names = [c if len(c) <= 30 else c[:29] + "…" for c in row[:5] if c.strip() and not NUMBER.search(c)]
    return f"row {index + 1}" + (f" ({', '.join(names[:4])})" if names else "")


def excerpt(a: str, b: str) -> tuple[str, str]:
    """Long cells are cut to the stretch around their first difference."""
    if max(len(a), len(b)) <= 2 * EXCERPT:
        return a, b
    start = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, start - EXCERPT)

    def cut(s: str) -> str:
        return ("…" if lo else "") + s[lo:start + EXCERPT] + ("…" if start + EXCERPT < len(s) else "")
    return cut(a), cut(b)


def compare_files(score: ChapterScore, name: str, committed: Path | None, now: Path | None, rtol: float) -> None:
    """Compare one results CSV (either side may be None: missing there) into ``score``."""
    score.files += 1
    if committed is None or now is None:
        header, rows = read_csv(committed or now)
        count_one_side(score, header, rows)
        shown = f"present ({len(rows)} rows)"
        score.differences.append(Difference(name, "–", "–", "file", shown if committed else "missing",
                                            shown if now else "missing"))
        return
    a, b = read_csv(committed), read_csv(now)
    compare_columns(score, name, a, b)
    compare_rows(score, name, a, b, rtol)


def presence(key, committed, now) -> tuple[str, str]:
    return "present" if key in committed else "missing", "present" if key in now else "missing"


def compare_columns(score: ChapterScore, name: str, a: tuple, b: tuple) -> None:
    """Columns on one side only (matched by header name)."""
    (header_a, rows_a), (header_b, rows_b) = a, b
    for column in header_a + [c for c in header_b if c not in header_a]:
        if column in header_a and column in header_b:
            continue
        header, rows = (header_a, rows_a) if column in header_a else (header_b, rows_b)
        at = header.index(column)
        count_one_side(score, [column], [[r[at]] for r in rows])
        score.differences.append(Difference(name, "–", column, "column", *presence(column, header_a, header_b)))


def compare_rows(score: ChapterScore, name: str, a: tuple, b: tuple, rtol: float) -> None:
    """Rows matched by (first cell, occurrence); cells of the shared columns compared one by one."""
    (header_a, rows_a), (header_b, rows_b) = a, b
    shared = [(column, header_a.index(column), header_b.index(column)) for column in header_a if column in header_b]
    keys_a, keys_b = keyed_rows(rows_a), keyed_rows(rows_b)
    for key in list(keys_a) + [k for k in keys_b if k not in keys_a]:
        if key not in keys_a or key not in keys_b:
            header, rows, i = (header_a, rows_a, keys_a[key]) if key in keys_a else (header_b, rows_b, keys_b[key])
            count_one_side(score, header, [rows[i]])
            score.differences.append(Difference(name, row_label(i, rows[i]), "–", "row",
                                                *presence(key, keys_a, keys_b)))
            continue
        row_a, row_b = rows_a[keys_a[key]], rows_b[keys_b[key]]
        for column, at_a, at_b in shared:
            kind = compare_cell(score, column, row_a[at_a], row_b[at_b], rtol)
            if kind:
                score.differences.append(Difference(name, row_label(keys_a[key], row_a), column, kind,
                                                    *excerpt(row_a[at_a], row_b[at_b]),
                                                    cells=dict(zip(header_a, row_a))))


# --- two trees ------------------------------------------------------------------------------

def chapter_matches(name: str, tokens: list[str] | None) -> bool:
    """The chapter selection rule of ``mlbook reproduce --chapters``: a number or a name fragment."""
    return not tokens or any(name.startswith(t) or t in name for t in tokens)


def results_files(tree: Path) -> dict[str, Path]:
    """'<chapter>/<name>.csv' -> path, for every results CSV of a figures tree (timings.csv left out)."""
    if not tree.is_dir():
        return {}
    return {f"{p.parent.name}/{p.name}": p for p in sorted(tree.glob("*/*.csv")) if p.name != TIMINGS_FILE}


def compare_trees(committed: Path, now: Path, rtol: float = 0.0, chapters: list[str] | None = None) -> Report:
    """Compare every results CSV of two figures trees (the module docstring states the rules);
    ``chapters``: numbers or name fragments of the chapter folders to compare (default: all)."""
    committed, now = Path(committed), Path(now)
    for tree in (committed, now):
        if not tree.is_dir():
            raise FileNotFoundError(f"no figures tree at {tree}")
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0, not {rtol}")
    files_a, files_b = results_files(committed), results_files(now)
    names = sorted(n for n in set(files_a) | set(files_b) if chapter_matches(n.split("/")[0], chapters))
    scores: dict[str, ChapterScore] = {}
    for name in names:
        score = scores.setdefault(name.split("/")[0], ChapterScore())
        compare_files(score, name, files_a.get(name), files_b.get(name), rtol)
    return Report(committed, now, rtol, scores)


# --- the printed report ---------------------------------------------------------------------

def scorecard_line(chapter: str, score: ChapterScore) -> str:
    structural = sum(d.kind in ("file", "row", "column") for d in score.differences)
    parts = [f"{score.numbers_identical} of {score.numbers} numbers identical",
             f"{score.verdicts_identical} of {score.verdicts} verdicts identical",
             f"{score.texts_identical} of {score.texts} texts identical"]
    if structural:
        parts.append(f"{structural} missing or extra file(s), row(s) or column(s)")
    files = f"{score.files} file" + ("s" if score.files != 1 else "")
    return f"{chapter:<28} {'ok  ' if score.identical else 'DIFF'}  {files}: " + "; ".join(parts)


def markdown_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ") or " "


def format_report(report: Report) -> str:
    """The scorecard (one line per chapter, then the total), then a Markdown table of the
    differences (the first ``MAX_SHOWN``, with a count of the rest)."""
    rule = "exact" if report.rtol == 0 else f"rtol {report.rtol:g} (|a-b| <= max(rtol*max(|a|,|b|), rtol*1e-3))"
    lines = [f"committed: {report.committed}", f"now:       {report.now}", f"numbers compared: {rule}", ""]
    if not report.chapters:
        lines.append("no results tables (figures/<chapter>/*.csv) in either tree for these chapters")
    total = ChapterScore()
    for chapter, score in report.chapters.items():
        lines.append(scorecard_line(chapter, score))
        for field in ("files", "numbers", "numbers_identical", "verdicts", "verdicts_identical", "texts",
                      "texts_identical"):
            setattr(total, field, getattr(total, field) + getattr(score, field))
        total.differences += score.differences
    if len(report.chapters) > 1:
        lines.append(scorecard_line("total", total))
    differences = report.differences
    if not differences:
        lines += ["", "identical: every number, verdict and text of every results table"]
        return "\n".join(lines)
    lines += ["", f"{len(differences)} difference(s):", "",
              "| file | row | column | kind | committed | now |", "|---|---|---|---|---|---|"]
    for d in differences[:MAX_SHOWN]:
        lines.append("| " + " | ".join(markdown_cell(v) for v in (d.file, d.row, d.column, d.kind, d.committed,
                                                                   d.now)) + " |")
    if len(differences) > MAX_SHOWN:
        lines.append(f"\n… and {len(differences) - MAX_SHOWN} more difference(s)")
    lines += explain(report.committed, report.now, differences)
    return "\n".join(lines)


# --- the run --------------------------------------------------------------------------------

def new_scratch(root: Path) -> Path:
    """A fresh folder under _build/verify/ (git-ignored), named by the time it was made."""
    base = root / "_build" / "verify"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=base))


def run_chapters(profile: str, chapters: str | None, scratch: Path, cold: bool) -> int:
    """``mlbook reproduce`` in a child process, everything it writes under ``scratch``: the
    notebooks (``--output-dir scratch``; reproduce then sends the figures to
    ``scratch/figures`` for every profile), and with ``cold`` the experiment cache and the
    generated data too, so nothing computed before is reused. Returns its exit status."""
    env = dict(os.environ, MLBOOK_FIGURES=str(scratch / "figures"),
               # a chapter's default profile comes from MLBOOK_PROFILE when none is injected (demo)
               MLBOOK_PROFILE=profile)
    if cold:
        env.update(MLBOOK_RUNS=str(scratch / "runs"), MLBOOK_DATA=str(scratch / "data"))
    cmd = [sys.executable, "-m", "mlbook", "reproduce", "--profile", profile, "--output-dir", str(scratch),
           "--no-build"] + (["--chapters", chapters] if chapters else [])
    print(f"verify: python {' '.join(cmd[1:])}  ({'cold: runs/ and data/ under the scratch folder' if cold else 'cached runs/ and data/ reused'})",
          flush=True)
    return subprocess.run(cmd, cwd=project_root(), env=env).returncode


def chapter_tokens(chapters: str | list[str] | None) -> list[str] | None:
    if chapters is None:
        return None
    items = chapters.split(",") if isinstance(chapters, str) else chapters
    return [t.strip() for t in items if t.strip()] or None


def verify(profile: str = "demo", chapters: str | list[str] | None = None, cold: bool = True, rtol: float = 0.0,
           scratch: str | Path | None = None, reference: str | Path | None = None,
           against: str | Path | None = None) -> int:
    """Re-run ``chapters`` (default: all) in ``profile`` into ``scratch`` (default: a new folder
    under ``_build/verify/``) and compare its figures with ``reference`` (default: the committed
    ``figures/``); with ``against`` (an existing figures tree) compare only, no run. Prints the
    report; returns 0 when identical, 1 on any difference or a failed run, 2 on a bad argument."""
    root = project_root()
    tokens = chapter_tokens(chapters)
    if tokens and against is None:   # before any folder is made: a ValueError naming --chapters and the chapters
        select(book_chapters(root), ",".join(tokens))
    if not rtol >= 0:   # also rejects NaN
        print(f"error: --rtol must be 0 or more, not {rtol}", file=sys.stderr)
        return 2
    reference = Path(reference) if reference else root / "figures"
    if not reference.is_dir():
        print(f"error: no reference figures tree at {reference}", file=sys.stderr)
        return 2
    if against is not None:
        now = Path(against)
        if not now.is_dir():
            print(f"error: no figures tree at {now} (--against)", file=sys.stderr)
            return 2
        folders = sorted({p.name for tree in (reference, now) for p in tree.iterdir() if p.is_dir()})
        unknown = [t for t in tokens or () if not any(chapter_matches(name, [t]) for name in folders)]
        if unknown:
            raise ValueError(f"--chapters: no chapter folder of {reference} or {now} matches {unknown[0]!r}; "
                             f"folders: {', '.join(folders)}")
    else:
        made = not scratch or not Path(scratch).exists()
        scratch = Path(scratch) if scratch else new_scratch(root)
        now = scratch / "figures"
        if scratch.resolve() in (root.resolve(), (root / "book").resolve()) or now.resolve() == reference.resolve():
            print(f"error: the scratch folder {scratch} would overwrite the book or its reference", file=sys.stderr)
            return 2
        if now.is_dir() and any(now.iterdir()):   # stale tables would be compared as if just made
            print(f"error: {now} is not empty; verify needs a fresh scratch folder", file=sys.stderr)
            return 2
        if profile != "demo" and reference == root / "figures":
            print(f"note: the committed figures/ are the demo profile's; a {profile} run will differ",
                  file=sys.stderr)
        status = run_chapters(profile, ",".join(tokens) if tokens else None, scratch, cold)
        if status != 0:
            if made and scratch.is_dir() and not any(p.is_file() for p in scratch.rglob("*")):
                shutil.rmtree(scratch)   # the folder this run made, left empty: nothing to look at
            print(f"verify: the run failed (exit {status}); nothing compared", file=sys.stderr)
            return 1
    report = compare_trees(reference, now, rtol, tokens)
    print(format_report(report))
    return 0 if report.identical else 1

