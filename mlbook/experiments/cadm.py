"""Fine-tuning and evaluating the CADM variants of Tables 1-2 (chapter 05), and its claims' values.

``run`` fine-tunes one variant (``mlbook.models.cadm.VARIANTS``, the rows of the tables) with one
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
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

from .. import claims, metrics, report
from ..costs import RunCost, image_bytes, loader_bytes, measured, outputs_bytes, row_disk, training_memory
from ..data import NUM_CLASSES
from ..models import cadm as cadm_model
from ..models.backbones import random_backbone
from ..profiles import get_profile, pick_device
from ..train import fit, predict
from . import features, shared
from .protocol import Protocol, first_test_image, forward_flops, record, trainable_parameters

STEM_BLOCKS = 3          # demo/smoke: blocks of the SmallCNN kept frozen (cached)
TRUNK = "resnet101"      # Sec. 3.2: ImageNet ResNet-101, fine-tuned at 448 x 448
OPTIONS = ()


def rows(profile) -> tuple[str, ...]:
    """Every row of Tables 1-2: the variants (``mlbook.models.cadm.VARIANTS``), the same in every profile."""
    return tuple(cadm_model.VARIANTS)


def stages(profile) -> tuple:
    """No shared step: every variant fine-tunes from the backbone on its own."""
    return ()


@dataclasses.dataclass(frozen=True)
class Settings:
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
    grad_clip: float | None = None   # bound on the gradient's norm (the paper: none)


def settings_for(profile) -> Settings:
    """Full: the paper's recipe (lr 0.01, /10 every 20 epochs, 60 epochs, momentum 0.9, wd 1e-4).

    Demo/smoke: the same SGD with a constant rate within ``profile.finetune_epochs`` epochs
    and early stopping; the new layers get a 10x learning rate so that a freshly initialised
    GMP classifier catches up with the (already trained) shared backbone. At that rate f_embed
    can diverge when L_lce trains it alone (the embed-only reading: 1 of 6 runs reached NaN),
    so the gradient's norm is bounded at 10, for every row alike.
    """
    profile = get_profile(profile)
    if profile.backbone != "small_cnn":
        return Settings(epochs=60, batch_size=profile.batch_size, patience=10)
    return Settings(epochs=profile.finetune_epochs, lr=0.03, step_epochs=10 ** 6, head_lr_mult=10.0,
                    batch_size=profile.batch_size, patience=profile.patience, grad_clip=10.0)


def grid(profile, datasets, seeds) -> list[shared.Run]:
    """Every run of chapter 05: each variant on each data set with each training seed."""
    stems = shared.feature_runs(datasets, upto=STEM_BLOCKS) if get_profile(profile).backbone == "small_cnn" else []
    return stems + [shared.Run("cadm", v, d, s) for d in datasets for v in rows(profile) for s in seeds]


def make_optimizer(recipe: Settings):
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
    ctx = shared.context(dataset, prof, root, seed)
    data = ctx.data
    fit_idx, val_idx = ctx.holdout
    backbone, _ = features.shared_backbone(dataset, prof, root, seed, device, weights, trunk=TRUNK)
    if prof.backbone == "small_cnn":
        stems = features.backbone_features(dataset, prof, root, seed, device, upto=STEM_BLOCKS)
        y, i = data.train.labels, shared.ignore_mask(data.train)
        train = FlippedMaps(stems["train"][fit_idx], stems["train_flipped"][fit_idx], y[fit_idx], i[fit_idx])
        val = TensorDataset(stems["train"][val_idx].float(), y[val_idx], i[val_idx])
        test = TensorDataset(stems["test"].float(), data.test.labels, shared.ignore_mask(data.test))
        top = copy.deepcopy(backbone).last_blocks(STEM_BLOCKS)
        return top.train(), train, val, test, tuple(stems["test"].shape[2:])
    train_set = shared.image_set(data.train, prof, train=True)
    eval_set = shared.image_set(data.train, prof, train=False)
    test = shared.image_set(data.test, prof, train=False)
    net = copy.deepcopy(backbone).train()
    return (net, Subset(train_set, fit_idx.tolist()), Subset(eval_set, val_idx.tolist()), test,
            cadm_model.feature_map_size(net, prof.image_size))


def figure_indices(labels: torch.Tensor, n: int = 6) -> list[int]:
    """Test images for Figs. 2 and 4: the first ``n`` with at least two positive labels."""
    many = (labels.sum(1) >= 2).nonzero().flatten().tolist()[:n]
    rest = (labels.sum(1) < 2).nonzero().flatten().tolist()[:n - len(many)]
    return many + rest


@torch.no_grad()
def test_outputs(model: cadm_model.CADMNet, dataset, device: str, batch_size: int = 128) -> dict:
    """logits, fcls, scls (peak CADM activation) and cadm_sum (summed CADM activation), each [N, C]."""
    model.eval()

    def fn(batch):
        out = model(batch[0], details=True)
        return torch.cat([out["logits"], out["fcls"], out["scls"], out["cadm"].sum(dim=(2, 3))], dim=1)

    flat = predict(fn, dataset, batch_size=batch_size, device=device)
    c = model.num_classes
    return {k: flat[:, i * c:(i + 1) * c].contiguous() for i, k in enumerate(("logits", "fcls", "scls", "cadm_sum"))}


def run(row: str, dataset: str = "coco", profile="demo", *, root: str | None = None, seed: int = 0,
        train_seed: int = 0, device: str = "auto", weights=None, options: cadm_model.CADMOptions | None = None,
        settings: dict | None = None, n_figure: int = 6, force: bool = False) -> dict:
    """Fine-tune one variant (``row``) with one training seed and evaluate it on the test split (cached).

    The result holds ``history`` (per epoch: loss terms, hold-out BCE), ``test_outputs``
    (logits, fcls, scls, cadm_sum [N, C]), ``holdout_outputs`` (the same four on the hold-out
    images early stopping reads, [H, C]) and ``holdout_positives`` (their positive labels, [H, C]
    bool: where the weak-CADM labels are chosen, ``weak_subgroups``), ``fig_index`` and
    ``fig_cadm`` (the CADMs of a few test images), ``train_seconds``, ``train_img_s``; after
    loading also ``metrics`` (mAP and both protocols of Sec. 3.1, fractions). ``settings``: overrides of ``Settings``
    (CLI flags); ``options``: ``CADMOptions`` (lam is the variant's unless overridden there).
    """
    if row not in cadm_model.VARIANTS:
        raise ValueError(f"unknown CADM variant {row!r}; choose one of {sorted(cadm_model.VARIANTS)}")
    prof = get_profile(profile)
    spec = cadm_model.VARIANTS[row]
    options = options or cadm_model.CADMOptions(lam=spec["lam"])
    options = dataclasses.replace(options, lce_grad=spec["lce_grad"],
                                  lam=options.lam if spec["lam"] > 0 else 0.0)
    recipe = dataclasses.replace(settings_for(prof), **(settings or {}))
    device = pick_device(device)
    ctx = shared.context(dataset, prof, root, seed)
    data = ctx.data
    name = features.trunk_of(prof, TRUNK)
    config = {"method": "cadm", "variant": row, "version": 4,
              **ctx.key,
              "backbone": name, "backbone_epochs": prof.backbone_epochs, "holdout": prof.holdout,
              "image_size": prof.image_size, "streams": spec["streams"], "stem_blocks": STEM_BLOCKS,
              "options": dataclasses.asdict(options), "recipe": dataclasses.asdict(recipe),
              "train_seed": train_seed, "n_figure": n_figure, "weights": features.weights_name(weights, name)}

    def compute(folder: Path) -> dict:
        net, train_set, val_set, test_set, map_hw = inputs(dataset, prof, root, seed, device, weights)
        torch.manual_seed(train_seed)
        model = cadm_model.make_model(row, net, data.train.num_classes, map_hw, options)
        bce = cadm_model.make_loss(0.0, options)
        t0 = time.perf_counter()
        history = fit(
            model, train_set, cadm_model.make_loss(options.lam, options), val_dataset=val_set, val_loss_fn=bce,
            patience=recipe.patience, epochs=recipe.epochs, batch_size=recipe.batch_size, device=device,
            seed=train_seed, num_workers=prof.num_workers, make_optimizer=make_optimizer(recipe),
            make_scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, recipe.step_epochs, recipe.gamma),
            checkpoint=folder / "checkpoint.pt", desc=f"cadm {row} {dataset}", progress=False,
            grad_clip=recipe.grad_clip,
        )
        train_seconds = time.perf_counter() - t0
        outs = test_outputs(model, test_set, device, batch_size=max(recipe.batch_size, 128))
        held = test_outputs(model, val_set, device, batch_size=max(recipe.batch_size, 128))
        val_idx = ctx.holdout[1]
        held_positives = (data.train.labels[val_idx] > 0.5) & ~shared.ignore_mask(data.train)[val_idx]
        index = figure_indices(data.test.labels, n_figure)
        fig_cadm = predict(lambda b: model(b[0], details=True)["cadm"], Subset(test_set, index),
                           batch_size=len(index), device=device).half()
        images = sum(h["images"] for h in history)
        seconds = sum(h["seconds"] for h in history)
        return {"variant": row, "dataset": dataset, "classes": list(data.test.classes),
                "history": history, "test_outputs": outs, "holdout_outputs": held,
                "holdout_positives": held_positives, "fig_index": index, "fig_cadm": fig_cadm,
                "train_seconds": train_seconds, "train_img_s": images / seconds if seconds > 0 else float("nan")}

    result = ctx.cached("cadm", config, compute, code=(run,), force=force)
    return {**result, "metrics": scores_table(result["test_outputs"]["logits"].sigmoid(),
                                              data.test.labels, data.test.ignore)}


def train_overrides(flags: dict) -> dict:
    """Extra keyword arguments of ``run`` from the flags of ``python -m mlbook train`` (``vars(args)``):
    ``--lam`` sets the embedding weight lambda of the variants that have the embedding."""
    if flags.get("lam") is not None:
        return {"options": cadm_model.CADMOptions(lam=flags["lam"])}
    return {}


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


# --- the values a claim compares -------------------------------------------------------------------

def variant_of(row: str) -> str:
    """A claim's row (a variant key or its table label) -> the variant key."""
    if row in cadm_model.VARIANTS:
        return row
    for key, spec in cadm_model.VARIANTS.items():
        if spec["label"] == row:
            return key
    raise KeyError(f"no CADM variant named {row!r}")


# The weak-CADM labels (Sec. 3.4, Fig. 4: "it could significantly strengthen the activations of
# these relevant labels' CADMs [...] the labels whose original CADM is weak"). Rule: a label is
# weak if its mean lambda = 0 CADM peak over its positive HOLD-OUT images (the tenth of the
# training set that early stopping reads, ``shared.holdout_split``) is in the lowest third of
# the labels' means; for training seed i that mean is taken over the lambda = 0 models of the
# OTHER seeds. The subgroup judged is every positive test pair of a weak label. No test image
# takes part in the choice: chosen on test outputs (even another seed's), the subgroup holds the
# pairs where lambda = 0's per-pair noise happened to be low, which regression to the mean turns
# into a gain of any other model (in a no-effect simulation with a per-pair component that differs
# between model types, "supported" came far more often than the rule's 5%). Chosen on seed i's own model, it would
# hold the labels where seed i's training noise is low, with the same effect.

def weak_labels(peaks: list[torch.Tensor], positives: torch.Tensor) -> torch.Tensor:
    """[C] bool: the labels whose mean CADM peak over their positive pairs (``positives`` [H, C]
    of the hold-out images; ``peaks``: [H, C] of one or more lambda = 0 models, averaged) is in
    the lowest third of the labels' means. A label with no positive hold-out image is never weak."""
    count = positives.sum(0)
    mean = torch.stack([(p.double() * positives).sum(0) for p in peaks]).mean(0) / count.clamp_min(1)
    seen = count > 0
    if not seen.any():
        raise ValueError("no positive label among the hold-out images: no weak-CADM label can be chosen")
    return seen & (mean <= torch.quantile(mean[seen], 1 / 3))


def weak_subgroups(results: dict, dataset: str, positives: torch.Tensor, seeds) -> list[torch.Tensor]:
    """The weak-CADM subgroup of the test pairs for each training seed (``positives`` [N, C]: the
    test split's): for seed ``seeds[i]``, its positive pairs of the labels ``weak_labels`` finds on
    the hold-out outputs of the lambda = 0 models of the other seeds (the rule above)."""
    if len(seeds) < 2:
        raise ValueError("the weak-CADM labels need at least two training seeds (the others choose them)")
    out = []
    for s in seeds:
        others = [results[dataset, "lambda0", t] for t in seeds if t != s]
        weak = weak_labels([r["holdout_outputs"]["scls"] for r in others], others[0]["holdout_positives"])
        out.append(positives & weak)
    return out


def negatives_below(peaks: torch.Tensor, targets: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """[N, C]: for each (image, label), the share of the image's negative labels whose CADM peak
    is below the label's (a tie counts half; NaN on an image with no negative). A rank, so it does
    not change when a model's CADMs are all scaled or shifted: it compares differently trained
    models, whose logits have their own scales, on one footing."""
    neg = targets <= 0.5 if ignore is None else (targets <= 0.5) & ~ignore
    ranked = torch.where(neg, peaks.double(), torch.inf).sort(dim=1).values.contiguous()   # negatives first
    x = peaks.double().contiguous()
    below = torch.searchsorted(ranked, x, side="left")
    ties = torch.searchsorted(ranked, x, side="right") - below
    return (below + 0.5 * ties) / neg.sum(1, keepdim=True).double()


def claim_values(claim: claims.Claim, evidence: shared.Evidence, weights: torch.Tensor) -> dict:
    """{metric: (better [S, 1+R], worse [S, 1+R])} for ``claim`` on image resamples ``weights``, from
    ``evidence`` (the chapter's results, the claim's data set's test split, the training seeds).

    Metrics: "mAP"; "<all|top3>_<CF1|OF1|...>" (the two protocols of Sec. 3.1); "peak, all
    positive CADMs" and "peak, weak positive CADMs" (mean CADM peak, in logits, over the positive
    pairs or the weak-CADM subgroup, ``weak_subgroups``: chosen on hold-out images, never on test
    ones); WEAK_RANK (``negatives_below``, a scale-free rank, over the weak-CADM subgroup); WEAK_AP
    (the mean AP of the weak-CADM labels: how well they are recognised, on no model's own scale);
    "share of pairs won" (positive vs negative summed CADM; ``worse`` is the constant 0.5, a
    fixed row).
    """
    results, data, seeds = evidence.results, evidence.data[claim.dataset], evidence.seeds
    d, y, ign = claim.dataset, data.test.labels, data.test.ignore
    positives = (y > 0.5) if ign is None else (y > 0.5) & ~ign
    side = {}
    for role, row in (("better", claim.better), ("worse", claim.worse)):
        side[role] = None if row in claim.fixed else [results[d, variant_of(row), s] for s in seeds]
    weak = weak_subgroups(results, d, positives, seeds) if set(claim.metrics) & set(WEAK_METRICS) else None

    def values(runs, metric):
        logits = [r["test_outputs"]["logits"] for r in runs]
        if metric == "mAP":
            return metrics.map_values(logits, y, weights, ign)
        if metric.startswith(("all_", "top3_")):
            protocol, m = metric.split("_", 1)
            preds = [predictions(x.sigmoid(), protocol) for x in logits]
            return metrics.set_metric_values(preds, y, weights, m, ign)
        if metric == "peak, all positive CADMs":
            return torch.stack([metrics.pair_mean(r["test_outputs"]["scls"], positives, weights) for r in runs])
        if metric == "peak, weak positive CADMs":
            return torch.stack([metrics.pair_mean(r["test_outputs"]["scls"], weak[i], weights)
                                for i, r in enumerate(runs)])
        if metric == WEAK_AP:      # per seed: the mean AP of its weak-CADM labels (chosen on hold-out)
            return torch.stack([metrics.resampled_ap(x, y, weights, ign)[:, weak[i].any(0)].nanmean(1)
                                for i, x in enumerate(logits)])
        if metric == WEAK_RANK:
            ranks = [negatives_below(r["test_outputs"]["scls"], y, ign) for r in runs]
            return torch.stack([metrics.pair_mean(x.nan_to_num(0.0), weak[i] & ~x.isnan(), weights)
                                for i, x in enumerate(ranks)])
        if metric == "share of pairs won":
            return torch.stack([metrics.positive_wins(r["test_outputs"]["cadm_sum"], y, weights) for r in runs])
        raise KeyError(f"{claim.id}: no CADM metric {metric!r}")

    out = {}
    for m in claim.metrics:
        b = values(side["better"], m)
        w = values(side["worse"], m) if side["worse"] is not None else torch.full_like(b[:1], 0.5)
        out[m] = (b, w)
    return out


# --- what the claims table shows next to each claim --------------------------------------------------

TABLES = {"coco": "cadm_table1_coco", "nuswide": "cadm_table2_nuswide"}   # Tables 1, 2
TABLE_METRICS = ("mAP", "all_CF1", "all_OF1", "top3_CF1", "top3_OF1")    # "relatively more important" (Sec. 3.1)
RAW_METRICS = ("peak, all positive CADMs", "peak, weak positive CADMs")   # CADM logits: printed unscaled
WEAK_RANK = "negatives below the peak, weak-CADM labels"                   # a share: printed in points
WEAK_AP = "AP, weak-CADM labels"                                           # their recognition: points
WEAK_METRICS = ("peak, weak positive CADMs", WEAK_RANK, WEAK_AP)


def published_deltas(claim: claims.Claim) -> dict:
    """{metric: the Δ (points) the paper's own table gives for the claim's two rows, or None}."""
    table = report.reference(TABLES[claim.dataset])
    label = lambda row: cadm_model.VARIANTS[variant_of(row)]["label"] if row not in claim.fixed else row  # noqa: E731
    return {m: claims.published_delta(table, label(claim.better), label(claim.worse), m) for m in claim.metrics}


def secondary_deltas(claim: claims.Claim, results: dict, seeds) -> dict:
    """{metric: Δ (points, mean over seeds)} of the table metrics of Sec. 3.1 that are not the
    claim's primary ones: shown next to the verdict, never voted. Empty unless the claim compares
    two variants on table metrics."""
    if claim.fixed or not set(claim.metrics) <= set(TABLE_METRICS):
        return {}
    def mean(row, m):
        return sum(results[claim.dataset, variant_of(row), s]["metrics"][m] for s in seeds) / len(seeds)
    return {m: 100 * (mean(claim.better, m) - mean(claim.worse, m)) for m in TABLE_METRICS if m not in claim.metrics}


def claim_options(claim: claims.Claim, evidence: shared.Evidence) -> dict:
    """The keyword arguments of ``claims.evaluate`` for ``claim`` besides its values: the paper's
    Δ, the secondary metrics (from ``evidence``'s results and seeds), and the scale of the printed
    evidence (points for fractions; CADM peaks are logits, printed as they are). Every claim of
    the chapter is testable on these data."""
    scale = 1.0 if set(claim.metrics) <= set(RAW_METRICS) else 100.0
    secondary = secondary_deltas(claim, evidence.results, evidence.seeds)
    return {"published": published_deltas(claim), "secondary": secondary or None, "scale": scale}


# --- chapter 08's protocol -------------------------------------------------------------------------

class ComputedMaps(nn.Module):
    """The trunk of a CADM on maps already computed (frozen, cached): its input is the maps, as float32."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.float()


METHOD_ROW = "lambda0.5"   # the paper's method: CADM + LCE (lambda = 0.5, "in all the experiments")


def protocol_knobs(profile) -> tuple[dict, ...]:
    """No knob of its own under chapter 08's protocol: lambda is the paper's 0.5."""
    return ({},)


def protocol_run(dataset: str, profile, protocol: Protocol, *, lr: float, knob: dict, root: str | None = None,
                 seed: int = 0, train_seed: int = 0, device: str = "auto", weights=None, force: bool = False) -> dict:
    """The paper's method, CADM + LCE (``METHOD_ROW``: Eqs. 2-12, L = L_cls + 0.5 L_lce), under
    chapter 08's protocol (``experiments.protocol``), cached: on the protocol trunk's frozen maps
    (not fine-tuned, no flips, as every row there), Adam at ``lr``, early stopping on its own loss
    (Eq. 5) on the hold-out part. Scores: sigmoid of the logits y (Eq. 3)."""
    profile = get_profile(profile)
    name = features.trunk_of(profile, protocol.trunk)
    options = cadm_model.CADMOptions(lam=cadm_model.VARIANTS[METHOD_ROW]["lam"])
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    config = {"chapter": "08_head_to_head", "method": "cadm", "variant": METHOD_ROW, "version": 1,
              **ctx.key, **protocol.key(lr, knob), "backbone": name, "image_size": profile.size_for(name),
              "weights": features.weights_name(weights, name), "options": dataclasses.asdict(options),
              "train_seed": train_seed}

    def compute(folder: Path) -> dict:
        feats = features.backbone_features(dataset, profile, root, seed, device, weights, trunk=name)
        y, ign = data.train.labels, shared.ignore_mask(data.train)
        chw = tuple(feats["train"].shape[1:])
        torch.manual_seed(train_seed)
        trunk = ComputedMaps(chw[0])
        model = cadm_model.make_model(METHOD_ROW, trunk, data.train.num_classes, chw[1:], options)
        part = lambda idx: features.map_rows(features.take(feats["train"], idx), y[idx], ign[idx])  # noqa: E731
        fit_idx, val_idx = ctx.holdout
        history = fit(model, part(fit_idx), cadm_model.make_loss(options.lam, options), epochs=protocol.epochs,
                      batch_size=protocol.batch_size, device=device, seed=train_seed, val_dataset=part(val_idx),
                      patience=protocol.patience, checkpoint=folder / "checkpoint.pt", desc=f"cadm {dataset}",
                      make_optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=lr, weight_decay=protocol.weight_decay),
                      progress=False)
        dev = pick_device(device)
        model.to(dev).eval()
        score = lambda x: torch.sigmoid(model(x))  # noqa: E731
        return record(features.map_apply(score, feats["test"], device=dev),
                      features.map_apply(score, features.take(feats["train"], val_idx), device=dev), history,
                      params=trainable_parameters(model), flops=forward_flops(score, first_test_image(feats["test"], dev)))

    return ctx.cached("cadm", config, compute, code=(protocol_run,), force=force)


# --- the full profile's cost (mlbook plan) ---

def cost(run, ctx):
    """A CADM variant fine-tuning ``TRUNK`` end to end on the images (hold-out and test passes included)."""
    s = settings_for(ctx.profile)
    C = NUM_CLASSES[run.dataset]
    size = ctx.profile.image_size
    _, h, w = features.map_shape(TRUNK, size)
    net = measured(("cadm", run.row, C), lambda: cadm_model.make_model(run.row, random_backbone(TRUNK), C, (h, w)),
                   ((1, 3, size, size),), train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    n_train, n_test = ctx.split(run.dataset)
    forward = net.flops / 3
    host, gpu = training_memory(net, ctx.batch(s.batch_size, run.dataset), "sgd")
    loader = loader_bytes(ctx.profile.num_workers, ctx.batch(max(s.batch_size, 128), run.dataset), image_bytes(size))
    host, gpu = ctx.peaks(host=host + 4 * net.params + loader + outputs_bytes(n_train + n_test, C, 6), gpu=gpu)
    outputs = outputs_bytes(n_test + max(1, round(n_train * ctx.profile.holdout)), C)   # test and hold-out
    peak, kept = row_disk({}, net, "sgd", outputs + 6 * C * h * w * 2)   # and Fig. 2's maps
    return RunCost(ctx.chapter, f"CADM fine-tuning {TRUNK} at {size} px", run.dataset, net.flops, n_fit, epochs, 1,
                   epochs * (n_train - n_fit) * forward + n_test * forward, host, gpu, peak, kept_bytes=kept)
