"""Training and evaluating the Order-Free RNN rows of Tables 1-2, and the chapter's evidence.

One row is a cached experiment (``run_row``): the model of ``mlbook.models.order_free_rnn``
trained on the frozen backbone features of the fit part of the training set, early
stopped on its hold-out part, where the beam-search stopping threshold is also chosen;
then decoded on the test split three ways (the paper's beam search, greedy, and beam
search with set-merged paths). Metrics are computed from the stored sequences after
loading, under two protocols: the paper's own rule (every label emitted before the
threshold stops the search, a variable number) and top-3 (the first three emitted, the
protocol of the baseline numbers its tables quote).
"""
from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import cache, decoding, metrics
from ..decoding import sequences_to_sets
from ..models import order_free_rnn as M
from ..profiles import get_profile
from ..train import fit
from . import shared

CODE = (*shared.SHARED_CODE, M, decoding, sys.modules[__name__])


@dataclasses.dataclass(frozen=True)
class TrainSettings:
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
    top_k: int = 3                      # the tables' top-3 protocol: the first 3 labels emitted


def settings_for(profile) -> TrainSettings:
    """Paper sizes where the backbone is a ResNet; small ones for the demo's small CNN."""
    profile = get_profile(profile)
    if profile.backbone == "small_cnn":
        return TrainSettings(epochs=profile.head_epochs, batch_size=profile.batch_size, lr=3e-3, hidden=128,
                             att_dim=64, pred_hidden=128, patience=profile.patience, holdout=profile.holdout)
    return TrainSettings(epochs=profile.head_epochs, batch_size=profile.batch_size, patience=profile.patience,
                         holdout=profile.holdout)


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


def fit_order_free(train_maps: torch.Tensor, train_labels: torch.Tensor, cfg: M.OrderFreeConfig,
                   s: TrainSettings, *, seed: int = 0, train_seed: int = 0, device: str = "cpu",
                   checkpoint=None, desc: str = "order-free rnn"):
    """Train on the fit part of the training set (early stopping on its hold-out part, where
    the threshold is also chosen). Never sees the test split.
    Returns (model, threshold, hold-out curve, history, max_len)."""
    torch.manual_seed(train_seed)
    fit_idx, val_idx = shared.holdout_split(len(train_labels), s.holdout, seed)
    max_len = max(int(train_labels.sum(1).max().item()), 1)   # largest label count in training
    model = M.OrderFreeRNN(cfg)
    tensors = [train_maps, train_labels]
    if cfg.order != "learned":
        tensors.append(M.fixed_order_sequences(train_labels, M.label_rank(train_labels[fit_idx], cfg.order)))
    part = lambda idx: torch.utils.data.TensorDataset(*(x[idx] for x in tensors))  # noqa: E731
    history = fit(model, part(fit_idx), lambda m, batch: m.loss(*batch), epochs=s.epochs, batch_size=s.batch_size,
                  device=device, seed=train_seed, val_dataset=part(val_idx), patience=s.patience,
                  make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.lr),
                  checkpoint=checkpoint, desc=desc, progress=False)
    model.eval()   # decoding runs where the model was trained
    decode = lambda maps, tau: model.decode(maps.float(), beam=s.beam, max_len=max_len, threshold=tau)  # noqa: E731
    tau, curve = select_threshold(decode, train_maps[val_idx].float(), train_labels[val_idx],
                                  s.thresholds, s.select_by)
    return model, tau, curve, history, max_len


ROWS = {  # table method name -> model options
    "Ours": dict(attention=True, order="learned"),
    "Ours (w/o atten)": dict(attention=False, order="learned"),
    "Frequency-first (w/ atten)": dict(attention=True, order="frequency"),
    "Rare-first (w/ atten)": dict(attention=True, order="rare"),
}
DECODINGS = ("sequences", "sequences_greedy", "sequences_merged")


def run_row(method: str, dataset: str, profile, root: str | None = None, seed: int = 0,
            device: str = "auto", weights: str | None = None, train_seed: int = 0, settings: dict | None = None,
            backbone: str = "resnet152", force: bool = False) -> dict:
    """Train and evaluate one Order-Free RNN row of Tables 1-2 (a cached experiment).

    Returns {"sequences" (beam search, the paper's), "sequences_greedy", "sequences_merged"
    (beam search with set-merged paths) [N_test, max_len], "threshold", "val_curve",
    "history", "max_len", "state_dict", "config"} and, computed after loading, "pred"
    (top-3), "pred_paper" (all emitted) and "metrics" / "metrics_paper" / per decoding.
    """
    profile = get_profile(profile)
    if profile.backbone != "small_cnn":   # the paper's frozen ResNet-152 (Sect. "Implementation"); another for tests
        profile = profile.replace(backbone=backbone)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))   # ``settings``: overrides (CLI flags)
    opts = ROWS[method]
    data = shared.splits(dataset, profile, root, seed)
    config = {"chapter": "04_order_free_rnn", "method": method, "version": 4,
              **shared.data_key(dataset, profile, root, seed), "backbone": profile.backbone,
              "image_size": profile.image_size, "weights": weights, "settings": dataclasses.asdict(s),
              "train_seed": train_seed, **opts}

    def _compute(folder: Path) -> dict:
        feats = shared.backbone_features(dataset, profile, root, seed, device, weights)
        cfg = M.OrderFreeConfig(num_classes=data.train.num_classes, feat_dim=feats["train"].shape[1],
                                hidden=s.hidden, att_dim=s.att_dim, pred_hidden=s.pred_hidden,
                                keep_prob=s.keep_prob, **opts)
        model, tau, curve, history, max_len = fit_order_free(
            feats["train"], data.train.labels, cfg, s, seed=seed, train_seed=train_seed, device=device,
            checkpoint=folder / "checkpoint.pt", desc=f"{method} {dataset}")
        test_maps = feats["test"].float()
        kw = dict(max_len=max_len, threshold=tau)
        return {"sequences": model.decode(test_maps, beam=s.beam, **kw),
                "sequences_greedy": model.decode(test_maps, beam=1, **kw),
                "sequences_merged": model.decode(test_maps, beam=s.beam, merge_sets=True, **kw),
                "threshold": tau, "val_curve": [[t, m] for t, m in curve], "history": history,
                "max_len": max_len, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "config": dataclasses.asdict(cfg)}

    compute = shared.head_on_frozen_features(_compute, dataset, profile, root, seed, device, weights)
    result = cache.run("order_free_rnn", config, compute, force=force, code=CODE,
                       data=shared.data_fingerprint(data))
    return with_metrics(result, data.test.labels, s.top_k)


def with_metrics(result: dict, labels: torch.Tensor, top_k: int = 3) -> dict:
    """Predictions and metrics of every decoding under both protocols (top-3 and the paper's)."""
    C = labels.shape[1]
    out = dict(result)
    for key in DECODINGS:
        tag = key.replace("sequences", "")
        out["pred" + tag] = emitted(result[key], C, top_k)
        out["pred_paper" + tag] = emitted(result[key], C)
        out["metrics" + tag] = metrics.prf_of_predictions(out["pred" + tag], labels)
        out["metrics_paper" + tag] = metrics.prf_of_predictions(out["pred_paper" + tag], labels)
    return out


def load_model(result: dict) -> M.OrderFreeRNN:
    model = M.OrderFreeRNN(M.OrderFreeConfig(**result["config"]))
    model.load_state_dict(result["state_dict"])
    return model.eval()


# --- evidence: recall by object size ------------------------------------------------------------

def object_size_hits(pred: torch.Tensor, boxes, image_sizes):
    """One entry per (image, label) with a box: (image index, relative size = sqrt(box area /
    image area) of its largest box, whether the label was predicted)."""
    images, sizes, hits = [], [], []
    for i, bs in enumerate(boxes):
        W, H = image_sizes[i]
        largest: dict[int, float] = {}
        for b in bs:
            largest[b.label] = max(largest.get(b.label, 0.0), math.sqrt(max(b.w * b.h, 0.0) / (W * H)))
        for lab, size in largest.items():
            images.append(i)
            sizes.append(size)
            hits.append(bool(pred[i, lab]))
    return torch.tensor(images), torch.tensor(sizes), torch.tensor(hits)


def size_buckets(sizes: torch.Tensor, n: int = 3) -> tuple[torch.Tensor, list[float]]:
    """Equal-count buckets of relative object size (0 = smallest); returns (bucket ids, edges)."""
    edges = torch.quantile(sizes.double(), torch.linspace(0, 1, n + 1, dtype=torch.float64)[1:-1]).tolist()
    return torch.bucketize(sizes.double(), torch.tensor(edges, dtype=torch.float64)), edges


def bucket_recall(hits: torch.Tensor, images: torch.Tensor, bucket: torch.Tensor, k: int,
                  weights: torch.Tensor) -> torch.Tensor:
    """Recall of the objects in size bucket ``k`` on image resamples ``weights`` [R, N] -> [R]."""
    sel = bucket == k
    w = weights.double()[:, images[sel]]
    return (w * hits[sel].double()).sum(1) / w.sum(1).clamp_min(1e-12)


# --- Fig. 3: predictions with one attention map per emitted label ----------------------------------

def pick_examples(pred: torch.Tensor, labels: torch.Tensor, n: int = 2) -> tuple[list[int], list[int]]:
    """(correct, incorrect) test indices: exact label-set matches vs images with a wrong or a
    missed label, images with more labels first (then by index), ``n`` of each."""
    y = labels > 0.5
    count = y.sum(1)
    exact = (pred == y).all(1) & (count >= 2)
    wrong = (pred != y).any(1) & (count >= 2)
    order = sorted(range(len(y)), key=lambda i: (-int(count[i]), i))
    return [i for i in order if exact[i]][:n], [i for i in order if wrong[i]][:n]


def attention_figure(model: M.OrderFreeRNN, maps: torch.Tensor, sequences: torch.Tensor, data,
                     rows: list[tuple[int, str]], top_k: int | None = 3, scale: str = "shared"):
    """One row per (test index, tag): the image with its true labels (missed ones marked), then
    the attention map (Eq. 4, upsampled) of each emitted label in prediction order; wrong labels
    in red. ``scale="shared"``: one colour scale for the whole figure, so a flat map looks flat;
    ``"own"``: each map scaled to its own maximum. Each title gives the map's peak as a
    multiple of a uniform map (1x = no focus)."""
    import matplotlib.pyplot as plt
    import numpy as np

    from ..data.base import open_rgb

    if scale not in ("shared", "own"):
        raise ValueError(f"scale must be 'shared' or 'own', not {scale!r}")
    idx = [i for i, _ in rows]
    seqs = sequences[idx] if top_k is None else sequences[idx, :top_k]
    alphas = model.replay(maps[idx].float(), seqs)                  # [R, T, m]
    h, w = maps.shape[2:]
    m = h * w
    T = max(int((seqs >= 0).sum(1).max()), 1)
    vmax_all = float(alphas.max())
    fig, axes = plt.subplots(len(rows), T + 1, figsize=(1.9 * (T + 1), 2.6 * len(rows)), squeeze=False)
    for r, (i, tag) in enumerate(rows):
        image = np.asarray(open_rgb(data.image_paths[i]))
        H, W = image.shape[:2]
        truth = torch.nonzero(data.labels[i] > 0.5).flatten().tolist()
        shown = set(seqs[r][seqs[r] >= 0].tolist())
        names = [data.classes[c] + ("" if c in shown else " (missed)") for c in truth]
        ax = axes[r, 0]
        ax.imshow(image)
        ax.set_title(tag, fontsize=8)
        ax.set_xlabel("\n".join(", ".join(names[j:j + 2]) for j in range(0, len(names), 2)), fontsize=7)
        for t in range(T):
            ax = axes[r, t + 1]
            lab = int(seqs[r, t])
            if lab < 0:
                ax.axis("off")
                continue
            a = alphas[r, t].view(1, 1, h, w)
            a = F.interpolate(a, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
            vmax = vmax_all if scale == "shared" else max(float(alphas[r, t].max()), 1e-12)
            ax.imshow(image)
            ax.imshow(a, cmap="jet", alpha=0.5, vmin=0, vmax=vmax)
            ok = bool(data.labels[i, lab] > 0.5)
            ax.set_title(f"{t + 1}. {data.classes[lab]}\npeak {float(alphas[r, t].max()) * m:.1f}x uniform",
                         fontsize=7, color="black" if ok else "red")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
