"""Training and evaluating the baseline rows of the tables on frozen backbone features.

KNN, Softmax, WARP, the "ResNet baseline" (a linear layer with BCE; RLSD's Multi-CNN)
and CNN-RNN (``mlbook.models.baselines``). Every trained row stops early on the hold-out
part of the training set; KNN's k is chosen there. ``run`` is one cached row on the trunk
of the paper whose table it stands in (``trunk``: in the full profile the paper's own
network, so a baseline reads the same features as the method it is compared with); its
result holds the test ``scores`` [N, C] and, for the sequence model, the decoded sequences.
Metrics are computed from them after loading. Not a paper: a shared module
(``papers.SHARED_EXPERIMENTS``) whose rows several papers' grids run on their own trunk; it
names no paper (CNN-RNN's fixed label order lives in ``mlbook.models.baselines``).

Top-k protocol: every row is scored at exactly k labels. A score model keeps its k highest
scores; CNN-RNN keeps the first k labels of a beam search that continues past END
(``sequences_topk``: END is not a candidate, so the search ranks labels by their scores
until k are emitted). CNN-RNN's own variable-length rule, every label emitted before END (a
beam search in which END is a candidate), is kept as the named variant ``pred_until_end``.

Ranking metrics (mAP, AP, mAP@10): a sequence model has no score per label, so CNN-RNN's
``scores`` follow ``decoding.SEQUENCE_SCORE_RULE``: its model is run along the top-k path, a
label on the path scores 1/2 + p/2 and any other label p/2, p the label's best step
probability on the path (every emitted label above every other, no label at 0). Its top-k sets
are read from the path, not from these scores.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .. import metrics
from ..costs import RunCost, maps_of, measured, outputs_bytes, row_disk, training_memory
from ..data import NUM_CLASSES
from ..decoding import sequences_to_sets
from ..models import baselines as baselines_model
from ..profiles import get_profile
from ..train import fit
from . import features, shared


@dataclasses.dataclass(frozen=True)
class Settings:
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


def settings_for(profile) -> Settings:
    profile = get_profile(profile)
    if profile.backbone == "small_cnn":
        return Settings(epochs=profile.head_epochs, batch_size=profile.batch_size, lr=3e-3,
                        rnn_hidden=128, patience=profile.patience, holdout=profile.holdout)
    return Settings(epochs=profile.head_epochs, batch_size=profile.batch_size,
                    patience=profile.patience, holdout=profile.holdout)


ROW_SPECS = {  # table row name -> (kind, loss)
    "KNN": ("knn", None),
    "Softmax": ("head", "softmax"),
    "WARP": ("head", "warp"),
    "Resnet-baseline": ("head", "bce"),
    "CNN-RNN": ("cnn_rnn", None),
}
OPTIONS = ("trunk",)


def rows(profile) -> tuple[str, ...]:
    """Every baseline row, by the name the papers' tables print (the same in every profile)."""
    return tuple(ROW_SPECS)


def stages(profile) -> tuple[str, ...]:
    """None: every baseline row reads the shared frozen features only."""
    return ()


def grid(profile, datasets, seeds, rows=tuple(ROW_SPECS), trunk: str | None = None) -> list[shared.Run]:
    """The baseline runs a chapter needs: ``rows`` on ``datasets`` with training seeds ``seeds``
    (on ``trunk`` in the full profile)."""
    options = (("trunk", trunk),) if trunk else ()
    return [shared.Run("baselines", r, d, s, options=options) for d in datasets for r in rows for s in seeds]


def train_head(model, inputs: tuple, loss_fn, s, *, seed: int, train_seed: int, device: str,
               folder: Path, desc: str) -> list[dict]:
    """Adam on the fit part of the training tensors, early stopping on the hold-out part
    (the split depends on the data seed only). Returns the history."""
    fit_idx, val_idx = shared.holdout_split(len(inputs[0]), s.holdout, seed)
    # inputs[0] may be frozen maps kept on disk or streamed (features.map_rows: a TensorDataset for tensors)
    part = lambda idx: features.map_rows(features.take(inputs[0], idx), *(x[idx] for x in inputs[1:]))  # noqa: E731
    return fit(model, part(fit_idx), loss_fn, epochs=s.epochs, batch_size=s.batch_size, device=device,
               seed=train_seed, val_dataset=part(val_idx), patience=s.patience,
               make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.lr, weight_decay=s.weight_decay),
               checkpoint=folder / "checkpoint.pt", desc=desc, progress=False)


def choose_knn_k(train_x, train_y, s: Settings, seed: int = 0) -> int:
    """k with the best OF1 + CF1 (top-3) on the held-out part of the training set."""
    fit_idx, val_idx = shared.holdout_split(len(train_y), s.holdout, seed)
    best = None
    for k in s.knn_ks:
        m = metrics.prf(baselines_model.knn_scores(train_x[fit_idx], train_y[fit_idx], train_x[val_idx], k),
                        train_y[val_idx], k=s.top_k)
        key = m["OF1"] + m["CF1"]
        if best is None or key > best[0]:
            best = (key, k)
    return best[1]


def cnn_rnn_topk(model: baselines_model.CNNRNN, features: torch.Tensor, k: int, beam: int) -> torch.Tensor:
    """[N, k]: CNN-RNN's most probable path of exactly k labels, END not a candidate (the top-k
    protocol; its own rule, stopping at END, is ``model.decode(..., end=True)``)."""
    return model.decode(features, beam=beam, max_len=k, end=False)


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, trunk: str | None = None, settings: dict | None = None,
        force: bool = False) -> dict:
    """Train and evaluate one baseline row on frozen features (cached).

    Returns {"scores" [N_test, C] (for the sequence model: ``decoding.SEQUENCE_SCORE_RULE`` along
    its top-k path), "sequences" and "sequences_topk" (CNN-RNN), "history", "k" (KNN)} and, after
    loading, "pred" (top-k), "metrics" (top-k and mAP) and, for CNN-RNN, "pred_until_end".
    """
    profile = get_profile(profile)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))   # ``settings``: overrides (CLI flags)
    kind, loss_name = ROW_SPECS[row]
    name = features.trunk_of(profile, trunk)
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    config = {"chapter": "baselines", "method": row, "version": 5,
              **ctx.key, "backbone": name,
              "image_size": profile.image_size, "weights": features.weights_name(weights, name),
              "settings": dataclasses.asdict(s), "train_seed": train_seed}

    def compute(folder: Path) -> dict:
        pooled = features.pooled_features(dataset, profile, root, seed, device, weights, trunk=name)
        y_train = data.train.labels
        C = y_train.shape[1]
        x_train, x_test = pooled["train"], pooled["test"]
        torch.manual_seed(train_seed)
        out: dict = {"history": []}
        desc = f"{row} {dataset}"
        if kind == "knn":
            out["k"] = choose_knn_k(x_train, y_train, s, seed)
            out["scores"] = baselines_model.knn_scores(x_train, y_train, x_test, out["k"])
        elif kind == "head":
            model = baselines_model.LinearHead(x_train.shape[1], C)
            loss = baselines_model.HEAD_LOSSES[loss_name]
            out["history"] = train_head(model, (x_train, y_train), lambda m, b: loss(m(b[0]), b[1]), s,
                                        seed=seed, train_seed=train_seed, device=device, folder=folder, desc=desc)
            with torch.no_grad():
                scores = model.cpu()(x_test)
            out["scores"] = torch.sigmoid(scores) if loss_name == "bce" else scores
        else:
            model = baselines_model.CNNRNN(x_train.shape[1], C, s.rnn_embed, s.rnn_hidden)
            seq = baselines_model.fixed_order_sequences(y_train, baselines_model.label_rank(y_train, "frequency"))
            out["history"] = train_head(model, (x_train, seq), lambda m, b: m.loss(*b), s, seed=seed,
                                        train_seed=train_seed, device=device, folder=folder, desc=desc)
            model = model.cpu().eval()
            max_len = max(int(y_train.sum(1).max()), 1)
            out["sequences"] = model.decode(x_test, beam=s.beam, max_len=max_len)
            out["sequences_topk"] = cnn_rnn_topk(model, x_test, s.top_k, s.beam)
            out["scores"] = model.label_scores(x_test, out["sequences_topk"])
        return out

    result = ctx.cached("baseline", config, compute, code=(run,), force=force)
    return with_metrics(result, data.test.labels, s.top_k, data.test.ignore)


def with_metrics(result: dict, labels: torch.Tensor, top_k: int = 3, ignore=None) -> dict:
    """Top-k predictions and metrics; for a sequence model also every label it emits before END."""
    out = dict(result)
    scores = result["scores"]
    if "sequences" in result:
        out["pred"] = sequences_to_sets(result["sequences_topk"], labels.shape[1], k=top_k) > 0
        out["pred_until_end"] = sequences_to_sets(result["sequences"], labels.shape[1]) > 0
        out["metrics_until_end"] = metrics.prf_of_predictions(out["pred_until_end"], labels, ignore)
    else:
        out["pred"] = metrics.predict_labels(scores, k=top_k, valid=None if ignore is None else ~ignore)
    out["metrics"] = {**metrics.prf_of_predictions(out["pred"], labels, ignore),
                      "mAP": metrics.mean_average_precision(scores, labels, ignore)}
    return out


# --- the full profile's cost (mlbook plan) ---

class _CNNRNNLoss(torch.nn.Module):
    """CNN-RNN's teacher-forced loss on 3 labels, for counting."""

    def __init__(self, model, num_classes: int, steps: int = 3):
        super().__init__()
        self.model, self.C, self.steps = model, num_classes, steps

    def forward(self, x):
        seq = torch.zeros(x.shape[0], self.steps, dtype=torch.long, device=x.device)
        return self.model.loss(x, seq)


def cost(run, ctx):
    """A baseline row on the pooled features of its trunk (``pooled_trunk``: the plan prices computing
    them once per trunk and data set)."""
    s = settings_for(ctx.profile)
    trunk = features.trunk_of(ctx.profile, dict(run.options).get("trunk"))
    C = NUM_CLASSES[run.dataset]
    D = maps_of(ctx, trunk, run.dataset)[2][0]
    n_train, n_test = ctx.split(run.dataset)
    kind, _ = ROW_SPECS[run.row]
    features_bytes = (n_train + n_test) * D * 4 * 2       # pooled features, and the fit/hold-out copies
    if kind == "knn":                                      # cosine similarities, 1024 test images at a time
        flops = 2 * D * n_train * (1 + len(s.knn_ks))
        chunk = min(1024, n_test) * n_train * 4 * 3
        host, gpu = ctx.peaks(host=features_bytes + chunk + outputs_bytes(n_train + n_test, C), gpu=0.0)
        return RunCost(ctx.chapter, f"KNN on pooled {trunk} features", run.dataset, flops, n_test, 1, 1,
                       host_bytes=host, gpu_bytes=gpu, disk_bytes=n_test * C * 4, kept_bytes=n_test * C * 4,
                       pooled_trunk=trunk)
    if kind == "head":
        net = measured(("linear", D, C), lambda: baselines_model.LinearHead(D, C), ((1, D),), train=True)
    else:
        net = measured(("cnn_rnn", D, C, s.rnn_embed, s.rnn_hidden),
                       lambda: _CNNRNNLoss(baselines_model.CNNRNN(D, C, s.rnn_embed, s.rnn_hidden), C), ((1, D),),
                       train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    host, gpu = training_memory(net, ctx.batch(s.batch_size, run.dataset), "adam")
    host, gpu = ctx.peaks(host=host + features_bytes + outputs_bytes(n_train + n_test, C), gpu=gpu)
    what = "linear heads" if kind == "head" else "CNN-RNN"
    peak, kept = row_disk({}, net, "adam", n_test * C * 4 * 2)
    return RunCost(ctx.chapter, f"{what} on pooled {trunk} features", run.dataset, net.flops, n_fit, epochs, 1,
                   n_test * net.flops * s.beam, host, gpu, peak, kept_bytes=kept, pooled_trunk=trunk)
