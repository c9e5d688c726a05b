"""Order-Free RNN with Visual Attention (Chen, Chen, Chang, Wang; AAAI 2018), in one file.

    conv maps --Mmap--> V_feat, v_prob        (Sect. "Feature Mapping Layer", Eqs. 1-3)
    h_{t-1}, V_feat --Matt--> z_t, alpha_t     (Sect. "Attention Layer", Eqs. 4-5)
    v_pred, z_t, y~_{t-1} --Mpred--> h_t, p_t  (Sect. "Confidence-Ranked LSTM", Eqs. 6-7)
    loss_t = BCE(sigma(p_t), y)                (Eq. 8: the whole label vector, no order)
    l_t = argmax_{C_t} p_t, C_t = C_{t-1} - {l_{t-1}}   (Eqs. 9-10)

Test time: beam search over label paths scored by Eq. 11 (``mlbook.decoding``),
stopping below a probability threshold chosen on a held-out part of the
training set, or at the largest label count seen in training.

Ablations of Tables 1-2 are options of the same model: ``attention=False`` (z_t
is the mean of V_feat) and ``order="frequency" | "rare"`` (labels fed in that
fixed order with teacher forcing, softmax cross-entropy over the pool at each
step, as the fixed-order RNNs of Jin & Nakayama 2016 and Wang et al. 2016).

``run_row(method, dataset, profile, root, seed, device)`` trains and evaluates
one row of the tables as a cached experiment; ``METHODS`` maps the tables'
method names to it.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..decoding import beam_search, greedy_decode, sequences_to_sets

ORDERS = ("learned", "frequency", "rare")


@dataclasses.dataclass(frozen=True)
class OrderFreeConfig:
    num_classes: int
    feat_dim: int             # k: channels of the conv maps
    hidden: int = 1000        # LSTM size (Xu et al. 2015's default)
    att_dim: int = 512        # attention MLP size (Xu et al. 2015: the context size)
    pred_hidden: int = 512    # first of the two fully connected layers of f_pred (Eq. 7)
    keep_prob: float = 0.8    # "dropout rate 0.8" on f_pred, read as a keep probability
    attention: bool = True    # False: Table rows "Ours (w/o atten)"
    order: str = "learned"    # "learned" (ours) | "frequency" | "rare" (fixed orders, teacher forced)


class Mmap(nn.Module):
    """Frozen CNN conv maps -> V_feat = [v_1..v_m] (Eq. 2) and an fc giving v_prob (Eqs. 1, 3)."""

    def __init__(self, feat_dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(feat_dim, num_classes)   # theta_R of Algorithm 1, trained with BCE

    def forward(self, maps: torch.Tensor):
        v = maps.float().flatten(2).transpose(1, 2)  # [B, m, k], m = h * w positions
        return v, self.fc(v.mean(1))                 # V_feat, logits of v_prob


class Matt(nn.Module):
    """Soft attention conditioned on h_{t-1} (Xu et al. 2015): Eq. 4 (alpha), Eq. 5 (z_t)."""

    def __init__(self, feat_dim: int, hidden: int, att_dim: int):
        super().__init__()
        self.proj_v = nn.Linear(feat_dim, att_dim)
        self.proj_h = nn.Linear(hidden, att_dim, bias=False)
        self.score = nn.Linear(att_dim, 1)

    def forward(self, v: torch.Tensor, v_proj: torch.Tensor, h: torch.Tensor):
        e = self.score((v_proj + self.proj_h(h)[:, None]).tanh_()).squeeze(-1)     # f_att(v_i, h_{t-1})
        alpha = e.softmax(dim=1)                                                 # Eq. 4
        return torch.bmm(alpha[:, None], v).squeeze(1), alpha                    # Eq. 5


class Mpred(nn.Module):
    """Confidence-ranked LSTM: h_t = f_LSTM(v_pred, z_t, y~_{t-1}, h_{t-1}) (Eq. 6),
    p_t = f_pred(v_pred, z_t, y~_{t-1}, h_t) with two fully connected layers (Eq. 7)."""

    def __init__(self, num_classes: int, feat_dim: int, hidden: int, pred_hidden: int, keep_prob: float):
        super().__init__()
        C, D = num_classes, feat_dim
        self.init_h, self.init_c = nn.Linear(D, hidden), nn.Linear(D, hidden)  # from mean(V_feat), as Xu et al.
        self.lstm = nn.LSTMCell(C + D + C, hidden)
        self.f_pred = nn.Sequential(nn.Linear(hidden + D + C + C, pred_hidden), nn.ReLU(),
                                    nn.Dropout(1.0 - keep_prob), nn.Linear(pred_hidden, C))

    def start(self, v_mean: torch.Tensor):
        return torch.tanh(self.init_h(v_mean)), torch.tanh(self.init_c(v_mean))

    def forward(self, v_pred, z, y_prev, h, c):
        x = torch.cat([v_pred, z, y_prev], dim=1)
        h, c = self.lstm(x, (h, c))
        return self.f_pred(torch.cat([h, z, v_pred, y_prev], dim=1)), h, c


class OrderFreeRNN(nn.Module):
    def __init__(self, cfg: OrderFreeConfig):
        super().__init__()
        if cfg.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, not {cfg.order!r}")
        self.cfg = cfg
        self.mmap = Mmap(cfg.feat_dim, cfg.num_classes)
        self.matt = Matt(cfg.feat_dim, cfg.hidden, cfg.att_dim) if cfg.attention else None
        self.mpred = Mpred(cfg.num_classes, cfg.feat_dim, cfg.hidden, cfg.pred_hidden, cfg.keep_prob)

    # -- one time step ------------------------------------------------------------
    def attend(self, v, v_proj, v_mean, h):
        if self.matt is None:                        # "w/o atten": the same context at every step
            return v_mean, None
        return self.matt(v, v_proj, h)

    def confidence(self, p: torch.Tensor, emitted: torch.Tensor) -> torch.Tensor:
        """The soft confidence fed back as v_pred (and, in log, the step probability of Eq. 11)."""
        if self.cfg.order == "learned":
            return torch.sigmoid(p)                  # independent label probabilities (Eq. 8)
        return p.masked_fill(emitted, -1e9).softmax(dim=1)  # fixed orders: softmax over the pool

    def log_prob(self, p: torch.Tensor, emitted: torch.Tensor) -> torch.Tensor:
        if self.cfg.order == "learned":
            return F.logsigmoid(p)
        return p.masked_fill(emitted, -1e9).log_softmax(dim=1)

    def begin(self, maps: torch.Tensor):
        """Everything fixed per image, the initial state, and the logits of v_prob."""
        v, prob_logits = self.mmap(maps)
        v_mean = v.mean(1)
        v_proj = self.matt.proj_v(v) if self.matt is not None else v_mean[:, :0]
        h, c = self.mpred.start(v_mean)
        v_pred = torch.sigmoid(prob_logits).detach()  # v_pred = v_prob at t = 1; theta_R learns from its own BCE only
        return (v, v_proj, v_mean), (h, c, v_pred), prob_logits

    def step(self, context, state, emitted):
        v, v_proj, v_mean = context
        h, c, v_pred = state
        z, alpha = self.attend(v, v_proj, v_mean, h)
        p, h, c = self.mpred(v_pred, z, emitted.float(), h, c)
        return p, (h, c, self.confidence(p, emitted)), alpha

    # -- training (Algorithm 1) -------------------------------------------------------
    def loss(self, maps: torch.Tensor, labels: torch.Tensor, sequence: torch.Tensor | None = None) -> torch.Tensor:
        """BCE of v_prob + the mean step loss over the label count of each image.

        learned order: Eq. 8 at every step, the fed-back label is the model's own
        most confident one in the pool (Eqs. 9-10), T_i = |y_i| steps for image i.
        fixed order: ``sequence`` [B, T] (-1 padded) is fed with teacher forcing
        and the step loss is the cross-entropy of its t-th label over the pool.
        """
        context, state, prob_logits = self.begin(maps)
        loss_map = F.binary_cross_entropy_with_logits(prob_logits, labels)
        counts = labels.sum(1)
        steps = counts.clamp_min(1) if self.cfg.order == "learned" else counts
        T = int(steps.max().item()) if steps.numel() else 0
        emitted = torch.zeros_like(labels, dtype=torch.bool)
        total, n = labels.new_zeros(()), labels.new_zeros(())
        rows = torch.arange(labels.shape[0], device=labels.device)
        for t in range(T):
            p, state, _ = self.step(context, state, emitted)
            active = (t < steps).float()
            if self.cfg.order == "learned":
                step_loss = F.binary_cross_entropy_with_logits(p, labels, reduction="none").mean(1)  # Eq. 8
                nxt = p.detach().masked_fill(emitted, float("-inf")).argmax(1)                      # Eq. 9
            else:
                nxt = sequence[:, t].clamp_min(0)
                step_loss = F.cross_entropy(p.masked_fill(emitted, -1e9), nxt, reduction="none")
            total = total + (step_loss * active).sum()
            n = n + active.sum()
            emitted = emitted.clone()
            emitted[rows, nxt] = True                                                           # Eq. 10
        return loss_map + total / n.clamp_min(1)

    # -- decoding -------------------------------------------------------------------------
    def decode_inputs(self, maps: torch.Tensor):
        context, state, _ = self.begin(maps)
        return context, state

    def step_fn(self, context, state, emitted, prev):
        """The ``mlbook.decoding`` interface: log P(label | image, path) for every label."""
        p, state, _ = self.step(context, state, emitted)
        return self.log_prob(p, emitted), state

    @torch.no_grad()
    def decode(self, maps: torch.Tensor, *, beam: int = 3, max_len: int = 5, threshold: float = 0.0,
               batch_size: int = 512) -> torch.Tensor:
        """Label sequences [N, max_len] (-1 padded); ``beam=1`` is greedy."""
        outs, dev = [], next(self.parameters()).device
        for i in range(0, maps.shape[0], batch_size):
            context, state = self.decode_inputs(maps[i:i + batch_size].to(dev))
            if beam == 1:
                seq, _ = greedy_decode(self.step_fn, context, state, self.cfg.num_classes,
                                       max_len=max_len, threshold=threshold)
            else:
                seq, _ = beam_search(self.step_fn, context, state, self.cfg.num_classes,
                                     beam=beam, max_len=max_len, threshold=threshold)
            outs.append(seq.cpu())
        return torch.cat(outs) if outs else torch.empty(0, max_len, dtype=torch.long)

    @torch.no_grad()
    def replay(self, maps: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        """Attention maps [N, T, m] along given label sequences (for Fig. 3); zeros after the end."""
        maps = maps.to(next(self.parameters()).device)
        sequences = sequences.to(maps.device)
        context, state = self.decode_inputs(maps)
        N, T = sequences.shape
        emitted = torch.zeros(N, self.cfg.num_classes, dtype=torch.bool, device=maps.device)
        m = context[0].shape[1]
        out = torch.zeros(N, T, m)
        rows = torch.arange(N, device=maps.device)
        for t in range(T):
            _, state, alpha = self.step(context, state, emitted)
            if alpha is not None:
                out[:, t] = alpha.cpu() * (sequences[:, t] >= 0).float()[:, None].cpu()
            emitted = emitted.clone()
            ok = sequences[:, t] >= 0
            emitted[rows[ok], sequences[ok, t]] = True
        return out


def fixed_order_sequences(labels: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """[N, C] labels -> [N, max count] label indices sorted by ``rank`` (low first), -1 padded."""
    N, C = labels.shape
    T = max(int(labels.sum(1).max().item()) if N else 0, 1)
    key = torch.where(labels > 0.5, rank[None, :].float(), torch.full((N, C), float("inf")))
    order = key.argsort(dim=1, stable=True)[:, :T]
    valid = torch.arange(T)[None, :] < labels.sum(1, keepdim=True)
    return torch.where(valid, order, torch.full_like(order, -1))


def label_rank(labels: torch.Tensor, order: str) -> torch.Tensor:
    """Position of each class in the fixed order: "frequency" = most frequent first, "rare" = reverse."""
    freq = labels.sum(0)
    idx = freq.argsort(descending=(order == "frequency"), stable=True)
    rank = torch.empty_like(idx)
    rank[idx] = torch.arange(len(idx))
    return rank


# --- experiments: one row of Tables 1-2 ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Training and decoding hyper-parameters of a row (Sect. "Implementation")."""
    epochs: int
    batch_size: int
    lr: float = 3e-4                    # Adam, as the paper
    hidden: int = 1000
    att_dim: int = 512
    pred_hidden: int = 512
    keep_prob: float = 0.8
    beam: int = 3
    holdout: float = 0.1                # part of the training set that chooses the threshold
    thresholds: tuple = (0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002, 0.001)
    select_by: str = "OF1+CF1"          # validation criterion for the threshold
    top_k: int = 3                      # tables' top-3 protocol: the first 3 labels emitted


def settings_for(profile) -> TrainSettings:
    """Paper sizes where the backbone is a ResNet; small ones for the demo's small CNN."""
    if profile.backbone == "small_cnn":
        return TrainSettings(epochs=max(profile.head_epochs * 2, 2), batch_size=profile.batch_size,
                             lr=3e-3, hidden=128, att_dim=64, pred_hidden=128)
    return TrainSettings(epochs=profile.head_epochs, batch_size=profile.batch_size)


def set_metrics(sequences: torch.Tensor, labels: torch.Tensor, top_k: int | None = 3) -> dict:
    """CP/CR/CF1/OP/OR/OF1 (fractions) of decoded label sets, the first ``top_k`` labels emitted."""
    from ..metrics import prf

    scores = sequences_to_sets(sequences, labels.shape[1], k=top_k)
    return prf(scores, labels, k=top_k or labels.shape[1], floor=1e-6)


def select_threshold(decode_fn, val_maps: torch.Tensor, val_labels: torch.Tensor,
                     thresholds, select_by: str = "OF1+CF1", top_k: int | None = 3) -> tuple[float, list]:
    """Choose the beam-search stopping threshold on validation data only.

    ``decode_fn(maps, threshold) -> sequences``. Returns (best threshold, [(threshold, metrics)]).
    """
    keys = select_by.split("+")
    curve = []
    for tau in thresholds:
        m = set_metrics(decode_fn(val_maps, tau), val_labels, top_k)
        curve.append((float(tau), m))
    best = max(curve, key=lambda tm: (sum(tm[1][k] for k in keys), -tm[0]))
    return best[0], curve


def fit_order_free(train_maps: torch.Tensor, train_labels: torch.Tensor, cfg: OrderFreeConfig,
                   s: TrainSettings, *, seed: int = 0, device: str = "cpu", checkpoint=None,
                   desc: str = "order-free rnn"):
    """Train on the fit part of the training set, choose the threshold on its held-out part.

    Never sees the test split. Returns (model, threshold, validation curve, history, max_len).
    """
    from ..stages import holdout_split
    from ..train import fit

    torch.manual_seed(seed)
    fit_idx, val_idx = holdout_split(len(train_labels), s.holdout, seed)
    max_len = max(int(train_labels.sum(1).max().item()), 1)   # largest label count in training
    model = OrderFreeRNN(cfg)
    if cfg.order == "learned":
        data = torch.utils.data.TensorDataset(train_maps[fit_idx], train_labels[fit_idx])
    else:
        seq = fixed_order_sequences(train_labels, label_rank(train_labels[fit_idx], cfg.order))
        data = torch.utils.data.TensorDataset(train_maps[fit_idx], train_labels[fit_idx], seq[fit_idx])

    def loss_fn(m, batch):
        return m.loss(*batch)

    history = fit(model, data, loss_fn, epochs=s.epochs, batch_size=s.batch_size, device=device, seed=seed,
                  make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.lr),
                  checkpoint=checkpoint, desc=desc, progress=False)
    model.eval()   # decoding runs where the model was trained
    decode = lambda maps, tau: model.decode(maps.float(), beam=s.beam, max_len=max_len, threshold=tau)  # noqa: E731
    tau, curve = select_threshold(decode, train_maps[val_idx].float(), train_labels[val_idx],
                                  s.thresholds, s.select_by, s.top_k)
    return model, tau, curve, history, max_len


ROWS = {  # table method name -> model options
    "Ours": dict(attention=True, order="learned"),
    "Ours (w/o atten)": dict(attention=False, order="learned"),
    "Frequency-first (w/ atten)": dict(attention=True, order="frequency"),
    "Rare-first (w/ atten)": dict(attention=True, order="rare"),
}


def run_row(method: str, dataset: str, profile, root: str | None = None, seed: int = 0,
            device: str = "auto", weights: str | None = None, force: bool = False) -> dict:
    """Train and evaluate one Order-Free RNN row of Tables 1-2 (a cached experiment).

    Returns {"metrics" (beam search, top-3 of the emitted labels), "metrics_greedy",
    "sequences" / "sequences_greedy" [N_test, max_len], "threshold", "val_curve",
    "history", "max_len", "state_dict", "config"}.
    """
    from .. import experiments, stages
    from ..profiles import get_profile

    profile = get_profile(profile) if isinstance(profile, str) else profile
    if profile.backbone != "small_cnn":
        profile = profile.replace(backbone="resnet152")          # the paper's backbone (Sect. "Implementation")
    s = settings_for(profile)
    opts = ROWS[method]
    config = {"chapter": "04_order_free_rnn", "method": method, "version": 3,
              **stages.data_key(dataset, profile, root, seed), "backbone": profile.backbone,
              "image_size": profile.image_size, "weights": weights, "settings": dataclasses.asdict(s), **opts}

    def _compute(folder: Path) -> dict:
        feats = stages.backbone_features(dataset, profile, root, seed, device, weights)
        data = stages.splits(dataset, profile, root, seed)
        cfg = OrderFreeConfig(num_classes=data.train.num_classes, feat_dim=feats["train"].shape[1],
                              hidden=s.hidden, att_dim=s.att_dim, pred_hidden=s.pred_hidden,
                              keep_prob=s.keep_prob, **opts)
        model, tau, curve, history, max_len = fit_order_free(
            feats["train"], data.train.labels, cfg, s, seed=seed, device=device,
            checkpoint=folder / "checkpoint.pt", desc=f"{method} {dataset}")
        test_maps = feats["test"].float()
        seq = model.decode(test_maps, beam=s.beam, max_len=max_len, threshold=tau)
        seq_greedy = model.decode(test_maps, beam=1, max_len=max_len, threshold=tau)
        return {"metrics": set_metrics(seq, data.test.labels, s.top_k),
                "metrics_greedy": set_metrics(seq_greedy, data.test.labels, s.top_k),
                "metrics_all_emitted": set_metrics(seq, data.test.labels, None),
                "sequences": seq, "sequences_greedy": seq_greedy, "threshold": tau,
                "val_curve": curve, "history": history, "max_len": max_len,
                "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                "config": dataclasses.asdict(cfg)}

    compute = stages.head_on_frozen_features(_compute, dataset, profile, root, seed, device, weights)
    return experiments.run("order_free_rnn", config, compute, force=force)


def load_model(result: dict) -> OrderFreeRNN:
    model = OrderFreeRNN(OrderFreeConfig(**result["config"]))
    model.load_state_dict(result["state_dict"])
    return model.eval()


def _method(name: str):
    from ..experiments import cli_method

    return cli_method(run_row, name)


#: table method name -> train-and-evaluate function (used by ``python -m mlbook train --method``)
METHODS = {"order_free_rnn": _method("Ours"),
           "order_free_rnn_no_attention": _method("Ours (w/o atten)"),
           "order_free_rnn_frequency_first": _method("Frequency-first (w/ atten)"),
           "order_free_rnn_rare_first": _method("Rare-first (w/ atten)")}


# --- evidence for the claims: paired bootstrap and recall by object size -------------------------

def prediction_matrix(sequences: torch.Tensor, num_classes: int, top_k: int | None = 3) -> torch.Tensor:
    """Decoded sequences -> [N, C] bool: the first ``top_k`` labels emitted."""
    return sequences_to_sets(sequences, num_classes, k=top_k) > 0


def _f1s(nc, np_, ng):
    """CF1 (harmonic of CP, CR; empty precision 0; CR over classes with a label) and OF1 per row."""
    cp = torch.where(np_ > 0, nc / np_.clamp_min(1), torch.zeros_like(nc)).mean(-1)
    has = (ng > 0).double()
    cr = (torch.where(ng > 0, nc / ng.clamp_min(1), torch.zeros_like(nc)) * has).sum(-1) / has.sum(-1).clamp_min(1)
    op = nc.sum(-1) / np_.sum(-1).clamp_min(1)
    orr = nc.sum(-1) / ng.sum(-1).clamp_min(1)
    f = lambda p, r: torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-12), torch.zeros_like(p))  # noqa: E731
    return {"CF1": f(cp, cr), "OF1": f(op, orr)}


def bootstrap_f1_diff(pred_a: torch.Tensor, pred_b: torch.Tensor, labels: torch.Tensor, *,
                      n_boot: int = 1000, level: float = 0.9, seed: int = 0) -> dict:
    """F1(a) - F1(b) on the test images with a paired bootstrap interval (resampling images).

    Returns {"CF1": (diff, lo, hi), "OF1": (...)} in percentage points.
    """
    from ..metrics import bootstrap_weights

    N = labels.shape[0]
    y = labels > 0.5
    W = torch.cat([torch.ones(1, N, dtype=torch.float64), bootstrap_weights(n_boot, N, seed)])  # row 0: the test set
    ng = W @ y.double()
    out = {}
    fa = _f1s(W @ (pred_a & y).double(), W @ pred_a.double(), ng)
    fb = _f1s(W @ (pred_b & y).double(), W @ pred_b.double(), ng)
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    for k in ("CF1", "OF1"):
        d = (fa[k] - fb[k]) * 100
        lo, hi = torch.quantile(d[1:], q).tolist()
        out[k] = (float(d[0]), lo, hi)
    return out


def object_size_hits(pred: torch.Tensor, boxes, image_sizes) -> tuple[torch.Tensor, torch.Tensor]:
    """One entry per (image, label) with a box: (relative size = sqrt(box area / image area)
    of its largest box, whether the label was predicted)."""
    sizes, hits = [], []
    for i, bs in enumerate(boxes):
        W, H = image_sizes[i]
        largest: dict[int, float] = {}
        for b in bs:
            largest[b.label] = max(largest.get(b.label, 0.0), math.sqrt(max(b.w * b.h, 0.0) / (W * H)))
        for lab, s in largest.items():
            sizes.append(s)
            hits.append(bool(pred[i, lab]))
    return torch.tensor(sizes), torch.tensor(hits)


def size_buckets(sizes: torch.Tensor, n: int = 3) -> tuple[torch.Tensor, list[float]]:
    """Equal-count buckets of relative object size (0 = smallest); returns (bucket ids, edges)."""
    edges = torch.quantile(sizes.double(), torch.linspace(0, 1, n + 1, dtype=torch.float64)[1:-1]).tolist()
    return torch.bucketize(sizes.double(), torch.tensor(edges, dtype=torch.float64)), edges


def bootstrap_recall_gain(hits_a: torch.Tensor, hits_b: torch.Tensor, bucket: torch.Tensor, *,
                          n_boot: int = 1000, level: float = 0.9, seed: int = 0) -> dict:
    """Recall gain (a - b, points) per size bucket, and the small-minus-large gain with a bootstrap
    interval (resampling objects). Returns {"gain": [per bucket], "small_minus_large": (d, lo, hi)}."""
    g = torch.Generator().manual_seed(seed)
    d = (hits_a.double() - hits_b.double()) * 100
    nb = int(bucket.max()) + 1
    gains = [float(d[bucket == k].mean()) for k in range(nb)]
    small, large = d[bucket == 0], d[bucket == nb - 1]
    bs = lambda x: x[torch.randint(len(x), (n_boot, len(x)), generator=g)].mean(1)  # noqa: E731
    diff = bs(small) - bs(large)
    q = torch.tensor([(1 - level) / 2, 1 - (1 - level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(diff, q).tolist()
    return {"gain": gains, "small_minus_large": (gains[0] - gains[-1], lo, hi)}


def verdict_from_interval(lo: float, hi: float):
    """True (the interval is above 0), False (below 0), None (it contains 0: not resolved here)."""
    return True if lo > 0 else False if hi < 0 else None


# --- Fig. 3: predictions with one attention map per emitted label ----------------------------------

def pick_examples(pred: torch.Tensor, labels: torch.Tensor, n: int = 2) -> tuple[list[int], list[int]]:
    """(correct, incorrect) test indices: exact label-set matches vs images with at least one
    wrongly predicted label, images with more labels first (then by index), ``n`` of each."""
    y = labels > 0.5
    count = y.sum(1)
    exact = (pred == y).all(1) & (count >= 2)
    wrong = (pred & ~y).any(1) & (count >= 2)
    order = sorted(range(len(y)), key=lambda i: (-int(count[i]), i))
    return [i for i in order if exact[i]][:n], [i for i in order if wrong[i]][:n]


def attention_figure(model: OrderFreeRNN, maps: torch.Tensor, sequences: torch.Tensor, data,
                     rows: list[tuple[int, str]], top_k: int | None = 3):
    """One row per (test index, tag): the image with its true labels, then the attention map
    (Eq. 4, upsampled over the image) of each emitted label in prediction order;
    wrong labels in red."""
    import matplotlib.pyplot as plt
    import numpy as np

    from ..data.base import open_rgb

    idx = [i for i, _ in rows]
    seqs = sequences[idx] if top_k is None else sequences[idx, :top_k]
    alphas = model.replay(maps[idx].float(), seqs)                  # [R, T, m]
    h, w = maps.shape[2:]
    T = max(int((seqs >= 0).sum(1).max()), 1)
    fig, axes = plt.subplots(len(rows), T + 1, figsize=(1.9 * (T + 1), 2.6 * len(rows)), squeeze=False)
    for r, (i, tag) in enumerate(rows):
        image = np.asarray(open_rgb(data.image_paths[i]))
        H, W = image.shape[:2]
        truth = [data.classes[c] for c in torch.nonzero(data.labels[i] > 0.5).flatten().tolist()]
        ax = axes[r, 0]
        ax.imshow(image)
        ax.set_title(tag, fontsize=8)
        ax.set_xlabel("\n".join([", ".join(truth[j:j + 3]) for j in range(0, len(truth), 3)]), fontsize=7)
        for t in range(T):
            ax = axes[r, t + 1]
            lab = int(seqs[r, t])
            if lab < 0:
                ax.axis("off")
                continue
            a = alphas[r, t].view(1, 1, h, w)
            a = F.interpolate(a, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
            ax.imshow(image)
            ax.imshow(a / max(a.max(), 1e-12), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ok = bool(data.labels[i, lab] > 0.5)
            ax.set_title(f"{t + 1}. {data.classes[lab]}", fontsize=8, color="black" if ok else "red")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
