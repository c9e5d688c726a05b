"""The claims standard itself: what a claim is (``Claim``, ``load``), its interval (``interval``), the rule
(``verdict``, ``combine``); one claims-table row is ``evaluation.evaluate``. The specification is the package's
docstring (``mlbook.claims``)."""
from __future__ import annotations

import csv
import dataclasses
import datetime
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy import stats


VERDICTS = ("supported", "contradicted", "not resolved", "not testable")
TESTS = ("superiority", "non-inferiority", "equivalence")
DIRECTIONS = ("higher", "lower")
DATASETS = ("coco", "nuswide", "voc", "")
#: how a claim's primary metrics make its verdict (``combine``): every one must hold, the first
#: decides, or one suffices; "both" is the symmetric rule of files written before the quantifier
QUANTIFIERS = ("all", "primary", "any")
SYMMETRIC = "both"
LEVEL = 0.95
MIN_SEEDS = 3
N_RESAMPLES = 1000
MAX_RESAMPLES = 10000
MC_GUARD = 4.0             # escalate when an end is this many Monte Carlo SEs from a boundary
CLAIMS_DIR = Path(__file__).parents[1] / "reference"
COLUMNS = ("id", "chapter", "dataset", "text", "quoted", "source", "better", "worse", "metrics", "test",
           "margin", "margin_source", "direction", "fixed", "paired", "note", "quantifier")
#: when a row was registered and, for a test changed after its result was seen, the original test
AMENDMENT = ("registered", "amended", "original_test", "original_margin", "original_better", "original_worse",
             "original_metrics", "original_direction", "original_paired", "original_fixed", "amendment_reason")
P_SAME = "P(same verdict on rerun)"     # claims.stability.p_same: how often an independent rerun agrees
DISPLAY = ("id", "registered", "data set", "claim", "source", "compared", "test", "primary", "quantifier", "evidence",
           "verdict",
           "original test (amended claims)", P_SAME)
SUPPORTED, CONTRADICTED, NOT_RESOLVED, NOT_TESTABLE = VERDICTS


@dataclasses.dataclass(frozen=True)
class Claim:
    id: str                         # "<chapter number>.<short>.<dataset>", e.g. "06.rlsd_vs_cnnlstm.voc"
    chapter: str                    # the paper's chapter (mlbook.papers), e.g. 05_...
    dataset: str                    # "coco" | "nuswide" | "voc" | "" (display names: the chapter's)
    text: str                       # the paper's words (quoted=True) or the book's measurable reading
    source: str                     # where: "Sec. IV-D, Table I"
    better: str                     # row names as the chapter's results use them
    worse: str
    metrics: tuple[str, ...]        # primary metric(s)
    quoted: bool = True
    test: str = "superiority"       # or "non-inferiority" (better ≥ worse − margin), "equivalence" (|Δ| < margin)
    margin: float = 0.0             # points
    margin_source: str = ""         # the paper's words giving the number, or "book's choice: why"
    direction: str = "higher"
    fixed: tuple[str, ...] = ()     # rows without training seeds (a fixed algorithm, a constant)
    paired: bool = False            # seed-paired: both rows of a seed read the same trained models or parts
    note: str = ""
    quantifier: str = "primary"     # several metrics: "all" must hold, the "primary" (first) decides, "any" suffices
    registered: str = ""            # ISO date the claim was written down (the registry: required)
    # a test changed after its result was seen keeps the original beside it: empty = unchanged
    amended: str = ""               # ISO date of the change
    original_test: str = ""
    original_margin: float | None = None
    original_better: str = ""
    original_worse: str = ""
    original_metrics: tuple[str, ...] = ()
    original_direction: str = ""
    original_paired: str = ""       # "" (unchanged), "true" or "false": the original's seed pairing
    original_fixed: tuple[str, ...] = ()   # the original's fixed rows, where the amendment changed them (() = unchanged)
    amendment_reason: str = ""

    def original(self) -> Claim | None:
        """The claim as registered before its amendment (None if never amended): the original
        test, margin, rows, metrics, direction, pairing and fixed rows where they differ; a replaced
        fixed row's replacement is fixed too."""
        if not self.amended:
            return None
        better, worse = self.original_better or self.better, self.original_worse or self.worse
        fixed = self.original_fixed or tuple(new for old, new in ((self.better, better), (self.worse, worse))
                                             if old in self.fixed)
        test = self.original_test or self.test
        margin = self.original_margin if self.original_margin is not None else (
            self.margin if test == self.test else 0.0)
        return dataclasses.replace(
            self, test=test, margin=margin, better=better, worse=worse, fixed=fixed,
            metrics=self.original_metrics or self.metrics, direction=self.original_direction or self.direction,
            paired=self.original_paired == "true" if self.original_paired else self.paired,
            margin_source=(self.margin_source or "the original test's margin: amendment_reason") if margin else "", amended="", original_test="",
            original_margin=None, original_better="", original_worse="", original_metrics=(),
            original_direction="", original_paired="", original_fixed=(), amendment_reason="")

    def __post_init__(self):
        problem = _problem(dataclasses.asdict(self))
        if problem:
            raise ValueError(f"claim {self.id!r}, field '{problem[0]}': {problem[1]}")


def _problem(c: dict) -> tuple[str, str] | None:
    """The first thing wrong with a claim's fields, as (field, message), or None."""
    for field in ("id", "chapter", "text", "source", "better", "worse"):
        if not str(c[field]).strip():
            return field, "must not be empty"
    for field in ("id", "text", "source", "better", "worse", "margin_source", "note"):
        if "|" in str(c[field]):
            return field, "holds a '|', which would split a Markdown table"
    checks = [
        ("dataset", c["dataset"] in DATASETS, f"must be one of {DATASETS}"),
        ("id", c["id"].startswith(c["chapter"].split("_")[0] + ".") and (
            not c["dataset"] or c["id"].endswith("." + c["dataset"])), "must read <chapter number>.<short>.<dataset>"),
        ("metrics", len(c["metrics"]) > 0 and all(m.strip() for m in c["metrics"]), "needs a primary metric"),
        ("test", c["test"] in TESTS, f"must be one of {TESTS}"),
        ("direction", c["direction"] in DIRECTIONS, f"must be one of {DIRECTIONS}"),
        ("quantifier", c["quantifier"] in QUANTIFIERS, f"must be one of {QUANTIFIERS}"),
        ("margin", c["margin"] >= 0 and (c["margin"] > 0) == (c["test"] != "superiority"),
         "must be > 0 for non-inferiority and equivalence, 0 for superiority"),
        ("margin_source", c["margin"] == 0 or c["margin_source"].strip(), "must give the words behind a margin"),
        ("fixed", set(c["fixed"]) <= {c["better"], c["worse"]}, "names a row the claim does not compare"),
        ("paired", not (c["paired"] and c["fixed"]), "a fixed row cannot be seed-paired"),
        ("registered", not c["registered"] or _is_date(c["registered"]), "must be an ISO date (YYYY-MM-DD)"),
        ("amended", not c["amended"] or (_is_date(c["amended"]) and c["amended"] >= c["registered"]),
         "must be an ISO date, not before 'registered'"),
        ("amendment_reason", bool(c["amended"]) == bool(c["amendment_reason"].strip()),
         "an amended claim says why, and only an amended one"),
        ("amended", c["amended"] or not any(c[k] for k in AMENDMENT[2:-1] if k != "original_margin")
         and c["original_margin"] is None, "an original test needs the date it was amended"),
        ("original_test", not c["original_test"] or c["original_test"] in TESTS, f"must be one of {TESTS}"),
        ("original_direction", not c["original_direction"] or c["original_direction"] in DIRECTIONS,
         f"must be one of {DIRECTIONS}"),
        ("original_paired", c["original_paired"] in ("", "true", "false"), "must be empty, true or false"),
        ("original_fixed", set(c["original_fixed"]) <= {c["original_better"] or c["better"],
                                                         c["original_worse"] or c["worse"]},
         "names a row the original does not compare"),
        ("original_paired", not (c["original_paired"] == "true" and (c["original_fixed"] or c["fixed"])),
         "a fixed row cannot be seed-paired in the original either"),
    ]
    return next(((field, message) for field, ok, message in checks if not ok), None)


def _is_date(text: str) -> bool:
    try:
        return datetime.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


# --- the claims data ----------------------------------------------------------------------

def _parse(raw: dict, where: str) -> Claim:
    def fail(field, message):
        raise ValueError(f"{where}, field '{field}': {message}")

    fields = {k: (raw.get(k) or "").strip() for k in COLUMNS + AMENDMENT}
    for field, default in (("quoted", ""), ("paired", "false")):       # "paired" may be left empty
        word = (fields[field] or default).lower()
        if word not in ("true", "false"):
            fail(field, f"must be true or false, not {fields[field]!r}")
        fields[field] = word == "true"
    fields["original_paired"] = fields["original_paired"].lower()      # may be absent or empty: unchanged
    for field in ("margin", "original_margin"):
        try:
            fields[field] = float(fields[field]) if fields[field] else 0.0 if field == "margin" else None
        except ValueError:
            fail(field, f"must be a number of points, not {fields[field]!r}")
    if not fields["registered"]:
        fail("registered", "every registered claim carries the date it was registered")
    for field in ("metrics", "fixed", "original_metrics", "original_fixed"):
        fields[field] = tuple(x.strip() for x in fields[field].split(";") if x.strip())
    fields["test"], fields["direction"] = fields["test"] or "superiority", fields["direction"] or "higher"
    if not fields["quantifier"]:
        fail("quantifier", f"must say how the metrics make the verdict, one of {QUANTIFIERS}")
    problem = _problem(fields)
    if problem:
        fail(*problem)
    return Claim(**fields)


def load(chapter: str | None = None, *, paths: Sequence[Path] | None = None) -> list[Claim]:
    """Every claim of ``chapter`` (all chapters if None) from the claims files, validated: a
    ValueError names the file, line and field of the first problem. ``claims_<chapter>.csv``
    may hold only that chapter's rows; ids are unique across all files."""
    out, seen = [], {}
    default = sorted(CLAIMS_DIR.glob("claims.csv")) + sorted(CLAIMS_DIR.glob("claims_*.csv"))
    for path in paths if paths is not None else default:
        path = Path(path)
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS) - {"paired"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path.name}: missing columns {sorted(missing)}")
            for raw in reader:
                where = f"{path.name}, line {reader.line_num}"
                claim = _parse(raw, where)
                if claim.id in seen:
                    raise ValueError(f"{where}, field 'id': {claim.id!r} already at {seen[claim.id]}")
                if path.stem.startswith("claims_") and claim.chapter != path.stem[len("claims_"):]:
                    raise ValueError(f"{where}, field 'chapter': {claim.chapter!r} in {path.name}")
                seen[claim.id] = where
                out.append(claim)
    return [c for c in out if chapter is None or c.chapter == chapter]


def get(claim_id: str) -> Claim:
    """The claim with this id."""
    for c in load():
        if c.id == claim_id:
            return c
    raise KeyError(f"no claim {claim_id!r} in the claims files")


# --- the interval -------------------------------------------------------------------------

def _as_rows(x) -> torch.Tensor:
    return torch.atleast_2d(torch.as_tensor(x, dtype=torch.float64))


def _variance_parts(better: torch.Tensor, worse: torch.Tensor, fixed_better: bool, fixed_worse: bool,
                    paired: bool) -> tuple[torch.Tensor, list[tuple[torch.Tensor, int]], torch.Tensor]:
    """Batched over leading dims: Δ, the seed parts [(sample variance, S)], the image variance."""
    b0, w0 = better[..., 0], worse[..., 0]
    delta = b0.mean(-1) - w0.mean(-1)
    if paired:
        if b0.shape[-1] != w0.shape[-1]:
            raise ValueError("paired rows need the same training seeds")
        rows = [b0 - w0]
    else:
        rows = [x for x, fixed in ((b0, fixed_better), (w0, fixed_worse)) if not fixed]
    nan = torch.full_like(delta, math.nan)
    seeds = [(x.var(-1) if x.shape[-1] > 1 else nan, x.shape[-1]) for x in rows]
    R = better.shape[-1] - 1
    image = (better[..., 1:].mean(-2) - worse[..., 1:].mean(-2)).var(-1) if R > 1 else nan
    return delta, seeds, image


def _welch(seeds: list[tuple[torch.Tensor, int]], image: torch.Tensor, R: int):
    """SE and Welch–Satterthwaite df of seed parts (s², S) and an image part with R − 1 df."""
    parts = [(s2 / S, S - 1) for s2, S in seeds] + [(image, R - 1)]
    var = sum(v for v, _ in parts)
    denominator = sum(v ** 2 / d for v, d in parts)
    df = torch.where(denominator > 0, var ** 2 / denominator, torch.full_like(var, math.inf))
    return var.sqrt(), torch.where(var.isnan(), var, df)


def _t(q: float, df) -> torch.Tensor:
    return torch.as_tensor(stats.t.ppf(q, torch.as_tensor(df).numpy()), dtype=torch.float64)


def _welch_interval(b, w, level=LEVEL, fixed_better=False, fixed_worse=False, paired=False) -> dict:
    """Batched over leading dims of b [..., S_b, 1 + R] and w [..., S_w, 1 + R]: Δ ± t_df · SE."""
    delta, seeds, image = _variance_parts(b, w, fixed_better, fixed_worse, paired)
    se, df = _welch(seeds, image, b.shape[-1] - 1)
    half = _t(1 - (1 - level) / 2, df) * se
    return {"delta": delta, "low": delta - half, "high": delta + half, "se": se, "df": df, "image_var": image,
            "seed_parts": seeds}


def interval(better, worse, *, level: float = LEVEL, fixed_better: bool = False, fixed_worse: bool = False,
             paired: bool = False) -> dict:
    """Δ of the seed means and its Welch t interval (see the module docstring).

    ``better``/``worse`` [S, 1 + R]: each training seed's metric (rows) on the test set (column 0)
    and on R paired image resamples. A fixed row needs one row. Returns delta, low, high, se, df,
    seed_var (the seed part of Var Δ), seed_parts [(s², S)], image_var, n_resamples, seeds
    (S_better, S_worse) and seed_deltas (per seed, paired by seed index where both rows have it).
    """
    b, w = _as_rows(better), _as_rows(worse)
    if b.shape[1] != w.shape[1]:
        raise ValueError("both rows must be measured on the same image resamples")
    r = {k: v if k == "seed_parts" else float(v)
         for k, v in _welch_interval(b, w, level, fixed_better, fixed_worse, paired).items()}
    r["seed_parts"] = [(float(s2), S) for s2, S in r["seed_parts"]]
    n = min(len(b), len(w))
    return {**r, "seed_var": sum(s2 / S for s2, S in r["seed_parts"]), "n_resamples": b.shape[1] - 1,
            "seeds": (len(b), len(w)),
            "seed_deltas": (b[:n, 0] - w[:n, 0]).tolist() if not (fixed_better or fixed_worse) else []}


# --- the rule -----------------------------------------------------------------------------

def _check_test(test: str, direction: str):
    if test not in TESTS or direction not in DIRECTIONS:
        raise ValueError(f"test must be in {TESTS} and direction in {DIRECTIONS}, not {test!r}, {direction!r}")


def verdict(low: float, high: float, *, test: str = "superiority", margin: float = 0.0,
            direction: str = "higher", testable: bool = True) -> str:
    """One metric's interval of Δ = better − worse (in the margin's units) -> one of ``VERDICTS``.
    Δ is signed by ``direction`` ("lower": −Δ) and judged by ``test``, as the module docstring says;
    all comparisons strict, a NaN end gives "not resolved"."""
    _check_test(test, direction)
    if not testable:
        return NOT_TESTABLE
    if math.isnan(low) or math.isnan(high):
        return NOT_RESOLVED
    supported, contradicted = _sides(low, high, test, margin, direction)
    return SUPPORTED if supported else CONTRADICTED if contradicted else NOT_RESOLVED


def _sides(low, high, test: str, margin: float, direction: str):
    """(supported, contradicted) of intervals [low, high] of Δ (floats or tensors alike): the
    rule of ``verdict``, each side a one-sided test at the interval's (1 − level) / 2; a NaN end
    is neither."""
    if direction == "lower":
        low, high = -high, -low
    if test == "superiority":
        return low > 0, high < 0
    if test == "non-inferiority":
        return low > -margin, high < -margin
    return (low > -margin) & (high < margin), (low > margin) | (high < -margin)


def _check_quantifier(quantifier: str):
    if quantifier not in QUANTIFIERS + (SYMMETRIC,):
        raise ValueError(f"quantifier must be in {QUANTIFIERS} (or {SYMMETRIC!r}, the old rule), not {quantifier!r}")


def _combine_sides(supported, contradicted, quantifier: str):
    """[metrics, ...] booleans (each metric's sides, at the levels ``metric_sides`` gives) ->
    the claim's (supported, contradicted) [...]: the rule of ``combine``."""
    _check_quantifier(quantifier)
    if quantifier == "primary":
        return supported[0], contradicted[0]
    if quantifier == "all":
        return supported.all(0), contradicted.any(0)
    if quantifier == "any":
        return supported.any(0), contradicted.all(0)
    return supported.all(0), contradicted.all(0)          # SYMMETRIC


def combine(verdicts: Sequence[str], quantifier: str) -> str:
    """Several primary metrics' verdicts -> the claim's, by the claim's ``quantifier``:

    - "primary": the first metric's verdict (the others are shown, not voted);
    - "all": supported if every metric is, contradicted if at least one is, else not resolved;
    - "any": supported if at least one metric is, contradicted if every one is, else not resolved;
    - "both" (``SYMMETRIC``, files written before the quantifier): supported if all are,
      contradicted if all are.

    Not testable if any is. The verdicts given must be each metric's at the level the quantifier
    asks of that side (``metric_sides``: Holm across the metrics for "at least one"), which
    ``evaluate`` stores as each measurement's ``metric_verdict``. A single verdict is itself."""
    _check_quantifier(quantifier)
    if not verdicts:
        raise ValueError("no verdicts to combine")
    if NOT_TESTABLE in verdicts:
        return NOT_TESTABLE
    supported, contradicted = _combine_sides(torch.tensor([v == SUPPORTED for v in verdicts]),
                                             torch.tensor([v == CONTRADICTED for v in verdicts]), quantifier)
    return SUPPORTED if supported else CONTRADICTED if contradicted else NOT_RESOLVED


def one_sided_p(delta, se, df, *, test: str = "superiority", margin: float = 0.0, direction: str = "higher"):
    """[...] one-sided p-values (p_supported, p_contradicted) of t intervals Δ ± t_df · SE (numpy
    arrays): side s holds at level L iff its p < (1 − L) / 2, as in ``verdict``. Superiority
    and non-inferiority: the t test of Δ against the boundary (0 or −m), each way; equivalence:
    supported by TOST (the larger of the two inside p's), contradicted by the smaller of the two
    outside p's. Δ is signed by ``direction``. NaN (a NaN Δ, SE or df; SE 0 at a boundary) reads 1."""
    sign = 1.0 if direction == "higher" else -1.0
    delta, se, df = (np.asarray(x, dtype=float) for x in (delta, se, df))
    sf = lambda x: stats.t.sf(x, df)                     # noqa: E731  P(T_df > x)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = lambda b: (sign * delta - b) / se             # noqa: E731  the t statistic against boundary b
        if test == "equivalence":
            p_supported = np.maximum(sf(z(-margin)), sf(-z(margin)))
            p_contradicted = np.minimum(sf(z(margin)), sf(-z(-margin)))
        else:
            bound = 0.0 if test == "superiority" else -margin
            p_supported, p_contradicted = sf(z(bound)), sf(-z(bound))
    return np.nan_to_num(p_supported, nan=1.0), np.nan_to_num(p_contradicted, nan=1.0)


def metric_sides(delta, se, df, quantifier: str, *, test: str = "superiority", margin: float = 0.0,
                 direction: str = "higher", usable=None, level: float = LEVEL) -> dict:
    """Each metric's sides at the level its quantifier asks, batched: ``delta``, ``se``, ``df``
    [metrics, ...] tensors (``usable``: False where a metric gets no verdict, too few seeds).

    Unadjusted: each side a one-sided test at (1 − level) / 2 (the interval at ``level``, as
    ``verdict``). Adjusted: the side a claim holds if **at least one** metric shows it ("all":
    contradicted; "any": supported) by Holm's step-down across the k metrics at family-wise
    (1 − level) / 2: the metrics ordered by that side's p (``one_sided_p``), the j-th (from 0)
    holds if its interval at level 1 − (1 − level) / (k − j) shows it and every one before it
    held. The side that needs **every** metric is an intersection–union test: each at its own
    level. "primary" and "both": unadjusted. One metric: the same as ``verdict``.

    Returns {"supported", "contradicted"} (adjusted, [metrics, ...] bool) and
    {"supported_unadjusted", "contradicted_unadjusted"}."""
    _check_quantifier(quantifier)
    delta, se, df = (torch.as_tensor(x, dtype=torch.float64) for x in (delta, se, df))
    usable = torch.ones_like(delta, dtype=torch.bool) if usable is None else torch.as_tensor(usable, dtype=torch.bool)
    rule = dict(test=test, margin=margin, direction=direction)

    def at(q, d, s, f, v):         # the sides of intervals d ± t_{1 − q/2, f} · s where v (usable)
        half = _t(1 - q / 2, f) * s
        up, down = _sides(d - half, d + half, **rule)
        return up & v, down & v

    supported, contradicted = at(1 - level, delta, se, df, usable)
    out = {"supported": supported.clone(), "contradicted": contradicted.clone(),
           "supported_unadjusted": supported, "contradicted_unadjusted": contradicted}
    side = {"all": "contradicted", "any": "supported"}.get(quantifier)
    k = delta.shape[0]
    if side is None or k == 1:
        return out
    p = torch.as_tensor(one_sided_p(delta.numpy(), se.numpy(), df.numpy(), **rule)[side == "contradicted"])
    p = torch.where(usable, p, torch.full_like(p, math.inf))
    order = p.argsort(dim=0, stable=True)                 # [k, ...]: the metric at each Holm step
    held = torch.zeros_like(usable)
    going = torch.ones_like(usable[0])
    for j in range(k):
        i = order[j:j + 1]
        pick = lambda x: x.gather(0, i)[0]              # noqa: E731
        ok = at((1 - level) / (k - j), pick(delta), pick(se), pick(df), pick(usable))[side == "contradicted"] & going
        held.scatter_(0, i, ok[None])
        going = ok
    out[side] = held
    return out


def boundaries(test: str, margin: float, direction: str = "higher") -> tuple[float, ...]:
    """The values of Δ (unsigned, in the margin's units) where a verdict changes."""
    _check_test(test, direction)
    sign = 1 if direction == "higher" else -1
    return {"superiority": (0.0,), "non-inferiority": (-sign * margin,), "equivalence": (-margin, margin)}[test]


def mde(se: float, df: float, level: float = LEVEL, power: float = 0.8) -> float:
    """Smallest effect (distance from a boundary, in se's units) that an interval with this SE and
    df detects with probability ``power``: (t_{1−α/2, df} + t_{power, df}) · se."""
    if not (se >= 0 and df > 0):
        return math.nan
    return float((stats.t.ppf(1 - (1 - level) / 2, df) + stats.t.ppf(power, df)) * se)
