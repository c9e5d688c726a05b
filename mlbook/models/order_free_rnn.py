"""Order-Free RNN with Visual Attention (Chen, Chen, Chang, Wang; AAAI 2018), in one file.

    conv maps --Mmap--> V_feat, v_prob        (Sect. "Feature Mapping Layer", Eqs. 1-3)
    h_{t-1}, V_feat --Matt--> z_t, alpha_t     (Sect. "Attention Layer", Eqs. 4-5)
    v_pred, z_t, y~_{t-1} --Mpred--> h_t, p_t  (Sect. "Confidence-Ranked LSTM", Eqs. 6-7)
    loss_t = BCE(sigma(p_t), y)                (Eq. 8: the whole label vector, no order)
    l_t = argmax_{C_t} p_t, C_t = C_{t-1} - {l_{t-1}}   (Eqs. 9-10)

Test time: beam search over label paths scored by Eq. 11 (``mlbook.decoding``),
stopping below a probability threshold chosen on a held-out part of the
training set, or at the largest label count seen in training. ``merge_sets=True``
(a named option, not the paper's) merges beam paths that hold the same label set
in another order, keeping the more probable one.

Ablations of Tables 1-2 are options of the same model: ``attention=False`` (z_t
is the mean of V_feat) and ``order="frequency" | "rare"`` (labels fed in that
fixed order with teacher forcing, softmax cross-entropy over the pool at each
step, as the fixed-order RNNs of Jin & Nakayama 2016 and Wang et al. 2016); their label
sequences are CNN-RNN's (``fixed_order_sequences`` and ``label_rank`` of
``mlbook.models.baselines``).

Training, threshold selection and the evidence of the chapter's claims:
``mlbook.experiments.order_free_rnn``.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..decoding import beam_search, greedy_decode
from .baselines import fixed_order_sequences, label_rank  # noqa: F401  (the fixed orders' label sequences)

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
               batch_size: int = 512, merge_sets: bool = False) -> torch.Tensor:
        """Label sequences [N, max_len] (-1 padded); ``beam=1`` is greedy."""
        outs, dev = [], next(self.parameters()).device
        for i in range(0, maps.shape[0], batch_size):
            context, state = self.decode_inputs(maps[i:i + batch_size].to(dev))
            if beam == 1:
                seq, _ = greedy_decode(self.step_fn, context, state, self.cfg.num_classes,
                                       max_len=max_len, threshold=threshold)
            else:
                seq, _ = beam_search(self.step_fn, context, state, self.cfg.num_classes,
                                     beam=beam, max_len=max_len, threshold=threshold, merge_sets=merge_sets)
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
