"""Query2Label: label queries read the feature map through a transformer decoder.

Liu, Zhang, Yang, Su, Zhu, "Query2Label: A Simple Transformer Way to Multi-Label
Classification", arXiv 2107.10834 (2021). A yardstick of today's methods for a future
head-to-head chapter, not one of the book's four papers. Sec. 3 of the paper, in data-flow
order (equation numbers as we recall them):

    F0 = Backbone(x)                      [B, d0, H, W]   (Eq. 1)
    F  = Linear(F0) + 2-D sine positions  [B, H*W, d]     (the projection before Eq. 2)
    Q0 = K learnable label embeddings     [K, d]
    for i = 1..L:                                         (Eq. 2, one decoder layer)
        Q = SelfAttn(Q, Q, Q)             labels see each other (label correlations)
        Q = CrossAttn(Q, F + pos, F)      each label pools its own regions of the map
        Q = FFN(Q)                        (each with a residual and a LayerNorm)
    p_k = sigmoid(W_k . Q_L,k + b_k)      one linear classifier per label (Eq. 3)

The paper trains it with a simplified asymmetric loss (``mlbook.losses.asymmetric_loss``;
its gamma values: see the paper, we do not recall them surely). The last decoder layer's
cross-attention, [B, K, H*W] averaged over heads, is where each label looks: the paper's
attention-map figures, and ``details=True`` here.

The paper's own settings, as we recall them (unverified; check Sec. 4 before a full-profile
run): ResNet-101 at 448 px (a 14 x 14 map), d = 2048, 1 encoder and 2 decoder layers, 4
heads, FFN width 8192, dropout 0.1, post-norm layers as in DETR. The authors' code (as we
recall) also has options that drop the first decoder layer's self-attention; here every layer
has the three sub-layers of Eq. 2. No encoder layer here: the demo's backbone maps are small,
and the decoder is the paper's contribution. The defaults below are sized for a CPU demo.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Query2LabelConfig:
    num_classes: int                 # K: one query (and one classifier) per label
    in_channels: int                 # d0: channels of the backbone's maps
    d_model: int = 128               # d; paper: 2048 with ResNet-101 (recalled)
    layers: int = 1                  # decoder layers; paper: 2 (recalled)
    heads: int = 4                   # paper: 4 (recalled)
    ffn: int = 256                   # FFN hidden width; paper: 8192 = 4 d (recalled)
    dropout: float = 0.1             # paper/DETR: 0.1
    temperature: float = 10000.0     # of the sine positions (Vaswani et al. 2017; DETR)


# --- positions ------------------------------------------------------------------------------------

def sine_positions(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """2-D sine positional encoding, [h * w, dim] in the row-major order of ``maps.flatten(2)``.

    Row and column coordinates are normalised to (0, 2 pi] (so the encoding does not depend on
    the map size) and each gets dim / 2 channels: sin and cos at dim / 4 frequencies
    1 / temperature^(2i / (dim / 2)), the transformer's 1-D encoding applied per axis (as DETR).
    """
    if dim % 4:
        raise ValueError(f"the sine positions need a width divisible by 4, got {dim}")
    quarter = dim // 4
    freq = temperature ** (-torch.arange(quarter, dtype=torch.float64) * 2 / (dim // 2))   # [dim / 4]
    rows = torch.arange(1, h + 1, dtype=torch.float64) / h * 2 * math.pi
    cols = torch.arange(1, w + 1, dtype=torch.float64) / w * 2 * math.pi

    def encode(coord):                                                    # [n] -> [n, dim / 2]
        angle = coord[:, None] * freq[None, :]
        return torch.cat([angle.sin(), angle.cos()], dim=1)

    y = encode(rows)[:, None, :].expand(h, w, dim // 2)
    x = encode(cols)[None, :, :].expand(h, w, dim // 2)
    return torch.cat([y, x], dim=2).reshape(h * w, dim).float()


# --- the decoder ----------------------------------------------------------------------------------

class Attention(nn.Module):
    """Multi-head scaled dot-product attention, softmax(Q K^T / sqrt(d_h)) V per head (Vaswani et
    al. 2017, Eq. 1 and Sec. 3.2.2), written out so that the attention weights can be returned."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor):
        """[B, Nq, d], [B, Nk, d], [B, Nk, d] -> output [B, Nq, d], weights [B, heads, Nq, Nk]."""
        B, Nq, d = query.shape
        Nk, dh = key.shape[1], d // self.heads

        def split(t, n):                                                  # [B, n, d] -> [B, heads, n, dh]
            return t.view(B, n, self.heads, dh).transpose(1, 2)

        q, k, v = split(self.query(query), Nq), split(self.key(key), Nk), split(self.value(value), Nk)
        weights = (q @ k.transpose(-2, -1) / math.sqrt(dh)).softmax(dim=-1)
        out = self.drop(weights) @ v                                      # dropout on the weights, as torch's
        return self.out(out.transpose(1, 2).reshape(B, Nq, d)), weights


class DecoderLayer(nn.Module):
    """One layer of Eq. 2: self-attention among the label queries, cross-attention to the map,
    FFN; each sub-layer residual and then LayerNorm (post-norm, the DETR layer Q2L builds on)."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(ffn, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor):
        """queries [B, K, d], memory [B, HW, d], pos [HW, d] -> queries, cross weights [B, heads, K, HW]."""
        update, _ = self.self_attn(queries, queries, queries)
        queries = self.norm1(queries + self.drop(update))
        # keys carry the position, values do not (DETR): where a label looks depends on position,
        # what it pools is the content
        update, weights = self.cross_attn(queries, memory + pos, memory)
        queries = self.norm2(queries + self.drop(update))
        queries = self.norm3(queries + self.drop(self.ffn(queries)))
        return queries, weights


class Query2LabelHead(nn.Module):
    """The paper's head on backbone maps [B, d0, H, W] -> one logit per label [B, K]."""

    def __init__(self, config: Query2LabelConfig):
        super().__init__()
        c = config
        self.config = c
        self.proj = nn.Linear(c.in_channels, c.d_model)                  # the 1 x 1 conv d0 -> d, per position
        self.label_embed = nn.Parameter(torch.randn(c.num_classes, c.d_model))   # Q0
        self.layers = nn.ModuleList(DecoderLayer(c.d_model, c.heads, c.ffn, c.dropout) for _ in range(c.layers))
        # the group fully connected layer (Eq. 3): label k has its own weight vector W_k and bias b_k
        bound = 1 / math.sqrt(c.d_model)
        self.group_weight = nn.Parameter(torch.empty(c.num_classes, c.d_model).uniform_(-bound, bound))
        self.group_bias = nn.Parameter(torch.empty(c.num_classes).uniform_(-bound, bound))
        for layer in self.layers:                                         # Xavier matrices, as DETR's transformer
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def memory(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """maps [B, d0, H, W] -> the keys/values F [B, H*W, d] and their positions [H*W, d]."""
        _, _, h, w = maps.shape
        memory = self.proj(maps.flatten(2).transpose(1, 2))
        pos = sine_positions(h, w, self.config.d_model, self.config.temperature).to(memory)
        return memory, pos

    def decode(self, memory: torch.Tensor, pos: torch.Tensor, details: bool = False):
        """Eqs. 2-3 on flattened positions: any order of the H*W positions (with their encodings)
        gives the same logits, since attention sums over positions."""
        queries = self.label_embed[None].expand(memory.shape[0], -1, -1)
        weights = None
        for layer in self.layers:
            queries, weights = layer(queries, memory, pos)
        logits = (queries * self.group_weight).sum(-1) + self.group_bias  # W_k . Q_L,k + b_k, [B, K]
        if not details:
            return logits
        return {"logits": logits, "queries": queries,
                "attention": weights.mean(1),                             # last layer, [B, K, H*W]
                "attention_heads": weights}                               # [B, heads, K, H*W]

    def forward(self, maps: torch.Tensor, details: bool = False):
        memory, pos = self.memory(maps)
        out = self.decode(memory, pos, details)
        if details:
            out["map_hw"] = tuple(maps.shape[2:])
        return out


class Query2Label(nn.Module):
    """Backbone + ``Query2LabelHead``: images [B, 3, S, S] -> logits [B, K] (Eq. 1 then Eqs. 2-3).
    ``options`` are ``Query2LabelConfig`` fields (d_model, layers, heads, ffn, dropout)."""

    def __init__(self, backbone: nn.Module, num_classes: int, **options):
        super().__init__()
        self.backbone = backbone
        self.head = Query2LabelHead(Query2LabelConfig(num_classes, backbone.out_channels, **options))

    def forward(self, x: torch.Tensor, details: bool = False):
        return self.head(self.backbone(x), details)                      # F0 = Backbone(x) (Eq. 1)
