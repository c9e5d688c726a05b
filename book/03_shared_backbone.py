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
# 16–32–64–128 channels, overall stride 8) is trained **once per data set, from
# scratch**, with binary cross-entropy on the *fit part* of the training split, and then
# shared: the chapters that freeze a pretrained backbone freeze this one, and the chapters
# that fine-tune one start from it. Its conv maps (6×6 at 48 px) play the role of ResNet's
# conv5 maps (7×7 at 224 px, 14×14 at 448 px).
#
# **The hold-out tenth is never seen.** Every chapter holds a tenth of the training set
# out (the same images for every method and seed) for early stopping and for every choice
# a method makes: a threshold, KNN's k, a margin. The backbone is trained on the other nine
# tenths only, so those choices are made on images its features were not fitted to, as an
# ImageNet backbone would never have seen them either.
#
# **Deviation, stated once for the whole book:** in the papers the backbone has never
# seen the target data before the method's own training; here it has seen the fit part.
# Its role is the same, a fixed, good feature extractor the methods build on, and every
# method in a chapter gets the same one, so the comparisons *between* methods stay fair.
# In the `full` profile each chapter loads the ImageNet network its paper names (table
# below) and this chapter trains nothing.

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

import mlbook  # first: it sets the portable numerics (mlbook.numerics) before numpy and torch load
import matplotlib.pyplot as plt
import pandas as pd

from mlbook import papers
from mlbook.experiments import features, head_to_head, shared, transformation_ranking
from mlbook.metrics import average_precision
from mlbook.models.backbones import SmallCNN
from mlbook.profiles import get_profile
from mlbook.report import save_figure, save_table, save_timings, show_source

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
show_source(SmallCNN)

# %% [markdown]
# ## The networks of the full profile
#
# Each paper's own network, as its experiments section names it; the baseline rows of a
# chapter's tables read the same trunk as the method they are compared with.

# %%
pd.DataFrame([{"chapter": p.chapter, "trunk": p.trunk, "how the paper uses it": p.trunk_use} for p in papers.PAPERS]
             ).set_index("chapter")

# %% [markdown]
# ## Training, once per data set
#
# `experiments.features.shared_backbone` is an experiment: its result (weights, training curve,
# test scores) is cached under `runs/shared_backbone/<config-hash>/`, so the chapters after
# this one load it instead of retraining. `experiments.features.backbone_features` then stores
# the frozen conv maps of every image for the heads that keep the backbone frozen. The three
# data sets' backbones train side by side, one process per core (`shared.run_all`), each on
# one thread: the numbers do not depend on how many run at once. Beside them train the three
# NUS-WIDE backbones of chapter 07's zero-shot test (below) and, for chapter 08's comparison, in
# which every training seed varies the whole network, the MS-COCO and NUS-WIDE backbones of its
# later training seeds: the same recipe with another seed (chapter 08 shows them).

# %%
TRAINED = ROOTS if P.backbone == "small_cnn" else {}   # the full profile loads ImageNet trunks: nothing to train
ZERO_SHOT = transformation_ranking.zero_shot_runs(P) if "nuswide" in TRAINED else []
SEED_BACKBONES = head_to_head.seed_backbone_runs(P, [d for d in head_to_head.DATASETS if d in TRAINED], range(P.train_seeds))
setting = shared.Setting(P, TRAINED, seed, device, weights)
shared.run_all(shared.feature_runs(TRAINED) + ZERO_SHOT + SEED_BACKBONES, setting)
results, rows, timings = {}, [], []
for dataset, root in TRAINED.items():
    data = shared.splits(dataset, P, root, seed)
    backbone, result = features.shared_backbone(dataset, P, root, seed, device, weights)
    feats = features.backbone_features(dataset, P, root, seed, device, weights)
    results[dataset] = (data, result)
    hist = result["history"]
    rows.append({"data set": dataset, "train images (fit part)": result.get("trained_images", len(data.train)),
                 "hold-out images": len(data.train) - result.get("trained_images", len(data.train)),
                 "test images": len(data.test), "classes": data.train.num_classes, "epochs": len(hist),
                 "final train loss": round(hist[-1]["loss"], 4) if hist else None,
                 "test mAP (%)": round(100 * result["test_mAP"], 1),
                 "feature maps": "x".join(map(str, feats["train"].shape[1:]))})
    seconds, images = sum(h["seconds"] for h in hist), sum(h["images"] for h in hist)
    timings.append({"what": f"shared backbone {dataset}", "seconds": round(seconds, 1),
                    "img/s": round(images / seconds) if seconds else None})
table = pd.DataFrame(rows, columns=["data set", "train images (fit part)", "hold-out images", "test images",
                                    "classes", "epochs", "final train loss", "test mAP (%)", "feature maps"]
                     ).set_index("data set")
save_table(table, CHAPTER, 1, "The shared backbone per data set (GAP + linear head, BCE, fit part of the training set)")

# %% [markdown]
# Each backbone is trained on the fit part of its training set and tested on the test split;
# the later chapters compare methods built on these same features, so a weak or strong
# backbone shifts every row alike. Training speed is logged in `figures/03_shared_backbone/timings.csv`,
# never in a results table (timings differ run to run; results must not).

# %% [markdown]
# ## The zero-shot backbones of chapter 07
#
# Chapter 07 tests the ranking paper's zero-shot remark (Sec. 3.5) on labels held out of
# everything trained. In the paper the features come from ImageNet AlexNet, which never saw
# NUS-WIDE's labels; the demo's stand-in for it is a backbone trained on NUS-WIDE itself, so
# for each held-out split $j$ the backbone is trained again with split $j$'s labels left out of
# its BCE (`experiments.transformation_ranking.zero_shot_features`). Its test mAP is over the
# labels it saw.

# %%
zero_shot_rows = []
for split, run in enumerate(ZERO_SHOT):    # one run per split, in split order
    data = shared.splits(run.dataset, P, TRAINED[run.dataset], seed)
    unseen = transformation_ranking.zero_shot_labels(data.train.num_classes, seed, transformation_ranking.settings_for(P).zero_shot_fraction, split)
    _, result = features.shared_backbone(run.dataset, P, TRAINED[run.dataset], seed, device, weights,
                                         exclude_labels=tuple(unseen.tolist()))
    hist = result["history"]
    zero_shot_rows.append({"split": split, "held-out labels": ", ".join(data.train.classes[c] for c in unseen),
                           "epochs": len(hist), "test mAP, seen labels (%)": round(100 * result["test_mAP"], 1)})
    seconds, images = sum(h["seconds"] for h in hist), sum(h["images"] for h in hist)
    timings.append({"what": f"zero-shot backbone {run.dataset}, split {split}", "seconds": round(seconds, 1),
                    "img/s": round(images / seconds) if seconds else None})
save_timings(CHAPTER, timings)
if zero_shot_rows:
    save_table(pd.DataFrame(zero_shot_rows).set_index("split"), CHAPTER, 2,
               "NUS-WIDE backbones that never saw one split's held-out labels (chapter 07's zero-shot test)")

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
