"""Chapter 08's own rows (the lower part of ``head_to_head``: it imports nothing of it): the BCE
network, softmax, WARP, KNN and CNN-RNN on the pooled maps, and the two yardsticks, ASL (the BCE
network's linear layer with the asymmetric loss) and a Query2Label decoder on the maps, each trained
under the one protocol (``experiments.protocol``) and cached.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..losses import AsymmetricLoss
from ..models import baselines as baseline_models
from ..models.query2label import Query2LabelConfig, Query2LabelHead
from ..profiles import get_profile, pick_device
from ..train import fit, predict
from . import features, shared
from .protocol import Protocol, first_test_image, forward_flops, record, trainable_parameters

#: the chapter's own rows: name -> (network, loss)
OWN_ROWS = {
    "BCE network": ("linear", "bce"),
    "Softmax": ("linear", "softmax"),
    "WARP": ("linear", "warp"),
    "KNN": ("knn", None),
    "CNN-RNN": ("cnn_rnn", None),
    "ASL": ("linear", "asl"),
    "Query2Label": ("query2label", "asl"),
}
YARDSTICKS = ("ASL", "Query2Label")
BASELINE = "BCE network"             # the row every other row is measured against
KNN_KS = (1, 3, 5, 10, 20, 40)       # KNN's knob (it has no learning rate)
CNN_RNN = {"embed": 64, "beam": 3}   # Wang et al. 2016: 64-d label embedding; the book's beam
#: Query2Label's decoder by trunk: a small one on the small CNN's 128 x 6 x 6 maps (the demo's minutes);
#: on ResNet-101 the sizes its paper gives for that trunk (d = 2048, 2 layers, 4 heads, FFN 8192: recalled)
QUERY2LABEL = {"small_cnn": dict(d_model=64, ffn=128), "resnet101": dict(d_model=2048, layers=2, heads=4, ffn=8192)}


def own_run(row: str, dataset: str, profile, protocol: Protocol, *, lr: float, knob: dict, root=None, seed: int = 0,
            train_seed: int = 0, device: str = "auto", weights=None, force: bool = False) -> dict:
    """One of ``OWN_ROWS`` at one grid point (cached): trained on the fit part of the training set with
    Adam at ``lr``, early stopping on the hold-out part by its own loss; scores of the test and the
    hold-out images."""
    profile = get_profile(profile)
    kind, loss_name = OWN_ROWS[row]
    name = features.trunk_of(profile, protocol.trunk)
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    config = {"chapter": "08_head_to_head", "method": row, "version": 1, **ctx.key, **protocol.key(lr, knob),
              "backbone": name, "image_size": profile.size_for(name), "weights": features.weights_name(weights, name),
              "train_seed": train_seed}

    def compute(folder: Path) -> dict:
        feats = features.backbone_features(dataset, profile, root, seed, device, weights, trunk=name)
        fit_idx, val_idx = ctx.holdout
        y = data.train.labels
        dev = pick_device(device)
        if kind == "query2label":   # the maps themselves (in memory in demo/smoke, lazy in the full profile)
            x_train, x_test = feats["train"], feats["test"]
        else:                       # the pooled maps [N, D]
            x_train, x_test = (features.pooled(feats[s], dev) for s in ("train", "test"))
        take = features.take
        if kind == "knn":           # neighbours among the fit part only: the hold-out part chooses k
            k = knob["k"]
            score = lambda x: baseline_models.knn_scores(x_train[fit_idx], y[fit_idx], x, k)  # noqa: E731
            flops = forward_flops(score, x_test[:1])
            return record(score(x_test), score(x_train[val_idx]), [], params=0, flops=flops)
        torch.manual_seed(train_seed)
        model, loss_fn, score = own_model(kind, loss_name, x_train, y, fit_idx, protocol)
        part = lambda idx: features.map_rows(take(x_train, idx), *loss_fn.columns(idx))  # noqa: E731
        history = fit(model, part(fit_idx), loss_fn, epochs=protocol.epochs, batch_size=protocol.batch_size,
                      device=device, seed=train_seed, val_dataset=part(val_idx), patience=protocol.patience,
                      make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=lr, weight_decay=protocol.weight_decay),
                      checkpoint=folder / "checkpoint.pt", desc=f"{row} {dataset}", progress=False)
        model.to(dev).eval()
        flops = forward_flops(lambda x: score(model, x), first_test_image(x_test, device))
        test = predict(lambda b: score(model, b[0].float()), features.map_rows(x_test), device=dev)
        held = predict(lambda b: score(model, b[0].float()), features.map_rows(take(x_train, val_idx)), device=dev)
        return record(test, held, history, params=trainable_parameters(model), flops=flops)

    return ctx.cached("head_to_head", config, compute, code=(own_run,), force=force)


class _Loss:
    """A row's loss on a batch, and the label columns its batches carry (``columns(index)``)."""

    def __init__(self, fn, columns):
        self.fn, self.columns = fn, columns

    def __call__(self, model, batch):
        return self.fn(model, batch)


def own_network(kind: str, D: int, C: int, protocol: Protocol) -> torch.nn.Module:
    """The network of one of the chapter's own rows (``OWN_ROWS``' kind) on D-channel maps, C labels:
    what ``own_run`` trains and ``mlbook plan`` counts."""
    if kind == "linear":
        return baseline_models.LinearHead(D, C)
    if kind == "query2label":
        return Query2LabelHead(Query2LabelConfig(C, D, **QUERY2LABEL[protocol.trunk]))
    hidden = 128 if protocol.trunk == "small_cnn" else 512    # CNN-RNN's LSTM: the book's demo size, or Wang et al.'s
    return baseline_models.CNNRNN(D, C, CNN_RNN["embed"], hidden)


def own_model(kind: str, loss_name: str | None, x_train, y: torch.Tensor, fit_idx: torch.Tensor,
               protocol: Protocol):
    """(model, loss, score(model, x) -> [B, C]) of one of the chapter's own rows."""
    C = y.shape[1]
    model = own_network(kind, x_train.shape[1], C, protocol)
    labels = _Loss(None, lambda idx: (y[idx],))
    if kind == "linear":
        if loss_name == "asl":      # Ben-Baruch et al.: gamma- = 4, gamma+ = 0, clip m = 0.05 (the published defaults)
            asl = AsymmetricLoss()
            labels.fn = lambda m, b: asl(m(b[0].float()), b[1])
        else:
            loss = baseline_models.HEAD_LOSSES[loss_name]
            labels.fn = lambda m, b: loss(m(b[0].float()), b[1])
        prob = {"bce": torch.sigmoid, "asl": torch.sigmoid, "softmax": lambda z: z.softmax(1)}.get(loss_name)
        return model, labels, (lambda m, x: prob(m(x)) if prob else m(x))
    if kind == "query2label":
        asl = AsymmetricLoss()
        labels.fn = lambda m, b: asl(m(b[0].float()), b[1])
        return model, labels, (lambda m, x: torch.sigmoid(m(x)))
    # CNN-RNN (Wang et al. 2016): labels in frequency order (of the fit part), END after them; scores
    # per label along its top-k path (``decoding.SEQUENCE_SCORE_RULE``)
    seq = baseline_models.fixed_order_sequences(y, baseline_models.label_rank(y[fit_idx], "frequency"))
    loss = _Loss(lambda m, b: m.loss(b[0].float(), b[1]), lambda idx: (seq[idx],))
    k, beam = protocol.top_k, CNN_RNN["beam"]
    return model, loss, (lambda m, x: m.label_scores(x, m.decode(x, beam=beam, max_len=k, end=False)))
