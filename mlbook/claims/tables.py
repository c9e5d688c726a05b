"""A chapter's claims as tables: one row per claim (``table``, with the chance that a rerun agrees,
``stability.p_same``), one per claim and metric (``tidy``), and the paper's own Δ read from its
published table (``published_delta``)."""
from __future__ import annotations

import math

import pandas as pd

from .replication import REPLICATION, claim_reading
from .stability import p_same
from .standard import DISPLAY, P_SAME, VERDICTS


# --- tables -------------------------------------------------------------------------------

def table(rows: list[dict]) -> pd.DataFrame:
    """The display table (no "measurements"; verdicts checked; no cell holds a '|', which would
    split a Markdown table's columns). ``P_SAME`` is ``stability.p_same`` of the row's
    measurements unless the row gives it, to 2 decimals. After the verdict, ``REPLICATION``: the
    paper's Δ against the interval (``replication.claim_reading``)."""
    def same(r):
        if P_SAME in r or r.get("verdict") not in VERDICTS:     # a bad verdict is reported below
            return r.get(P_SAME, math.nan)
        p = p_same(r.get("measurements", []), r["verdict"])
        return round(p, 2) if p == p else p      # NaN (no measurements) stays NaN
    df = pd.DataFrame([{**{k: r.get(k, "") for k in DISPLAY}, P_SAME: same(r)} for r in rows], columns=list(DISPLAY))
    # the paper's own Δ against the interval, right after the verdict (``replication.claim_reading``)
    df.insert(list(df.columns).index("verdict") + 1, REPLICATION,
              [claim_reading(r.get("measurements", [])) for r in rows])
    if df.astype(str).apply(lambda col: col.str.contains("|", regex=False)).any().any():
        raise ValueError("a claims cell contains '|', which breaks the Markdown table")
    bad = set(df["verdict"]) - set(VERDICTS)
    if bad:
        raise ValueError(f"verdicts must be among {VERDICTS}, not {sorted(bad)}")
    return df


TIDY = ("id", "data set", "metric", "test", "margin", "delta", "low", "high", "se", "df", "seeds_better",
        "seeds_worse", "n_resamples", "published_delta", "mde", "metric_verdict", "verdict", "direction",
        "too_few_seeds", "quantifier", "metric_verdict_unadjusted")      # from "direction": what stability.p_same
                                                                          # needs beyond the interval


def tidy(rows: list[dict]) -> pd.DataFrame:
    """The numbers: one row per (claim id, primary metric), in points."""
    out = [{"id": r["id"], "data set": r["data set"], "verdict": r["verdict"], **m,
            "seeds_better": m["seeds"][0], "seeds_worse": m["seeds"][1]}
           for r in rows for m in r.get("measurements", [])]
    return pd.DataFrame([{k: o[k] for k in TIDY} for o in out], columns=list(TIDY))


# --- published numbers ----------------------------------------------------------------------

def published_delta(reference: pd.DataFrame, better: str, worse: str, metric: str) -> float | None:
    """Δ (points) of two rows of a paper's own table, or None where a cell is missing."""
    try:
        a, b = reference.loc[better, metric], reference.loc[worse, metric]
    except KeyError:
        return None
    return None if pd.isna(a) or pd.isna(b) else round(float(a - b), 1)
