"""Baselines the papers' tables compare with, all on a frozen backbone's features.

- ``knn``: k nearest training images (cosine on globally pooled features), labels summed.
- ``LinearHead`` + a loss: "ResNet baseline" (BCE), "Softmax" (cross-entropy against
  the normalised label vector, Gong et al. 2013 Eq. 2), "WARP" (Gong et al. 2013 Eq. 4).
- ``CNNRNN`` (Wang et al. 2016): image and label embeddings joined after an LSTM
  that reads the labels in frequency order, trained with softmax cross-entropy
  over labels + END, decoded with beam search.

The papers fine-tune their CNN for some of these; here every baseline sits on
the same frozen features as the model it is compared with (stated in the chapters).
``run_baseline(method, dataset, profile, root, seed, device)`` trains and
evaluates one row (a cached experiment); ``METHODS`` maps table names to it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..decoding import beam_search, sequences_to_sets
from ..losses import softmax_normalised_loss, warp_loss


def pooled(maps: torch.Tensor) -> torch.Tensor:
    """Conv maps [N, D, h, w] -> globally average-pooled features [N, D] (float32)."""
    return maps.float().mean(dim=(2, 3)) if maps.ndim == 4 else maps.float()


# --- KNN ---------------------------------------------------------------------------------

def knn_scores(train_feats: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor,
               k: int = 10, batch_size: int = 1024) -> torch.Tensor:
    """Sum of the label vectors of the k most cosine-similar training images, [N, C]."""
    db = F.normalize(train_feats.float(), dim=1)
    out = []
    for i in range(0, query.shape[0], batch_size):
        sim = F.normalize(query[i:i + batch_size].float(), dim=1) @ db.T
        top = sim.topk(min(k, db.shape[0]), dim=1)
        # tiny similarity-weighted tie-break so label counts decide and closer neighbours break ties
        w = 1.0 + 1e-3 * top.values
        out.append((w[:, :, None] * train_labels[top.indices].float()).sum(1))
    return torch.cat(out) if out else torch.empty(0, train_labels.shape[1])


# --- linear heads -----------------------------------------------------------------------

class LinearHead(nn.Module):
    """One fully connected layer on pooled features: scores [B, C]."""

    def __init__(self, feat_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(feat_dim, num_classes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled(feats))


HEAD_LOSSES = {
    "bce": lambda s, y: F.binary_cross_entropy_with_logits(s, y),
    "softmax": softmax_normalised_loss,
    "warp": warp_loss,
}


# --- CNN-RNN (Wang et al. 2016) ----------------------------------------------------------

class CNNRNN(nn.Module):
    """Wang et al. 2016, Sect. 3: label embedding U_l, LSTM over the previous labels,
    projection x_t = ReLU(U_o^x o_t + U_I^x I) into the label-embedding space, and
    scores s_t = U_l x_t over the C labels and END (index C). START has its own embedding."""

    def __init__(self, feat_dim: int, num_classes: int, embed: int = 64, hidden: int = 512):
        super().__init__()
        self.num_classes = num_classes
        self.labels = nn.Embedding(num_classes + 2, embed)   # C labels, END (= C), START (= C + 1)
        self.lstm = nn.LSTMCell(embed, hidden)
        self.proj_o = nn.Linear(hidden, embed)
        self.proj_i = nn.Linear(feat_dim, embed)

    def begin(self, feats: torch.Tensor):
        image = pooled(feats)
        h = image.new_zeros(image.shape[0], self.lstm.hidden_size)
        return (self.proj_i(image),), (h, h.clone())

    def step(self, context, state, prev):
        (img,) = context
        h, c = state
        prev = torch.where(prev < 0, torch.full_like(prev, self.num_classes + 1), prev)
        h, c = self.lstm(self.labels(prev), (h, c))
        x = F.relu(self.proj_o(h) + img)
        return x @ self.labels.weight[: self.num_classes + 1].T, (h, c)   # [B, C + 1]

    def loss(self, feats: torch.Tensor, sequence: torch.Tensor) -> torch.Tensor:
        """``sequence`` [B, T]: label indices in frequency order, -1 padded; END follows the last."""
        context, state = self.begin(feats)
        B, T = sequence.shape
        C = self.num_classes
        lengths = (sequence >= 0).sum(1)
        prev = torch.full((B,), -1, dtype=torch.long, device=feats.device)
        emitted = torch.zeros(B, C + 1, dtype=torch.bool, device=feats.device)
        rows = torch.arange(B, device=feats.device)
        total = feats.new_zeros((), dtype=torch.float32)
        for t in range(T + 1):
            logits, state = self.step(context, state, prev)
            target = sequence[:, t] if t < T else torch.full_like(prev, -1)
            target = torch.where(target < 0, torch.full_like(target, C), target)   # END after the labels
            active = (t <= lengths).float()
            ce = F.cross_entropy(logits.masked_fill(emitted, -1e9), target, reduction="none")
            total = total + (ce * active).sum()
            emitted = emitted.clone()
            emitted[rows, target.clamp_max(C - 1)] |= target < C
            prev = target
        return total / (lengths + 1).sum().clamp_min(1)

    def step_fn(self, context, state, emitted, prev):
        logits, state = self.step(context, state, prev)
        pad = torch.zeros_like(emitted[:, :1])
        return logits.masked_fill(torch.cat([emitted, pad], 1), -1e9).log_softmax(1), state

    @torch.no_grad()
    def decode(self, feats: torch.Tensor, beam: int = 3, max_len: int = 5, batch_size: int = 512):
        outs, dev = [], self.labels.weight.device
        for i in range(0, feats.shape[0], batch_size):
            context, state = self.begin(feats[i:i + batch_size].to(dev))
            seq, _ = beam_search(self.step_fn, context, state, self.num_classes, beam=beam,
                                 max_len=max_len, end_index=self.num_classes)
            outs.append(seq.cpu())
        return torch.cat(outs)


# --- experiments -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BaselineSettings:
    epochs: int
    batch_size: int
    lr: float = 1e-3
    weight_decay: float = 1e-4
    knn_ks: tuple = (1, 3, 5, 10, 20, 40)   # k chosen on the held-out part of the training set
    holdout: float = 0.1
    rnn_embed: int = 64                     # Wang et al. 2016: 64-d label embedding
    rnn_hidden: int = 512                   # Wang et al. 2016: 512-d LSTM
    beam: int = 3
    top_k: int = 3


def baseline_settings(profile) -> BaselineSettings:
    if profile.backbone == "small_cnn":
        return BaselineSettings(epochs=max(profile.head_epochs * 2, 2), batch_size=profile.batch_size,
                                lr=3e-3, rnn_hidden=128)
    return BaselineSettings(epochs=profile.head_epochs, batch_size=profile.batch_size)


def _fit(model, data, loss_fn, s: BaselineSettings, device, seed, folder, desc):
    from ..train import fit

    return fit(model, data, loss_fn, epochs=s.epochs, batch_size=s.batch_size, device=device, seed=seed,
               make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.lr, weight_decay=s.weight_decay),
               checkpoint=folder / "checkpoint.pt", desc=desc, progress=False)


def train_knn(train_x, train_y, s: BaselineSettings, seed: int = 0):
    """Choose k on the held-out part of the training set (OF1 + CF1 of top-3). Returns k."""
    from ..metrics import prf
    from ..stages import holdout_split

    fit_idx, val_idx = holdout_split(len(train_y), s.holdout, seed)
    best = None
    for k in s.knn_ks:
        m = prf(knn_scores(train_x[fit_idx], train_y[fit_idx], train_x[val_idx], k), train_y[val_idx], k=s.top_k)
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


def run_baseline(method: str, dataset: str, profile, root: str | None = None, seed: int = 0,
                 device: str = "auto", weights: str | None = None, force: bool = False) -> dict:
    """Train and evaluate one baseline row on the frozen backbone features (cached).

    Returns {"metrics" (top-3 protocol), "scores" [N_test, C] (for set predictors the
    emission-rank scores), "sequences" (CNN-RNN), "history", ...}.
    """
    from .. import experiments, stages
    from ..metrics import summary
    from ..profiles import get_profile
    from .order_free_rnn import fixed_order_sequences, label_rank

    profile = get_profile(profile) if isinstance(profile, str) else profile
    if profile.backbone != "small_cnn":
        profile = profile.replace(backbone="resnet152")
    s = baseline_settings(profile)
    kind, loss_name = ROWS[method]
    config = {"chapter": "baselines", "method": method, "version": 2,
              **stages.data_key(dataset, profile, root, seed), "backbone": profile.backbone,
              "image_size": profile.image_size, "weights": weights, "settings": dataclasses.asdict(s)}

    def _compute(folder: Path) -> dict:
        feats = stages.backbone_features(dataset, profile, root, seed, device, weights)
        data = stages.splits(dataset, profile, root, seed)
        y_train, y_test = data.train.labels, data.test.labels
        C = y_train.shape[1]
        torch.manual_seed(seed)
        out: dict = {"history": []}
        if kind == "knn":
            x_train, x_test = pooled(feats["train"]), pooled(feats["test"])
            k = train_knn(x_train, y_train, s, seed)
            scores = knn_scores(x_train, y_train, x_test, k)
            out["k"] = k
        elif kind == "head":
            model = LinearHead(feats["train"].shape[1], C)
            x_train = pooled(feats["train"])
            lf = HEAD_LOSSES[loss_name]
            out["history"] = _fit(model, torch.utils.data.TensorDataset(x_train, y_train),
                                  lambda m, b: lf(m(b[0]), b[1]), s, device, seed, folder, f"{method} {dataset}")
            with torch.no_grad():
                scores = model.cpu()(pooled(feats["test"]))
            if loss_name == "bce":
                scores = torch.sigmoid(scores)
        else:
            model = CNNRNN(feats["train"].shape[1], C, s.rnn_embed, s.rnn_hidden)
            seq = fixed_order_sequences(y_train, label_rank(y_train, "frequency"))
            x_train = pooled(feats["train"])
            out["history"] = _fit(model, torch.utils.data.TensorDataset(x_train, seq),
                                  lambda m, b: m.loss(*b), s, device, seed, folder, f"{method} {dataset}")
            max_len = max(int(y_train.sum(1).max()), 1)
            out["sequences"] = model.cpu().eval().decode(pooled(feats["test"]), beam=s.beam, max_len=max_len)
            scores = sequences_to_sets(out["sequences"], C, k=s.top_k)
        out["scores"] = scores
        out["metrics"] = summary(scores, y_test, protocol="top3")
        if kind == "cnn_rnn":   # a set predictor: top-3 of the emitted labels only (no padding)
            from .order_free_rnn import set_metrics
            out["metrics"] = {**set_metrics(out["sequences"], y_test, s.top_k), "mAP": out["metrics"]["mAP"]}
        return out

    compute = stages.head_on_frozen_features(_compute, dataset, profile, root, seed, device, weights)
    return experiments.run("baseline", config, compute, force=force)


def _method(name: str):
    from ..experiments import cli_method

    return cli_method(run_baseline, name)


#: table method name -> train-and-evaluate function (used by ``python -m mlbook train --method``)
METHODS = {"knn": _method("KNN"), "softmax": _method("Softmax"), "warp": _method("WARP"),
           "resnet_baseline": _method("Resnet-baseline"), "cnn_rnn": _method("CNN-RNN")}
