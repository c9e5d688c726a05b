"""The evidence of RLSD's claims (chapter 06): how a row's results are read (``predictions``, the
paper's row names ``table_results``), region statistics, recall by object size and area, mAP@10
on image resamples, ``claim_values`` / ``claim_options`` for the claims of
``mlbook/reference/claims_06_rlsd.csv`` (a control that changes one thing as a claim's primary
row, the paper's row shown beside it: ``STAND_INS``) and ``run_says``, the chapter's closing
paragraph. It reads the row specifications of ``rlsd_setup``;
``rlsd`` (the face) takes ``claim_values`` and ``claim_options`` from here, and the chapter
reads the rest here."""
from __future__ import annotations

import dataclasses

import torch

from .. import claims, metrics, report
from . import shared
from .rlsd_setup import BASELINE_ROWS, CONTROLS, ROW_SPECS


# --- protocols -----------------------------------------------------------------------------------

PROBABILITY_ROWS = ("Multi-CNN", *ROW_SPECS)   # scores are probabilities, so the 0.5 floor means something


def predictions(result: dict, row: str, floor: float | None = None, k: int = 3, ignore=None) -> torch.Tensor:
    """Top-k predictions [N, L], every row at exactly k labels (difficult entries take no slot); a
    sequence baseline (CNN-RNN): its top k continued past END. ``floor`` (the paper's t = 0.5, a
    variant): only labels scoring at least the floor, on the rows whose scores are probabilities."""
    if "sequences" in result:
        return result["pred"]
    return metrics.predict_labels(result["scores"], k=k, floor=floor if row in PROBABILITY_ROWS else None,
                                  valid=None if ignore is None else ~ignore)


def table_results(results: dict) -> dict:
    """Results keyed by the paper's row names: the baselines renamed (Multi-CNN, softmax, ...)."""
    names = {v: k for k, v in BASELINE_ROWS.items()}
    return {(d, names.get(row, row), s): r for (d, row, s), r in results.items()}


# --- evidence and claims -----------------------------------------------------------------------

TABLES = {"voc": "rlsd_table1_voc2007_ap", "coco": "rlsd_table3_coco_top3", "nuswide": "rlsd_table4_nuswide_top3"}
PUBLISHED_NAMES = {"SS-CNN+LSTM": "MCG-CNN+LSTM"}          # our row -> the paper's row it stands in for
FT_LAYER = "fine-tuned localization layer"                 # the ft-RPN layer (Sec. IV-A), fine-tuned once
STAGE_ROWS = {"localization layer": "localization (region set)", "selective search": "selective search",
              FT_LAYER: "localization (ft-RPN)"}
SEEDED_STAGES = ("localization layer",)   # trained once per training seed (``rlsd.grid``); the proposals are fixed
#: a control that changes one thing, as a claim's primary row -> the paper's row it stands in for (shown beside it)
STAND_INS = {"Multi-CNN (2-fc)": "Multi-CNN", "CNN+LSTM (continued)": "CNN+LSTM"}
CLASSES_WON = "share of classes won"    # "in most classes": the share of classes whose AP a row wins, vs one half
FIG8_CLASSES = ("bird", "fire hydrant", "kite")           # "visually small in the images of this dataset"
AREA_BINS = {"large objects": (0.25, 0.5), "objects filling the image": (0.5, 1.01)}   # box area / image area
MIN_PAIRS = 20            # (image, label) pairs an area bin needs before a recall in it is read
PUBLISHED_ONLY = "published only: the book does not train it (hand-crafted features, other papers' pipelines)"
HAND_PICKED = "the figures show images the authors chose; 06.small_objects.coco measures the same on every image"


def published_table(name: str):
    """A published table with the paper's rows renamed to the book's rows that stand in for them."""
    return report.reference(name).rename(index={v: k for k, v in PUBLISHED_NAMES.items()})


def region_statistics(regions: torch.Tensor, counts: torch.Tensor, boxes, image_sizes, side: int) -> dict:
    """Per image with object boxes, over its regions (the whole image not counted): "objects"
    (object-box centres inside a region, mean), "multi" (share of regions holding two centres or
    more), "area" (region area / image area, mean); "images": their indices."""
    out = {"images": [], "objects": [], "multi": [], "area": []}
    for i, bs in enumerate(boxes):
        n = int(counts[i])
        if not bs or n == 0:
            continue
        W, H = image_sizes[i]
        c = torch.tensor([[(b.x + b.w / 2) * side / W, (b.y + b.h / 2) * side / H] for b in bs])
        r = regions[i, :n].float()
        inside = ((c[None, :, 0] >= r[:, None, 0]) & (c[None, :, 0] <= r[:, None, 2])
                  & (c[None, :, 1] >= r[:, None, 1]) & (c[None, :, 1] <= r[:, None, 3])).sum(1)
        out["images"].append(i)
        out["objects"].append(float(inside.float().mean()))
        out["multi"].append(float((inside >= 2).float().mean()))
        out["area"].append(float(((r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])).clamp_min(0).mean()) / side ** 2)
    return {k: torch.tensor(v, dtype=torch.long if k == "images" else torch.float64) for k, v in out.items()}


def area_bin_pairs(test, bins=AREA_BINS) -> dict:
    """(image, label) pairs with a box whose largest box falls in each area bin."""
    _, sizes, _ = metrics.object_size_hits(torch.zeros_like(test.labels, dtype=torch.bool), test.boxes, test.image_sizes)
    return {name: int(((sizes ** 2 >= lo) & (sizes ** 2 < hi)).sum()) for name, (lo, hi) in bins.items()}


def map_at_k_resampled(scores: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, k: int = 10,
                       chunk: int = 250) -> torch.Tensor:
    """``metrics.map_at_k`` (per class, normalised by min(k, positives)) on image resamples
    ``weights`` [R, N] (counts: an image drawn w times is w adjacent copies in its class's
    ranking) -> [R], from one sort per class. A relevant image with e copies in the top k after
    B copies (H of them relevant) adds sum_{u=1..e} (H + u) / (B + u) = e - (B - H)(h(B + e) - h(B)),
    h the harmonic numbers."""
    y = targets.double().t()                                                   # [C, N]
    order = torch.sort(scores.t().double(), dim=1, descending=True, stable=True).indices
    rel = torch.gather(y, 1, order)                                            # [C, N] in rank order
    depth = min(order.shape[1], 10 * k)                                        # ranks that can reach the top k
    harmonic = torch.cat([torch.zeros(1, dtype=torch.float64),
                          (1 / torch.arange(1, 2 * k + 1, dtype=torch.float64)).cumsum(0)])
    out = []
    for w in weights.double().split(chunk):
        wr = w[:, order[:, :depth]]                                            # [R, C, depth]
        d = depth if bool((wr.sum(-1) >= k).all()) else order.shape[1]         # rarely: every rank
        wr, r = w[:, order[:, :d]], rel[:, :d]
        before = (wr.cumsum(-1) - wr).clamp(max=k)                             # copies ranked above (capped)
        hits = (wr * r).cumsum(-1) - wr * r
        copies = torch.minimum(wr, k - before)                                 # copies inside the top k
        b, e = before.long(), copies.long()
        ap = (r * (copies - (before - hits) * (harmonic[b + e] - harmonic[b]))).sum(-1)   # [R, C]
        positives = w @ y.t()                                                  # [R, C]
        has = positives > 0
        out.append((ap / positives.clamp(max=k).clamp_min(1e-12) * has).sum(1) / has.sum(1).clamp_min(1))
    return torch.cat(out)


def _size_recall(pred, test, weights, metric: str) -> torch.Tensor:
    """Recall of the smallest third of the (image, label) pairs, or that minus the largest third's."""
    images, sizes, hits = metrics.object_size_hits(pred, test.boxes, test.image_sizes)
    bucket, _ = metrics.size_buckets(sizes)
    small = metrics.bucket_recall(hits, images, bucket, 0, weights)
    return small if metric == "recall of small objects" else small - metrics.bucket_recall(hits, images, bucket, 2, weights)


def _area_recall(pred, test, weights, area_bin: str) -> torch.Tensor:
    images, sizes, hits = metrics.object_size_hits(pred, test.boxes, test.image_sizes)
    lo, hi = AREA_BINS[area_bin]
    inside = ((sizes ** 2 >= lo) & (sizes ** 2 < hi)).long()
    return metrics.bucket_recall(hits, images, inside, 1, weights)


def _fig8_classes(test) -> list[int]:
    return [test.classes.index(c) for c in FIG8_CLASSES if c in test.classes]


def claim_values(claim: claims.Claim, evidence: shared.Evidence, weights: torch.Tensor) -> dict:
    """{metric: (better [S, 1+R], worse [S, 1+R])} for ``claim`` on image resamples ``weights``.

    ``evidence.results``: ``run_all``'s results (paper or baseline row names). Rows: ``ROW_SPECS``, the paper's
    names of the baselines, the stages as "localization layer" (one per training seed) / "selective
    search" (fixed), and the
    object-area bins of ``AREA_BINS`` (with metrics "recall <row>", seed-paired). Metrics: "mAP",
    "mAP@10" (per class), "AP <class>", "AP Fig. 8 classes" (mean AP of those of ``FIG8_CLASSES`` in
    the data), "CP" ... "OF1" (top 3, no floor) and "<metric> (floor 0.5)", "recall of small
    objects" and "recall gain small − large" (smallest / largest third of the (image, label)
    pairs by box size), "region area", "multi-object regions", "objects per region", "epochs to the best
    hold-out loss", and ``CLASSES_WON`` (a pair metric: per training seed s, the share of the classes
    whose AP the better row's seed s wins, a tie counting half, against the constant one half)."""
    results, seeds = evidence.results, evidence.seeds
    d, test = claim.dataset, evidence.data[claim.dataset].test
    y, ign = test.labels, test.ignore

    def runs(row):   # results under the paper's names (``table_results``) or the baselines' own
        key = row if (d, row, seeds[0]) in results else BASELINE_ROWS.get(row, row)
        return [results[d, key, t] for t in seeds]

    def values(row: str, metric: str) -> torch.Tensor:
        if row in STAGE_ROWS:   # the layer: one per training seed; selective search: one (fixed)
            key = {"region area": "area", "multi-object regions": "multi", "objects per region": "objects"}[metric]
            out = []
            for t in (seeds if row in SEEDED_STAGES else seeds[:1]):
                st = results[d, STAGE_ROWS[row], t]
                stats = region_statistics(st["regions_test"], st["counts_test"], test.boxes, test.image_sizes,
                                          st["side"])
                out.append(metrics.weighted_mean(stats["images"], stats[key], weights))
            return torch.stack(out)
        if row in AREA_BINS:                                   # metric "recall <row>": that row's recall in the bin
            model = metric.removeprefix("recall ")
            return torch.stack([_area_recall(predictions(r, model, ignore=ign), test, weights, row)
                                for r in runs(model)])
        if metric == "epochs to the best hold-out loss":      # a property of training: no image variance
            return torch.tensor([[float(r["history"][-1]["best_epoch"])] for r in runs(row)]).expand(-1, len(weights))
        scores = [r["scores"] for r in runs(row)]
        if metric == "mAP":
            return metrics.map_values(scores, y, weights, ign)
        if metric == "mAP@10":
            return torch.stack([map_at_k_resampled(sc, y, weights) for sc in scores])
        if metric.startswith("AP "):
            cls = _fig8_classes(test) if metric == "AP Fig. 8 classes" else [test.classes.index(metric[3:])]
            return torch.stack([metrics.resampled_ap(sc, y, weights, ign)[:, cls].nanmean(1) for sc in scores])
        floor = 0.5 if metric.endswith(" (floor 0.5)") else None
        name = metric.removesuffix(" (floor 0.5)")
        preds = [predictions(r, row, floor, ignore=ign) for r in runs(row)]
        if name.startswith("recall ") and name != "recall":
            return torch.stack([_size_recall(p, test, weights, name) for p in preds])
        return metrics.set_metric_values(preds, y, weights, name, ign)

    def classes_won() -> tuple[torch.Tensor, torch.Tensor]:
        out = []
        for rb, rw in zip(runs(claim.better), runs(claim.worse)):
            a, b = (metrics.resampled_ap(r["scores"], y, weights, ign) for r in (rb, rw))   # [1+R, C]
            ok = a.isfinite() & b.isfinite()                                   # classes with a positive
            won = ((a > b).double() + 0.5 * (a == b).double()) * ok
            out.append(won.sum(1) / ok.sum(1).clamp_min(1))
        share = torch.stack(out)
        return share, torch.full_like(share, 0.5)

    return {m: classes_won() if m == CLASSES_WON else (values(claim.better, m), values(claim.worse, m))
            for m in claim.metrics}


BOX_METRICS = ("recall of small objects", "recall gain small − large", "region area", "multi-object regions")


def _testability(claim: claims.Claim, test, trained) -> tuple[bool, str]:
    """(testable, why not): decided from the test data and the rows this book trains on it
    (``trained``), never from outputs."""
    if "hand-picked examples" in claim.metrics:
        return False, HAND_PICKED
    needs = [("RLSD+ft-RPN" if r == FT_LAYER else r) for r in (claim.better, claim.worse)]   # the layer: its row's data
    missing = [r for r in needs if r not in trained and r not in STAGE_ROWS and r not in AREA_BINS]
    if missing and set(missing) <= set(ROW_SPECS):   # a row of the book's grid, not trained on this data set
        return False, f"{', '.join(missing)}: not trained on this data set (RLSD+ft-RPN needs object boxes)"
    if missing:
        return False, f"{', '.join(missing)}: {PUBLISHED_ONLY}"
    needs_boxes = claim.better in AREA_BINS or claim.better in STAGE_ROWS or set(claim.metrics) & set(BOX_METRICS)
    if needs_boxes and test.boxes is None:
        return False, "this data set has no object boxes"
    if claim.better in AREA_BINS:
        pairs = area_bin_pairs(test)
        if min(pairs.values()) < MIN_PAIRS:
            return False, (f"too few objects in an area bin ({', '.join(f'{k}: {v}' for k, v in pairs.items())}; "
                           f"{MIN_PAIRS} needed)")
    absent = [m[3:] for m in claim.metrics if m.startswith("AP ") and m != "AP Fig. 8 classes" and m[3:] not in test.classes]
    if absent or ("AP Fig. 8 classes" in claim.metrics and not _fig8_classes(test)):
        return False, f"class not in this data set: {', '.join(absent) or ', '.join(FIG8_CLASSES)}"
    return True, ""


def _paper_name(row: str) -> str:
    """The paper's row that ours stands in for (MCG for selective search, a control for its parent)."""
    return PUBLISHED_NAMES.get(STAND_INS.get(row, row), STAND_INS.get(row, row))


def _classes_won_published(table, better: str, worse: str) -> float | None:
    """The paper's own share of classes won (Table I's per-class APs), minus one half, in points."""
    classes = [c for c in table.columns if c not in ("mAP",)]
    try:
        a, b = table.loc[better, classes].astype(float), table.loc[worse, classes].astype(float)
    except KeyError:
        return None
    ok = a.notna() & b.notna()
    if not ok.any():
        return None
    return round(100 * float(((a > b) + 0.5 * (a == b))[ok].mean()) - 50, 1)


def published_deltas(claim: claims.Claim) -> dict:
    """{metric: the Δ (points) of the claim's two rows in the paper's own table, or None}; a control
    row reads its parent's published row (the paper's protocol of the row it stands in for)."""
    tables = [TABLES[claim.dataset]] + (["rlsd_table2_voc2007_top3"] if claim.dataset == "voc" else [])
    better, worse = _paper_name(claim.better), _paper_name(claim.worse)
    out = {}
    for m in claim.metrics:
        if m == CLASSES_WON:
            out[m] = _classes_won_published(report.reference(TABLES[claim.dataset]), better, worse)
            continue
        column = m[3:] if m.startswith("AP ") else m
        found = [claims.published_delta(report.reference(t), better, worse, column) for t in tables]
        out[m] = next((x for x in found if x is not None), None)
    return out


def paper_protocol(claim: claims.Claim, evidence: shared.Evidence, scale: float) -> dict:
    """A claim whose primary row is a control (``STAND_INS``) shows, not voted, the same metrics'
    Δ (points, seed means on the test set) against the paper's row it stands in for, unless its
    original test (an amendment) already compares that row."""
    parent = STAND_INS.get(claim.worse)
    if parent is None or claim.original_worse == parent:
        return {}
    paper = dataclasses.replace(claim, worse=parent, amended="", original_test="", original_margin=None,
                                original_better="", original_worse="", original_metrics=(), original_direction="",
                                original_paired="", original_fixed=(), amendment_reason="")
    ones = torch.ones(1, len(evidence.data[claim.dataset].test.labels), dtype=torch.float64)
    return {f"{m} vs {parent}": scale * float(b[:, 0].mean() - w[:, 0].mean())
            for m, (b, w) in claim_values(paper, evidence, ones).items()}


def control_claims(datasets) -> list[claims.Claim]:
    """``CONTROLS`` on ``datasets`` as claims of the book (mAP), evaluated the claims' way."""
    return [claims.Claim(f"06.control_{i}.{d}", "06_rlsd", d, what, f"control for {serves}", better, worse, ("mAP",),
                         quoted=False) for d in datasets for i, (better, worse, what, serves) in enumerate(CONTROLS)]


def claim_options(claim: claims.Claim, evidence: shared.Evidence) -> dict:
    """The keyword arguments of ``claims.evaluate`` besides the values: testable and why not (from
    the data and the rows trained on the claim's data set), the paper's Δ and the scale (points
    for fractions; epochs and objects as they are)."""
    testable, why = _testability(claim, evidence.data[claim.dataset].test,
                                 evidence.trained.get(claim.dataset, set()))
    raw = {"epochs to the best hold-out loss", "objects per region"}
    scale = 1.0 if set(claim.metrics) <= raw else 100.0
    return {"testable": testable, "why_not": why, "published": published_deltas(claim), "scale": scale,
            "secondary": paper_protocol(claim, evidence, scale) if testable else {}}


# --- what the run says (the chapter's closing paragraph, generated from the claims table) ---------

#: (what is compared, the claims' short ids): the paper's argument in its order
RUN_SAYS = (("RLSD against the global model trained as long (CNN+LSTM (continued))", ("rlsd_vs_cnnlstm",)),
            ("RLSD against Multi-CNN (2-fc)", ("rlsd_vs_multicnn",)),
            ("RLSD against the same LSTM on selective-search proposals (for MCG)", ("vs_mcg",)),
            ("RLSD within 2 points of its upper bound RLSD+ft-RPN", ("close_to_upper_bound",)),
            ("small objects against CNN+LSTM", ("small_classes", "small_objects")),
            ("the layer's regions against the proposals (bigger, several objects)", ("regions_vs_proposals",)))


def _said(row: dict, names: dict) -> str:
    """'supported on MS-COCO (mAP Δ +4.3 [+2.1, +6.5])', with the original test's verdict if amended."""
    numbers = "; ".join(f"{m['metric']} Δ {m['delta']:+.1f} [{m['low']:+.1f}, {m['high']:+.1f}]"
                        for m in row["measurements"])
    original = f", original test {row['original verdict']}" if row.get("original verdict") else ""
    return (f"{row['verdict']} on {names.get(row['data set'], row['data set'])}"
            + (f" ({numbers}{original})" if numbers or original else ""))


def run_says(rows: list[dict], names: dict) -> str:
    """The chapter's "What this run says": one sentence per step of the paper's argument
    (``RUN_SAYS``), then the count of the paper's own sentences by verdict, every number read
    from the claims table's rows (``chapter.claims_section``)."""
    short = lambda r: r["id"].split(".")[1]  # noqa: E731
    out = []
    for what, ids in RUN_SAYS:
        found = [_said(r, names) for r in rows if short(r) in ids]
        if found:
            out.append(f"{what[0].upper()}{what[1:]}: {', '.join(found)}.")
    verdict = {r["id"]: r["verdict"] for r in rows}
    helped = any(v == claims.SUPPORTED for k, v in verdict.items() if k.startswith("06.rlsd_vs_cnnlstm."))
    mechanism = [v for k, v in verdict.items() if k.startswith("06.regions_vs_proposals.")]
    if helped and mechanism and all(v == claims.CONTRADICTED for v in mechanism):
        out.append("So the regions help on some data here, but not through regions bigger than the proposals or "
                   "holding more objects: the mechanism the paper credits does not appear in this run.")
    quoted = [r["verdict"] for r in rows if r["claim"].startswith("“")]
    counts = {v: quoted.count(v) for v in claims.VERDICTS}
    out.append(f"Of the {len(quoted)} rows that test the paper's own words (one per comparison and data set), "
               f"{counts[claims.SUPPORTED]} are supported, {counts[claims.CONTRADICTED]} contradicted, "
               f"{counts[claims.NOT_RESOLVED]} not resolved and {counts[claims.NOT_TESTABLE]} not testable here.")
    return " ".join(out)
