"""Image-dependent transformation ranking: learn a k x d matrix A from an image.

The paper ("image-dependent ranking model", NUS-WIDE, AlexNet + word2vec) in one file:
the modules, the loss and the inference rules. No training loop and no experiment
code here (the chapter's runner composes these).

- Sec. 3.2, Eq. 1: f_theta(I) = A. AlexNet whose fc8 outputs k*d numbers, read as a
  k x d matrix per image (Table 1). ``TransformationHead`` is that last layer;
  ``alexnet_transformation_net`` the full network; ``TransformationNet`` the same head
  on any ``mlbook`` backbone (conv maps -> global average pooling -> head).
- Sec. 3.3, Eq. 3: the hinge rank loss, for each sampled negative n_j
  max(0, m + mean_i ||A p_i||_2 - ||A n_j||_2), summed over the negatives (40 in the paper).
- Sec. 3.5: inference. w'_l = A w_l; labels are ranked by ||A w_l||_2, small = relevant.
  Labels held out of training are just more rows of W (the zero-shot remark of Sec. 3.5).
- Sec. 4.4: the "committee" reading. Row a_r of A is a classifier of its own; since
  ||A w||^2 = sum_r (a_r . w)^2, row r's contribution to a label's squared norm is
  (a_r . w)^2, so row r ranks the labels by |a_r . w| (small = relevant). Voting over
  the rows' top-N labels (Table 5) and the mean pairwise Jaccard coefficient of the
  rows' top-5 sets (Fig. 9).

Shapes: A [B, k, d] (the batch of transformations), W [L, d] (one word vector per
label, ``mlbook.word_vectors``), norms / scores / votes [B, L]. The paper uses
k = 100 (Sec. 3.6) and d = 300 (GoogleNews word2vec, Sec. 3.4).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

PAPER_K = 100           # Sec. 3.6: "The transformed dimension k was set to 100"
PAPER_D = 300           # Sec. 3.4: word2vec skip-gram, 300-dim, GoogleNews
PAPER_NEGATIVES = 40    # Sec. 3.3: "We randomly choose other labels {n_j} (40 in the experiments)"


# --- the model (Sec. 3.2, Eq. 1) -------------------------------------------------------

class TransformationHead(nn.Linear):
    """The last layer of Eq. 1: a Linear(in_features, k*d) whose output is read as A [B, k, d].

    It *is* an ``nn.Linear`` (Table 1's fc8 with (k x d) x (4096 + 1) parameters);
    only ``forward`` differs: [B, in_features] -> [B, k, d], row-major (row r of A is
    outputs r*d ... r*d + d - 1).
    """

    def __init__(self, in_features: int, k: int, d: int, bias: bool = True):
        super().__init__(in_features, k * d, bias=bias)
        self.k, self.d = int(k), int(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).view(x.shape[0], self.k, self.d)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, k={self.k}, d={self.d}"


class TransformationNet(nn.Module):
    """Any ``mlbook`` backbone (conv maps [B, D, h, w], ``out_channels`` = D) + global
    average pooling + ``TransformationHead``: images -> A [B, k, d].

    The demo/smoke stand-in for the AlexNet of Table 1 (the paper's fc6/fc7 are not
    kept: the pooled conv features feed the head directly).
    """

    def __init__(self, backbone: nn.Module, k: int, d: int):
        super().__init__()
        self.backbone = backbone
        self.head = TransformationHead(backbone.out_channels, k, d)
        self.k, self.d = int(k), int(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(dim=(2, 3)))


def alexnet_transformation_net(k: int = PAPER_K, d: int = PAPER_D, weights=None, *,
                               download: bool | None = None) -> nn.Module:
    """torchvision AlexNet with fc8 replaced by ``TransformationHead(4096, k, d)``: images -> A [B, k, d].

    ``weights``: the ImageNet weights of conv1-fc7 (Sec. 3.6: fine-tuned from ImageNet), in the
    forms of ``backbones.build_backbone``: a torchvision ``alexnet`` state-dict file (e.g. the
    hub's ``alexnet-owt-7be5be79.pth``) or a dict {"alexnet": file, ...}; a dict without an
    "alexnet" entry (``{}`` included) means the torch hub cache. The file is checked
    (``mlbook.weights.check_weights_file``: readable with weights_only, hash prefix of its name,
    keys and shapes of the 1000-way AlexNet) and loaded *before* fc8 is replaced, so fc8 is
    freshly initialised. Nothing is downloaded unless ``download`` / ``MLBOOK_DOWNLOAD_WEIGHTS=1``.
    ``weights=None``: every layer randomly initialised (a UserWarning says so): for shapes,
    tests and speed, not for reproducing the paper.

    Note: torchvision's AlexNet is the single-GPU "one weird trick" variant
    (conv widths 64-192-384-256-256, an adaptive 6 x 6 pooling before fc6, 224 px input),
    not the 96-256-384-384-256 / 227 px network of Table 1; fc6-fc8 match
    (9216 -> 4096 -> 4096 -> k*d). The attribute ``pretrained`` records which it is.
    """
    import torchvision

    from ..weights import imagenet_network

    if weights is not None:
        net = imagenet_network("alexnet", weights, download)
    else:
        net = torchvision.models.alexnet(weights=None)
        warnings.warn("alexnet_transformation_net: no ImageNet weights given, every layer is randomly "
                      "initialised (the paper fine-tunes an ImageNet-pretrained AlexNet, Sec. 3.6)",
                      UserWarning, stacklevel=2)
    fc8 = net.classifier[6]
    net.classifier[6] = TransformationHead(fc8.in_features, k, d)       # Table 1: (k x d) @ 1 x 1
    net.k, net.d, net.pretrained = int(k), int(d), weights is not None
    return net


# --- inference (Sec. 3.5) ---------------------------------------------------------------

def transform_labels(A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """w'_l = A w_l for every image and label: A [B, k, d], W [L, d] -> [B, L, k]."""
    return torch.einsum("bkd,ld->blk", A, W.to(A.dtype))


def label_norms(A: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """||A w_l||_2 (Sec. 3.5): A [B, k, d], W [L, d] -> [B, L]. Small = relevant."""
    return torch.linalg.vector_norm(transform_labels(A, W), dim=2)


def rank_labels(norms: torch.Tensor) -> torch.Tensor:
    """Label indices [B, L] sorted by norm ascending (most relevant first); ties -> lower index."""
    return torch.sort(norms, dim=1, stable=True).indices


def scores_from_norms(norms: torch.Tensor) -> torch.Tensor:
    """A score for ``mlbook.metrics`` (higher = more relevant): -||A w_l||_2.

    It is monotone, so top-k by this score = the k smallest norms; AP/mAP see the
    same ranking as Sec. 3.5.
    """
    return -norms


# --- the loss (Sec. 3.3, Eq. 3) ---------------------------------------------------------

def _known_mask(known: torch.Tensor | None, shape, device) -> torch.Tensor:
    if known is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    known = known.to(device=device, dtype=torch.bool)
    if known.dim() == 1:
        known = known[None, :]
    return known.expand(shape)


def sample_negatives(negatives: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick ``n`` labels per row uniformly without replacement among the True entries of
    ``negatives`` [B, L] (bool); all of them where a row has fewer than ``n``. -> [B, L] bool.

    Vectorised: every label gets a uniform key, non-negatives get +inf, and the ``n``
    smallest keys of each row are kept (a uniformly random n-subset of the negatives).
    The keys come from ``generator`` (on its device; the CPU default RNG if None), so a
    seeded generator reproduces the draw on any device.
    """
    B, L = negatives.shape
    if n <= 0:
        return torch.zeros_like(negatives, dtype=torch.bool)
    if n >= L:
        return negatives.clone().bool()
    gen_device = generator.device if generator is not None else torch.device("cpu")
    keys = torch.rand(B, L, generator=generator, device=gen_device).to(negatives.device)
    keys = keys.masked_fill(~negatives, float("inf"))
    idx = torch.topk(keys, n, dim=1, largest=False).indices
    picked = torch.zeros_like(negatives, dtype=torch.bool).scatter_(1, idx, True)
    return picked & negatives           # rows with < n negatives: the +inf picks are dropped


def hinge_rank_loss(norms: torch.Tensor, targets: torch.Tensor, margin: float,
                    n_negatives: int = PAPER_NEGATIVES, generator: torch.Generator | None = None,
                    known: torch.Tensor | None = None) -> torch.Tensor:
    """Hinge rank loss of Eq. 3, averaged over the images that have at least one positive::

        L(I) = sum_j max(0, m + (1/|P|) sum_i ||A p_i||_2 - ||A n_j||_2)

    ``norms`` [B, L] = ``label_norms(A, W)``; ``targets`` [B, L] in {0, 1};
    ``margin`` = m (the paper does not give its value).
    Negatives {n_j}: ``n_negatives`` labels (40 in the paper) drawn per image uniformly
    without replacement from that image's negative labels, redrawn at every call; when an
    image has fewer negatives than ``n_negatives`` (the demo's ~24 labels), all of its
    negatives are used. ``generator`` makes the draw reproducible.
    ``known`` [L] or [B, L] bool: False = a label held out (zero-shot, Sec. 3.5) or an
    unannotated entry; it is neither a positive nor a negative and never reaches the loss.
    Images without a (known) positive contribute nothing; if no image has one the loss
    is 0 (with a graph, so ``backward`` still works). No loop over images.
    """
    valid = _known_mask(known, norms.shape, norms.device)
    pos = (targets > 0.5) & valid
    neg = ~(targets > 0.5) & valid
    n_pos = pos.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return norms.sum() * 0.0
    chosen = sample_negatives(neg, int(n_negatives), generator)                  # {n_j}
    zero = torch.zeros((), dtype=norms.dtype, device=norms.device)
    d_pos = torch.where(pos, norms, zero).sum(1) / n_pos.clamp_min(1)            # (1/|P|) sum_i ||A p_i||
    hinge = (margin + d_pos[:, None] - norms).clamp_min(0)                       # [B, L], one term per n_j
    per_image = torch.where(chosen, hinge, zero).sum(1)                          # sum over j (Eq. 3)
    return per_image[has_pos].mean()


# --- the committee reading (Sec. 4.4) ---------------------------------------------------

def classifier_top_sets(A: torch.Tensor, W: torch.Tensor, top_n: int) -> torch.Tensor:
    """Top-N label sets of the k row classifiers: [B, k, L] bool.

    Row r of A scores label l by |a_r . w_l| (its term (a_r . w_l)^2 of ||A w_l||^2);
    the ``top_n`` smallest are its picks; ties -> lower label index. ``top_n`` > L keeps all.
    """
    s = torch.einsum("bkd,ld->bkl", A, W.to(A.dtype)).abs()
    n = min(int(top_n), s.shape[2])
    if n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    idx = torch.sort(s, dim=2, stable=True).indices[..., :n]
    return torch.zeros(s.shape, dtype=torch.bool, device=s.device).scatter_(2, idx, True)


def committee_votes(A: torch.Tensor, W: torch.Tensor, top_n: int) -> torch.Tensor:
    """Votes [B, L] (int64): how many of the k row classifiers put label l in their top-N
    (Sec. 4.4, Table 5: "Voting (top N)"; with N = 1 each image gets k possibly repeated labels)."""
    return classifier_top_sets(A, W, top_n).sum(1)


def committee_scores(A: torch.Tensor, W: torch.Tensor, top_n: int) -> torch.Tensor:
    """A score [B, L] (higher = more relevant) whose top-k are the most voted labels.

    score = votes + (L - rank) / (L + 1), rank = the label's place (0 = smallest) in the
    full model's ordering by ||A w_l||_2: the fraction is in (0, 1), so it only breaks
    ties between labels with equal votes (the paper does not say how ties are broken;
    we use the full model's norm, smaller first).
    """
    votes = committee_votes(A, W, top_n)
    L = votes.shape[1]
    order = rank_labels(label_norms(A, W))
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(L, device=order.device).expand_as(order))
    return votes.to(torch.float64) + (L - rank).to(torch.float64) / (L + 1)


def mean_pairwise_jaccard(A: torch.Tensor, W: torch.Tensor, top_n: int = 5) -> torch.Tensor:
    """Per image, the mean Jaccard coefficient |S_r n S_s| / |S_r u S_s| of the rows'
    top-N label sets over all k(k-1)/2 pairs r < s (Sec. 4.4, Fig. 9: top 5) -> [B] float64.

    Vectorised: M [B, k, L] 0/1 membership, intersections = M M^T (batched matmul).
    """
    M = classifier_top_sets(A, W, top_n).to(torch.float64)
    k = M.shape[1]
    if k < 2:
        raise ValueError("the pairwise Jaccard coefficient needs k >= 2 rows")
    inter = M @ M.transpose(1, 2)                                    # [B, k, k]
    size = M.sum(2)                                                  # |S_r| (= top_n unless L < top_n)
    union = size[:, :, None] + size[:, None, :] - inter
    jac = inter / union
    off = ~torch.eye(k, dtype=torch.bool, device=M.device)
    return (jac * off).sum((1, 2)) / (k * (k - 1))                  # each pair counted twice / twice


# --- the trained head on frozen conv maps (fc6-fc8, or the demo's stand-in) ---------------

class FrozenMapsRanker(nn.Module):
    """Conv maps [B, D, h, w] -> A [B, k, d]: flatten, Linear(D*h*w, hidden), ReLU, Dropout,
    ``TransformationHead(hidden, k, d)`` (Eq. 1 with one hidden layer standing in for fc6-fc7,
    which read AlexNet's flattened 6 x 6 pool5 maps). ``pool=True``: average-pool the maps
    first (``in_features`` = D), the input the book's linear baselines (WARP) read.
    ``classifier``: the layers to use instead, ending with the ``TransformationHead`` (the
    ``classifier`` of ``alexnet_transformation_net``: AlexNet's own fc6, fc7 and the new fc8 of
    Table 1, on the flattened 256 x 6 x 6 pool5 maps); ``hidden`` is then fc8's input width."""

    def __init__(self, in_features: int, hidden: int, k: int, d: int, dropout: float = 0.5, pool: bool = False,
                 *, classifier: nn.Sequential | None = None):
        super().__init__()
        self.pool = bool(pool)
        if classifier is None:
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.head = TransformationHead(hidden, k, d)
        else:
            *layers, head = classifier
            fc6 = next(m for m in layers if isinstance(m, nn.Linear))
            shape = (fc6.in_features, head.in_features, getattr(head, "k", None), getattr(head, "d", None))
            if shape != (in_features, hidden, k, d):
                raise ValueError(f"the classifier maps {shape[0]} -> {shape[1]} -> {shape[2]} x {shape[3]} "
                                 f"(a TransformationHead last), not {in_features} -> {hidden} -> {k} x {d}")
            self.body, self.head = nn.Sequential(nn.Flatten(), *layers), head
        self.k, self.d = int(k), int(d)

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        return self.body(maps.mean(dim=(2, 3)) if self.pool else maps)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(maps))

    def norms(self, maps: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """||A w_l||_2 [B, L], the same numbers as ``label_norms(self(maps), W)`` (Sec. 3.5).

        With fewer labels than images in the batch it is cheaper to contract the head's
        weights with the word vectors first: A w_l = (G x_d w_l) h + B w_l, with G the head's
        weight viewed as [k, d, hidden] and B its bias viewed as [k, d]; A is never formed.
        Otherwise A is formed (Eq. 1) and ``label_norms`` applied.
        """
        h = self.features(maps)
        if W.shape[0] >= h.shape[0]:
            return label_norms(self.head(h), W)
        W = W.to(h.dtype)
        G = self.head.weight.view(self.k, self.d, -1)
        P = torch.einsum("kdh,ld->lkh", G, W)                                 # [L, k, hidden]
        out = torch.einsum("bh,lkh->blk", h, P)
        if self.head.bias is not None:
            out = out + (self.head.bias.view(self.k, self.d) @ W.T).T[None]   # [1, L, k]
        return torch.linalg.vector_norm(out, dim=2)
