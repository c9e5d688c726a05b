"""The evidence of the transformation ranking model's claims (chapter 07): the rows' label sets and
their Jaccard overlap with its chance level, the held-out labels' AP beside the exact AP of a random
ranking, ``claim_values`` / ``claim_options`` / ``published_deltas`` for the claims of
``mlbook/reference/claims_07_transformation_ranking.csv``, and the chapter's tables. A lower layer
of the paper's experiments: it reads the rows' results and never imports ``transformation_ranking``
(the runs), which imports ``claim_values`` and ``claim_options`` from here; the names both share are
in ``transformation_ranking_rows``."""
from __future__ import annotations

import math

import pandas as pd
import torch

from .. import claims, metrics, report
from . import shared
from .transformation_ranking_rows import (JACCARD_TOP, SET_METRICS, TABLES_BY_NUMBER, TOP5, ZERO_SHOT_NAMES,
                                          margin_stage)


# --- evidence: the rows' label sets, the zero-shot APs, the chance levels ------------------------

def predictions(results: dict, dataset: str, row: str, seeds, top: int = 3) -> list[torch.Tensor]:
    """[N, L] bool label sets of ``row`` per training seed, at exactly ``top`` labels. "Voting (top N)"
    is the vote of the rows of A of "Ours" (the same trained models, Table 5); "CNN-RNN (stops at
    END)" is CNN-RNN's own rule, every label it emits before END (a variable number)."""
    if row == "CNN-RNN (stops at END)":
        return [results[dataset, "CNN-RNN", t]["pred_until_end"] for t in seeds]
    if row.startswith("Voting (top "):
        if top != 3:
            raise ValueError("Table 5 votes for top-3 predictions only")
        return [results[dataset, "Ours", t]["pred_voting"][row[len("Voting (top "):-1]] for t in seeds]
    runs = [results[dataset, row, t] for t in seeds]
    if top == 3:
        return [r["pred"] for r in runs]
    if "sequences" in runs[0]:
        raise ValueError(f"{row} is decoded to {runs[0]['sequences_topk'].shape[1]} labels only")
    return [r["pred_top5"] if "pred_top5" in r else metrics.predict_labels(r["scores"], k=top) for r in runs]


def zero_shot_rows(results: dict, dataset: str, name: str) -> list[str]:
    """The rows of the zero-shot source ``name`` ("Ours zero-shot", ...), one per split."""
    return sorted({k[1] for k in results if k[0] == dataset and k[1].startswith(f"{name} (split ")})


def held_out_ap(results: dict, dataset: str, row: str, seeds, targets: torch.Tensor, weights=None) -> torch.Tensor:
    """AP of the held-out labels of a zero-shot row: [S, C_unseen] (``weights`` [R, N]: [S, R, C_unseen])."""
    runs = [results[dataset, row, t] for t in seeds]
    return torch.stack([metrics.average_precision(r["scores"][:, r["unseen"]], targets[:, r["unseen"]], weights=weights)
                        for r in runs])


def held_out_map(results: dict, dataset: str, name: str, seeds, targets: torch.Tensor, weights) -> torch.Tensor:
    """[S, 1+R]: the mean AP over every split's held-out labels pooled (one mean per seed and resample);
    ``name`` "random ranking": the exact expected AP of a random ranking (a fixed row, [1, 1+R])."""
    parts = []
    for row in zero_shot_rows(results, dataset, "Ours zero-shot"):
        if name == "random ranking":
            u = results[dataset, row, next(iter(seeds))]["unseen"]
            parts.append(metrics.random_ranking_ap(targets[:, u], weights=weights)[None])
        else:
            parts.append(held_out_ap(results, dataset, row.replace("Ours zero-shot", name), seeds, targets, weights))
    return torch.cat(parts, dim=-1).nanmean(-1)


def random_jaccard(n_labels: int, top: int = JACCARD_TOP) -> float:
    """E[|S ∩ T| / |S ∪ T|] of two independent uniformly random top-``top`` sets of ``n_labels``
    labels, exactly: |S ∩ T| is hypergeometric. By linearity it is also the expected mean over
    the k(k-1)/2 pairs of rows, the chance level of Fig. 9."""
    n = min(top, n_labels)
    return sum(math.comb(n, i) * math.comb(n_labels - n, n - i) / math.comb(n_labels, n) * i / (2 * n - i)
               for i in range(n + 1))


def mean_jaccard(results: dict, dataset: str, seeds, weights) -> torch.Tensor:
    """[S, 1+R]: the mean over test images of the rows' mean pairwise Jaccard ("Ours")."""
    return torch.stack([(weights @ results[dataset, "Ours", t]["jaccard"].double()) / weights.sum(1) for t in seeds])


def claim_values(claim: claims.Claim, evidence: shared.Evidence, weights: torch.Tensor) -> dict:
    """{metric: (better [S, 1+R], worse [S, 1+R])} for ``claim`` on image resamples ``weights``,
    from ``evidence`` (its results, the test labels of the claim's data set, the training seeds).

    Metrics: "CP" ... "OF1" (top-3, every row at exactly 3 labels), the same + " top-5",
    "held-out mAP" (zero-shot rows, every split pooled; "random ranking" the exact chance AP),
    "mean Jaccard" ("chance": ``random_jaccard`` of the data set's labels)."""
    results, seeds = evidence.results, evidence.seeds
    d, y = claim.dataset, evidence.data[claim.dataset].test.labels

    def values(row: str, metric: str) -> torch.Tensor:
        if metric == "held-out mAP":
            return held_out_map(results, d, row, seeds, y, weights)
        if metric == "mean Jaccard":
            if row == "chance":
                return torch.full((1, weights.shape[0]), random_jaccard(y.shape[1]), dtype=torch.float64)
            if row == "Jaccard 0.5":     # the constant of 07.complementary's original test
                return torch.full((1, weights.shape[0]), 0.5, dtype=torch.float64)
            return mean_jaccard(results, d, seeds, weights)
        top = 5 if metric.endswith(TOP5) else 3
        preds = predictions(results, d, row, seeds, top)
        return metrics.set_metric_values(preds, y, weights, metric.removesuffix(TOP5))

    return {m: (values(claim.better, m), values(claim.worse, m)) for m in claim.metrics}


WHY_NOT_TESTABLE = {   # the short part of a claim id -> why the data cannot test it
    "fewer_images": "every row here trains on the same images; the paper compares its 102,405 training images with "
                    "the 150,000 of the other methods' split, and the book varies no training-set size",
    "vs_mie": "MIE (Fast R-CNN region proposals with GoogleNet) is not reproduced",
    "simpler_than_mie": "MIE is not reproduced, and 'simpler' is a design judgement the tables do not measure",
    "average_norm": "the generated labels carry no annotation noise, and the book trains no closest-positive variant",
}


def published_deltas(claim: claims.Claim) -> dict:
    """{metric: the paper's own Δ (points) of the claim's two rows, or None}: top-3 metrics from
    Tables 3 and 5 (the voting rows), top-5 metrics from Table 4."""
    table = {n: report.reference(name) for n, name in TABLES_BY_NUMBER.items()}
    top3, top5 = pd.concat([table[3], table[5].drop(index="Full")]), table[4]
    return {m: claims.published_delta(top5 if m.endswith(TOP5) else top3, claim.better, claim.worse,
                                      m.removesuffix(TOP5)) for m in claim.metrics}


def claim_options(claim: claims.Claim, evidence: shared.Evidence) -> dict:
    """The keyword arguments of ``claims.evaluate`` for ``claim`` besides its values: whether the
    data can test it (and why not), and the paper's own Δ for each primary metric (neither depends
    on ``evidence``: every row is trained on the one data set)."""
    why = WHY_NOT_TESTABLE.get(claim.id.split(".")[1], "")
    return {"testable": not why, "why_not": why, "published": published_deltas(claim)}


# --- tables ---------------------------------------------------------------------------------------------

def seed_metrics(results: dict, dataset: str, row: str, seeds, data: shared.Splits, top: int = 3) -> pd.DataFrame:
    """Percent, one line per training seed: CP ... OF1 of ``row``'s label sets at exactly ``top`` labels."""
    preds = predictions(results, dataset, row, seeds, top)
    return pd.DataFrame([{c: 100 * float(v) for c, v in metrics.prf_of_predictions(p, data.test.labels).items()
                          if c in SET_METRICS} for p in preds], index=pd.Index(list(seeds), name="seed"))


def mean_metrics(results: dict, dataset: str, row: str, seeds, data: shared.Splits, top: int = 3) -> dict:
    """Percent, mean over ``seeds``: CP ... OF1 of ``row``'s label sets at exactly ``top`` labels."""
    return seed_metrics(results, dataset, row, seeds, data, top).mean().to_dict()


def margin_curves(results: dict, dataset: str) -> pd.DataFrame:
    """Hold-out top-3 C-F1 + O-F1 (percent) of every margin of the grid, per word source (the stages)."""
    return pd.DataFrame({source: {m: 100 * (v["CF1"] + v["OF1"]) for m, v in results[dataset, margin_stage(source), 0]
                                  ["margin_curve"]} for source in ("words", "random")}).rename_axis("margin m")


def zero_shot_table(results: dict, data: shared.Splits, dataset: str, seeds, columns: dict) -> pd.DataFrame:
    """One row per (split, held-out label): prevalence, the exact AP of a random ranking and the AP
    of each zero-shot source (mean over seeds; ``columns``: source name -> column), in percent."""
    y = data.test.labels
    frames = []
    for row in zero_shot_rows(results, dataset, "Ours zero-shot"):
        u = results[dataset, row, seeds[0]]["unseen"]
        cols = {"prevalence": 100 * y[:, u].mean(0).double(),
                "random ranking (exact)": 100 * metrics.random_ranking_ap(y[:, u])}
        for name in ZERO_SHOT_NAMES:
            cols[columns[name]] = 100 * held_out_ap(
                results, dataset, row.replace("Ours zero-shot", name), seeds, y).mean(0)
        index = pd.MultiIndex.from_tuples([(int(row.rsplit(" ", 1)[1].rstrip(")")), data.test.classes[int(c)])
                                           for c in u], names=["split", "label"])
        frames.append(pd.DataFrame({k: v.numpy() for k, v in cols.items()}, index=index))
    return pd.concat(frames)
