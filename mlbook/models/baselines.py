"""Baselines the papers' tables compare with, all on a frozen backbone's features.

- ``knn``: k nearest training images (cosine on globally pooled features), labels summed.
- ``LinearHead`` + a loss: "ResNet baseline" (BCE), "Softmax" (cross-entropy against
  the normalised label vector, Gong et al. 2013 Eq. 2), "WARP" (Gong et al. 2013 Eq. 4).
- ``CNNRNN`` (Wang et al. 2016): image and label embeddings joined after an LSTM
  that reads the labels in frequency order (``label_rank``, ``fixed_order_sequences``: the
  fixed order the Order-Free RNN's ablations use too), trained with softmax cross-entropy
  over labels + END, decoded with beam search.

The papers fine-tune their CNN for some of these; here every baseline sits on
the same frozen features as the model it is compared with (stated in the chapters).
Training and evaluation of a row: ``mlbook.experiments.baselines``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..decoding import beam_search, path_label_scores
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

# Its fixed label order (most frequent first), the convention the Order-Free RNN's fixed-order
# ablations (frequency-first, rare-first) also follow.

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
    def decode(self, feats: torch.Tensor, beam: int = 3, max_len: int = 5, batch_size: int = 512,
               end: bool = True):
        """Beam search; ``end=False``: END is no candidate, so every path runs to ``max_len``
        labels ranked by their scores (the top-k protocol of a sequence model)."""
        outs, dev = [], self.labels.weight.device
        for i in range(0, feats.shape[0], batch_size):
            context, state = self.begin(feats[i:i + batch_size].to(dev))
            seq, _ = beam_search(self.step_fn, context, state, self.num_classes, beam=beam,
                                 max_len=max_len, end_index=self.num_classes if end else None)
            outs.append(seq.cpu())
        return torch.cat(outs)

    @torch.no_grad()
    def label_scores(self, feats: torch.Tensor, seqs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """[N, C] scores of the labels of decoded paths ``seqs`` [N, T] under
        ``decoding.SEQUENCE_SCORE_RULE`` (emitted labels first, then each label's best step
        probability along the path), for the ranking metrics."""
        outs, dev = [], self.labels.weight.device
        for i in range(0, feats.shape[0], batch_size):
            context, state = self.begin(feats[i:i + batch_size].to(dev))
            outs.append(path_label_scores(self.step_fn, context, state, seqs[i:i + batch_size], self.num_classes))
        return torch.cat(outs)

