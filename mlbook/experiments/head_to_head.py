"""Chapter 08: every method head to head under one protocol (``protocol.Protocol``).

The rows: a plain BCE network (a linear layer on the pooled maps, the baseline every row is
compared with); the papers' shared baselines (softmax, WARP, KNN, CNN-RNN); each registered
paper's own method (``papers.Paper.method_label``, trained by the paper's face,
``protocol_run``); and two of today's yardsticks: the asymmetric loss (ASL, Ben-Baruch, Ridnik et
al., ICCV 2021: the BCE network's linear layer with ASL at its published defaults, so that the
two rows differ in the loss alone) and a Query2Label decoder (Liu et al. 2021: label queries
cross-attending the maps, trained with ASL as in its paper).

Each row's learning rate (and its method's knob: KNN's k, the ranking model's margin) comes
from one grid, chosen by one rule on the hold-out part with the first training seed: the grid
points are runs (rows named "<row> [lr=..]"), and the row's runs with every training seed, after
them in the grid, read that choice. Results hold test and hold-out scores per label; metrics, the
threshold of the thresholded metrics and the claims' values are computed from them after loading.
Not a paper: the chapter's module (``papers.COMPARISON``), with the face's functions.
"""
from __future__ import annotations

import re

import pandas as pd
import torch

from .. import claims, metrics, papers
from ..costs import RunCost, map_input, maps_label, measured, outputs_bytes, row_disk, training_memory, trunk_net
from ..data import NUM_CLASSES
from ..profiles import get_profile
from . import features, shared
from .head_to_head_rows import BASELINE, KNN_KS, OWN_ROWS, YARDSTICKS, own_network, own_run
from .protocol import Protocol, holdout_value, point_label, protocol_for, threshold

DATASETS = papers.COMPARISON_DATASETS
YARDSTICK = "ASL"
OPTIONS = ("vg_root", "proposals_root", "word_vectors")   # handed to the papers' faces that name them


def paper_rows() -> dict[str, papers.Paper]:
    """{row name: paper}: each registered paper's own method, by the label the leaderboard prints."""
    return {p.method_label: p for p in papers.PAPERS}


def rows(profile) -> tuple[str, ...]:
    """Every row of the leaderboard: the BCE network, the shared baselines, the papers' methods, the yardsticks."""
    own = [r for r in OWN_ROWS if r not in YARDSTICKS]
    return (*own, *paper_rows(), *YARDSTICKS)


BACKBONE = "seed backbone"


def stages(profile) -> tuple[str, ...]:
    """The backbone of a training seed (demo, smoke: ``Protocol.seeded_backbone``) and its frozen maps,
    computed before the rows read them; the grid points of each row are runs of the grid (``grid``)."""
    return (BACKBONE,) if protocol_for(profile).seeded_backbone else ()


def points(row: str, profile) -> list[tuple[float, dict]]:
    """The grid of a row: (learning rate, knob) pairs, in the order a tie is broken."""
    protocol = protocol_for(profile)
    if row == "KNN":
        return [(0.0, {"k": k}) for k in KNN_KS]
    knobs = paper_rows()[row].experiments().protocol_knobs(profile) if row in paper_rows() else ({},)
    return [(lr, dict(knob)) for lr in protocol.lrs for knob in knobs]


def point_row(row: str, lr: float, knob: dict) -> str:
    """The name of one grid point's run: "Query2Label [lr=0.001]"."""
    return f"{row} [{point_label(lr, knob)}]"


def grid(profile, datasets=DATASETS, seeds=(0, 1, 2)) -> list[shared.Run]:
    """Every run of chapter 08: the frozen maps; every row's grid points with the first training seed;
    every row with every training seed at the point chosen on the hold-out part (it reads the points'
    results, so it follows them in the queue). One wave, the longest rows first (``heavy_first``): a
    row's seeds start as soon as its points are done, and the workers finish together."""
    protocol = protocol_for(profile)
    order = sorted(rows(profile), key=lambda r: heavy_first(r, profile))
    runs = shared.feature_runs(datasets, trunk=protocol.trunk) + seed_backbone_runs(profile, datasets, seeds)
    runs += [shared.Run("head_to_head", point_row(r, lr, knob), d, seeds[0]) for r in order
             for lr, knob in points(r, profile) for d in datasets]
    runs += [shared.Run("head_to_head", r, d, s) for r in order for s in seeds for d in datasets]
    return runs


def seed_backbone_runs(profile, datasets=DATASETS, seeds=(0, 1, 2)) -> list[shared.Run]:
    """The backbone (and frozen maps) of every training seed after the first, where the protocol trains
    one per seed (demo, smoke). Chapter 03 trains them beside the shared backbones (every backbone the
    demo trains from scratch, side by side on all cores); this chapter then loads them."""
    return [shared.Run("head_to_head", BACKBONE, d, s, wave=-1) for s in list(seeds)[1:] for d in datasets
            if BACKBONE in stages(profile)]


def heavy_first(row: str, profile) -> tuple:
    """A row's place in the workers' queue: the papers' methods (most grid points, then the longest
    chapter first), Query2Label, CNN-RNN, then the linear heads and KNN (a fraction of a second each)."""
    if row in paper_rows():
        return (0, -len(points(row, profile)), -paper_rows()[row].demo_seconds)
    return (1 + ("Query2Label", "CNN-RNN").index(row), 0, 0) if row in ("Query2Label", "CNN-RNN") else (3, 0, 0)


def parse_row(row: str, profile) -> tuple[str, tuple[float, dict] | None]:
    """"Query2Label [lr=0.001]" -> ("Query2Label", (0.001, {})); a plain row -> (row, None)."""
    match = re.fullmatch(r"(.*) \[(.*)\]", row)
    name = match.group(1) if match else row
    if name not in rows(profile):
        raise ValueError(f"unknown head-to-head row {row!r}; the rows: {', '.join(rows(profile))}")
    if not match:
        return name, None
    for lr, knob in points(name, profile):
        if point_label(lr, knob) == match.group(2):
            return name, (lr, knob)
    raise ValueError(f"{row!r}: no such grid point of {name}; its grid: "
                     f"{', '.join(point_label(*p) for p in points(name, profile))}")


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, force: bool = False, **options) -> dict:
    """One grid point ("<row> [lr=..]") or one row at its chosen point with ``train_seed`` (cached).
    Returns the protocol's record (``protocol.record``: test and hold-out scores, history, params,
    FLOPs) with "point" and, after loading, "threshold" and "metrics"."""
    profile = get_profile(profile)
    if row in stages(profile):
        protocol = protocol_for(profile)
        with protocol.backbone(train_seed, seed):
            return features.backbone_features(dataset, profile, root, seed, device, weights, trunk=protocol.trunk)
    name, point = parse_row(row, profile)
    kw = dict(root=root, seed=seed, device=device, weights=weights, **options)
    if point is None:
        point = choose(name, dataset, profile, **kw)
    result = _point_run(name, point, dataset, profile, train_seed=train_seed, force=force, **kw)
    ctx = shared.context(dataset, profile, root, seed)
    return with_metrics({**result, "point": point_label(*point)}, ctx, protocol_for(profile).top_k)


def choose(row: str, dataset: str, profile, **kw) -> tuple[float, dict]:
    """The grid point of ``row`` with the best hold-out criterion under training seed 0 (``grid_values``)."""
    ctx = shared.context(dataset, profile, kw.get("root"), kw.get("seed", 0))
    return grid_values(row, profile, ctx, lambda p: _point_run(row, p, dataset, profile, train_seed=0, **kw))[0]


def grid_values(row: str, profile, ctx: shared.RunContext, result_of) -> tuple[tuple[float, dict], dict]:
    """(the chosen point, {point label: hold-out criterion}) of ``row``: each grid point's result
    (``result_of(point)``) read on the hold-out images (``protocol.SELECT_BY``); the first point in
    grid order wins a tie."""
    val = ctx.holdout[1]
    y, ign = ctx.data.train.labels[val], shared.ignore_mask(ctx.data.train)[val]
    grid = points(row, profile)
    values = [holdout_value(result_of(p), y, ign) for p in grid]
    best = max(range(len(grid)), key=values.__getitem__)          # max keeps the first of equal values
    return grid[best], {point_label(*p): v for p, v in zip(grid, values)}


def _point_run(row, point, dataset, profile, *, train_seed: int, force: bool = False, root=None, seed: int = 0,
               device: str = "auto", weights=None, **options) -> dict:
    lr, knob = point
    protocol = protocol_for(profile)
    with protocol.backbone(train_seed, seed):   # every row of a seed: its backbone
        if row in OWN_ROWS:
            return own_run(row, dataset, profile, protocol, lr=lr, knob=knob, root=root, seed=seed,
                           train_seed=train_seed, device=device, weights=weights, force=force)
        module = paper_rows()[row].experiments()
        named = {k: v for k, v in options.items() if k in getattr(module, "OPTIONS", ())}
        return module.protocol_run(dataset, profile, protocol, lr=lr, knob=knob, root=root, seed=seed,
                                   train_seed=train_seed, device=device, weights=weights, force=force, **named)


def with_metrics(result: dict, ctx: shared.RunContext, top_k: int = 3) -> dict:
    """mAP, CF1/OF1 of the top-k labels, and CF1/OF1 at the threshold chosen on the hold-out part
    (``protocol.threshold``, the one rule of every row)."""
    out = dict(result)
    test, train = ctx.data.test, ctx.data.train
    val = ctx.holdout[1]
    out["threshold"] = threshold(result["holdout_scores"], train.labels[val], shared.ignore_mask(train)[val])
    top = metrics.predict_labels(result["scores"], k=top_k, valid=None if test.ignore is None else ~test.ignore)
    at = result["scores"] >= out["threshold"]
    m_top = metrics.prf_of_predictions(top, test.labels, test.ignore)
    m_thr = metrics.prf_of_predictions(at, test.labels, test.ignore)
    out["pred"], out["pred_threshold"] = top, at
    out["metrics"] = {"mAP": metrics.mean_average_precision(result["scores"], test.labels, test.ignore),
                      **{f"{k}@{top_k}": m_top[k] for k in ("CF1", "OF1")},
                      **{f"{k}@t": m_thr[k] for k in ("CF1", "OF1")}}
    return out


# --- the values a claim compares -------------------------------------------------------------------

METRICS = ("mAP", "CF1@3", "OF1@3", "CF1@t", "OF1@t")


def claim_values(claim: claims.Claim, evidence: shared.Evidence, weights: torch.Tensor) -> dict:
    """{metric: (better [S, 1+R], worse [S, 1+R])} on the test images' resamples ``weights``: mAP from
    the scores; CF1/OF1 from the top-3 sets ("@3") or the hold-out threshold's sets ("@t")."""
    d, seeds = claim.dataset, evidence.seeds
    test = evidence.data[d].test
    y, ign = test.labels, test.ignore

    def values(row: str, metric: str) -> torch.Tensor:
        runs = [evidence.results[d, row, t] for t in seeds]
        if metric == "mAP":
            return metrics.map_values([r["scores"] for r in runs], y, weights, ign)
        name, _, protocol = metric.partition("@")
        preds = [r["pred"] if protocol != "t" else r["pred_threshold"] for r in runs]
        return metrics.set_metric_values(preds, y, weights, name, ign)

    return {m: (values(claim.better, m), values(claim.worse, m)) for m in claim.metrics}


def claim_options(claim: claims.Claim, evidence: shared.Evidence) -> dict:
    """Testable where both rows were trained on the data set; no published Δ (the book's own questions)."""
    missing = [r for r in (claim.better, claim.worse) if r not in evidence.trained.get(claim.dataset, ())]
    why = f"{', '.join(missing)}: not trained on this data set" if missing else ""
    return {"testable": not missing, "why_not": why, "published": {}}


def leaderboard(results: dict, dataset: str, profile, seeds) -> list[dict]:
    """One record per row: each metric's mean over the training seeds (points) and its seeds'
    standard deviation, the chosen grid point, trained parameters and the head's forward MFLOPs."""
    out = []
    for row in rows(profile):
        runs = [results[dataset, row, t] for t in seeds]
        rec = {"row": row, "point": runs[0]["point"], "params": runs[0]["params"], "MFLOPs": runs[0]["flops"] / 1e6}
        for m in METRICS:
            v = torch.tensor([100 * float(r["metrics"][m]) for r in runs], dtype=torch.float64)
            rec[m] = float(v.mean())
            rec[f"{m} sd"] = float(v.std()) if len(v) > 1 else float("nan")
        out.append(rec)
    return out


# --- what the chapter shows -----------------------------------------------------------------------

def train_img_s(result: dict) -> float | None:
    """Training images per second of a run's epochs (a run log's number, never a table's)."""
    history = result.get("history") or []
    seconds = sum(h.get("seconds", 0.0) for h in history)
    return sum(h.get("images", 0) for h in history) / seconds if seconds > 0 else None


def speed_table(results: dict, grid: list, bench: list[dict]) -> pd.DataFrame:
    """Per row: its training images per second in this chapter's runs (median over its runs, both data
    sets: the whole row, a paper's method included) and, for the chapter's own rows, ``mlbook bench
    head-to-head``'s training and inference rates of the head and their ratios to the BCE network's.
    Formatted as text ("812 img/s", "0.39× BCE"): a run log's numbers, shown, never compared (nbval masks them)."""
    measured: dict[str, list[float]] = {}
    for r in grid:
        if r.paper == "head_to_head" and r.row != BACKBONE and "[" not in r.row:
            rate = train_img_s(results[r.key])
            if rate:
                measured.setdefault(r.row, []).append(rate)
    benched = {b["row"]: b for b in bench}
    out = {}
    for row in dict.fromkeys([*measured, *benched]):
        out[row] = {"training, this chapter's runs":
                    f"{pd.Series(measured[row]).median():.0f} img/s" if row in measured else ""}
        if b := benched.get(row):
            out[row].update({"head training (bench)": f"{b['train_img_s']:.0f} img/s",
                             "head inference (bench)": f"{b['infer_img_s']:.0f} img/s",
                             "training speed (bench)": f"{b['train_ratio']:.2g}× BCE",
                             "inference speed (bench)": f"{b['infer_ratio']:.2g}× BCE"})
    return pd.DataFrame(out).T.fillna("").rename_axis("row")


def choices(results: dict, profile, datasets, setting: shared.Setting) -> pd.DataFrame:
    """Per row and data set: the hold-out mAP (points) of each grid point with training seed 0, and the
    point chosen (``choose``'s rule, read from the same results)."""
    table = {}
    for d in datasets:
        ctx = shared.context(d, setting.profile, setting.roots.get(d), setting.seed)
        for r in rows(profile):
            best, values = grid_values(r, profile, ctx, lambda p: results[d, point_row(r, *p), 0])
            table[(d, r)] = {"hold-out mAP per grid point": " | ".join(f"{k}: {100 * v:.1f}" for k, v in values.items()),
                             "chosen": point_label(*best)}
    return pd.DataFrame(table).T.rename_axis(["data set", "row"])


def seed_backbones(setting: shared.Setting, datasets, seeds) -> pd.DataFrame:
    """Per data set and training seed: the backbone the seed's rows read (its training seed) and the
    test mAP (points) of its own GAP + linear head (``features.shared_backbone``'s, loaded); one row
    per data set where the trunk is not trained here (ImageNet weights, the same for every seed)."""
    protocol = protocol_for(setting.profile)
    out = []
    for d in datasets:
        for s in (seeds if protocol.seeded_backbone else seeds[:1]):
            b = protocol.backbone_seed(s, setting.seed)
            with shared.backbone_seed(b):
                _, result = features.shared_backbone(d, setting.profile, setting.roots.get(d), setting.seed,
                                                     setting.device, setting.weights, trunk=protocol.trunk)
            out.append({"data set": d, "training seed": s if protocol.seeded_backbone else "every",
                        "backbone": f"small CNN, seed {b}" if b is not None else protocol.trunk,
                        "its own head's test mAP": None if result["test_mAP"] is None else round(100 * result["test_mAP"], 1)})
    return pd.DataFrame(out)


def question(claim: claims.Claim) -> str:
    """Which of the chapter's two questions a claim asks: "beats BCE" or "near ASL"."""
    return "beats BCE" if claim.worse == BASELINE else "near ASL"


def verdicts(claim_rows: list[dict]) -> dict:
    """{(data set, row, question): verdict} of the chapter's claims (``question``)."""
    registry = {c.id: c for c in claims.load(papers.COMPARISON_CHAPTER)}
    return {(registry[r["id"]].dataset, registry[r["id"]].better, question(registry[r["id"]])): r["verdict"]
            for r in claim_rows}


def forest_rows(claim_rows: list[dict]) -> list[dict]:
    """The "beats BCE" claims as the forest plot reads them: row, data set, Δ mAP, interval, verdict."""
    registry = {c.id: c for c in claims.load(papers.COMPARISON_CHAPTER)}
    out = []
    for r in claim_rows:
        c = registry[r["id"]]
        if question(c) == "beats BCE" and r["measurements"]:
            m = r["measurements"][0]
            out.append({"row": c.better, "dataset": c.dataset, "delta": m["delta"], "low": m["low"], "high": m["high"],
                        "verdict": r["verdict"]})
    return out


def leaderboard_table(board: list[dict], verdicts_: dict, dataset: str) -> pd.DataFrame:
    """A leaderboard as the chapter prints it: "mean (sd)" per metric, params, MFLOPs, the two verdicts."""
    out = {}
    for rec in board:
        row = {m: f"{rec[m]:.1f} ({rec[m + ' sd']:.1f})" for m in METRICS}
        verdict = lambda q, own: "—" if rec["row"] == own else verdicts_.get((dataset, rec["row"], q), "")  # noqa: E731
        row.update({"params": f"{rec['params']:,}", "head MFLOPs": f"{rec['MFLOPs']:.3f}", "point": rec["point"],
                    "beats BCE network": verdict("beats BCE", BASELINE), "within 1 of ASL": verdict("near ASL", YARDSTICK)})
        out[rec["row"]] = row
    return pd.DataFrame(out).T.rename_axis("row")


def trunk_mflops(profile, protocol: Protocol) -> float:
    """Forward MFLOPs of the frozen trunk on one image (counted as ``mlbook plan`` counts it)."""
    name = features.trunk_of(profile, protocol.trunk)
    return trunk_net(name, get_profile(profile).size_for(name)).flops / 1e6


PUBLISHED_COLUMNS = {"mAP": "mAP", "CF1": "CF1@3", "OF1": "OF1@3", "top3_CF1": "CF1@3", "top3_OF1": "OF1@3"}


def published_yardsticks(reference) -> pd.DataFrame:
    """Published numbers only: each paper's own method row (``Paper.published_row``) in its COCO and
    NUS-WIDE top-3 tables, with its trunk, beside ``yardsticks_published.csv`` (ASL, Query2Label,
    ML-GCN at their stated trunk and size, each with its source: a repository file at a commit, or
    a results page). ``reference``: ``report.reference``."""
    out = []
    for p in papers.PAPERS:
        for name in p.tables:
            dataset = next((d for d in DATASETS if d in name), None)
            if dataset is None or "top5" in name or "voting" in name:   # top-3 tables only
                continue
            table = reference(name)
            if p.published_row not in table.index:
                continue
            values = {PUBLISHED_COLUMNS[c]: table.loc[p.published_row, c] for c in PUBLISHED_COLUMNS if c in table.columns}
            out.append({"method": f"{p.title}: {p.published_row}", "data set": dataset, "trunk": p.trunk_use,
                        **{k: v for k, v in values.items() if pd.notna(v)}, "source": f"mlbook/reference/{name}.csv"})
    yard = reference("yardsticks_published").reset_index()
    yard = yard[yard["metric"].isin(["mAP", "CF1@3", "OF1@3"])]
    for (method, venue, dataset, trunk, size, pre, source, where), part in yard.groupby(
            ["method", "venue", "dataset", "trunk", "input_size", "pretraining", "source", "source_table"],
            dropna=False, sort=False):
        label = f"{trunk}, {size:g} px" if pd.notna(size) else (trunk if pd.notna(trunk) else "not stated")
        out.append({"method": f"{method} ({venue})", "data set": dataset,
                    "trunk": label + (f", {pre}" if pd.notna(pre) else ""),
                    **dict(zip(part["metric"], part["published"])), "source": f"{_short(source)} ({where})"})
    table = pd.DataFrame(out).set_index(["data set", "method"]).sort_index(level=0, sort_remaining=False)
    return table[[c for c in ("trunk", "mAP", "CF1@3", "OF1@3", "source") if c in table.columns]]


def _short(source: str) -> str:
    """A source as the table prints it: a repository file without its commit (the CSV keeps it), a page's host."""
    first = source.split(";")[0].strip()
    if first.startswith("http"):
        return first.split("/")[2]
    return re.sub(r"@[0-9a-f]{7,40}", "", first)


def summaries(boards: dict, claim_rows: list[dict], names: dict) -> dict[str, str]:
    """The chapter's prose numbers, from this run: "board_summary", "forest_summary", "cost_summary",
    "discussion" (sentences; every number read from the leaderboards and the claims)."""
    found = verdicts(claim_rows)

    def those(dataset, q, word):
        return [r for (d, r, qq), v in found.items() if d == dataset and qq == q and v == word]

    def listed(items):
        return ", ".join(items) if items else "none"

    board, forest, cost = [], [], []
    for d, rows_ in boards.items():
        best = max(rows_, key=lambda r: r["mAP"])
        base = next(r for r in rows_ if r["row"] == BASELINE)
        board.append(f"On {names[d]} the highest mean mAP is {best['row']}'s, {best['mAP']:.1f}, against "
                     f"{base['mAP']:.1f} for the BCE network.")
        forest.append(f"{names[d]}: beats the BCE network {listed(those(d, 'beats BCE', claims.SUPPORTED))}; "
                      f"below it {listed(those(d, 'beats BCE', claims.CONTRADICTED))}.")
        heavy = max(rows_, key=lambda r: r["MFLOPs"])
        cost.append(f"On {names[d]} the heaviest head, {heavy['row']} ({heavy['MFLOPs']:.2f} MFLOPs), reaches "
                    f"{heavy['mAP']:.1f} mAP against {best['mAP']:.1f} for the best row.")
    both = [r for r in rows_of(boards) if all(found.get((d, r, "beats BCE")) == claims.SUPPORTED for d in boards)]
    near = [r for r in rows_of(boards) if all(found.get((d, r, "near ASL")) == claims.SUPPORTED for d in boards)]
    methods = [p.method_label for p in papers.PAPERS]
    paper_beats = [m for m in methods if any(found.get((d, m, "beats BCE")) == claims.SUPPORTED for d in boards)]
    discussion = (f"Under one protocol, the rows that beat the plain BCE network on both data sets: {listed(both)}. "
                  f"Of the four papers' methods, those that beat it on at least one data set: {listed(paper_beats)}. "
                  f"The rows shown within 1 point of ASL on both data sets: {listed(near)}.")
    return {"board_summary": " ".join(board), "forest_summary": " ".join(forest), "cost_summary": " ".join(cost),
            "discussion": discussion}


def rows_of(boards: dict) -> list[str]:
    return [r["row"] for r in next(iter(boards.values()))]


# --- the full profile's cost (mlbook plan) ---

class _Counted(torch.nn.Module):
    """One of the chapter's own heads on one map batch, as ``costs.measure`` counts it."""

    def __init__(self, model, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, maps):
        x = maps if self.kind == "query2label" else maps.mean(dim=(2, 3))
        if self.kind == "cnn_rnn":
            seq = torch.zeros(x.shape[0], 3, dtype=torch.long, device=x.device)
            return self.model.loss(x, seq)
        return self.model(x)


def cost(run, ctx):
    """A grid point or a seed's run of chapter 08 in the full profile. The chapter's own rows: their head
    on the protocol trunk's maps (streamed or read from disk); a paper's row: priced by its paper's
    ``cost`` of its own method row (as in its chapter, on its own trunk)."""
    protocol = protocol_for(ctx.profile)
    if run.row in stages(ctx.profile):
        stage = shared.Run("features", "backbone features", run.dataset, options=(("trunk", protocol.trunk),))
        return features.cost(stage, ctx)
    name, _ = parse_row(run.row, ctx.profile)
    if name in paper_rows():
        paper = paper_rows()[name]
        own = paper.experiments()
        priced = own.cost(shared.Run(paper.key, own.METHOD_ROW, run.dataset, run.train_seed), ctx)
        priced.run = f"{name}: {priced.run} (priced as its own chapter's row)"
        return priced
    kind, _ = OWN_ROWS[name]
    C = NUM_CLASSES[run.dataset]
    batch = ctx.batch(protocol.batch_size, run.dataset)
    reads = map_input(ctx, protocol.trunk, run.dataset, batch)
    chw = reads["chw"]
    label = maps_label(protocol.trunk, reads["storage"])
    n_train, n_test = ctx.split(run.dataset)
    if kind == "knn":
        return RunCost(ctx.chapter, f"KNN on pooled {label}", run.dataset, 2.0 * chw[0] * n_train, n_test, 1, 1,
                       host_bytes=ctx.peaks(host=(n_train + n_test) * chw[0] * 4 + reads["host"], gpu=0.0)[0],
                       gpu_bytes=0.0, disk_bytes=n_test * C * 4, kept_bytes=n_test * C * 4, maps=reads["storage"])
    net = measured(("head_to_head", kind, chw, C), lambda: _Counted(own_network(kind, chw[0], C, protocol), kind),
                   ((1, *chw),), train=True)
    n_fit, epochs = ctx.train_images(run.dataset, protocol.epochs, protocol.batch_size)
    host, gpu = training_memory(net, batch, "adam")
    host, gpu = ctx.peaks(host=host + reads["host"] + outputs_bytes(n_train + n_test, C), gpu=gpu + reads["gpu"])
    peak, kept = row_disk(reads, net, "adam", n_test * C * 4 * 2)
    forward = net.flops / 3 + reads["flops"]
    return RunCost(ctx.chapter, f"{name} on {label}", run.dataset, net.flops + reads["flops"], n_fit, epochs, 1,
                   (n_train - n_fit + n_test) * forward, host, gpu, peak, maps=reads["storage"], kept_bytes=kept)
