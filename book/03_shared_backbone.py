# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (mlbook)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The shared backbone: the demo's stand-in for ImageNet pretraining
#
# Every paper in this book starts from a ResNet pretrained on ImageNet: the
# Order-Free RNN keeps ResNet-152 frozen and reads its conv maps; CADM fine-tunes
# ResNet-101 end to end. ImageNet weights cannot be downloaded where this book is
# built, and a ResNet at 448 px does not train on a 2-core CPU in minutes.
#
# So in the `smoke` and `demo` profiles a small CNN (four 3×3 conv–BN–ReLU blocks,
# 32–64–128–128 channels, overall stride 8) is trained **once per data set, from
# scratch**, with binary cross-entropy on the training split, and then shared: the
# chapters that freeze a pretrained backbone freeze this one, and the chapters that
# fine-tune one start from it. Its conv maps (6×6 at 48 px) play the role of
# ResNet's conv5 maps (7×7 at 224 px, 14×14 at 448 px).
#
# **Deviation, stated once for the whole book:** in the papers the backbone has never
# seen the target data before the method's own training; here it has (it is trained
# on the same training split). Its role is the same, a fixed, good feature extractor
# the methods build on, and every method in a chapter gets the same one, so the
# comparisons *between* methods stay fair. In the `full` profile the chapters load the
# ImageNet ResNet instead and this chapter trains nothing.

# %% tags=["parameters"]
import os

profile = os.environ.get("MLBOOK_PROFILE", "demo")
coco_root = None
nuswide_root = None
voc_root = None
device = "auto"
seed = 0
weights = None      # full profile: {"resnet101": FILE} ImageNet weights (None: the torch hub cache)

# %%
import inspect

import matplotlib.pyplot as plt
import pandas as pd
import torch

from mlbook.experiments import shared as stages
from mlbook.metrics import average_precision
from mlbook.models.backbones import SmallCNN
from mlbook.profiles import get_profile
from mlbook.report import save_figure, save_table

CHAPTER = "03_shared_backbone"
P = get_profile(profile)
ROOTS = {"coco": coco_root, "nuswide": nuswide_root, "voc": voc_root}   # VOC: for RLSD (chapter 06)
print(f"profile {P.name}: backbone {P.backbone}, {P.image_size} px, {P.backbone_epochs} epochs, "
      f"batch {P.batch_size}")

# %% [markdown]
# ## The network
#
# The whole model is a few lines; the classifier on top is global average pooling
# and a linear layer, trained with BCE (the "ResNet baseline" of the papers, in
# miniature).

# %%
print(inspect.getsource(SmallCNN))

# %% [markdown]
# ## Training, once per data set
#
# `experiments.shared.shared_backbone` is an experiment: its result (weights, training curve,
# test scores) is cached under `runs/shared_backbone/<config-hash>/`, so the
# chapters after this one load it instead of retraining. `experiments.shared.backbone_features`
# then stores the frozen conv maps of every image for the heads that keep the
# backbone frozen.

# %%
results, rows = {}, []
for dataset, root in ROOTS.items():
    data = stages.splits(dataset, P, root, seed)
    W = (weights or {}).get(P.backbone)
    backbone, result = stages.shared_backbone(dataset, P, root, seed, device, W)
    feats = stages.backbone_features(dataset, P, root, seed, device, W)
    results[dataset] = (data, result)
    hist = result["history"]
    seconds = sum(h["seconds"] for h in hist)
    images = sum(h["images"] for h in hist)
    rows.append({"data set": dataset, "train images": len(data.train), "test images": len(data.test),
                 "classes": data.train.num_classes, "epochs": len(hist),
                 "final train loss": round(hist[-1]["loss"], 4) if hist else None,
                 "train img/s": round(images / seconds) if seconds else None,
                 "test mAP (%)": round(100 * result["test_mAP"], 1),
                 "feature maps": "x".join(map(str, feats["train"].shape[1:]))})
table = pd.DataFrame(rows).set_index("data set")
save_table(table, CHAPTER, 1, "The shared backbone per data set (GAP + linear head, BCE)")

# %% [markdown]
# ## Training curves and per-class AP
#
# Left: the training loss per epoch. Right: each class's test AP against its number
# of training images. The generated data are long-tailed on purpose, and the rare
# classes are where the methods of the later chapters have the most room to help.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
for dataset, (data, result) in results.items():
    hist = result["history"]
    axes[0].plot([h["epoch"] for h in hist], [h["loss"] for h in hist], marker="o", label=dataset)
    ap = average_precision(result["test_scores"], data.test.labels, data.test.ignore)
    freq = data.train.labels.sum(0)
    axes[1].scatter(freq.numpy(), 100 * ap.numpy(), label=dataset, s=18)
axes[0].set(xlabel="epoch", ylabel="BCE loss (train)", title="training loss")
axes[1].set(xscale="log", xlabel="training images with the label", ylabel="test AP (%)",
            title="per-class AP vs label frequency")
for ax in axes:
    ax.legend()
fig.tight_layout()
save_figure(fig, CHAPTER, 1, "backbone_training")
plt.show()
