"""Fine-tuning and evaluating the CADM variants of Tables 1-2, and the chapter's evidence.

``run_variant`` fine-tunes one variant (``mlbook.models.cadm.VARIANTS``) with one
training seed and caches the result. Full profile: ImageNet ResNet-101 at 448 px, end
to end, the paper's SGD recipe (Sec. 3.2). Demo and smoke: the shared small CNN; its
first three conv blocks stay frozen and their output maps are cached (with the maps of
the mirrored images, so training keeps random flips), and the last conv block is
fine-tuned with the new layers: a partial fine-tune that fits the CPU budget.
Every run stops early on the hold-out BCE of a tenth of the training set and keeps the
best epoch's weights. The history logs each loss term (L_cls, L_lce, pull, push).
"""
from __future__ import annotations

import copy
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from .. import cache, losses, metrics
from ..models import cadm as M
from ..profiles import get_profile, pick_device
from ..train import fit, predict
from . import shared

CODE = (*shared.SHARED_CODE, M, losses, sys.modules[__name__])
STEM_BLOCKS = 3          # demo/smoke: blocks of the SmallCNN kept frozen (cached)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """SGD with momentum and a step schedule (Sec. 3.2): lr divided by ``gamma`` every ``step_epochs``."""
    epochs: int                      # budget; early stopping on the hold-out BCE
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    step_epochs: int = 20
    gamma: float = 0.1
    head_lr_mult: float = 1.0        # lr multiplier of the new layers (fc, f_embed); the paper: 1
    batch_size: int = 32
    patience: int = 3


def recipe_for(profile) -> Recipe:
    """Full: the paper's recipe (lr 0.01, /10 every 20 epochs, 60 epochs, momentum 0.9, wd 1e-4).

    Demo/smoke: the same SGD with a constant rate within ``profile.finetune_epochs`` epochs
    and early stopping; the new layers get a 10x learning rate so that a freshly initialised
    GMP classifier catches up with the (already trained) shared backbone.
    """
    profile = get_profile(profile)
    if profile.backbone != "small_cnn":
        return Recipe(epochs=60, batch_size=profile.batch_size, patience=10)
    return Recipe(epochs=profile.finetune_epochs, lr=0.03, step_epochs=10 ** 6, head_lr_mult=10.0,
                  batch_size=profile.batch_size, patience=profile.patience)


def make_optimizer(recipe: Recipe):
    def build(model: nn.Module) -> torch.optim.Optimizer:
        head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
        body = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
        return torch.optim.SGD([{"params": body, "lr": recipe.lr},
                                {"params": head, "lr": recipe.lr * recipe.head_lr_mult}],
                               lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return build


class FlippedMaps(Dataset):
    """(stem maps, labels, ignore) with the mirrored image's maps drawn with probability 1/2:
    the random horizontal flip of Sec. 3.2 on cached maps."""

    def __init__(self, maps, flipped, labels, ignore):
        self.maps, self.flipped, self.labels, self.ignore = maps, flipped, labels, ignore

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        x = self.flipped[i] if bool(torch.rand(()) < 0.5) else self.maps[i]
        return x.float(), self.labels[i], self.ignore[i]


def inputs(dataset: str, prof, root, seed, device, weights=None):
    """(backbone to fine-tune, train set, hold-out set, test set, CADM map size): stem maps of the
    frozen SmallCNN blocks (demo/smoke) or the images themselves (full)."""
    data = shared.splits(dataset, prof, root, seed)
    fit_idx, val_idx = shared.holdout_split(len(data.train), prof.holdout, seed)
    ig = lambda d: d.ignore if d.ignore is not None else torch.zeros_like(d.labels, dtype=torch.bool)  # noqa: E731
    backbone, _ = shared.shared_backbone(dataset, prof, root, seed, device, weights)
    if prof.backbone == "small_cnn":
        stems = shared.backbone_features(dataset, prof, root, seed, device, upto=STEM_BLOCKS)
        y, i = data.train.labels, ig(data.train)
        train = FlippedMaps(stems["train"][fit_idx], stems["train_flipped"][fit_idx], y[fit_idx], i[fit_idx])
        val = TensorDataset(stems["train"][val_idx].float(), y[val_idx], i[val_idx])
        test = TensorDataset(stems["test"].float(), data.test.labels, ig(data.test))
        top = copy.deepcopy(backbone).last_blocks(STEM_BLOCKS)
        return top.train(), train, val, test, tuple(stems["test"].shape[2:])
    train_set = shared.image_set(data.train, prof, train=True)
    eval_set = shared.image_set(data.train, prof, train=False)
    test = shared.image_set(data.test, prof, train=False)
    net = copy.deepcopy(backbone).train()
    return (net, Subset(train_set, fit_idx.tolist()), Subset(eval_set, val_idx.tolist()), test,
            M.feature_map_size(net, prof.image_size))


def figure_indices(labels: torch.Tensor, n: int = 6) -> list[int]:
    """Test images for Figs. 2 and 4: the first ``n`` with at least two positive labels."""
    many = (labels.sum(1) >= 2).nonzero().flatten().tolist()[:n]
    rest = (labels.sum(1) < 2).nonzero().flatten().tolist()[:n - len(many)]
    return many + rest


@torch.no_grad()
def test_outputs(model: M.CADMNet, dataset, device: str, batch_size: int = 128) -> dict:
    """logits, fcls, scls (peak CADM activation) and cadm_sum (summed CADM activation), each [N, C]."""
    model.eval()

    def fn(batch):
        out = model(batch[0], details=True)
        return torch.cat([out["logits"], out["fcls"], out["scls"], out["cadm"].sum(dim=(2, 3))], dim=1)

    flat = predict(fn, dataset, batch_size=batch_size, device=device)
    c = model.num_classes
    return {k: flat[:, i * c:(i + 1) * c].contiguous() for i, k in enumerate(("logits", "fcls", "scls", "cadm_sum"))}


def run_variant(variant: str, dataset: str = "coco", profile="demo", root: str | None = None,
                seed: int = 0, device: str = "auto", options: M.CADMOptions | None = None,
                recipe: Recipe | None = None, n_figure: int = 6, train_seed: int = 0,
                weights: str | None = None, force: bool = False) -> dict:
    """Fine-tune one variant with one training seed and evaluate it on the test split (cached).

    The result holds ``history`` (per epoch: loss terms, hold-out BCE), ``test_outputs``
    (logits, fcls, scls, cadm_sum [N, C]), ``fig_index`` and ``fig_cadm`` (the CADMs of a
    few test images), ``train_seconds``, ``train_img_s``; after loading also ``metrics``
    (mAP and both protocols of Sec. 3.1, fractions).
    """
    if variant not in M.VARIANTS:
        raise ValueError(f"unknown CADM variant {variant!r}; choose one of {sorted(M.VARIANTS)}")
    prof = get_profile(profile)
    spec = M.VARIANTS[variant]
    options = dataclasses.replace(options or M.CADMOptions(), lam=spec["lam"], lce_grad=spec["lce_grad"])
    recipe = recipe or recipe_for(prof)
    device = pick_device(device)
    data = shared.splits(dataset, prof, root, seed)
    config = {"method": "cadm", "variant": variant, "version": 2,
              **shared.data_key(dataset, prof, root, seed),
              "backbone": prof.backbone, "backbone_epochs": prof.backbone_epochs,
              "image_size": prof.image_size, "streams": spec["streams"], "stem_blocks": STEM_BLOCKS,
              "options": dataclasses.asdict(options), "recipe": dataclasses.asdict(recipe),
              "train_seed": train_seed, "n_figure": n_figure, "weights": weights}

    def compute(folder: Path) -> dict:
        net, train_set, val_set, test_set, map_hw = inputs(dataset, prof, root, seed, device, weights)
        torch.manual_seed(train_seed)
        model = M.make_model(variant, net, data.train.num_classes, map_hw, options)
        bce = M.make_loss(0.0, options)
        t0 = time.perf_counter()
        history = fit(
            model, train_set, M.make_loss(options.lam, options), val_dataset=val_set, val_loss_fn=bce,
            patience=recipe.patience, epochs=recipe.epochs, batch_size=recipe.batch_size, device=device,
            seed=train_seed, num_workers=prof.num_workers, make_optimizer=make_optimizer(recipe),
            make_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, recipe.step_epochs, recipe.gamma),
            checkpoint=folder / "checkpoint.pt", desc=f"cadm {variant} {dataset}", progress=False,
        )
        train_seconds = time.perf_counter() - t0
        outs = test_outputs(model, test_set, device, batch_size=max(recipe.batch_size, 128))
        index = figure_indices(data.test.labels, n_figure)
        fig_cadm = predict(lambda b: model(b[0], details=True)["cadm"], Subset(test_set, index),
                           batch_size=len(index), device=device).half()
        images = sum(h["images"] for h in history)
        seconds = sum(h["seconds"] for h in history)
        return {"variant": variant, "dataset": dataset, "classes": list(data.test.classes),
                "history": history, "test_outputs": outs, "fig_index": index, "fig_cadm": fig_cadm,
                "train_seconds": train_seconds, "train_img_s": images / seconds if seconds > 0 else float("nan")}

    result = cache.run("cadm", config, compute, force=force, code=CODE, data=shared.data_fingerprint(data))
    return {**result, "metrics": scores_table(result["test_outputs"]["logits"].sigmoid(),
                                              data.test.labels, data.test.ignore)}


def scores_table(probs: torch.Tensor, targets: torch.Tensor, ignore: torch.Tensor | None = None) -> dict:
    """mAP and the two protocols of the paper (Sec. 3.1) as fractions:
    ``all_*`` = confidence greater than 0.5, ``top3_*`` = the three highest scores."""
    out = {}
    for prefix, protocol in (("all", "thr>0.5"), ("top3", "top3")):
        s = metrics.summary(probs, targets, ignore, protocol=protocol, cf1="harmonic", empty_precision="zero")
        out["mAP"] = s.pop("mAP")
        out.update({f"{prefix}_{k}": v for k, v in s.items()})
    return out


def predictions(probs: torch.Tensor, protocol: str) -> torch.Tensor:
    """[N, C] bool under "all" (confidence > 0.5) or "top3"."""
    kw = {"threshold": 0.5, "strict": True} if protocol == "all" else {"k": 3}
    return metrics.predict_labels(probs, **kw)


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
    wins = (total[:, :, None] > total[:, None, :]) & pos[:, :, None] & neg[:, None, :]
    pairs = (pos[:, :, None] & neg[:, None, :]).sum((1, 2))
    has = pairs > 0
    rate = (wins.sum((1, 2))[has].double() / pairs[has]).mean() if bool(has.any()) else torch.tensor(float("nan"))
    return {
        "peak_pos": float(peak[pos].mean()), "peak_neg": float(peak[neg].mean()),
        "sum_pos": float(total[pos].mean()), "sum_neg": float(total[neg].mean()),
        "pos_over_neg": float(rate),
    }


def pair_mean(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` [N, C] over the (image, label) pairs in ``mask`` on image resamples [R, N] -> [R]."""
    m = mask.double()
    return (weights.double() @ (values.double() * m)).sum(1) / (weights.double() @ m).sum(1).clamp_min(1e-12)


def positive_wins(total: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fraction of (positive, negative) label pairs of an image whose positive CADM outsums the
    negative's, over the images of each resample [R, N] -> [R] (pairs weighted by image)."""
    pos, neg = targets > 0.5, targets <= 0.5
    wins = ((total[:, :, None] > total[:, None, :]) & pos[:, :, None] & neg[:, None, :]).sum((1, 2)).double()
    pairs = (pos[:, :, None] & neg[:, None, :]).sum((1, 2)).double()
    w = weights.double()
    return (w @ wins) / (w @ pairs).clamp_min(1e-12)
