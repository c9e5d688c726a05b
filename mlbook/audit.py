"""Audit of the published tables: are the printed numbers consistent with each other?

Four checks, all on the numbers as printed (one decimal, in percent):

1. F1 vs 2PR/(P+R). A printed value v stands for anything in [v - 0.05, v + 0.05],
   so a row is consistent when the printed F1's interval meets the range of
   2PR/(P+R) over the P and R intervals.
   - Overall (micro) OF1 is by definition the harmonic mean of OP and OR, so an
     inconsistent OF1 is an error in one of the three numbers.
   - Per-class CF1 has two conventions: the harmonic mean of CP and CR, or the
     mean of per-class F1. The harmonic mean is jointly concave, so by Jensen
     mean_c F1_c <= 2·CP·CR/(CP+CR): a CF1 *below* the harmonic mean is
     explained by the mean-of-per-class-F1 convention; one *above* it is not.
   For an unexplained row we list the single-digit edits of P, R or F1 that
   would make it consistent (a typo candidate).
2. mAP vs the mean of the printed per-class APs (AP tables).
3. The same method on the same data set and protocol, reported by several papers.
4. The numbers a paper's text states about its own tables ("by 4.1% in C-F1", "3.2% mAP
   lower"), and the orders it states between their rows ("outperformed WARP"), transcribed
   in ``reference/text_claims.csv``, recomputed from the tables (:func:`audit_text_claims`;
   the rounding rule is in its docstring).
"""
from __future__ import annotations

from importlib import resources

import pandas as pd

from .report import reference, reference_index

HALF = 0.05  # half a unit of the printed precision

# Which rows are "the same method" across papers: (table, row) -> canonical name.
ALIASES = {
    ("order_free_rnn_table1_nuswide", "Ours"): "Order-Free RNN",
    ("order_free_rnn_table2_coco", "Ours"): "Order-Free RNN",
    ("order_free_rnn_table1_nuswide", "Resnet-baseline"): "ResNet-baseline (Order-Free RNN paper)",
    ("order_free_rnn_table2_coco", "Resnet-baseline"): "ResNet-baseline (Order-Free RNN paper)",
    ("rlsd_table4_nuswide_top3", "softmax"): "Softmax",
}


def _harmonic(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def harmonic_range(p: float, r: float, half: float = HALF) -> tuple[float, float]:
    """Min and max of 2PR/(P+R) for P, R within ±half of the printed values.

    The harmonic mean increases in both arguments, so the extremes sit at the corners.
    """
    lo = _harmonic(max(p - half, 0), max(r - half, 0))
    hi = _harmonic(p + half, r + half)
    return lo, hi


def f1_consistent(p: float, r: float, f1: float, half: float = HALF) -> bool:
    lo, hi = harmonic_range(p, r, half)
    return f1 + half >= lo - 1e-9 and f1 - half <= hi + 1e-9


def digit_edits(value: float) -> list[float]:
    """All numbers that differ from ``value`` (printed with one decimal) in one digit."""
    text = f"{value:.1f}"
    out = set()
    for i, ch in enumerate(text):
        if ch.isdigit():
            for d in "0123456789":
                if d != ch:
                    out.add(float(text[:i] + d + text[i + 1:]))
    for i in range(len(text) - 1):  # two adjacent digits swapped
        a, b = text[i], text[i + 1]
        if a.isdigit() and b.isdigit() and a != b:
            out.add(float(text[:i] + b + a + text[i + 2:]))
    return sorted(out)


def typo_candidates(p: float, r: float, f1: float) -> list[str]:
    """Single-digit edits of P, R or F1 under which F1 = 2PR/(P+R) holds."""
    fixes = []
    for name, edits in (("P", digit_edits(p)), ("R", digit_edits(r)), ("F1", digit_edits(f1))):
        for e in edits:
            args = {"P": p, "R": r, "F1": f1, name: e}
            if f1_consistent(args["P"], args["R"], args["F1"]):
                orig = {"P": p, "R": r, "F1": f1}[name]
                fixes.append(f"{name} {orig:.1f}→{e:.1f}")
    return fixes


def _prf_groups(columns) -> list[tuple[str, str, str, str, str]]:
    """(protocol prefix, kind, P col, R col, F1 col) triples present in a table."""
    groups = []
    prefixes = sorted({c[: -len("CP")] for c in columns if c.endswith("CP")})
    for pre in prefixes:
        for kind, (p, r, f) in (("per-class", ("CP", "CR", "CF1")), ("overall", ("OP", "OR", "OF1"))):
            cols = (pre + p, pre + r, pre + f)
            if all(c in columns for c in cols):
                groups.append((pre.rstrip("_") or "main", kind, *cols))
    return groups


def audit_f1() -> pd.DataFrame:
    """One row per (table, method, protocol, per-class/overall) with P, R and F1 printed."""
    index = reference_index()
    rows = []
    for _, meta in index.iterrows():
        name = meta["file"][:-4]
        table = reference(name)
        for protocol, kind, pc, rc, fc in _prf_groups(list(table.columns)):
            proto = meta["protocol"] if protocol == "main" else protocol
            for method, row in table.iterrows():
                p, r, f = row[pc], row[rc], row[fc]
                if any(pd.isna(x) for x in (p, r, f)):
                    continue
                h = _harmonic(p, r)
                lo, hi = harmonic_range(p, r)
                ok = f1_consistent(p, r, f)
                if ok:
                    finding = "consistent"
                elif kind == "per-class" and f < lo:
                    finding = "below 2PR/(P+R): fits mean of per-class F1"
                else:
                    finding = "inconsistent"
                typos = "" if finding != "inconsistent" else "; ".join(typo_candidates(p, r, f))
                rows.append({
                    "paper": meta["paper"], "table": meta["table"], "file": name, "method": method,
                    "protocol": proto, "kind": kind, "P": p, "R": r, "F1 printed": f,
                    "2PR/(P+R)": round(h, 2), "gap": round(f - h, 2), "finding": finding,
                    "single-digit fixes": typos,
                })
    return pd.DataFrame(rows)


def audit_map() -> pd.DataFrame:
    """AP tables: the printed mAP against the mean of the printed per-class APs."""
    rows = []
    for _, meta in reference_index().iterrows():
        if meta["protocol"] != "per-class AP":
            continue
        name = meta["file"][:-4]
        table = reference(name)
        classes = [c for c in table.columns if c != "mAP"]
        for method, row in table.iterrows():
            mean = float(row[classes].mean())
            # each AP is ±0.05, so their mean is too; the printed mAP is ±0.05 itself
            ok = abs(mean - row["mAP"]) <= 2 * HALF + 1e-9
            rows.append({"table": meta["table"], "file": name, "method": method, "mAP printed": row["mAP"],
                         "mean of APs": round(mean, 2), "gap": round(row["mAP"] - mean, 2),
                         "finding": "consistent" if ok else "inconsistent"})
    return pd.DataFrame(rows)


def _canonical_rows():
    """(dataset, protocol, canonical method, table file, row dict of metric -> value)."""
    specs = [  # file, data set, column prefix -> protocol
        ("order_free_rnn_table1_nuswide", "NUS-WIDE", {"": "top-3"}),
        ("order_free_rnn_table2_coco", "MS-COCO", {"": "top-3"}),
        ("rlsd_table3_coco_top3", "MS-COCO", {"": "top-3"}),
        ("rlsd_table4_nuswide_top3", "NUS-WIDE", {"": "top-3"}),
        ("ranking_table3_nuswide_top3", "NUS-WIDE", {"": "top-3"}),
        ("ranking_table4_nuswide_top5", "NUS-WIDE", {"": "top-5"}),
        ("cadm_table1_coco", "MS-COCO", {"top3_": "top-3", "all_": "threshold 0.5"}),
        ("cadm_table2_nuswide", "NUS-WIDE", {"top3_": "top-3", "all_": "threshold 0.5"}),
    ]
    for file, dataset, prefixes in specs:
        table = reference(file)
        for method, row in table.iterrows():
            canon = ALIASES.get((file, method), method)
            if method.startswith("Ours") and (file, method) not in ALIASES:
                canon = f"{method} [{file.split('_')[0]}]"  # a paper's own model: not shared
            for pre, protocol in prefixes.items():
                values = {c[len(pre):]: row[c] for c in table.columns
                          if c.startswith(pre) and c[len(pre):] in ("CP", "CR", "CF1", "OP", "OR", "OF1")
                          and not pd.isna(row[c])}
                if values:
                    yield dataset, protocol, canon, file, values


def audit_cross_paper() -> pd.DataFrame:
    """Every metric of a method reported by two or more tables on the same data and protocol."""
    by_key: dict[tuple, list] = {}
    for dataset, protocol, method, file, values in _canonical_rows():
        by_key.setdefault((dataset, protocol, method), []).append((file, values))
    rows = []
    for (dataset, protocol, method), reports in sorted(by_key.items()):
        if len({f.split("_")[0] for f, _ in reports}) < 2:
            continue  # reported by one paper only
        metrics = sorted({m for _, v in reports for m in v}, key="CP CR CF1 OP OR OF1".split().index)
        for m in metrics:
            vals = {f: v[m] for f, v in reports if m in v}
            if len(vals) < 2:
                continue
            agree = max(vals.values()) - min(vals.values()) < 1e-9
            rows.append({"dataset": dataset, "protocol": protocol, "method": method, "metric": m,
                         "values": ", ".join(f"{f}: {v:.1f}" for f, v in vals.items()),
                         "spread": round(max(vals.values()) - min(vals.values()), 2),
                         "finding": "agree" if agree else "disagree"})
    return pd.DataFrame(rows)


def explain_disagreement(row: pd.Series, f1_table: pd.DataFrame) -> str:
    """For a cross-paper disagreement, say which printed value fits its own row's F1."""
    notes = []
    for part in row["values"].split(", "):
        file, v = part.split(": ")
        hit = f1_table[(f1_table["file"] == file) & (f1_table["method"].map(
            lambda m: ALIASES.get((file, m), m)) == row["method"])]
        kind = "per-class" if row["metric"].startswith("C") else "overall"
        hit = hit[hit["kind"] == kind]
        if len(hit):
            notes.append(f"{file}: F1 check {hit.iloc[0]['finding']}")
    return "; ".join(notes)


# --- text against tables ----------------------------------------------------------

TEXT_CLAIMS = "text_claims.csv"
FINDINGS = ("agrees", "disagrees", "not checkable")
KINDS = ("difference", "value", "higher")


def text_claims() -> pd.DataFrame:
    """``mlbook/reference/text_claims.csv``: the numbers a paper's text states about its own tables.

    Columns: paper, section, quote, table (a reference CSV name), kind ('difference',
    'value' or 'higher': the text says row_a is above row_b without a number), row_a, row_b
    (a difference is row_a − row_b), column, stated (in points, kept as text so that its
    printed precision survives: '2' is not '2.0'; '> 0' for 'higher'), note, table_b (the
    table of row_b when the text compares rows of two tables; empty: ``table``).
    """
    with resources.files("mlbook.reference").joinpath(TEXT_CLAIMS).open() as f:
        return pd.read_csv(f, dtype=str, keep_default_na=False)


def _table(file: str, tables: dict):
    """A reference table by file name, read once per audit (None if there is no such table)."""
    if file not in tables:
        try:
            tables[file] = reference(file)
        except KeyError:
            tables[file] = None
    return tables[file]


def stated_half(stated: str) -> float:
    """Half a unit of the last printed digit of a number in the text: '2' → 0.5, '4.1' → 0.05."""
    text = str(stated).strip()
    decimals = len(text.split(".", 1)[1]) if "." in text else 0
    return 0.5 * 10.0 ** -decimals


def claim_tolerance(kind: str, stated: str) -> float:
    """How far a stated number may lie from the table and still agree, in points.

    The table side: a printed value is ±0.05, a difference of two printed values ±0.1.
    The text side: half a unit of its own last digit (±0.05 for '4.1', ±0.5 for '2').
    The two intervals meet exactly when |stated − table| is at most the sum.
    """
    return (2 * HALF if kind == "difference" else HALF) + stated_half(stated)


def _claim_value(claim: pd.Series, tables: dict) -> tuple[float | None, str]:
    """The table's number for a claim (row_a − row_b for 'difference' and 'higher'), or None and
    why it cannot be computed."""
    if not claim["row_a"] or not claim["column"]:
        return None, "the number is not in the table's cells"
    two_rows = claim["kind"] in ("difference", "higher")
    if two_rows and not claim["row_b"]:
        return None, f"a {claim['kind']} claim needs row_b"
    files = [claim["table"]] + ([claim.get("table_b") or claim["table"]] if two_rows else [])
    rows = [claim["row_a"]] + ([claim["row_b"]] if two_rows else [])
    values = []
    for file, row in zip(files, rows):
        table = _table(file, tables)
        if table is None:
            return None, f"no reference table {file!r}"
        if claim["column"] not in table.columns:
            return None, f"{file} has no column {claim['column']!r}"
        if row not in table.index:
            return None, f"{file} has no row {row!r}"
        v = table.loc[row, claim["column"]]
        if pd.isna(v):
            return None, f"{file} prints '–' for {row}, {claim['column']}"
        values.append(float(v))
    return (values[0] - values[1] if len(values) == 2 else values[0]), ""


def audit_text_claims(claims: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each number a paper's text states about its own tables, recomputed from the table.

    ``claims`` defaults to :func:`text_claims`. For a 'value' claim the table number is
    the cell (row_a, column); for a 'difference' claim it is row_a − row_b in that column.

    Rule: the printed numbers are rounded, so each stands for an interval. A printed table
    value is ±0.05 and a difference of two printed values ±0.1; the text's number is ±half
    a unit of its own last digit (±0.05 for '4.1', ±0.5 for '2' or '10'). A claim
    **agrees** when |stated − table| ≤ table rounding + text rounding (the two intervals
    meet), i.e. ≤ 0.15 for a one-decimal difference, ≤ 0.6 for a whole-number one,
    ≤ 0.1 / 0.55 for a value; otherwise it **disagrees**. A 'higher' claim (row_a above
    row_b, no number) agrees when row_a − row_b > −0.1, that is when the printed values'
    intervals allow row_a above row_b, and disagrees otherwise. It is **not checkable** when
    the table lacks the row, the column or the cell (a '–'), or the claim is about
    something the table cells do not hold ('why' says which).

    Returns one row per claim: the claim's columns plus 'stated as printed' (the text's
    digits), 'table label' (e.g. 'Table 2'), 'reading' (what was computed), 'from table',
    'stated' (a float; 0 for 'higher'), 'discrepancy' (stated − table; none for 'higher'),
    'tolerance', 'beyond tolerance' (|discrepancy| − tolerance, or −(row_a − row_b) − 0.1 for
    'higher'; > 0 for a disagreement), 'finding' (one of FINDINGS) and 'why' (for a claim
    that is not checkable).
    """
    claims = text_claims() if claims is None else claims.fillna("").astype(str)
    index = reference_index()
    labels = dict(zip(index["file"].str[:-4], index["table"]))
    tables: dict = {}
    rows = []
    if "table_b" not in claims:       # older transcriptions and hand cases have no second table
        claims = claims.assign(table_b="")
    for _, claim in claims.iterrows():
        value, why = _claim_value(claim, tables)
        higher = claim["kind"] == "higher"
        stated = 0.0 if higher else float(claim["stated"])
        tol = 2 * HALF if higher else claim_tolerance(claim["kind"], claim["stated"])
        if claim["kind"] in ("difference", "higher"):
            reading = f"{claim['row_a']} − {claim['row_b']}, {claim['column']}"
        else:
            reading = f"{claim['row_a']}, {claim['column']}" if claim["row_a"] else ""
        if value is None:
            finding, gap, beyond = "not checkable", None, None
        else:
            gap = None if higher else stated - value
            beyond = -value - tol if higher else abs(gap) - tol
            finding = "agrees" if beyond <= 1e-9 else "disagrees"
        label = labels.get(claim["table"], "")
        if claim["table_b"] and claim["table_b"] != claim["table"]:
            label = f"{label} and {labels.get(claim['table_b'], '')}"
        rows.append({**claim.to_dict(), "stated as printed": claim["stated"],
                     "table label": label, "reading": reading,
                     "from table": None if value is None else round(value, 2) + 0.0, "stated": stated,
                     "discrepancy": None if gap is None else round(gap, 2) + 0.0, "tolerance": round(tol, 2),
                     "beyond tolerance": None if beyond is None else round(beyond, 2),
                     "finding": finding, "why": why})
    return pd.DataFrame(rows)
