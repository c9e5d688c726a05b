"""What ``mlbook verify``'s differences mean: which claims changed verdict, and whether every changed
number lies inside the intervals the book prints, so that a reader can tell run-to-run noise from a
broken result.

The intervals are the committed tree's claims measurements (``<chapter>/claims_measurements.csv``: per
claim id and metric, the measured Δ and its interval ``[low, high]``). A changed number is judged by the
first rule that applies to it:

- **A claim's measurement**: a row of ``claims_measurements.csv``, or a row of another table that names
  a claim ``id`` (``table_claims.csv``'s evidence, ``table_power.csv``): inside when the new run's Δ of
  that claim lies inside the committed interval, for the row's metric (every metric of the claim when
  the row names none). The columns that describe the test rather than measure it (margin, seed and
  resample counts, the paper's Δ) have no interval: a change there is a change of design.
- **A results table's value**: a tidy table (``data set`` and ``metric`` columns), its ``reproduced`` and
  ``delta`` columns: inside when ``|now − committed|`` is at most the median half-width of the intervals
  the book prints for claims on that metric and data set. Why that scale: a rerun moves one row's mean
  over seeds by noise whose spread is that of the difference between two rows of the same kind, which is
  what a claim's interval covers; the median, because a paired claim (two decodings of one model) has a
  far narrower interval than any single row's noise.
- **Anything else** has no printed interval and is reported as such, never as noise.

This module reads the two trees' CSV files itself and takes the differences duck-typed (``file``,
``row``, ``column``, ``kind``, ``committed``, ``now``, ``cells``: the committed row, header -> cell), so
that ``verify`` imports it and not the other way round.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import statistics
from pathlib import Path

MEASUREMENTS = "claims_measurements.csv"
DESIGN_COLUMNS = {"test", "margin", "seeds_better", "seeds_worse", "n_resamples", "published_delta"}
VALUE_COLUMNS = {"reproduced", "delta"}
SHOWN = 10   # changed numbers listed per status; the rest are counted


@dataclasses.dataclass(frozen=True)
class Measurement:
    dataset: str
    delta: float
    low: float
    high: float


def to_float(text: str | None) -> float:
    """The number a plain cell holds (the Unicode minus too), NaN when it holds none."""
    try:
        return float(str(text).strip().replace("−", "-"))
    except ValueError:
        return math.nan


def measurements(tree: Path) -> dict[tuple[str, str, str], Measurement]:
    """(chapter, claim id, metric) -> the claim's measured Δ and interval, from every chapter of ``tree``."""
    found = {}
    for path in sorted(Path(tree).glob(f"*/{MEASUREMENTS}")):
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                found[(path.parent.name, row.get("id", ""), row.get("metric", ""))] = Measurement(
                    row.get("data set", ""), to_float(row.get("delta")), to_float(row.get("low")),
                    to_float(row.get("high")))
    return found


def base_dataset(name: str) -> str:
    """'nuswide (generated)' -> 'nuswide': the tables name the data set with its origin, the claims without."""
    return name.split(" (")[0].strip()


def typical_halfwidths(committed: dict) -> dict[tuple[str, str, str], float]:
    """(chapter, data set, metric) -> the median half-width of the committed claims' intervals."""
    widths: dict[tuple[str, str, str], list[float]] = {}
    for (chapter, _, metric), m in committed.items():
        if not (math.isnan(m.low) or math.isnan(m.high)):
            widths.setdefault((chapter, base_dataset(m.dataset), metric), []).append((m.high - m.low) / 2)
    return {key: statistics.median(values) for key, values in widths.items()}


def judge_claim(chapter: str, claim: str, metric: str | None, committed: dict, now: dict) -> tuple[str, str]:
    """(status, why) of a claim's measurement: its new Δ against the committed interval."""
    keys = [k for k in committed if k[:2] == (chapter, claim) and metric in (None, k[2])]
    if not keys:
        return "no interval", f"no measurement of {claim}"
    reasons = []
    for key in keys:
        old, new = committed[key], now.get(key)
        if math.isnan(old.low) or math.isnan(old.high):
            return "no interval", f"{claim} · {key[2]} has no interval"
        if new is None or not old.low <= new.delta <= old.high:
            shown = "missing" if new is None else f"{new.delta:+.3g}"
            return "outside", f"{claim} · {key[2]}: Δ {shown} outside the committed [{old.low:+.3g}, {old.high:+.3g}]"
        reasons.append(f"{key[2]} Δ {new.delta:+.3g} in [{old.low:+.3g}, {old.high:+.3g}]")
    return "inside", f"{claim}: " + "; ".join(reasons)


def judge_value(chapter: str, difference, halfwidths: dict) -> tuple[str, str]:
    """(status, why) of a results table's value against the typical interval of its metric and data set."""
    cells = difference.cells
    key = (chapter, base_dataset(cells.get("data set", "")), cells.get("metric", ""))
    if key not in halfwidths:
        return "no interval", f"no claim on {key[2]} ({key[1]}) to take an interval from"
    change = abs(to_float(difference.now) - to_float(difference.committed))
    if math.isnan(change):
        return "no interval", "not a plain number"
    status = "inside" if change <= halfwidths[key] else "outside"
    return status, (f"|Δ| {change:.3g} {'≤' if status == 'inside' else '>'} {halfwidths[key]:.3g}, the median "
                    f"half-width of the {key[1]} {key[2]} claims' intervals")


def judge(difference, committed: dict, now: dict, halfwidths: dict) -> tuple[str, str]:
    """(status, why) of one number difference: 'inside', 'outside' or 'no interval' (the rules above)."""
    chapter, name = difference.file.split("/", 1)
    cells = difference.cells
    if name == MEASUREMENTS and difference.column in DESIGN_COLUMNS:
        return "no interval", f"{difference.column} describes the test, not a measurement"
    if cells.get("id"):
        return judge_claim(chapter, cells["id"], cells.get("metric") or None, committed, now)
    if {"data set", "metric"} <= set(cells) and difference.column in VALUE_COLUMNS:
        return judge_value(chapter, difference, halfwidths)
    return "no interval", "the book prints no interval for this number"


def verdict_changes(differences) -> list[str]:
    """'claim id: old → new' per changed verdict, the claims' own verdicts first, then a metric's verdict
    as 'id (metric)'; each once: the claim's verdict repeats on every metric row of the measurements file."""
    changes: dict[tuple, None] = {}
    for d in differences:
        if d.kind == "verdict":
            metric = d.cells.get("metric") if d.column == "metric_verdict" else None
            changes[(metric is not None, d.cells.get("id") or f"{d.file} {d.row}", metric, d.committed, d.now)] = None
    return [f"{claim}{f' ({metric})' if metric else ''}: {old or '–'} → {new or '–'}"
            for _, claim, metric, old, new in sorted(changes, key=lambda change: change[0])]


def explain(committed_tree: Path, now_tree: Path, differences) -> list[str]:
    """The lines ``verify`` prints under its table of differences (none when there is no difference)."""
    if not differences:
        return []
    committed, now = measurements(committed_tree), measurements(now_tree)
    halfwidths = typical_halfwidths(committed)
    changes = verdict_changes(differences)
    judged: dict[str, list[str]] = {"inside": [], "outside": [], "no interval": []}
    for d in differences:
        if d.kind == "number":
            status, why = judge(d, committed, now, halfwidths)
            judged[status].append(f"{d.file} {d.row} {d.column}: {d.committed} → {d.now} ({why})")
    lines = ["", "what the differences mean:",
             f"verdicts: {len(changes)} changed" + (":" if changes else " (every claim keeps its verdict)")]
    lines += [f"  {line}" for line in changes]
    counts = {status: len(items) for status, items in judged.items()}
    lines.append(f"numbers: {sum(counts.values())} changed: {counts['inside']} inside the intervals the book prints, "
                 f"{counts['outside']} outside, {counts['no interval']} with no interval")
    for status in ("outside", "no interval"):
        lines += [f"  {status}: {item}" for item in judged[status][:SHOWN]]
        if len(judged[status]) > SHOWN:
            lines.append(f"  … and {len(judged[status]) - SHOWN} more {status}")
    others = sum(d.kind not in ("number", "verdict") for d in differences)
    lines.append("reading: " + reading(len(changes), counts, others))
    return lines


def reading(changed_verdicts: int, counts: dict, others: int) -> str:
    """One sentence: noise, a changed result, or what cannot be judged."""
    rest = f"; {others} text or structural difference(s) are not judged" if others else ""
    if changed_verdicts:
        return (f"a changed result: {changed_verdicts} verdict(s) changed"
                + (f", {counts['outside']} number(s) moved outside their interval" if counts["outside"] else "") + rest)
    if counts["outside"]:
        return f"beyond noise: {counts['outside']} number(s) moved outside their interval, no verdict changed" + rest
    if counts["no interval"]:
        return (f"no verdict changed and every number with an interval stayed inside it; {counts['no interval']} "
                "changed number(s) have no interval to judge them by" + rest)
    return "noise: no verdict changed and every changed number lies inside the intervals the book prints" + rest
