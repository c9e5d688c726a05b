"""``bench metrics``: the vectorised metrics against a per-class scikit-learn loop, and the claims'
bootstrap (AP on image resamples) against scikit-learn on the drawn images."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from sklearn.metrics import average_precision_score, precision_score, recall_score

from .. import metrics
from ..metrics import image_weights


def _bench_problem(n: int, c: int, seed: int):
    """A COCO-sized test set: long-tailed targets [n, c] and one score matrix with 3-decimal
    scores (many ties)."""
    g = torch.Generator().manual_seed(seed)
    # long-tailed class frequencies around ~3% positives on average
    freq = torch.linspace(0.06, 0.002, c)
    targets = torch.rand(n, c, generator=g) < freq
    return _bench_scores(targets, g), targets


def _bench_scores(targets: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Scores of a noisy classifier for ``targets``, rounded to 3 decimals: many tied scores."""
    logits = torch.randn(targets.shape, generator=g) + 2.0 * targets
    scores = torch.sigmoid(logits)
    return (torch.round(scores * 1000) / 1000).float()


def bench_metrics(n: int = 40504, c: int = 80, seed: int = 0, repeats: int = 3,
                  threads: int | None = 1, resamples: int = 1000, matrices: int = 6) -> dict:
    """Time this module's metrics against one sort and against a per-class scikit-learn loop.

    On a COCO-sized problem (n x c, 3-decimal scores: many ties), from one run (best of
    ``repeats`` wall times): one ``np.argsort(-scores, axis=0)`` and one ``np.sort`` of the
    matrix, then AP (ties "sklearn", "stable", and with 5% of the entries ignored), each next
    to scikit-learn's per-class ``average_precision_score`` loop and as a multiple of the
    argsort, and top-3 CP/CR next to scikit-learn; then the claims bootstrap at full size:
    ``matrices`` score matrices (2 rows x 3 seeds) x ``resamples`` image resamples (plus the
    test set itself, as ``metrics.image_weights`` builds them), timed once.

    Returns ``{"n", "c", "positives", "threads", "argsort_s", "sort_s", "rows": [{"metric",
    "torch_s", "sklearn_s", "ratio" (sklearn_s / torch_s), "over_argsort" (torch_s /
    argsort_s), "max_abs_diff"}], "bootstrap": {"matrices", "resamples", "seconds",
    "per_replicate_s", "max_abs_diff"}}``; ``max_abs_diff`` compares with scikit-learn (the
    bootstrap: row 0 against the plain AP and two resamples against scikit-learn on the
    explicitly resampled images). ``threads=1`` (default) runs torch on one thread like the
    single-threaded scikit-learn loop (a per-core comparison; it also keeps the timing stable
    on a shared machine); ``None`` keeps torch's setting.
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _bench_metrics(n, c, seed, repeats, resamples, matrices)
    finally:
        torch.set_num_threads(old_threads)


def _best_of(repeats: int, fn):
    """(best wall time of ``repeats`` calls, the last result)."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def _sklearn_ap(s, t, keep=None):
    """scikit-learn's AP per class (a Python loop), on the entries ``keep`` if given."""

    cols = range(s.shape[1])
    if keep is None:
        return np.array([average_precision_score(t[:, j], s[:, j]) for j in cols])
    return np.array([average_precision_score(t[keep[:, j], j], s[keep[:, j], j]) for j in cols])


def _bench_metrics(n: int, c: int, seed: int, repeats: int, resamples: int, matrices: int) -> dict:

    scores, targets = _bench_problem(n, c, seed)
    s_np, t_np = scores.numpy(), targets.numpy().astype(np.int64)
    ignore = torch.rand(n, c, generator=torch.Generator().manual_seed(seed + 1)) < 0.05
    keep = ~ignore.numpy()
    # "stable" ties = sklearn on scores made distinct by the stable order (score desc, row asc)
    order = np.argsort(-s_np, axis=0, kind="stable")
    stable_scores = np.empty(s_np.shape)
    np.put_along_axis(stable_scores, order, -np.arange(n, dtype=np.float64)[:, None], axis=0)

    def sk_top3():
        # the classic per-class loop: binarise top-3 with argsort, then per class
        idx = np.argsort(-s_np, axis=1, kind="stable")[:, :3]
        pred = np.zeros_like(t_np)
        np.put_along_axis(pred, idx, 1, axis=1)
        p = np.array([precision_score(t_np[:, j], pred[:, j], zero_division=0) for j in range(c)])
        r = np.array([recall_score(t_np[:, j], pred[:, j], zero_division=0) for j in range(c)])
        return p, r

    metrics.average_precision(scores[:100], targets[:100])  # warm-up
    t_argsort, _ = _best_of(repeats, lambda: np.argsort(-s_np, axis=0))
    t_sort, _ = _best_of(repeats, lambda: np.sort(s_np, axis=0))
    rows = []
    for name, ours, reference in (
            ("AP, ties=sklearn", lambda: metrics.average_precision(scores, targets), lambda: _sklearn_ap(s_np, t_np)),
            ("AP, ties=stable", lambda: metrics.average_precision(scores, targets, ties="stable"),
             lambda: _sklearn_ap(stable_scores, t_np)),
            ("AP, 5% ignored", lambda: metrics.average_precision(scores, targets, ignore),
             lambda: _sklearn_ap(s_np, t_np, keep))):
        t_ours, ap = _best_of(repeats, ours)
        t_ref, ap_ref = _best_of(repeats, reference)
        rows.append({"metric": name, "torch_s": t_ours, "sklearn_s": t_ref,
                     "max_abs_diff": float(np.max(np.abs(ap.numpy() - ap_ref)))})
    t_prf, res = _best_of(repeats, lambda: metrics.prf(scores, targets, k=3))
    s_prf, (p_ref, r_ref) = _best_of(repeats, sk_top3)
    rows.append({"metric": "prf top-3 (CP, CR)", "torch_s": t_prf, "sklearn_s": s_prf,
                 "max_abs_diff": max(abs(res["CP"] - p_ref.mean()), abs(res["CR"] - r_ref.mean()))})
    for r in rows:
        r["ratio"], r["over_argsort"] = r["sklearn_s"] / r["torch_s"], r["torch_s"] / t_argsort
    out = {"n": n, "c": c, "positives": float(t_np.mean()), "threads": torch.get_num_threads(),
           "argsort_s": t_argsort, "sort_s": t_sort, "rows": rows,
           "bootstrap": _bench_bootstrap(scores, targets, seed, resamples, matrices)}
    _print_bench_metrics(out, repeats)
    return out


def _bench_bootstrap(scores, targets, seed: int, resamples: int, matrices: int) -> dict:
    """The claims bootstrap at full size: AP of ``matrices`` score matrices on the test set and
    ``resamples`` image resamples, timed once; checked on row 0 and on two resamples."""


    g = torch.Generator().manual_seed(seed + 2)
    score_sets = [scores] + [_bench_scores(targets, g) for _ in range(matrices - 1)]
    weights = image_weights(len(targets), resamples, seed)
    t0 = time.perf_counter()
    aps = [metrics.average_precision(s, targets, weights=weights) for s in score_sets]
    seconds = time.perf_counter() - t0
    plain = metrics.average_precision(scores, targets)
    same_nan = torch.equal(aps[0][0].isnan(), plain.isnan())
    diffs = [float((aps[0][0] - plain).abs().nan_to_num().max()) if same_nan else math.inf]
    t_np = targets.numpy().astype(np.int64)
    for r in (sorted({1, resamples}) if resamples > 0 else []):
        drawn = np.repeat(np.arange(len(targets)), weights[r].numpy().astype(np.int64))
        present = t_np[drawn].sum(0) > 0                    # sklearn needs a positive
        ref = _sklearn_ap(scores.numpy()[drawn][:, present], t_np[drawn][:, present])
        diffs.append(float(np.max(np.abs(aps[0][r, torch.from_numpy(present)].numpy() - ref))))
    replicates = matrices * resamples
    return {"matrices": matrices, "resamples": resamples, "seconds": seconds,
            "per_replicate_s": seconds / max(replicates, 1), "max_abs_diff": max(diffs)}


def _print_bench_metrics(out: dict, repeats: int) -> None:
    print(f"metrics bench: {out['n']} x {out['c']} scores, {100 * out['positives']:.1f}% positives, "
          f"3-decimal scores (ties), best of {repeats}, torch threads={out['threads']}")
    print(f"one np.argsort(-scores, axis=0) {out['argsort_s']:.4f} s, one np.sort {out['sort_s']:.4f} s")
    print(f"{'metric':22s} {'mlbook s':>9s} {'/argsort':>9s} {'sklearn s':>10s} {'speed-up':>9s} {'max|diff|':>10s}")
    for r in out["rows"]:
        print(f"{r['metric']:22s} {r['torch_s']:9.4f} {r['over_argsort']:8.2f}x {r['sklearn_s']:10.4f} "
              f"{r['ratio']:8.1f}x {r['max_abs_diff']:10.2e}")
    b = out["bootstrap"]
    print(f"claims bootstrap: AP of {b['matrices']} score matrices x (1 + {b['resamples']}) image resamples: "
          f"{b['seconds']:.2f} s, {1e3 * b['per_replicate_s']:.2f} ms per matrix and resample, "
          f"max|diff| {b['max_abs_diff']:.2e}")
