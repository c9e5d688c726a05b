"""CADM: class-aware disentangled maps + label correlation embedding.

Chen, Wei, Jin, Guo, "Multi-label image recognition with joint class-aware map
disentangling and label correlation embedding", ICME 2019 (chapter 05_cadm).

- Sec. 2.2: X = f_cnn(I) (Eq. 1), conv maps [B, d, h, w]; stream 1 = global max
  pooling + a linear classifier theta_fcls (Eq. 2).
- Sec. 2.3: CADMs A = theta_fcls^T X (Eqs. 6-7), one h x w map per class, the
  bias omitted as in the paper; stream 2 = depth-wise global max pooling of A;
  the prediction is the mean of both streams (Eq. 3), trained with BCE (Eq. 4).
- Sec. 2.4: each flattened CADM goes through a two-layer MLP with ReLU to a label
  vector a_c (Eq. 8); L_lce (Eq. 12, ``mlbook.losses.label_correlation_embedding_loss``)
  clusters the positive labels' vectors and pushes the negatives beyond a margin.
  L = L_cls + lambda L_lce (Eq. 5), lambda = 0.5; the ablation lambda = 0.
- The baseline: the backbone with GMP and a linear classifier (Table 1, "ResNet-101").

Variants (``VARIANTS``): "baseline", "lambda0", "lambda0.5", and "lambda0.5_embed_only",
the other reading of where L_lce's gradient goes (``CADMOptions.lce_grad``). Fine-tuning,
evaluation and the chapter's evidence: ``mlbook.experiments.cadm``.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import label_correlation_embedding_loss

# variant -> (streams, lambda); "streams": "fcls" = the GMP + linear baseline,
# "both" = the bi-stream CADM model of Eq. 3.
VARIANTS = {
    "baseline": {"streams": "fcls", "lam": 0.0, "lce_grad": "all", "label": "ResNet-101 (Baseline)"},
    "lambda0": {"streams": "both", "lam": 0.0, "lce_grad": "all", "label": "Ours (lambda=0)"},
    "lambda0.5": {"streams": "both", "lam": 0.5, "lce_grad": "all", "label": "Ours (lambda=0.5)"},
    "lambda0.5_embed_only": {"streams": "both", "lam": 0.5, "lce_grad": "embed",
                             "label": "Ours (lambda=0.5), L_lce trains f_embed only"},
}


# --- the model ---------------------------------------------------------------------

def class_aware_maps(weight: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Eq. 7: A = theta_fcls^T X. ``weight`` [C, d] (nn.Linear layout), ``maps`` [B, d, h, w] -> [B, C, h, w].

    A[b, c, i, j] = sum_k weight[c, k] * maps[b, k, i, j]  (Eq. 6 per class; no bias, Sec. 2.3).
    """
    return torch.einsum("cd,bdhw->bchw", weight.to(maps.dtype), maps)


class CADMNet(nn.Module):
    """Backbone + GMP/linear stream (Eq. 2) + CADM stream (Eqs. 6-7) + label embedding (Eq. 8).

    ``streams="fcls"``: only stream 1 (the paper's baseline: GMP + linear classifier).
    ``streams="both"``: y = (y_fcls + y_scls) / 2 (Eq. 3).
    ``embedding=True`` adds f_embed: Linear(h*w, hidden) - ReLU - Linear(hidden, dim) (Eq. 8);
    the paper gives neither width, ``embed_hidden`` and ``embed_dim`` are named options.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, map_hw: tuple[int, int] | None = None,
                 *, streams: str = "both", embedding: bool = True,
                 embed_hidden: int = 256, embed_dim: int = 64):
        super().__init__()
        if streams not in ("fcls", "both"):
            raise ValueError(f"streams must be 'fcls' or 'both', got {streams!r}")
        if embedding and map_hw is None:
            raise ValueError("the label embedding needs the map size map_hw=(h, w)")
        self.backbone, self.streams, self.num_classes = backbone, streams, num_classes
        self.map_hw = tuple(map_hw) if map_hw is not None else None
        self.fc = nn.Linear(backbone.out_channels, num_classes)          # theta_fcls (Eq. 2)
        self.embed = None
        if embedding:
            h, w = self.map_hw
            self.embed = nn.Sequential(nn.Linear(h * w, embed_hidden), nn.ReLU(inplace=True),
                                       nn.Linear(embed_hidden, embed_dim))  # f_embed (Eq. 8)

    def cadm(self, maps: torch.Tensor) -> torch.Tensor:
        return class_aware_maps(self.fc.weight, maps)

    def label_vectors(self, cadm: torch.Tensor) -> torch.Tensor:
        """Eq. 8: a_c = f_embed(f_flat(A_c)) for every class: [B, C, h, w] -> [B, C, E]."""
        if self.embed is None:
            raise RuntimeError("this CADMNet was built without the label embedding")
        return self.embed(cadm.flatten(2))

    def forward(self, x: torch.Tensor, details: bool = False, detach_embedding: bool = False):
        """Logits y (Eq. 3; Eq. 2 alone for the baseline); with ``details`` a dict of
        logits, fcls, scls [B, C], cadm [B, C, h, w] and vectors [B, C, E] (if embedded).
        ``detach_embedding``: f_embed reads the CADMs detached (L_lce trains f_embed only)."""
        maps = self.backbone(x)                                           # X (Eq. 1)
        fcls = self.fc(maps.amax(dim=(2, 3)))                             # Eq. 2 (GMP + linear)
        if self.streams == "fcls" and not details:
            return fcls
        cadm = self.cadm(maps)                                            # Eq. 7
        scls = cadm.amax(dim=(2, 3))                                      # depth-wise GMP of A
        logits = fcls if self.streams == "fcls" else 0.5 * (fcls + scls)  # Eq. 3
        if not details:
            return logits
        out = {"logits": logits, "fcls": fcls, "scls": scls, "cadm": cadm}
        if self.embed is not None:
            out["vectors"] = self.label_vectors(cadm.detach() if detach_embedding else cadm)
        return out


@torch.no_grad()
def feature_map_size(backbone: nn.Module, image_size: int) -> tuple[int, int]:
    """(h, w) of the backbone's conv maps for a square input, by one probe forward in eval mode."""
    was_training = backbone.training
    backbone.eval()
    p = next(backbone.parameters())
    out = backbone(torch.zeros(1, 3, image_size, image_size, device=p.device, dtype=p.dtype))
    backbone.train(was_training)
    return int(out.shape[2]), int(out.shape[3])


@dataclasses.dataclass(frozen=True)
class CADMOptions:
    """The knobs of the model and of L_lce; the paper's choice where it makes one."""
    lam: float = 0.5                 # Eq. 5, "set to 0.5 in all the experiments"
    margin: float = 1.0              # Eq. 12, the "1 -" in the hinge
    negatives: str = "per_label"     # Eq. 12 as typeset; "summed" = the text's [1 - sum_k ...]_+
    lce_reduction: str = "per_class"  # divide Eq. 12 by C like the class-averaged BCE (Eq. 4 / C)
    embed_hidden: int = 256          # f_embed widths: not given in the paper
    embed_dim: int = 64
    lce_grad: str = "all"            # "all": L_lce trains f_embed, theta_fcls and the backbone through the
    #                                  CADMs; "embed": f_embed only (Eqs. 9/11 name theta_embed alone)


def make_model(variant: str, backbone: nn.Module, num_classes: int, map_hw: tuple[int, int],
               options: CADMOptions = CADMOptions()) -> CADMNet:
    spec = VARIANTS[variant]
    embedding = spec["streams"] == "both" and spec["lam"] > 0  # lambda = 0: f_embed has no effect
    return CADMNet(backbone, num_classes, map_hw, streams=spec["streams"],
                   embedding=embedding, embed_hidden=options.embed_hidden, embed_dim=options.embed_dim)


def make_loss(lam: float, options: CADMOptions = CADMOptions()):
    """loss_fn(model, (x, labels, ignore)) -> {"loss", "cls", "lce", "pull", "push"}: Eq. 5.

    L_cls is the BCE of Eq. 4 averaged over the scored (image, class) entries,
    i.e. Eq. 4 divided by C; L_lce follows ``options`` (also divided by C by default).
    With ``options.lce_grad == "embed"`` the CADMs enter f_embed detached, so L_lce
    moves theta_embed only. ``x`` is the model's input, already normalised.
    """
    def loss_fn(model, batch):
        x, labels, ignore = batch
        keep = (~ignore).float()
        out = model(x, details=lam > 0, detach_embedding=options.lce_grad == "embed")
        logits = out["logits"] if lam > 0 else out
        cls = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
        cls = (cls * keep).sum() / keep.sum().clamp_min(1)
        if lam == 0:
            return {"loss": cls, "cls": cls}
        lce, pull, push = label_correlation_embedding_loss(
            out["vectors"], labels, ignore, margin=options.margin, negatives=options.negatives,
            reduction=options.lce_reduction, terms=True)
        return {"loss": cls + lam * lce, "cls": cls, "lce": lce, "pull": pull, "push": push}

    return loss_fn
