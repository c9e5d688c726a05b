"""Training and evaluating the baseline rows of the tables on frozen backbone features.

KNN, Softmax, WARP, the "ResNet baseline" (a linear layer with BCE) and CNN-RNN
(``mlbook.models.baselines``). Every trained row stops early on the hold-out part
of the training set; KNN's k is chosen there. ``run_baseline`` is one cached row;
its result holds the test ``scores`` [N, C] and, for the sequence model, the
decoded ``sequences``; metrics are computed from them after loading.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from .. import cache, decoding, losses, metrics
from ..decoding import sequences_to_sets
from ..models import baselines as B
from ..models.order_free_rnn import fixed_order_sequences, label_rank
from ..profiles import get_profile
from ..train import fit
from . import shared


@dataclasses.dataclass(frozen=True)
class BaselineSettings:
    epochs: int                             # budget; early stopping on the hold-out loss
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 3
    holdout: float = 0.1
    knn_ks: tuple = (1, 3, 5, 10, 20, 40)   # k chosen on the held-out part of the training set
    rnn_embed: int = 64                     # Wang et al. 2016: 64-d label embedding
    rnn_hidden: int = 512                   # Wang et al. 2016: 512-d LSTM
    beam: int = 3
    top_k: int = 3


def baseline_settings(profile) -> BaselineSettings:
    profile = get_profile(profile)
    if profile.backbone == "small_cnn":
        return BaselineSettings(epochs=profile.head_epochs, batch_size=profile.batch_size, lr=3e-3,
                                rnn_hidden=128, patience=profile.patience, holdout=profile.holdout)
    return BaselineSettings(epochs=profile.head_epochs, batch_size=profile.batch_size,
                            patience=profile.patience, holdout=profile.holdout)


def train_head(model, inputs: tuple, loss_fn, s, *, seed: int, train_seed: int, device: str,
               folder: Path, desc: str) -> list[dict]:
    """Adam on the fit part of the training tensors, early stopping on the hold-out part
    (the split depends on the data seed only). Returns the history."""
    n = len(inputs[0])
    fit_idx, val_idx = shared.holdout_split(n, s.holdout, seed)
    part = lambda idx: torch.utils.data.TensorDataset(*(x[idx] for x in inputs))  # noqa: E731
    return fit(model, part(fit_idx), loss_fn, epochs=s.epochs, batch_size=s.batch_size, device=device,
               seed=train_seed, val_dataset=part(val_idx), patience=s.patience,
               make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.lr, weight_decay=s.weight_decay),
               checkpoint=folder / "checkpoint.pt", desc=desc, progress=False)


def choose_knn_k(train_x, train_y, s: BaselineSettings, seed: int = 0) -> int:
    """k with the best OF1 + CF1 (top-3) on the held-out part of the training set."""
    fit_idx, val_idx = shared.holdout_split(len(train_y), s.holdout, seed)
    best = None
    for k in s.knn_ks:
        m = metrics.prf(B.knn_scores(train_x[fit_idx], train_y[fit_idx], train_x[val_idx], k),
                        train_y[val_idx], k=s.top_k)
        key = m["OF1"] + m["CF1"]
        if best is None or key > best[0]:
            best = (key, k)
    return best[1]


ROWS = {  # table method name -> (kind, loss)
    "KNN": ("knn", None),
    "Softmax": ("head", "softmax"),
    "WARP": ("head", "warp"),
    "Resnet-baseline": ("head", "bce"),
    "CNN-RNN": ("cnn_rnn", None),
}
CODE = (*shared.SHARED_CODE, B, losses, decoding, sys.modules[__name__])


def run_baseline(method: str, dataset: str, profile, root: str | None = None, seed: int = 0,
                 device: str = "auto", weights: str | None = None, train_seed: int = 0,
                 settings: dict | None = None, force: bool = False) -> dict:
    """Train and evaluate one baseline row on the frozen backbone features (cached).

    Returns {"scores" [N_test, C] (for the sequence model: emission-rank scores of its
    first labels), "pred" [N_test, C] (the top-3 predictions), "sequences" (CNN-RNN),
    "history", "k" (KNN), "metrics" (top-3, computed after loading)}.
    """
    profile = get_profile(profile)
    if profile.backbone != "small_cnn":
        profile = profile.replace(backbone="resnet152")
    s = dataclasses.replace(baseline_settings(profile), **(settings or {}))   # ``settings``: overrides (CLI flags)
    kind, loss_name = ROWS[method]
    data = shared.splits(dataset, profile, root, seed)
    config = {"chapter": "baselines", "method": method, "version": 3,
              **shared.data_key(dataset, profile, root, seed), "backbone": profile.backbone,
              "image_size": profile.image_size, "weights": weights, "settings": dataclasses.asdict(s),
              "train_seed": train_seed}

    def _compute(folder: Path) -> dict:
        feats = shared.backbone_features(dataset, profile, root, seed, device, weights)
        y_train = data.train.labels
        C = y_train.shape[1]
        x_train, x_test = B.pooled(feats["train"]), B.pooled(feats["test"])
        torch.manual_seed(train_seed)
        out: dict = {"history": []}
        desc = f"{method} {dataset}"
        if kind == "knn":
            k = choose_knn_k(x_train, y_train, s, seed)
            scores = B.knn_scores(x_train, y_train, x_test, k)
            out["k"] = k
        elif kind == "head":
            model = B.LinearHead(x_train.shape[1], C)
            lf = B.HEAD_LOSSES[loss_name]
            out["history"] = train_head(model, (x_train, y_train), lambda m, b: lf(m(b[0]), b[1]), s,
                                        seed=seed, train_seed=train_seed, device=device, folder=folder, desc=desc)
            with torch.no_grad():
                scores = model.cpu()(x_test)
            if loss_name == "bce":
                scores = torch.sigmoid(scores)
        else:
            model = B.CNNRNN(x_train.shape[1], C, s.rnn_embed, s.rnn_hidden)
            seq = fixed_order_sequences(y_train, label_rank(y_train, "frequency"))
            out["history"] = train_head(model, (x_train, seq), lambda m, b: m.loss(*b), s, seed=seed,
                                        train_seed=train_seed, device=device, folder=folder, desc=desc)
            max_len = max(int(y_train.sum(1).max()), 1)
            out["sequences"] = model.cpu().eval().decode(x_test, beam=s.beam, max_len=max_len)
            scores = sequences_to_sets(out["sequences"], C, k=s.top_k)
        out["scores"] = scores
        return out

    compute = shared.head_on_frozen_features(_compute, dataset, profile, root, seed, device, weights)
    result = cache.run("baseline", config, compute, force=force, code=CODE, data=shared.data_fingerprint(data))
    return with_metrics(result, data.test.labels, s.top_k)


def with_metrics(result: dict, labels: torch.Tensor, top_k: int = 3) -> dict:
    """Add the top-3 predictions and metrics (a sequence model: its first 3 emitted labels only)."""
    scores = result["scores"]
    if "sequences" in result:
        pred = sequences_to_sets(result["sequences"], labels.shape[1], k=top_k) > 0
    else:
        pred = metrics.predict_labels(scores, k=top_k)
    m = metrics.prf_of_predictions(pred, labels)
    return {**result, "pred": pred, "metrics": {**m, "mAP": metrics.mean_average_precision(scores, labels)}}
