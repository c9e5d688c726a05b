"""Training and evaluating the transformation ranking rows of Tables 3-5, and the chapter's evidence.

One row is a cached experiment (``run_row``): per (word-vector source, k, zero-shot split,
training seed), the head of ``mlbook.models.transformation_ranking`` trained with the
hinge rank loss (Eq. 3) on the frozen conv maps of the shared backbone (the fit part of
the training set), early stopped on its hold-out part, where the margin m is also chosen
from a small grid (top-3 C-F1 + O-F1). The result holds what the tables and figures need
and nothing bigger: the test scores (-||A w_l||, Sec. 3.5) [N, L], the committee scores for
voting with N = 1, 3, 5 (Table 5), the per-image mean pairwise Jaccard of the k row
classifiers' top-5 sets (Fig. 9), the history and the chosen margin. A itself ([N, k, d])
is not stored.

The demo head (``FrozenMapsRanker``): flatten the conv maps -> Linear(D*h*w, hidden) ->
ReLU -> Dropout(0.5) -> ``TransformationHead(hidden, k, d)``, the stand-in for AlexNet's
fc6-fc8 (Table 1) on top of frozen conv features. Mirroring (Sec. 3.6) is approximated by
flipping the conv maps horizontally (``maps.flip(-1)``) for a random half of each batch.

Zero-shot (beyond the paper, Sec. 3.5's remark): a fifth of the labels, fixed by the data
seed (``zero_shot_labels``), is held out of training: passed to the loss as unknown
(neither positive nor negative), left out of the margin choice and of the hold-out loss;
at test they are ranked by their norm like any other label.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch
from torch import nn

from .. import metrics
from .. import word_vectors as wv
from ..models import transformation_ranking as M
from ..profiles import get_profile, runs_dir
from ..train import fit
from . import baselines, shared

TRUNK = "alexnet"        # Sec. 3.6 / Table 1: ImageNet AlexNet, fc8 replaced by the k x d transformation


@dataclasses.dataclass(frozen=True)
class Settings:
    """Training hyper-parameters of a row (Sec. 3.6; demo sizes where the paper's do not apply)."""
    epochs: int                         # budget: early stopping on the hold-out loss
    batch_size: int
    lr: float = 1e-6                    # the paper: Adam, 1e-6, fine-tuning a pretrained AlexNet
    hidden: int = 4096                  # fc6/fc7 width of AlexNet
    dropout: float = 0.5
    pool: bool = False                  # True: average-pool the conv maps first (a variant, not AlexNet's fc6)
    k: int = M.PAPER_K                  # Sec. 3.6: k = 100
    negatives: int = M.PAPER_NEGATIVES  # Sec. 3.3: 40 negatives per image
    margins: tuple = (0.1, 0.3, 1.0, 3.0, 10.0)   # grid for m (the paper gives none), chosen on the hold-out part
    select_by: str = "CF1+OF1"          # hold-out criterion for m (top-3)
    flip: bool = True                   # mirroring, approximated on the conv maps
    patience: int = 3
    holdout: float = 0.1
    top_k: int = 3
    zero_shot_fraction: float = 0.2     # share of the labels held out in the zero-shot runs
    zero_shot_splits: int = 3           # held-out label sets (each with its own backbone in demo/smoke)
    k_sweep: tuple = (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)   # Sec. 4.3 / Fig. 8


def settings_for(profile) -> Settings:
    """Paper sizes for the full profile; a small head and Adam 1e-3 on the demo's frozen maps
    (hidden 128, batch 256: with k = 100, d = 384 the head alone has 128 x 38,400 weights, and
    the demo's CPU budget allows no more; a two-value margin grid, m = 0.3 having lost to both
    in a first demo run)."""
    profile = get_profile(profile)
    if profile.name == "smoke":
        return Settings(epochs=profile.head_epochs, batch_size=profile.batch_size, lr=1e-3, hidden=32, k=8,
                            margins=(0.3, 1.0), patience=profile.patience, holdout=profile.holdout, k_sweep=(2, 8))
    if profile.backbone == "small_cnn":
        return Settings(epochs=profile.head_epochs, batch_size=256, lr=1e-3, hidden=128,
                            patience=profile.patience, holdout=profile.holdout, k_sweep=(10, 40, 70, 100))
    # full: the ResNet maps (2048 x 14 x 14) are average-pooled first; flattened they would give fc6 1.6e9 weights
    return Settings(epochs=profile.head_epochs, batch_size=profile.batch_size, patience=profile.patience,
                        holdout=profile.holdout, pool=True)


# --- the head on frozen conv maps (demo stand-in for fc6-fc8) ------------------------------------

class FrozenMapsRanker(nn.Module):
    """Conv maps [B, D, h, w] -> A [B, k, d]: flatten, Linear(D*h*w, hidden), ReLU, Dropout,
    ``TransformationHead(hidden, k, d)`` (Eq. 1 with a one-hidden-layer stand-in for fc6-fc7,
    which read AlexNet's flattened 6 x 6 pool5 maps). ``pool=True``: average-pool the maps
    first (``in_features`` = D), the input the book's linear baselines (WARP) read."""

    def __init__(self, in_features: int, hidden: int, k: int, d: int, dropout: float = 0.5, pool: bool = False):
        super().__init__()
        self.pool = bool(pool)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = M.TransformationHead(hidden, k, d)
        self.k, self.d = int(k), int(d)

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        return self.body(maps.mean(dim=(2, 3)) if self.pool else maps)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(maps))

    def norms(self, maps: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """||A w_l||_2 [B, L], the same numbers as ``label_norms(self(maps), W)``.

        When there are fewer labels than images in the batch it is cheaper to contract the
        head's weights with the word vectors first: A w_l = (G x_d w_l) h + B w_l, with G the
        head's weight viewed as [k, d, hidden] and B its bias viewed as [k, d]; A itself is
        never formed. Otherwise A is formed (Eq. 1) and ``label_norms`` applied (Sec. 3.5).
        """
        h = self.features(maps)
        if W.shape[0] >= h.shape[0]:
            return M.label_norms(self.head(h), W)
        W = W.to(h.dtype)
        G = self.head.weight.view(self.k, self.d, -1)
        P = torch.einsum("kdh,ld->lkh", G, W)                                 # [L, k, hidden]
        out = torch.einsum("bh,lkh->blk", h, P)
        if self.head.bias is not None:
            out = out + (self.head.bias.view(self.k, self.d) @ W.T).T[None]   # [1, L, k]
        return torch.linalg.vector_norm(out, dim=2)


# --- word vectors and the zero-shot split -------------------------------------------------------

def word_matrix(names: list[str], source: str = "minilm", seed: int = 0) -> torch.Tensor:
    """W [L, d] for the label names (``mlbook.word_vectors``; MiniLM cached under runs/word_vectors)."""
    return wv.label_vectors(names, source, cache_dir=runs_dir() / "word_vectors", seed=seed)


def zero_shot_labels(num_classes: int, seed: int = 0, fraction: float = 0.2, split: int = 0) -> torch.Tensor:
    """The label indices held out of training in zero-shot split ``split`` (sorted), fixed by the
    data seed and the split number."""
    g = torch.Generator().manual_seed(seed + 424242 + 1009 * split)
    n = max(1, int(round(num_classes * fraction)))
    return torch.randperm(num_classes, generator=g)[:n].sort().values


def known_mask(num_classes: int, unseen: torch.Tensor | None) -> torch.Tensor | None:
    """[L] bool, False for the held-out labels (None when nothing is held out)."""
    if unseen is None or len(unseen) == 0:
        return None
    known = torch.ones(num_classes, dtype=torch.bool)
    known[unseen] = False
    return known


# --- training -------------------------------------------------------------------------------------

def ranking_loss(model, batch, W, margin: float, s: Settings, known=None, all_negatives: bool = False):
    """Eq. 3 on a batch of (maps, labels). In training a random half of the maps is mirrored.
    ``all_negatives`` (the hold-out loss): every negative label, so the hold-out loss is
    deterministic and early stopping does not follow the draw of the negatives."""
    maps, labels = batch
    maps = maps.float()
    if model.training and s.flip:
        flip = torch.rand(maps.shape[0], device=maps.device) < 0.5
        maps = torch.where(flip[:, None, None, None], maps.flip(-1), maps)
    norms = model.norms(maps, W.to(maps.device))
    n_neg = W.shape[0] if all_negatives else s.negatives
    return M.hinge_rank_loss(norms, labels, margin, n_neg, known=None if known is None else known.to(maps.device))


@torch.no_grad()
def test_norms(model, maps: torch.Tensor, W: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model.norms(maps[i:i + chunk].float(), W) for i in range(0, len(maps), chunk)])


def select_metrics(scores: torch.Tensor, labels: torch.Tensor, known, top_k: int) -> dict:
    """Top-k metrics among the known labels only (held-out labels take no slot)."""
    if known is None:
        return metrics.prf(scores, labels, k=top_k)
    cols = known.nonzero().flatten()
    return metrics.prf(scores[:, cols], labels[:, cols], k=top_k)


def fit_ranker(train_maps: torch.Tensor, train_labels: torch.Tensor, W: torch.Tensor, s: Settings,
               *, known=None, seed: int = 0, train_seed: int = 0, device: str = "cpu", folder: Path | None = None,
               margins=None, desc: str = "ranking"):
    """Train one model per margin of the grid on the fit part of the training set (early stopping on
    its hold-out part) and keep the one with the best hold-out top-k C-F1 + O-F1 among the known
    labels. Never sees the test split, nor the held-out labels' annotations.
    Returns (model, margin, [(margin, hold-out metrics)], history of the kept model)."""
    fit_idx, val_idx = shared.holdout_split(len(train_labels), s.holdout, seed)
    part = lambda idx: torch.utils.data.TensorDataset(train_maps[idx], train_labels[idx])  # noqa: E731
    keys = s.select_by.split("+")
    best, curve = None, []
    for margin in (margins or s.margins):
        torch.manual_seed(train_seed)
        in_features = train_maps.shape[1] if s.pool else train_maps[0].numel()
        model = FrozenMapsRanker(in_features, s.hidden, s.k, W.shape[1], s.dropout, s.pool)
        ckpt = None if folder is None else folder / f"checkpoint_m{margin:g}.pt"
        history = fit(model, part(fit_idx), lambda m, b: ranking_loss(m, b, W, margin, s, known),
                      val_loss_fn=lambda m, b: ranking_loss(m, b, W, margin, s, known, all_negatives=True),
                      epochs=s.epochs, batch_size=s.batch_size, device=device, seed=train_seed,
                      val_dataset=part(val_idx), patience=s.patience,
                      make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=s.lr),
                      checkpoint=ckpt, desc=f"{desc} m={margin:g}", progress=False)
        model = model.cpu().eval()
        val = select_metrics(-test_norms(model, train_maps[val_idx], W), train_labels[val_idx], known, s.top_k)
        curve.append((float(margin), val))
        score = sum(val[k] for k in keys)
        if best is None or score > best[0]:
            best = (score, float(margin), model, history)
    return best[2], best[1], curve, best[3]


@torch.no_grad()
def committee_evidence(model, maps: torch.Tensor, W: torch.Tensor, votes=(1, 3, 5), jaccard_top: int = 5,
                       chunk: int = 128) -> dict:
    """Sec. 4.4 on the test maps, in chunks (A is formed per chunk and dropped):
    {"committee_scores": {N: [n, L]}, "jaccard": [n]}."""
    model.eval()
    out = {n: [] for n in votes}
    jac = []
    for i in range(0, len(maps), chunk):
        A = model(maps[i:i + chunk].float())
        for n in votes:
            out[n].append(M.committee_scores(A, W, n))
        if A.shape[1] >= 2:
            jac.append(M.mean_pairwise_jaccard(A, W, jaccard_top))
    return {"committee_scores": {str(n): torch.cat(v) for n, v in out.items()},
            "jaccard": torch.cat(jac) if jac else torch.zeros(0, dtype=torch.float64)}


ROWS_BASE = {  # table row name -> how it differs from "Ours"
    "Ours": {},
    "Ours (random vectors)": {"words": "random"},          # the control: the same model without semantics
    "Ours (pooled maps)": {"pool": True},                   # a variant: pooled conv maps into fc6
}
STAGES = ("margin (words)", "margin (random)")   # the margin choice of each word source; and zero_shot_stage(j)
ZERO_SHOT_MARGIN = 1.0   # zero-shot rows: a fixed m, so the held-out labels take no part in any choice
OPTIONS = ("word_vectors",)


def rows(profile) -> dict:
    """Every row of chapter 07: name -> options (words, k, pool, zero-shot split)."""
    s = settings_for(profile)
    out = dict(ROWS_BASE)
    out.update({f"Ours (k={k})": {"k": k} for k in s.k_sweep if k != s.k})
    for j in range(s.zero_shot_splits):
        out[f"Ours zero-shot (split {j})"] = {"zero_shot": j}
        out[f"Ours (random vectors) zero-shot (split {j})"] = {"words": "random", "zero_shot": j}
    return out


def margin_stage(words: str) -> str:
    return f"margin ({words})"


def grid(profile, datasets=("nuswide",), seeds=(0,)) -> list[shared.Run]:
    """Every run of chapter 07: the frozen features (those of each zero-shot split from a backbone
    that never saw the split's labels), the margin choice of each word source (on the hold-out
    part, with the first training seed), then every row with every training seed, and the baselines."""
    splits_ = range(settings_for(profile).zero_shot_splits)
    runs = shared.feature_runs(datasets, trunk=TRUNK)
    runs += [shared.Run("transformation_ranking", zero_shot_stage(j), d, wave=-1) for d in datasets for j in splits_]
    runs += [shared.Run("transformation_ranking", margin_stage(w), d) for d in datasets for w in ("words", "random")]
    runs += [shared.Run("transformation_ranking", r, d, t, wave=1) for d in datasets for r in rows(profile)
             for t in seeds]
    return runs + [dataclasses.replace(r, wave=1) for r in
                   baselines.grid(profile, datasets, seeds, rows=("WARP", "CNN-RNN"), trunk=TRUNK)]


def zero_shot_stage(split: int) -> str:
    return f"zero-shot features (split {split})"


def zero_shot_features(dataset: str, profile, *, root=None, seed: int = 0, device: str = "auto", weights=None,
                       split: int = 0) -> dict:
    """The frozen features of zero-shot split ``split``: from a backbone whose training never saw
    the split's held-out labels (left out of its BCE), so no layer under the head has learnt them."""
    profile = get_profile(profile)
    s = settings_for(profile)
    C = shared.splits(dataset, profile, root, seed).train.num_classes
    unseen = zero_shot_labels(C, seed, s.zero_shot_fraction, split)
    return shared.backbone_features(dataset, profile, root, seed, device, weights, trunk=TRUNK,
                                    exclude_labels=tuple(unseen.tolist()))


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, word_vectors: str | None = None, settings: dict | None = None,
        force: bool = False) -> dict:
    """Train and evaluate one transformation ranking row (a cached experiment), or choose a word
    source's margin (row "margin (words|random)": {"margin", "margin_curve"}).

    ``word_vectors``: None (MiniLM) or a word-vector file for the rows that use the book's words.
    A row returns {"scores" [N_test, L] (= -norms), "committee_scores" {"1"|"3"|"5": [N_test, L]},
    "jaccard" [N_test], "history", "margin", "unseen" (held-out label indices, empty if none),
    "wall_s"} and, computed after loading, "pred" (top-3), "metrics" and "metrics_top5".
    """
    profile = get_profile(profile)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))
    words = word_vectors or "minilm"
    if row.startswith("margin ("):
        source = "random" if row == margin_stage("random") else words
        return choose_margin(dataset, profile, root=root, seed=seed, device=device, weights=weights,
                             words=source, s=s, force=force)
    if row.startswith("zero-shot features"):
        split = int(row.rsplit(" ", 1)[1].rstrip(")"))
        return zero_shot_features(dataset, profile, root=root, seed=seed, device=device, weights=weights, split=split)
    opts = rows(profile)[row]
    source = opts.get("words", words)
    split = opts.get("zero_shot")
    data = shared.splits(dataset, profile, root, seed)
    C = data.train.num_classes
    unseen = None if split is None else zero_shot_labels(C, seed, s.zero_shot_fraction, split)
    exclude = () if unseen is None else tuple(unseen.tolist())
    if unseen is None:   # the word source's margin, chosen once at the default k (Fig. 8 and the pooled row reuse it)
        margin = choose_margin(dataset, profile, root=root, seed=seed, device=device, weights=weights,
                               words=source, s=s)["margin"]
    else:
        margin = ZERO_SHOT_MARGIN
    s = dataclasses.replace(s, k=opts.get("k", s.k), pool=opts.get("pool", s.pool))
    W = word_matrix(data.train.classes, source, seed)
    name = shared.trunk_of(profile, TRUNK)
    config = {"chapter": "07_transformation_ranking", "version": 2, **shared.data_key(dataset, profile, root, seed),
              "backbone": name, "image_size": profile.image_size, "weights": shared.weights_name(weights, name),
              "settings": dataclasses.asdict(s), "words": _word_key(source, W), "zero_shot": split,
              "margin": margin, "train_seed": train_seed, "holdout": profile.holdout}

    def compute(folder: Path) -> dict:
        # a zero-shot row reads a backbone that never saw the held-out labels (left out of its BCE)
        feats = shared.backbone_features(dataset, profile, root, seed, device, weights, trunk=name,
                                         exclude_labels=exclude)
        model, m, curve, history = fit_ranker(
            feats["train"], data.train.labels, W, s, known=known_mask(C, unseen), seed=seed, train_seed=train_seed,
            device=device, margins=(margin,), desc=f"ranking {row}")
        out = {"scores": M.scores_from_norms(test_norms(model, feats["test"], W)), "margin": m,
               "history": history, "unseen": unseen if unseen is not None else torch.zeros(0, dtype=torch.long)}
        out.update(committee_evidence(model, feats["test"], W))
        return out

    result = shared.cached("transformation_ranking", config, compute, profile, code=(run,),
                           data=shared.data_fingerprint(data), force=force)
    return with_metrics(result, data.test.labels, s.top_k)


def _word_key(source: str, W: torch.Tensor) -> str:
    """What a cache key records of the word vectors: their source, and a file's vectors' hash."""
    if source in ("minilm", "random"):
        return source
    return f"file:{Path(source).name}:{hashlib.sha256(W.numpy().tobytes()).hexdigest()[:16]}"


def choose_margin(dataset: str, profile, *, root=None, seed: int = 0, device: str = "auto", weights=None,
                  words: str = "minilm", s: Settings | None = None, force: bool = False) -> dict:
    """The margin m of one word source, chosen on the hold-out part of the training set from
    ``s.margins`` (one model per margin, the first training seed; top-3 C-F1 + O-F1). Cached:
    {"margin", "margin_curve" [[m, hold-out metrics], ...]}."""
    profile = get_profile(profile)
    s = s or settings_for(profile)
    data = shared.splits(dataset, profile, root, seed)
    W = word_matrix(data.train.classes, words, seed)
    name = shared.trunk_of(profile, TRUNK)
    keys = ("epochs", "batch_size", "lr", "hidden", "dropout", "pool", "k", "negatives", "margins", "select_by",
            "flip", "patience", "holdout", "top_k")
    config = {"chapter": "07_transformation_ranking", "stage": "margin", "version": 1,
              **shared.data_key(dataset, profile, root, seed), "backbone": name, "image_size": profile.image_size,
              "weights": shared.weights_name(weights, name), "settings": {k: getattr(s, k) for k in keys},
              "words": _word_key(words, W), "holdout": profile.holdout}

    def compute(folder: Path) -> dict:
        feats = shared.backbone_features(dataset, profile, root, seed, device, weights, trunk=name)
        _, m, curve, _ = fit_ranker(feats["train"], data.train.labels, W, s, seed=seed, train_seed=0,
                                    device=device, desc=f"margin {words}")
        return {"margin": m, "margin_curve": [[mm, val] for mm, val in curve]}

    return shared.cached("transformation_ranking", config, compute, profile, code=(choose_margin,),
                         data=shared.data_fingerprint(data), force=force)


def with_metrics(result: dict, labels: torch.Tensor, top_k: int = 3) -> dict:
    """Top-3 and top-5 predictions and metrics (over every label, held-out ones included)."""
    out = dict(result)
    out["pred"] = metrics.predict_labels(result["scores"], k=top_k)
    out["pred_top5"] = metrics.predict_labels(result["scores"], k=5)
    out["metrics"] = {**metrics.prf_of_predictions(out["pred"], labels),
                      "mAP": metrics.mean_average_precision(result["scores"], labels)}
    out["metrics_top5"] = metrics.prf_of_predictions(out["pred_top5"], labels)
    out["pred_voting"] = {n: metrics.predict_labels(v, k=top_k) for n, v in result["committee_scores"].items()}
    out["metrics_voting"] = {n: metrics.prf_of_predictions(p, labels) for n, p in out["pred_voting"].items()}
    return out
