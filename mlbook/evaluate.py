"""Evaluate saved score/target matrices: file loading, validation, a printed report.

Used by ``python -m mlbook evaluate SCORES TARGETS [--ignore MASK] [--json]``.
Files are ``.npy`` (a 2-D numeric array) or ``.csv`` (comma separated numbers,
one image per line; an optional first header line is skipped).  Every error
names the file it is about.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from . import metrics

__all__ = ["load_matrix", "evaluate_files", "format_report"]


NPY_MAGIC = b"\x93NUMPY"    # the first bytes of every .npy file (numpy.lib.format)


def _load_csv(path: Path) -> np.ndarray:
    rows: list[list[float]] = []
    try:
        with open(path, newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh), 1):
                cells = [c.strip() for c in row]
                if not cells or all(c == "" for c in cells):
                    continue
                try:
                    vals = [float(c) for c in cells]
                except ValueError:
                    if lineno == 1 and not rows:  # a header line
                        continue
                    raise ValueError(f"{path}: line {lineno}: not a number in {row!r}") from None
                if rows and len(vals) != len(rows[0]):
                    raise ValueError(f"{path}: line {lineno}: {len(vals)} columns, "
                                     f"expected {len(rows[0])} like the first data line")
                rows.append(vals)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text .csv file (binary data; a .npy file renamed?)") from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return np.asarray(rows, dtype=np.float64)


def _load_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        head = fh.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        what = ("a zip archive: an .npz file renamed? save one array with numpy.save" if head.startswith(b"PK")
                else "a text file renamed? a .csv file is read by its .csv name")
        raise ValueError(f"{path}: not a NumPy .npy file ({what})")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(f"{path}: holds an array of Python objects (dtype object), not numbers; "
                             "not loaded, for safety (save a numeric array)") from None
        raise ValueError(f"{path}: not a readable .npy array (truncated? {exc})") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .npy array (truncated? {exc})") from None
    if arr.dtype == bool:
        arr = arr.astype(np.float64)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{path}: dtype {arr.dtype} is not a real number type")
    return arr.astype(np.float64)


def load_matrix(path) -> torch.Tensor:
    """Load a 2-D numeric matrix [N, C] from ``.npy`` or ``.csv`` as float64 (a 1-D array is one column)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: a folder, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = _load_npy(path)
    elif suffix == ".csv":
        arr = _load_csv(path)
    else:
        raise ValueError(f"{path}: unsupported extension {suffix!r} (use .npy or .csv)")
    if arr.size == 0:
        raise ValueError(f"{path}: empty array (shape {arr.shape})")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D matrix [images, classes], got shape {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def _check_binary(x: torch.Tensor, path, what: str, hint: str = "") -> torch.Tensor:
    bad = ~((x == 0) | (x == 1))
    if bool(bad.any()):
        i, j = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"{path}: {what} other than 0 and 1 (each must be 0 or 1; e.g. {float(x[i, j])!r} at "
                         f"row {i}, column {j}, {int(bad.sum())} in all){hint}")
    return x != 0


def _same_shape(path_a, a: torch.Tensor, path_b, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{path_a} has shape {tuple(a.shape)} but {path_b} has shape {tuple(b.shape)} "
                         "(one row per image, one column per class in both)")


def evaluate_files(scores_path, targets_path, ignore_path=None) -> dict:
    """Load, validate and run :func:`mlbook.metrics.evaluate_all`.

    Returns its dict plus ``"files": {"scores", "targets", "ignore"}``.
    """
    scores = load_matrix(scores_path)
    targets = load_matrix(targets_path)
    _same_shape(scores_path, scores, targets_path, targets)
    for name, bad in (("NaN", scores.isnan()), ("infinite", scores.isinf())):
        if bool(bad.any()):
            (i, j), n = (int(v) for v in bad.nonzero()[0]), int(bad.sum())
            raise ValueError(f"{scores_path}: {n} {name} value{'s' * (n > 1)} (the first at row {i}, column {j}); "
                             "scores must be finite")
    t = _check_binary(targets, targets_path, "values",
                      " (VOC -1/0/1 lists: write 1 -> 1, -1 -> 0 and put the 0 "
                      "'difficult' entries in an --ignore mask)")
    ign = None
    if ignore_path is not None:
        m = load_matrix(ignore_path)
        _same_shape(scores_path, scores, ignore_path, m)
        ign = _check_binary(m, ignore_path, "values")
    out = metrics.evaluate_all(scores, t, ign)
    out["files"] = {"scores": str(scores_path), "targets": str(targets_path),
                    "ignore": None if ignore_path is None else str(ignore_path)}
    return out


def _pct(x: float) -> str:
    return "   -" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:5.1f}"


def format_report(d: dict) -> str:
    """A readable report of :func:`evaluate_files` / ``evaluate_all`` output (percent)."""
    lines = []
    files = d.get("files")
    if files:
        lines.append(f"scores:  {files['scores']}")
        lines.append(f"targets: {files['targets']}")
        if files.get("ignore"):
            lines.append(f"ignore:  {files['ignore']}")
    lines.append(f"{d['n_images']} images x {d['n_classes']} classes; all numbers in %")
    n_nan = sum(1 for a in d["AP"] if math.isnan(a))
    lines.append("")
    lines.append("Ranking metrics")
    rank_rows = [(f"mAP (sklearn AP, ties grouped; {n_nan} class(es) without positive "
                  "excluded)", d["mAP"]),
                 ("mAP (ties broken by row order)", d["mAP(stable ties)"])]
    if "mAP(difficult=negative)" in d:
        rank_rows.append(("mAP (ignored entries counted as negatives)",
                          d["mAP(difficult=negative)"]))
    rank_rows += [(f"mAP@10 [{key}]", val) for key, val in d["mAP@10"].items()]
    width = max(len(name) for name, _ in rank_rows)
    lines += [f"  {name.ljust(width)}  {_pct(val)}" for name, val in rank_rows]
    # which paper used which convention
    used: dict[tuple[str, str], list[str]] = {}
    for paper, pairs in d["conventions"].items():
        for proto, var in pairs:
            used.setdefault((proto, var), []).append(paper)
    lines.append("")
    lines.append("Set metrics (protocol = how labels are predicted; cf1 / empty_precision = "
                 "averaging convention)")
    head = (f"  {'protocol':14s} {'cf1':9s} {'empty P':7s} "
            + " ".join(f"{k:>5s}" for k in metrics.PRF_KEYS) + "  used by")
    lines.append(head)
    lines.append("  " + "-" * (len(head) - 2))
    for proto, variants in d["prf"].items():
        for var, vals in variants.items():
            cf1, ep = (part.split("=", 1)[1] for part in var.split(","))
            papers = ", ".join(used.get((proto, var), []))
            lines.append(f"  {proto:14s} {cf1:9s} {ep:7s} "
                         + " ".join(_pct(vals[k]) for k in metrics.PRF_KEYS) + f"  {papers}")
    lines.append("")
    lines.append("Protocols: " + "; ".join(f"{k} = {v}" for k, v in metrics.PROTOCOLS.items()))
    lines.append("Paper conventions (mlbook.metrics.PAPER_CONVENTIONS):")
    for paper, conv in metrics.PAPER_CONVENTIONS.items():
        lines.append(f"  {paper}: protocols {', '.join(conv['protocols'])}; cf1={conv['cf1']}; "
                     f"empty_precision={conv['empty_precision']}")
        lines.append(f"      source: {conv['source']}")
    return "\n".join(lines)
