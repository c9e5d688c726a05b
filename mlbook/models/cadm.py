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

Variants (``VARIANTS``): "baseline", "lambda0", "lambda0.5". ``run_variant`` fine-tunes
one end to end from the shared backbone (demo/smoke) or ImageNet ResNet-101 (full)
and caches the result as an experiment; ``bench_train`` measures training img/s.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import label_correlation_embedding_loss

VERSION = 1

# variant -> (streams, lambda); "streams": "fcls" = the GMP + linear baseline,
# "both" = the bi-stream CADM model of Eq. 3.
VARIANTS = {
    "baseline": {"streams": "fcls", "lam": 0.0, "label": "ResNet-101 (Baseline)"},
    "lambda0": {"streams": "both", "lam": 0.0, "label": "Ours (lambda=0)"},
    "lambda0.5": {"streams": "both", "lam": 0.5, "label": "Ours (lambda=0.5)"},
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

    def forward(self, x: torch.Tensor, details: bool = False):
        """Logits y (Eq. 3; Eq. 2 alone for the baseline); with ``details`` a dict of
        logits, fcls, scls [B, C], cadm [B, C, h, w] and vectors [B, C, E] (if embedded)."""
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
            out["vectors"] = self.label_vectors(cadm)
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


def make_model(variant: str, backbone: nn.Module, num_classes: int, image_size: int,
               options: CADMOptions = CADMOptions()) -> CADMNet:
    spec = VARIANTS[variant]
    embedding = spec["streams"] == "both" and spec["lam"] > 0  # lambda = 0: f_embed has no effect
    return CADMNet(backbone, num_classes, feature_map_size(backbone, image_size), streams=spec["streams"],
                   embedding=embedding, embed_hidden=options.embed_hidden, embed_dim=options.embed_dim)


def make_loss(lam: float, options: CADMOptions = CADMOptions()):
    """loss_fn(model, batch) for ``mlbook.train.fit``: L_cls + lambda L_lce (Eq. 5).

    L_cls is the BCE of Eq. 4 averaged over the scored (image, class) entries,
    i.e. Eq. 4 divided by C; L_lce follows ``options`` (also divided by C by default).
    """
    from ..stages import as_input

    def loss_fn(model, batch):
        images, labels, ignore = batch
        x = as_input(images, train=True)
        keep = (~ignore).float()
        if lam > 0:
            out = model(x, details=True)
            logits = out["logits"]
        else:
            logits = model(x)
        cls = F.binary_cross_entropy_with_logits(logits.float(), labels, reduction="none")
        loss = (cls * keep).sum() / keep.sum().clamp_min(1)
        if lam > 0:
            loss = loss + lam * label_correlation_embedding_loss(
                out["vectors"], labels, ignore, margin=options.margin,
                negatives=options.negatives, reduction=options.lce_reduction)
        return loss

    return loss_fn


# --- the recipe ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Recipe:
    """SGD with momentum and a step schedule (Sec. 3.2): lr divided by ``gamma`` every ``step_epochs``."""
    epochs: int
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    step_epochs: int = 20
    gamma: float = 0.1
    head_lr_mult: float = 1.0        # lr multiplier of the new layers (fc, f_embed); the paper: 1
    batch_size: int = 32


def recipe_for(profile) -> Recipe:
    """Full: the paper's recipe (lr 0.01, /10 every 20 epochs, 60 epochs, momentum 0.9, wd 1e-4).

    Demo/smoke: ``profile.finetune_epochs`` epochs of the same SGD; the new
    layers get a 10x learning rate so that a freshly initialised GMP classifier
    catches up with the (already trained) shared backbone within a few epochs,
    and the lr drops by 10 for the last epoch (a compressed version of the schedule).
    """
    if profile.name == "full":
        return Recipe(epochs=60, batch_size=profile.batch_size)
    e = profile.finetune_epochs
    return Recipe(epochs=e, lr=0.01, step_epochs=max(e - 1, 1), head_lr_mult=10.0,
                  batch_size=profile.batch_size)


def make_optimizer(recipe: Recipe):
    def build(model: nn.Module) -> torch.optim.Optimizer:
        head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
        body = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
        return torch.optim.SGD([{"params": body, "lr": recipe.lr},
                                {"params": head, "lr": recipe.lr * recipe.head_lr_mult}],
                               lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return build


# --- evaluation ----------------------------------------------------------------

def figure_indices(labels: torch.Tensor, n: int = 6) -> list[int]:
    """Test images for Figs. 2 and 4: the first ``n`` with at least two positive labels."""
    many = (labels.sum(1) >= 2).nonzero().flatten().tolist()[:n]
    rest = (labels.sum(1) < 2).nonzero().flatten().tolist()[:n - len(many)]
    return many + rest


@torch.no_grad()
def test_outputs(model: CADMNet, dataset, device: str, batch_size: int = 128) -> dict:
    """logits, fcls, scls (peak CADM activation) and cadm_sum (summed CADM activation), each [N, C]."""
    from ..stages import as_input
    from ..train import predict

    model.eval()

    def fn(batch):
        out = model(as_input(batch[0], train=False), details=True)
        return torch.cat([out["logits"], out["fcls"], out["scls"], out["cadm"].sum(dim=(2, 3))], dim=1)

    flat = predict(fn, dataset, batch_size=batch_size, device=device)
    c = model.num_classes
    return {k: flat[:, i * c:(i + 1) * c].contiguous() for i, k in enumerate(("logits", "fcls", "scls", "cadm_sum"))}


@torch.no_grad()
def cadm_maps(model: CADMNet, dataset, index: list[int], device: str) -> torch.Tensor:
    """CADMs [n, C, h, w] of a few test images (for the figures)."""
    from torch.utils.data import Subset

    from ..stages import as_input
    from ..train import predict

    model.eval()
    return predict(lambda b: model(as_input(b[0], train=False), details=True)["cadm"],
                   Subset(dataset, index), batch_size=len(index), device=device)


def activation_stats(peak: torch.Tensor, total: torch.Tensor, targets: torch.Tensor,
                     ignore: torch.Tensor | None = None) -> dict:
    """Positive vs negative CADM strength on a test set (claims of Figs. 2 and 4).

    ``peak``: max over positions of each CADM [N, C] (= y_scls); ``total``: its sum.
    Returns the mean peak on positives / negatives, the mean summed activation on
    positives / negatives, and ``pos_over_neg``: the fraction of (image, positive,
    negative) triples where the positive's summed CADM exceeds the negative's.
    """
    scored = torch.ones_like(targets, dtype=torch.bool) if ignore is None else ~ignore
    pos = (targets > 0.5) & scored
    neg = (targets <= 0.5) & scored
    rank = []
    for t, p, n in zip(total, pos, neg):
        if p.any() and n.any():
            rank.append((t[p][:, None] > t[n][None, :]).float().mean())
    return {
        "peak_pos": float(peak[pos].mean()), "peak_neg": float(peak[neg].mean()),
        "sum_pos": float(total[pos].mean()), "sum_neg": float(total[neg].mean()),
        "pos_over_neg": float(torch.stack(rank).mean()) if rank else float("nan"),
    }


def scores_table(probs: torch.Tensor, targets: torch.Tensor, ignore: torch.Tensor | None = None) -> dict:
    """mAP and the two protocols of the paper (Sec. 3.1) as fractions:
    ``all_*`` = confidence greater than 0.5, ``top3_*`` = the three highest scores."""
    from ..metrics import summary

    out = {}
    for prefix, protocol in (("all", "thr>0.5"), ("top3", "top3")):
        s = summary(probs, targets, ignore, protocol=protocol, cf1="harmonic", empty_precision="zero")
        out["mAP"] = s.pop("mAP")
        out.update({f"{prefix}_{k}": v for k, v in s.items()})
    return out


def _resampled_map(scores: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
    """mAP of each resample of the test images, all at once: [n_resamples].

    ``weights`` [R, N] counts how often each image is drawn. An image drawn k times
    is k tied copies, so with the sklearn tie convention its positives add
    k * TP/(TP + FP) at its rank: AP = sum(w * y * precision) / sum(w * y), with the
    cumulative counts weighted. Classes without a positive in a resample are left out
    (like ``metrics.mean_average_precision``).
    """
    order = scores.argsort(dim=0, descending=True, stable=True)                 # [N, C]
    v = valid.gather(0, order).double()
    t = targets.gather(0, order).double() * v
    out = []
    step = max(1, int(2e7 // max(1, scores.numel())))
    for w in weights.double().split(step):
        w = w[:, order]                                                          # [r, N, C]
        tp, fp = (w * t).cumsum(1), (w * (v - t)).cumsum(1)
        npos = (w * t).sum(1)
        ap = (w * t * tp / (tp + fp).clamp_min(1e-12)).sum(1) / npos            # NaN where npos = 0
        out.append(ap.nanmean(1))
    return torch.cat(out)


def bootstrap_map_delta(scores_a: torch.Tensor, scores_b: torch.Tensor, targets: torch.Tensor,
                        ignore: torch.Tensor | None = None, n: int = 200, seed: int = 0) -> dict:
    """mAP(b) - mAP(a) on the test set and a 95% percentile interval from ``n`` paired bootstrap
    resamples of the test images (the same resample for both models), vectorised."""
    from ..metrics import bootstrap_weights, mean_average_precision

    targets = targets > 0.5
    valid = torch.ones_like(targets) if ignore is None else ~ignore.bool()
    weights = bootstrap_weights(n, len(targets), seed)
    d = _resampled_map(scores_b, targets, valid, weights) - _resampled_map(scores_a, targets, valid, weights)
    d = d[~torch.isnan(d)]
    lo, hi = (torch.quantile(d, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
              if len(d) else (float("nan"), float("nan")))
    delta = mean_average_precision(scores_b, targets, ignore) - mean_average_precision(scores_a, targets, ignore)
    return {"delta": float(delta), "low": lo, "high": hi}


# --- the experiment --------------------------------------------------------------

def _profile(profile):
    from ..profiles import get_profile

    return get_profile(profile) if isinstance(profile, str) else profile


def run_variant(variant: str, dataset: str = "coco", profile="demo", root: str | None = None,
                seed: int = 0, device: str = "auto", options: CADMOptions | None = None,
                recipe: Recipe | None = None, n_figure: int = 6, force: bool = False) -> dict:
    """Fine-tune one variant end to end and evaluate it on the test split (cached).

    The result holds: ``metrics`` (mAP, all_*, top3_* as fractions; also flattened
    as ``test_<name>`` for the CLI), ``history``, ``test_outputs`` (logits, fcls, scls,
    cadm_sum [N, C] on CPU), ``activation`` (``activation_stats``), ``fig_index`` and
    ``fig_cadm`` (the CADMs of a few test images), ``train_seconds`` and ``train_img_s``.
    """
    from .. import experiments
    from ..profiles import pick_device
    from ..stages import data_key, image_set, shared_backbone, splits
    from ..train import fit

    if variant not in VARIANTS:
        raise ValueError(f"unknown CADM variant {variant!r}; choose one of {sorted(VARIANTS)}")
    prof = _profile(profile)
    spec = VARIANTS[variant]
    options = dataclasses.replace(options or CADMOptions(), lam=spec["lam"])
    recipe = recipe or recipe_for(prof)
    device = pick_device(device)
    data = splits(dataset, prof, root, seed)
    config = {"method": "cadm", "variant": variant, "version": VERSION,
              **data_key(dataset, prof, root, seed),
              "backbone": prof.backbone, "backbone_epochs": prof.backbone_epochs,
              "image_size": prof.image_size, "streams": spec["streams"],
              "options": dataclasses.asdict(options), "recipe": dataclasses.asdict(recipe),
              "train_seed": seed, "n_figure": n_figure}

    def compute(folder: Path) -> dict:
        backbone, _ = shared_backbone(dataset, prof, root, seed, device)
        torch.manual_seed(seed)
        model = make_model(variant, copy.deepcopy(backbone).train(), data.train.num_classes,
                           prof.image_size, options)
        t0 = time.perf_counter()
        history = fit(
            model, image_set(data.train, prof, train=True), make_loss(options.lam, options),
            epochs=recipe.epochs, batch_size=recipe.batch_size, device=device, seed=seed,
            num_workers=prof.num_workers, make_optimizer=make_optimizer(recipe),
            make_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, recipe.step_epochs, recipe.gamma),
            checkpoint=folder / "checkpoint.pt", desc=f"cadm {variant} {dataset}",
        )
        train_seconds = time.perf_counter() - t0
        test_set = image_set(data.test, prof, train=False)
        outs = test_outputs(model, test_set, device, batch_size=max(recipe.batch_size, 128))
        targets, ignore = data.test.labels, data.test.ignore
        metrics = scores_table(outs["logits"].sigmoid(), targets, ignore)
        act = activation_stats(outs["scls"], outs["cadm_sum"], targets, ignore)
        index = figure_indices(targets, n_figure)
        fig_cadm = cadm_maps(model, test_set, index, device).half()
        images = sum(h["images"] for h in history)
        seconds = sum(h["seconds"] for h in history)
        return {"variant": variant, "dataset": dataset, "classes": list(data.test.classes),
                "metrics": metrics, **{f"test_{k}": v for k, v in metrics.items()},
                "history": history, "test_outputs": outs, "activation": act,
                "fig_index": index, "fig_cadm": fig_cadm,
                "train_seconds": train_seconds, "train_img_s": images / seconds if seconds > 0 else float("nan")}

    return experiments.run("cadm", config, compute, force=force)


def _method(variant):
    def train(dataset="coco", profile="demo", root=None, seed=0, device="auto"):
        return run_variant(variant, dataset, profile, root, seed, device)
    train.__doc__ = f"CADM chapter: {VARIANTS[variant]['label']} ({variant})"
    return train


#: for ``python -m mlbook train --method ...``
METHODS = {
    "cadm_baseline": _method("baseline"),
    "cadm_lambda0": _method("lambda0"),
    "cadm": _method("lambda0.5"),
}


# --- speed -----------------------------------------------------------------------

_BENCH_MODELS = {"cadm": ("baseline", "lambda0.5"), "baseline": ("baseline",),
                 "cadm_baseline": ("baseline",), "lambda0": ("lambda0",), "cadm_lambda0": ("lambda0",),
                 "lambda0.5": ("lambda0.5",)}
_DTYPES = {None: None, "float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def bench_train(model: str = "cadm", profile: str = "demo", image_size: int | None = None,
                batch_size: int | None = None, steps: int = 10, device: str = "auto",
                dtype: str | None = None, channels_last: bool = False, warmup: int = 2,
                num_classes: int | None = None) -> dict:
    """Training throughput (img/s) of the baseline and CADM lambda = 0.5 on synthetic tensors.

    Sizes come from the profile (demo: SmallCNN at 48 px; full: ResNet-101 at 448 px,
    randomly initialised since weights do not change the speed); ``image_size`` and
    ``batch_size`` override. ``dtype`` "bfloat16"/"float16" trains under autocast
    (float16 with a gradient scaler on CUDA); ``channels_last`` converts model and input.
    One full SGD step (forward, Eq. 5 loss, backward, update) is timed per batch.
    Prints one line per model and the CADM / baseline ratio; returns {variant: img/s}.
    """
    from ..profiles import pick_device
    from .backbones import ResNetTrunk, SmallCNN

    prof = _profile(profile)
    size, bs = image_size or prof.image_size, batch_size or prof.batch_size
    classes = num_classes or prof.gen_classes or 80
    if model not in _BENCH_MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(_BENCH_MODELS)}")
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
    amp_dtype = _DTYPES[dtype]
    dev = torch.device(pick_device(device))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    memory = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bs, 3, size, size, generator=g)  # already normalised: stages.as_input passes floats through
    y = (torch.rand(bs, classes, generator=g) < 0.15).float()
    y[torch.arange(bs), torch.randint(0, classes, (bs,), generator=g)] = 1.0
    batch = (x.to(dev).contiguous(memory_format=memory), y.to(dev), torch.zeros_like(y, dtype=torch.bool).to(dev))

    results = {}
    for variant in _BENCH_MODELS[model]:
        torch.manual_seed(0)
        if prof.backbone == "small_cnn":
            backbone = SmallCNN()
        else:
            import torchvision

            backbone = ResNetTrunk(getattr(torchvision.models, prof.backbone)(weights=None))
        net = make_model(variant, backbone, classes, size).to(dev).to(memory_format=memory).train()
        loss_fn = make_loss(VARIANTS[variant]["lam"])
        opt = make_optimizer(Recipe(epochs=1))(net)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and dev.type == "cuda")

        def step():
            with torch.autocast(device_type=dev.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                loss = loss_fn(net, batch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        for _ in range(warmup):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        results[variant] = bs * steps / seconds
        print(f"train {variant:9s} {prof.backbone} {size}px batch {bs} C={classes} on {dev} "
              f"dtype={dtype or 'float32'} channels_last={channels_last}: {results[variant]:8.1f} img/s")
    if "baseline" in results and "lambda0.5" in results:
        print(f"CADM (lambda=0.5) / baseline throughput ratio: {results['lambda0.5'] / results['baseline']:.2f}")
    return results
