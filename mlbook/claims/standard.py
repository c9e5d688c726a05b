"""The claims standard itself: what a claim is (``Claim``, ``load``), its interval (``interval``), the rule
(``verdict``, ``combine``) and one claims-table row (``evaluate``). The specification is the package's
docstring (``mlbook.claims``)."""
from __future__ import annotations

import csv
import dataclasses
import datetime
import math
from pathlib import Path
from typing import Callable, Sequence

import torch
from scipy import stats

from ..metrics import image_weights

VERDICTS = ("supported", "contradicted", "not resolved", "not testable")
TESTS = ("superiority", "non-inferiority", "equivalence")
DIRECTIONS = ("higher", "lower")
DATASETS = ("coco", "nuswide", "voc", "")
LEVEL = 0.95
MIN_SEEDS = 3
N_RESAMPLES = 1000
MAX_RESAMPLES = 10000
MC_GUARD = 4.0             # escalate when an end is this many Monte Carlo SEs from a boundary
CLAIMS_DIR = Path(__file__).parents[1] / "reference"
COLUMNS = ("id", "chapter", "dataset", "text", "quoted", "source", "better", "worse", "metrics", "test",
           "margin", "margin_source", "direction", "fixed", "paired", "note")
#: when a row was registered and, for a test changed after its result was seen, the original test
AMENDMENT = ("registered", "amended", "original_test", "original_margin", "original_better", "original_worse",
             "original_metrics", "original_direction", "amendment_reason")
P_SAME = "P(same verdict on rerun)"     # claims.stability.p_same: how often an independent rerun agrees
DISPLAY = ("id", "registered", "data set", "claim", "source", "compared", "test", "primary", "evidence", "verdict",
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
    paired: bool = False            # both rows read from the same trained models (seed-paired)
    note: str = ""
    registered: str = ""            # ISO date the claim was written down (the registry: required)
    # a test changed after its result was seen keeps the original beside it: empty = unchanged
    amended: str = ""               # ISO date of the change
    original_test: str = ""
    original_margin: float | None = None
    original_better: str = ""
    original_worse: str = ""
    original_metrics: tuple[str, ...] = ()
    original_direction: str = ""
    amendment_reason: str = ""

    def original(self) -> Claim | None:
        """The claim as registered before its amendment (None if never amended): the original
        test, margin, rows, metrics and direction where they differ; a replaced fixed row's
        replacement is fixed too."""
        if not self.amended:
            return None
        better, worse = self.original_better or self.better, self.original_worse or self.worse
        fixed = tuple(new for old, new in ((self.better, better), (self.worse, worse)) if old in self.fixed)
        test = self.original_test or self.test
        margin = self.original_margin if self.original_margin is not None else (
            self.margin if test == self.test else 0.0)
        return dataclasses.replace(
            self, test=test, margin=margin, better=better, worse=worse, fixed=fixed,
            metrics=self.original_metrics or self.metrics, direction=self.original_direction or self.direction,
            margin_source=(self.margin_source or "the original test's margin: amendment_reason") if margin else "", amended="", original_test="",
            original_margin=None, original_better="", original_worse="", original_metrics=(),
            original_direction="", amendment_reason="")

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
        ("amended", c["amended"] or not any(c[k] for k in AMENDMENT[2:8] if k != "original_margin")
         and c["original_margin"] is None, "an original test needs the date it was amended"),
        ("original_test", not c["original_test"] or c["original_test"] in TESTS, f"must be one of {TESTS}"),
        ("original_direction", not c["original_direction"] or c["original_direction"] in DIRECTIONS,
         f"must be one of {DIRECTIONS}"),
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
    for field in ("margin", "original_margin"):
        try:
            fields[field] = float(fields[field]) if fields[field] else 0.0 if field == "margin" else None
        except ValueError:
            fail(field, f"must be a number of points, not {fields[field]!r}")
    if not fields["registered"]:
        fail("registered", "every registered claim carries the date it was registered")
    for field in ("metrics", "fixed", "original_metrics"):
        fields[field] = tuple(x.strip() for x in fields[field].split(";") if x.strip())
    fields["test"], fields["direction"] = fields["test"] or "superiority", fields["direction"] or "higher"
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
    if direction == "lower":
        low, high = -high, -low
    if test == "superiority":
        supported, contradicted = low > 0, high < 0
    elif test == "non-inferiority":
        supported, contradicted = low > -margin, high < -margin
    else:
        supported, contradicted = -margin < low and high < margin, low > margin or high < -margin
    return SUPPORTED if supported else CONTRADICTED if contradicted else NOT_RESOLVED


def combine(verdicts: Sequence[str]) -> str:
    """Several primary metrics, symmetric: supported if all are, contradicted if all are, not
    testable if any is, otherwise not resolved."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    if NOT_TESTABLE in verdicts:
        return NOT_TESTABLE
    first = verdicts[0]
    return first if first in (SUPPORTED, CONTRADICTED) and all(v == first for v in verdicts) else NOT_RESOLVED


def boundaries(test: str, margin: float, direction: str = "higher") -> tuple[float, ...]:
    """The values of Δ (unsigned, in the margin's units) where a verdict changes."""
    _check_test(test, direction)
    sign = 1 if direction == "higher" else -1
    return {"superiority": (0.0,), "non-inferiority": (-sign * margin,), "equivalence": (-margin, margin)}[test]


# --- one claim, evaluated -----------------------------------------------------------------

def _intervals(claim: Claim, values: dict) -> dict:
    missing = [m for m in claim.metrics if m not in values]
    if missing:
        raise KeyError(f"{claim.id}: no values for {missing}")
    return {m: interval(*values[m], fixed_better=claim.better in claim.fixed,
                        fixed_worse=claim.worse in claim.fixed, paired=claim.paired) for m in claim.metrics}


def _near_boundary(claim: Claim, results: dict, scale: float) -> bool:
    """Whether an interval end is within MC_GUARD Monte Carlo SEs of a decision boundary; the MC
    SE of an end is t · SE(v) / (2 SE) with SE(v) ≈ v √(2 / (R − 1)) for the image variance v.
    A claim that gets no verdict (too few seeds) needs no more replicates."""
    for r in results.values():
        if not (r["se"] > 0 and r["n_resamples"] > 1 and math.isfinite(r["low"])) or _too_few_seeds(claim, r["seeds"]):
            continue
        se_v = r["image_var"] * math.sqrt(2 / (r["n_resamples"] - 1))
        mc_se = float(_t(1 - (1 - LEVEL) / 2, r["df"])) * se_v / (2 * r["se"])
        for b in boundaries(claim.test, claim.margin, claim.direction):
            if min(abs(scale * r["low"] - b), abs(scale * r["high"] - b)) < MC_GUARD * scale * mc_se:
                return True
    return False


def _resampled_values(values: Callable, n_images: int, seed: int, chunks: int, done: list) -> dict:
    """``values`` on ``chunks`` × N_RESAMPLES resamples, reusing the chunks in ``done``. Chunk j
    draws with seed + j · 1,000,003 (chunk 0 is ``image_weights(n_images, N_RESAMPLES, seed)``);
    chunks are drawn one at a time so that 10,000 resamples of a large test set fit in memory."""
    while len(done) < chunks:
        done.append(values(image_weights(n_images, N_RESAMPLES, seed + len(done) * 1_000_003)))

    def joined(metric, side):     # column 0 (the test set) once, then every chunk's resamples
        parts = [_as_rows(d[metric][side]) for d in done]
        return torch.cat([parts[0]] + [p[:, 1:] for p in parts[1:]], dim=1)
    return {m: (joined(m, 0), joined(m, 1)) for m in done[0]}


def _end(x: float, bounds: Sequence[float]) -> str:
    """An interval end with 1 decimal, or with up to 4 where that is needed to show its side of a
    boundary it lies within 0.05 of."""
    if not math.isfinite(x):
        return "n/a"
    for d in (1, 2, 3, 4):
        shown = round(x, d)
        if all(abs(x - b) >= 0.05 or (shown - b) * (x - b) > 0 for b in bounds):
            return f"{x:+.{d}f}"
    return f"{x:+.4f}"


def _seeds_text(claim: Claim, seeds: tuple[int, int]) -> str:
    """"3 vs 3 seeds", "3 seeds, paired", "3 seeds vs fixed", "fixed vs fixed"."""
    if claim.paired:
        return f"{seeds[0]} seeds, paired"
    b, w = ("fixed" if row in claim.fixed else f"{n} seeds" for row, n in zip((claim.better, claim.worse), seeds))
    return f"{b.split()[0]} vs {w}" if "fixed" not in (b, w) else f"{b} vs {w}"


def _too_few_seeds(claim: Claim, seeds: tuple[int, int]) -> bool:
    return any(n < MIN_SEEDS for row, n in zip((claim.better, claim.worse), seeds) if row not in claim.fixed)


def _measurement(claim: Claim, metric: str, r: dict, scale: float, published) -> dict:
    """One primary metric's numbers in points, its verdict, and its evidence text."""
    bounds = boundaries(claim.test, claim.margin, claim.direction)
    low, high, se = scale * r["low"], scale * r["high"], scale * r["se"]
    too_few = _too_few_seeds(claim, r["seeds"])
    v = NOT_RESOLVED if too_few else verdict(low, high, test=claim.test, margin=claim.margin,
                                             direction=claim.direction)
    detects = mde(se, r["df"])
    pub = None if not published or published.get(metric) is None else float(published[metric])
    df = "∞" if r["df"] == math.inf else "n/a" if math.isnan(r["df"]) else f"{r['df']:.1f}"
    details = [f"fewer than {MIN_SEEDS} training seeds: no verdict"] if too_few else []
    details += [f"t, df {df}", _seeds_text(claim, r["seeds"])]
    if len(r["seed_deltas"]) > 1:
        details.append("per seed " + ", ".join(f"{scale * d:+.1f}" for d in r["seed_deltas"]))
    if pub is not None:
        details.append(f"paper's table {pub:+.1f}")
    if math.isfinite(detects):
        details.append(f"detects ≥ {detects:.1f}")
    text = (f"{metric} Δ {scale * r['delta']:+.1f} [{_end(low, bounds)}, {_end(high, bounds)}] "
            f"({'; '.join(details)})" + (f" → {v}" if len(claim.metrics) > 1 else ""))
    return {"metric": metric, "delta": scale * r["delta"], "low": low, "high": high, "se": se, "df": r["df"],
            "seeds": r["seeds"], "n_resamples": r["n_resamples"], "published_delta": pub, "mde": detects,
            "metric_verdict": v, "test": claim.test, "margin": claim.margin, "direction": claim.direction,
            "too_few_seeds": too_few, "image_var": scale ** 2 * r["image_var"],
            "seed_parts": [(scale ** 2 * s2, S) for s2, S in r["seed_parts"]], "text": text}


def _test_text(claim: Claim) -> str:
    return claim.test if claim.test == "superiority" else f"{claim.test}, margin {claim.margin:g}"


def mde(se: float, df: float, level: float = LEVEL, power: float = 0.8) -> float:
    """Smallest effect (distance from a boundary, in se's units) that an interval with this SE and
    df detects with probability ``power``: (t_{1−α/2, df} + t_{power, df}) · se."""
    if not (se >= 0 and df > 0):
        return math.nan
    return float((stats.t.ppf(1 - (1 - level) / 2, df) + stats.t.ppf(power, df)) * se)


def evaluate(claim: Claim, values, *, n_images: int | None = None, scale: float = 100.0, testable: bool = True,
             why_not: str = "", secondary: dict[str, float] | None = None,
             published: dict[str, float] | None = None, seed: int = 0, original_values=None,
             original_published: dict[str, float] | None = None) -> dict:
    """One row of a claims table: the display columns (``DISPLAY``; ``P_SAME`` is added by
    ``tables.table`` from the measurements) and ``"measurements"``.

    ``values``: {metric: (better [S, 1+R], worse [S, 1+R])} used as given, or a callable
    ``values(weights [1+R, N]) -> that dict`` with ``n_images`` given: it is evaluated on
    N_RESAMPLES resamples (``image_weights(n_images, N_RESAMPLES, seed)``) and, if an end lies
    near a decision boundary, on MAX_RESAMPLES. ``scale`` turns values into points. ``secondary``:
    Δ (points) of other metrics, shown only; ``published``: the paper's own Δ per metric.

    An amended claim (``Claim.original``) is judged by its original test too, on
    ``original_values`` (the same forms; default ``values``, right where the original compares
    the same rows): its verdict, evidence and the reason for the change fill the column
    "original test (amended claims)", so that a reader sees both verdicts side by side.
    """
    row = _evaluate_one(claim, values, n_images=n_images, scale=scale, testable=testable, why_not=why_not,
                        secondary=secondary, published=published, seed=seed)
    row = {"registered": claim.registered, **row, "original test (amended claims)": ""}
    original = claim.original()
    if original is not None:
        try:
            before = _evaluate_one(original, values if original_values is None else original_values,
                                   n_images=n_images, scale=scale, testable=testable, why_not=why_not,
                                   published=published if original_published is None else original_published,
                                   seed=seed)
            said = f"{before['verdict']}: {before['evidence']}"
        except KeyError as missing:      # the evidence no longer measures the original's rows or metrics
            before, said = {"verdict": NOT_TESTABLE}, f"not recomputed here ({missing})"
        row["original verdict"] = before["verdict"]
        row["original test (amended claims)"] = (
            f"registered {claim.registered}, amended {claim.amended}. Original: {original.better} vs "
            f"{original.worse}, {_test_text(original)}{'' if original.direction == 'higher' else ', lower is better'}"
            f" on {', '.join(original.metrics)} → {said}. Why changed: {claim.amendment_reason}")
    return row


def _evaluate_one(claim: Claim, values, *, n_images, scale, testable, why_not, secondary=None, published=None,
                  seed=0) -> dict:
    """``evaluate`` of one test (the claim's own or its original)."""
    row = {"id": claim.id, "data set": claim.dataset,
           "claim": f"“{claim.text}”" if claim.quoted else f"{claim.text} (the book's reading)",
           "source": claim.source, "compared": f"{claim.better} vs {claim.worse}", "test": _test_text(claim),
           "primary": ", ".join(claim.metrics)}
    note = f" (note: {claim.note})" if claim.note else ""
    if not testable:
        return {**row, "evidence": (why_not or "the data cannot test it") + note, "verdict": NOT_TESTABLE,
                "measurements": []}
    if callable(values):
        if n_images is None:
            raise ValueError(f"{claim.id}: a callable of image weights needs n_images")
        done = []
        results = _intervals(claim, _resampled_values(values, n_images, seed, 1, done))
        if _near_boundary(claim, results, scale):
            results = _intervals(claim, _resampled_values(values, n_images, seed, MAX_RESAMPLES // N_RESAMPLES, done))
    else:
        results = _intervals(claim, values)
    measured = [_measurement(claim, m, results[m], scale, published) for m in claim.metrics]
    R = max(r["n_resamples"] for r in results.values())
    evidence = "; ".join(m.pop("text") for m in measured) + f"; {R:,} image resamples"
    if secondary:
        evidence += "; shown, not voted: " + ", ".join(f"{k} {v:+.1f}" for k, v in secondary.items())
    return {**row, "evidence": evidence + note, "verdict": combine([m["metric_verdict"] for m in measured]),
            "measurements": measured}
