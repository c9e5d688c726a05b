"""Training and evaluating the Order-Free RNN rows of Tables 1-2 (chapter 04), and its claims' values.

One row is a cached experiment (``run``): the model of ``mlbook.models.order_free_rnn``
trained on the frozen features of the paper's trunk (ResNet-152; the shared small CNN in
demo and smoke) on the fit part of the training set, early stopped on its hold-out part,
where the beam-search stopping threshold is also chosen; then decoded on the test split:
the paper's beam search, greedy, beam search with set-merged paths (each under the paper's
rule: every label emitted before the threshold stops the search, a variable number), and a
beam search that runs to exactly k labels (``sequences_topk``, the top-k protocol every
row of a top-k table is scored under).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import torch

from .. import claims, metrics, report
from ..costs import RunCost, map_input, maps_label, measured, outputs_bytes, row_disk, training_memory
from ..data import NUM_CLASSES
from ..decoding import path_label_scores, sequences_to_sets
from ..models import order_free_rnn as order_free_rnn_model
from ..profiles import get_profile
from ..train import fit
from . import baselines, features, shared
from .protocol import Protocol, first_test_image, forward_flops, record, trainable_parameters

TRUNK = "resnet152"          # Sect. "Implementation": frozen ImageNet ResNet-152
OPTIONS = ()


@dataclasses.dataclass(frozen=True)
class Settings:
    """Training and decoding hyper-parameters of a row (Sect. "Implementation")."""
    epochs: int                         # budget: early stopping on the hold-out loss
    batch_size: int
    lr: float = 3e-4                    # Adam, as the paper
    hidden: int = 1000
    att_dim: int = 512
    pred_hidden: int = 512
    keep_prob: float = 0.8
    beam: int = 3
    patience: int = 3
    holdout: float = 0.1                # part of the training set for early stopping and the threshold
    thresholds: tuple = (0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.003, 0.001)
    select_by: str = "OF1+CF1"          # hold-out criterion for the threshold (the paper's rule)
    top_k: int = 3                      # the tables' top-3 protocol


def settings_for(profile) -> Settings:
    """Paper sizes where the backbone is a ResNet; small ones for the demo's small CNN."""
    profile = get_profile(profile)
    if profile.backbone == "small_cnn":
        return Settings(epochs=profile.head_epochs, batch_size=profile.batch_size, lr=3e-3, hidden=128,
                        att_dim=64, pred_hidden=128, patience=profile.patience, holdout=profile.holdout)
    return Settings(epochs=profile.head_epochs, batch_size=profile.batch_size, patience=profile.patience,
                    holdout=profile.holdout)


ROW_OPTIONS = {  # table row name -> model options (``OrderFreeConfig``)
    "Ours": dict(attention=True, order="learned"),
    "Ours (w/o atten)": dict(attention=False, order="learned"),
    "Frequency-first (w/ atten)": dict(attention=True, order="frequency"),
    "Rare-first (w/ atten)": dict(attention=True, order="rare"),
}
BASELINE_ROWS = ("KNN", "Softmax", "WARP", "Resnet-baseline", "CNN-RNN")
DECODINGS = ("sequences", "sequences_greedy", "sequences_merged")
TABLES = {"nuswide": "order_free_rnn_table1_nuswide", "coco": "order_free_rnn_table2_coco"}  # Tables 1, 2


def rows(profile) -> tuple[str, ...]:
    """The rows of Tables 1-2 that ``run`` trains, by the name the tables print (the same in every
    profile): the four Order-Free rows. The tables' other rows, ``BASELINE_ROWS``, are rows of
    ``experiments.baselines``, run on this paper's trunk (``grid``)."""
    return tuple(ROW_OPTIONS)


def stages(profile) -> tuple[str, ...]:
    """None: every row reads the shared frozen features only."""
    return ()


def table_rows(dataset: str) -> list[str]:
    """The rows of the paper's table for ``dataset``, in its order (KNN is in Table 1 only); every
    row for a data set the paper has no table of."""
    if dataset not in TABLES:
        return [*ROW_OPTIONS, *BASELINE_ROWS]
    return list(report.reference(TABLES[dataset]).index)


def grid(profile, datasets, seeds) -> list[shared.Run]:
    """Every run of chapter 04: each row of the data set's table (the four Order-Free rows and
    the baselines), every training seed, all on the paper's trunk (the small CNN in demo/smoke)."""
    runs = shared.feature_runs(datasets, trunk=TRUNK)
    for d in datasets:
        runs += [shared.Run("order_free_rnn", row, d, s)
                 for row in table_rows(d) if row in ROW_OPTIONS for s in seeds]
        baseline_rows = tuple(r for r in table_rows(d) if r in BASELINE_ROWS)
        runs += baselines.grid(profile, [d], seeds, rows=baseline_rows, trunk=TRUNK)
    return runs


def emitted(sequences: torch.Tensor, num_classes: int, top_k: int | None = None) -> torch.Tensor:
    """Decoded sequences -> [N, C] bool: the labels emitted (the first ``top_k`` if given)."""
    return sequences_to_sets(sequences, num_classes, k=top_k) > 0


def select_threshold(decode_fn, val_maps: torch.Tensor, val_labels: torch.Tensor,
                     thresholds, select_by: str = "OF1+CF1") -> tuple[float, list]:
    """Choose the beam-search stopping threshold on hold-out data only, under the paper's
    rule (every emitted label counts). ``decode_fn(maps, threshold) -> sequences``.
    Returns (best threshold, [(threshold, metrics)])."""
    keys = select_by.split("+")
    curve = []
    for tau in thresholds:
        pred = emitted(decode_fn(val_maps, tau), val_labels.shape[1])
        curve.append((float(tau), metrics.prf_of_predictions(pred, val_labels)))
    best = max(curve, key=lambda tm: (sum(tm[1][k] for k in keys), -tm[0]))
    return best[0], curve


def topk_sequences(model: order_free_rnn_model.OrderFreeRNN, maps: torch.Tensor, k: int,
                   beam: int) -> torch.Tensor:
    """[N, k]: the most probable path of exactly k labels (Eq. 11), the beam search run without
    its stopping threshold: the top-k protocol every row of a top-k table is scored under."""
    return model.decode(maps, beam=beam, max_len=k, threshold=0.0)


def fit_order_free(train_maps: torch.Tensor, train_labels: torch.Tensor,
                   cfg: order_free_rnn_model.OrderFreeConfig, s: Settings, *, seed: int = 0, train_seed: int = 0,
                   device: str = "cpu", checkpoint=None, desc: str = "order-free rnn"):
    """Train on the fit part of the training set (early stopping on its hold-out part, where
    the threshold is also chosen). Never sees the test split.
    Returns (model, threshold, hold-out curve, history, max_len)."""
    torch.manual_seed(train_seed)
    fit_idx, val_idx = shared.holdout_split(len(train_labels), s.holdout, seed)
    max_len = max(int(train_labels.sum(1).max().item()), 1)   # largest label count in training
    model = order_free_rnn_model.OrderFreeRNN(cfg)
    tensors = [train_maps, train_labels]
    if cfg.order != "learned":
        tensors.append(order_free_rnn_model.fixed_order_sequences(
            train_labels, order_free_rnn_model.label_rank(train_labels[fit_idx], cfg.order)))
    # frozen maps in memory, on disk or streamed (features.map_rows: a TensorDataset for tensors)
    part = lambda idx: features.map_rows(features.take(train_maps, idx), *(x[idx] for x in tensors[1:]))  # noqa: E731
    history = fit(model, part(fit_idx), lambda m, batch: m.loss(*batch), epochs=s.epochs, batch_size=s.batch_size,
                  device=device, seed=train_seed, val_dataset=part(val_idx), patience=s.patience,
                  make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.lr),
                  checkpoint=checkpoint, desc=desc, progress=False)
    model.eval()   # decoding runs where the model was trained
    # every threshold decoded in one pass over the hold-out maps (streamed maps: one trunk pass, not 12)
    decoded = features.map_apply(lambda x: tuple(model.decode(x, beam=s.beam, max_len=max_len, threshold=t)
                                               for t in s.thresholds), features.take(train_maps, val_idx), device=device)
    decoded = dict(zip(s.thresholds, decoded))
    tau, curve = select_threshold(lambda maps, t: decoded[t], None, train_labels[val_idx], s.thresholds, s.select_by)
    return model, tau, curve, history, max_len


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, settings: dict | None = None, trunk: str = TRUNK,
        force: bool = False) -> dict:
    """Train and evaluate one Order-Free RNN row of Tables 1-2 (a cached experiment).

    Returns {"sequences" (beam search, the paper's rule), "sequences_greedy", "sequences_merged"
    [N_test, max_len], "sequences_topk" [N_test, k], "threshold", "val_curve", "history",
    "max_len", "state_dict", "config"} and, computed after loading, "pred" (top-k),
    "pred_paper", "pred_paper_greedy", "pred_paper_merged" and the matching "metrics*".
    ``trunk``: another frozen trunk (tests).
    """
    profile = get_profile(profile)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))   # ``settings``: overrides (CLI flags)
    opts = ROW_OPTIONS[row]
    name = features.trunk_of(profile, trunk)
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    config = {"chapter": "04_order_free_rnn", "method": row, "version": 5,
              **ctx.key, "backbone": name,
              "image_size": profile.image_size, "weights": features.weights_name(weights, name),
              "settings": dataclasses.asdict(s), "train_seed": train_seed, **opts}

    def compute(folder: Path) -> dict:
        feats = features.backbone_features(dataset, profile, root, seed, device, weights, trunk=name)
        cfg = order_free_rnn_model.OrderFreeConfig(num_classes=data.train.num_classes,
                                                   feat_dim=feats["train"].shape[1], hidden=s.hidden,
                                                   att_dim=s.att_dim, pred_hidden=s.pred_hidden,
                                                   keep_prob=s.keep_prob, **opts)
        model, tau, curve, history, max_len = fit_order_free(
            feats["train"], data.train.labels, cfg, s, seed=seed, train_seed=train_seed, device=device,
            checkpoint=folder / "checkpoint.pt", desc=f"{row} {dataset}")
        kw = dict(max_len=max_len, threshold=tau)
        decodings = lambda x: (model.decode(x, beam=s.beam, **kw), model.decode(x, beam=1, **kw),  # noqa: E731
                               model.decode(x, beam=s.beam, merge_sets=True, **kw),
                               topk_sequences(model, x, s.top_k, s.beam))
        # one pass over the test maps of any storage (streamed: the trunk runs once per image, not 4 times)
        beam, greedy, merged, topk = features.map_apply(decodings, feats["test"], device=device)
        return {"sequences": beam, "sequences_greedy": greedy, "sequences_merged": merged, "sequences_topk": topk,
                "threshold": tau, "val_curve": [[t, m] for t, m in curve], "history": history,
                "max_len": max_len, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "config": dataclasses.asdict(cfg)}

    result = ctx.cached("order_free_rnn", config, compute, code=(run,), force=force)
    return with_metrics(result, data.test.labels, s.top_k)


def with_metrics(result: dict, labels: torch.Tensor, top_k: int = 3) -> dict:
    """Predictions and metrics: top-k, and every decoding under the paper's rule."""
    C = labels.shape[1]
    out = dict(result)
    out["pred"] = emitted(result["sequences_topk"], C, top_k)
    out["metrics"] = metrics.prf_of_predictions(out["pred"], labels)
    for key in DECODINGS:
        tag = key.replace("sequences", "")
        out["pred_paper" + tag] = emitted(result[key], C)
        out["metrics_paper" + tag] = metrics.prf_of_predictions(out["pred_paper" + tag], labels)
    return out


# --- the protocols and decodings the chapter compares --------------------------------------------

RULES = ("variable length", "first 3 of the variable length", "top-3")
PROTOCOL_ROWS = ("Ours", "CNN-RNN", "Resnet-baseline")


def predictions_under(result: dict, rule: str, num_classes: int, k: int = 3) -> torch.Tensor | None:
    """[N, C] bool predictions of one run under ``rule`` (``RULES``), None where it does not apply:
    "variable length" = every label of the decoded sequence (Order-Free RNN: beam search stopped
    by the validated threshold; CNN-RNN: stopped by END); "first 3 of the variable length" = at
    most the first 3 of them (how a top-3 column reads a variable-length row); "top-3" = exactly
    k labels, every row alike. A score model (no sequence) has only top-3."""
    if rule == "top-3":
        return result["pred"]
    if "sequences" not in result:
        return None
    return emitted(result["sequences"], num_classes, None if rule == "variable length" else k)


def protocol_table(results: dict, data: shared.Splits, dataset: str, seeds, rows=PROTOCOL_ROWS) -> pd.DataFrame:
    """Labels per image and C/O-P/R/F1 (%) of ``rows`` under each rule (mean over ``seeds``)."""
    y = data.test.labels
    out = {}
    for row in rows:
        for rule in RULES:
            preds = [predictions_under(results[dataset, row, s], rule, y.shape[1]) for s in seeds]
            if preds[0] is None:
                continue
            scores = [metrics.prf_of_predictions(p, y) for p in preds]
            out[row, rule] = {"labels / image": round(labels_per_image(preds), 2),
                              **{m: round(100 * _mean(sc[m] for sc in scores), 1) for m in metrics.PRF_KEYS}}
    return pd.DataFrame.from_dict(out, orient="index").rename_axis(["row", "rule"])


def _mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)


def labels_per_image(preds) -> float:
    """Mean number of labels predicted per image, over the images and the seeds' predictions."""
    return _mean(p.sum(1).float().mean() for p in preds)


def decoding_table(results: dict, dataset: str, seeds, rows=tuple(ROW_OPTIONS)) -> pd.DataFrame:
    """Per Order-Free row (mean over seeds): the thresholds chosen on the hold-out part, labels per
    image, and C-F1/O-F1 (%) of the paper's beam search, greedy decoding and set-merged beams,
    each stopped by the threshold (the paper's variable-length rule)."""
    table = {}
    for row in rows:
        runs = [results[dataset, row, s] for s in seeds]
        entry = {"thresholds": "/".join(f"{r['threshold']:g}" for r in runs),
                 "labels / image": round(labels_per_image(r["pred_paper"] for r in runs), 2)}
        for name, key in (("beam", "metrics_paper"), ("greedy", "metrics_paper_greedy"),
                          ("merged", "metrics_paper_merged")):
            entry.update({f"{name} {m}": round(100 * _mean(r[key][m] for r in runs), 1) for m in ("CF1", "OF1")})
        table[row] = entry
    return pd.DataFrame.from_dict(table, orient="index").rename_axis("row")


def mean_metrics(results: dict, dataset: str, row: str, seeds, key: str = "metrics") -> dict:
    """{CP..OF1: % } of one row, mean over ``seeds`` (the tables' cells)."""
    return {m: 100 * _mean(results[dataset, row, s][key][m] for s in seeds) for m in metrics.PRF_KEYS}


def load_model(result: dict) -> order_free_rnn_model.OrderFreeRNN:
    model = order_free_rnn_model.OrderFreeRNN(order_free_rnn_model.OrderFreeConfig(**result["config"]))
    model.load_state_dict(result["state_dict"])
    return model.eval()


# --- the values a claim compares -------------------------------------------------------------------

PREDICTIONS = {  # a claim's row name -> (table row, prediction key)
    "beam search": ("Ours", "pred_paper"),
    "greedy": ("Ours", "pred_paper_greedy"),
    "merged beams": ("Ours", "pred_paper_merged"),
}


def _predictions(results: dict, dataset: str, row: str, seeds) -> list[torch.Tensor]:
    table_row, key = PREDICTIONS.get(row, (row, "pred"))
    return [results[dataset, table_row, s][key] for s in seeds]


def size_recall_gap(preds: list[torch.Tensor], test, weights: torch.Tensor) -> torch.Tensor:
    """[S, 1 + R]: recall of the smallest third of the objects minus that of the largest third
    (equal-count buckets of relative size), per seed and image resample."""
    out = []
    for p in preds:
        images, sizes, hits = metrics.object_size_hits(p, test.boxes, test.image_sizes)
        bucket, _ = metrics.size_buckets(sizes)
        out.append(metrics.bucket_recall(hits, images, bucket, 0, weights)
                   - metrics.bucket_recall(hits, images, bucket, 2, weights))
    return torch.stack(out)


def claim_values(claim: claims.Claim, evidence: shared.Evidence, weights: torch.Tensor) -> dict:
    """{metric: (better [S, 1+R], worse [S, 1+R])} for ``claim`` on image resamples ``weights``."""
    test = evidence.data[claim.dataset].test
    better, worse = (_predictions(evidence.results, claim.dataset, r, evidence.seeds)
                     for r in (claim.better, claim.worse))
    out = {}
    for m in claim.metrics:
        if m == "recall gain small − large":
            out[m] = (size_recall_gap(better, test, weights), size_recall_gap(worse, test, weights))
        else:
            out[m] = (metrics.set_metric_values(better, test.labels, weights, m),
                      metrics.set_metric_values(worse, test.labels, weights, m))
    return out


def published_deltas(claim: claims.Claim) -> dict:
    """{metric: the Δ (points) the paper's own table gives for the claim's two rows, or None}."""
    table = report.reference(TABLES[claim.dataset])
    return {m: claims.published_delta(table, claim.better, claim.worse, m) for m in claim.metrics}


def claim_options(claim: claims.Claim, evidence: shared.Evidence) -> dict:
    """The keyword arguments of ``claims.evaluate`` for ``claim`` besides its values: whether the
    data can test it (and why not: object sizes need boxes), and the paper's own Δ for each
    primary metric."""
    test = evidence.data[claim.dataset].test
    if "recall gain small − large" in claim.metrics and not (test.boxes and any(test.boxes)):
        testable = {"testable": False, "why_not": "no object boxes in this data set's format"}
    else:
        testable = {"testable": True, "why_not": ""}
    return {**testable, "published": published_deltas(claim)}


def recall_by_size(results: dict, data: shared.Splits, dataset: str, rows, seeds) -> pd.DataFrame:
    """Recall (%) of the objects in each third of relative size (small, medium, large) under the
    top-k predictions of each of ``rows``, mean over ``seeds``, with the size edges and counts."""
    test = data.test
    ones = torch.ones(1, len(test), dtype=torch.float64)
    table = {}
    for row in rows:
        per_seed = []
        for p in _predictions(results, dataset, row, seeds):
            images, sizes, hits = metrics.object_size_hits(p, test.boxes, test.image_sizes)
            bucket, edges = metrics.size_buckets(sizes)
            per_seed.append([float(metrics.bucket_recall(hits, images, bucket, k, ones)) for k in range(3)])
        table[f"recall {row}"] = [round(100 * sum(v) / len(v), 1) for v in zip(*per_seed)]
    return pd.DataFrame({"relative size": [f"< {edges[0]:.2f}", f"{edges[0]:.2f}-{edges[1]:.2f}", f">= {edges[1]:.2f}"],
                         "objects": [int((bucket == k).sum()) for k in range(3)], **table},
                        index=pd.Index(["small", "medium", "large"], name="third"))


# --- chapter 08's protocol -------------------------------------------------------------------------

METHOD_ROW = "Ours"   # the paper's method: visual attention, the learned order

def protocol_knobs(profile) -> tuple[dict, ...]:
    """No knob of its own under chapter 08's protocol: its sizes and beam are chapter 04's."""
    return ({},)


def protocol_run(dataset: str, profile, protocol: Protocol, *, lr: float, knob: dict, root: str | None = None,
                 seed: int = 0, train_seed: int = 0, device: str = "auto", weights=None, force: bool = False) -> dict:
    """The paper's method, "Ours" (visual attention, the learned order of Eqs. 8-10), under chapter
    08's protocol (``experiments.protocol``: the protocol's trunk and training sizes, Adam at ``lr``),
    cached. A score per label for the test and the hold-out images, read along the beam search's path
    of exactly k labels (``decoding.SEQUENCE_SCORE_RULE``: the path's labels first, then each label's
    best step probability on it)."""
    profile = get_profile(profile)
    # one stopping threshold: the protocol reads its top-k path, not the paper's variable-length rule
    s = dataclasses.replace(settings_for(profile), **protocol.fit_settings(lr), thresholds=(0.5,))
    name = features.trunk_of(profile, protocol.trunk)
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    config = {"chapter": "08_head_to_head", "method": METHOD_ROW, "version": 1, **ctx.key, **protocol.key(lr, knob),
              "backbone": name, "image_size": profile.size_for(name), "weights": features.weights_name(weights, name),
              "settings": dataclasses.asdict(s), "train_seed": train_seed, **ROW_OPTIONS[METHOD_ROW]}

    def compute(folder: Path) -> dict:
        feats = features.backbone_features(dataset, profile, root, seed, device, weights, trunk=name)
        C = data.train.num_classes
        cfg = order_free_rnn_model.OrderFreeConfig(num_classes=C, feat_dim=feats["train"].shape[1], hidden=s.hidden,
                                                   att_dim=s.att_dim, pred_hidden=s.pred_hidden,
                                                   keep_prob=s.keep_prob, **ROW_OPTIONS[METHOD_ROW])
        model, _, _, history, _ = fit_order_free(feats["train"], data.train.labels, cfg, s, seed=seed,
                                                 train_seed=train_seed, device=device,
                                                 checkpoint=folder / "checkpoint.pt", desc=f"{METHOD_ROW} {dataset}")

        def score(x):
            context, state = model.decode_inputs(x)
            return path_label_scores(model.step_fn, context, state, topk_sequences(model, x, protocol.top_k, s.beam), C)

        return record(features.map_apply(score, feats["test"], device=device),
                      features.map_apply(score, features.take(feats["train"], ctx.holdout[1]), device=device),
                      history, params=trainable_parameters(model),
                      flops=forward_flops(score, first_test_image(feats["test"], device)))

    return ctx.cached("order_free_rnn", config, compute, code=(protocol_run,), force=force)


# --- the full profile's cost (mlbook plan) ---

class _StepLoss(torch.nn.Module):
    """The Order-Free RNN unrolled for 3 steps (about the mean label count of COCO, 2.9):
    M_map, then M_att and M_pred per step, as its training loss runs them."""

    def __init__(self, model, num_classes: int, steps: int = 3):
        super().__init__()
        self.model, self.C, self.steps = model, num_classes, steps

    def forward(self, maps):
        context, state, logits = self.model.begin(maps)
        emitted = torch.zeros(maps.shape[0], self.C, dtype=torch.bool, device=maps.device)
        total = logits.sum()
        for _ in range(self.steps):
            p, state, _ = self.model.step(context, state, emitted)
            total = total + p.sum()
        return total


def cost(run, ctx):
    """An Order-Free RNN row on the frozen maps of ``TRUNK`` (stored or streamed), with its hold-out
    passes, the threshold search and the test decodings."""
    s = settings_for(ctx.profile)
    C = NUM_CLASSES[run.dataset]
    trunk = TRUNK
    reads = map_input(ctx, trunk, run.dataset, ctx.batch(s.batch_size, run.dataset))
    chw = reads["chw"]
    head = measured(("order_free", C, run.row, dataclasses.astuple(s)), lambda: _StepLoss(
        order_free_rnn_model.OrderFreeRNN(order_free_rnn_model.OrderFreeConfig(
            num_classes=C, feat_dim=chw[0], hidden=s.hidden, att_dim=s.att_dim, pred_hidden=s.pred_hidden,
            **ROW_OPTIONS[run.row])), C), ((1, *chw),), train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    n_train, n_test = ctx.split(run.dataset)
    forward = head.flops / 3 + reads["flops"]
    # hold-out loss every epoch, the threshold chosen over its grid, four decodings of the test split
    extra = epochs * (n_train - n_fit) * forward + (n_train - n_fit) * len(s.thresholds) * s.beam * forward \
        + n_test * 4 * s.beam * forward
    host, gpu = training_memory(head, ctx.batch(s.batch_size, run.dataset), "adam")
    host, gpu = ctx.peaks(host=host + reads["host"] + outputs_bytes(n_train + n_test, C),
                          gpu=gpu + reads["gpu"])
    peak, kept = row_disk(reads, head, "adam", 4 * head.params + n_test * (6 * 8 * 4))   # weights, sequences
    return RunCost(ctx.chapter, f"Order-Free RNN on {maps_label(trunk, reads['storage'])}", run.dataset,
                   head.flops + reads["flops"], n_fit, epochs, 1, extra, host, gpu, peak,
                   maps=reads["storage"], kept_bytes=kept)
