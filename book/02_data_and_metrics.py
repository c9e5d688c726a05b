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
# # Data and evaluation
#
# Before any model: what the three benchmarks look like, and how much the
# evaluation conventions, which the papers rarely spell out, move the numbers.
#
# ## The three benchmarks, as their owners publish them
#
# | data set | on disk | classes | split sizes used in the literature |
# |---|---|---|---|
# | MS-COCO 2014 | `annotations/instances_{train,val}2014.json` (read with pycocotools) + `train2014/`, `val2014/` JPEGs | 80 (non-contiguous category ids 1..90, mapped to 0..79 in id order) | train2014 82,783 listed → **82,081**, val2014 40,504 listed → **40,137** after dropping images without any annotation; val2014 is the test set |
# | NUS-WIDE | `ImageList/{Train,Test}Imagelist.txt` (Windows paths), `Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt` (or `AllLabels/`), `ConceptsList/Concepts81.txt`, Flickr JPEGs | 81 concepts | official **161,789 / 107,859**; every copy misses some dead Flickr images, and the papers then drop images with no concept: RLSD uses **125,449 / 83,898**, the transformation-ranking paper **102,405 / 68,739** |
# | PASCAL VOC 2007 | `ImageSets/Main/<class>_{trainval,test}.txt` (1 / −1 / 0 = difficult, CRLF), `Annotations/*.xml` boxes, `JPEGImages/` | 20 | **5,011** trainval / **4,952** test |
#
# The papers' numbers are therefore not all on the same images: on NUS-WIDE in
# particular two papers can differ by 20,000 test images, and no paper lists which.
#
# ## What this book reads by default
#
# Without a data root, every chapter reads a **generated** stand-in
# (`mlbook/data/synthetic.py`), deterministic from the seed and written **in the
# same on-disk formats** (COCO json + JPEG folders, the NUS-WIDE list and label files
# with Windows paths and CRLF, VOC `ImageSets/Main` lists and xml boxes). The same
# loaders read it and the real data, so the demo exercises the real code path,
# including the real data's warts: an unlabelled image per COCO split, crowd
# annotations and a grayscale image, NUS-WIDE images listed but missing on disk, VOC
# "difficult" objects. It is built to show what the papers are about: each image
# draws a *scene* (street, kitchen, farm, ...) that decides which labels co-occur;
# label frequencies follow a Zipf law (a long tail); objects range from half the
# image down to a few pixels; every object has a box; class names are real
# category names. Each class is a distinct coloured shape, so a small CNN can learn
# it at 48 px. Pass `coco_root`, `nuswide_root` or `voc_root` to read the real data
# instead; every table and figure below is computed from whatever was loaded.

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
import numpy as np
import pandas as pd
import torch

from mlbook import metrics
from mlbook.data import DATASETS, load_splits, open_rgb
from mlbook.data.summary import split_summary
from mlbook.experiments import features, shared
from mlbook.profiles import get_profile
from mlbook.report import save_figure, save_table

CHAPTER = "02_data_and_metrics"
P = get_profile(profile)
ROOTS = {"coco": coco_root, "nuswide": nuswide_root, "voc": voc_root}
DATA = {name: load_splits(name, P, ROOTS[name], seed) for name in DATASETS}
for name, (train, test) in DATA.items():
    where = "generated (data/generated/…)" if ROOTS[name] is None else f"real, read from the root passed as {name}_root"
    print(f"{name:8s} {where}: {len(train)} train / {len(test)} test images")

# %% [markdown]
# **Region proposals.** Chapter [06](06_rlsd) compares its learnt regions with the
# selective-search proposals of every image (its stand-in for the paper's MCG proposals). They
# depend on the images alone, so on the generated data this chapter computes them, cached,
# while chapter 03 trains the backbones beside it; chapter 06 then loads them. With a real data
# root, chapter 06 computes them itself or reads the user's own proposals (`proposals_root`).

# %%
generated = [d for d in ("voc", "coco", "nuswide") if ROOTS[d] is None]
proposal_runs = [shared.Run("rlsd", "selective search", d) for d in generated]
found = shared.run_all(proposal_runs, shared.Setting(P, ROOTS, seed, device, weights,
                                                     {"vg_root": None, "proposals_root": None}))
pd.DataFrame([{"data set": r.dataset, "images": len(found[r.key]["found"]),
               "proposals per image (median)": int(found[r.key]["found"].median())} for r in proposal_runs])

# %% [markdown]
# ## Split sizes and what the loaders dropped
#
# "listed" is what the split's files name; "loaded" is what a model sees. The
# difference is counted per reason, as the papers' "after removing images without
# labels" would need to be stated.

# %%
rows = []
for name, splits in DATA.items():
    for data in splits:
        s = split_summary(data)
        lpi = s["labels_per_image"]
        rows.append({"data set": name, "split": data.split, "listed": s["listed"], "loaded": s["loaded"],
                     "skipped": ", ".join(f"{k}: {n}" for k, n in s["skipped"].items()) or "none",
                     "classes (present)": f"{s['classes']} ({s['classes_present']})",
                     "labels / image": lpi["mean"], "max labels": lpi["max"],
                     "boxes": s.get("boxes", "–"),
                     "difficult labels": int(data.ignore.sum()) if data.ignore is not None else "–"})
save_table(pd.DataFrame(rows).set_index(["data set", "split"]), CHAPTER, 1,
           "Split sizes, skipped images by reason, classes and labels per image");

# %% [markdown]
# ## The long tail
#
# Training images per class, classes sorted by frequency, log scale. A frequent
# class has tens of times more examples than a rare one; per-class metrics (CP, CR,
# CF1, mAP) weight every class equally and so are dominated by how the tail is
# handled, while the overall ones (OP, OR, OF1) are dominated by the head.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
for ax, (name, (train, test)) in zip(axes, DATA.items()):
    freq = train.labels.sum(0)
    order = torch.argsort(freq, descending=True)
    x = np.arange(len(order))
    ax.bar(x, freq[order].numpy(), color="tab:blue", label="train")
    ax.plot(x, test.labels.sum(0)[order].numpy(), "o", ms=3, color="tab:orange", label="test")
    ax.set_yscale("log")
    ax.set_xticks(x, [train.classes[i] for i in order], rotation=90,
                  fontsize=max(4, min(8, 400 // len(order))))
    ratio = float(freq.max() / freq[freq > 0].min())
    ax.set(title=f"{name}: most / least frequent = {ratio:.0f}x", ylabel="images with the label")
    ax.legend(fontsize=8)
fig.tight_layout()
save_figure(fig, CHAPTER, 1, "label_frequency")
plt.show()

# %% [markdown]
# ## Label co-occurrence (COCO)
#
# Row *i*, column *j*: P(label *j* present | label *i* present) on the training
# split. The diagonal (always 1) is left blank. Rows are not symmetric: a rare label
# that appears with a frequent one says a lot about it, not the other way round.
# This conditional structure is what the sequence models (Order-Free RNN, RLSD) and
# the label-correlation losses (CADM's LCE) try to exploit.

# %%
train = DATA["coco"][0]
Y = train.labels
cond = (Y.t() @ Y) / Y.sum(0).clamp_min(1)[:, None]   # [i, j] = P(j | i)
cond.fill_diagonal_(float("nan"))
C = len(train.classes)
side = max(6.0, 0.24 * C + 2)
fig, ax = plt.subplots(figsize=(side + 1, side))
im = ax.imshow(cond.numpy(), cmap="viridis", vmin=0, vmax=float(np.nanmax(cond.numpy())))
ax.set_xticks(range(C), train.classes, rotation=90, fontsize=7 if C <= 40 else 5)
ax.set_yticks(range(C), train.classes, fontsize=7 if C <= 40 else 5)
ax.set(xlabel="label j", ylabel="given label i", title="coco train: P(j | i)")
fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
fig.tight_layout()
save_figure(fig, CHAPTER, 2, "cooccurrence_coco")
plt.show()

# %% [markdown]
# ## Object sizes
#
# Each box's size relative to its image, sqrt(box area / image area), as the share of
# boxes at most that size (a cumulative curve: the generated sizes are whole
# pixels, which a histogram would turn into comb-like gaps). COCO calls an
# object *small* below 32² px of area and *large* above 96² px, at its typical image
# size of 640×480; relative to that image area the thresholds are
# 32 / sqrt(640·480) ≈ 0.058 and 96 / sqrt(640·480) ≈ 0.17, and the same relative
# thresholds are drawn for every data set (for the generated 64 px images, 0.058 is
# about 4 px). Crowd regions are left out, as the COCO detection evaluation does.
# Generated object sizes depend on the class, as in photographs: each class has a
# typical side (`synthetic_scenes.TYPICAL_SIDE`, the book's choice: bottles, cups and traffic
# lights small; people and dogs medium; buses, trains and dining tables large), drawn
# log-normally around it and clipped to 3–60% of the image side. Only a few per cent of
# the generated boxes fall below COCO's relative *small* threshold (real COCO: 41% of its
# instances), because at the demo's 48 px input a smaller object would be a pixel or two;
# they are still small for the network, which sees the smallest at 2–3 pixels. Small
# objects are where a global-pooled CNN feature is weakest, and what attention
# (Order-Free RNN), region proposals (RLSD) and class-wise maps (CADM) are for.

# %%
SMALL, LARGE = 32 / (640 * 480) ** 0.5, 96 / (640 * 480) ** 0.5


def relative_sizes(data):
    """sqrt(box area / image area) of every non-crowd box of a split."""
    return np.array([(b.w * b.h / (w * h)) ** 0.5 for bs, (w, h) in zip(data.boxes, data.image_sizes)
                     for b in bs if not b.crowd])


boxed = {name: relative_sizes(train) for name, (train, _) in DATA.items() if train.boxes is not None}
fig, ax = plt.subplots(figsize=(7.5, 3.8))
lo = min(0.01, min(rel.min() for rel in boxed.values()) * 0.9)
for name, rel in boxed.items():  # cumulative: no binning artefacts from integer pixel sizes
    x = np.sort(rel)
    ax.step(np.r_[lo, x, 1.0], 100 * np.r_[0, np.arange(1, len(x) + 1), len(x)] / len(x), where="post",
            lw=2, label=f"{name} ({len(rel)} boxes)")
ax.set_xlim(lo, 1.0)
for t in (SMALL, LARGE):
    ax.axvline(t, color="k", ls="--", lw=1)
for (a, b), lab in (((lo, SMALL), "small"), ((SMALL, LARGE), "medium"), ((LARGE, 1.0), "large")):
    ax.text((a * b) ** 0.5, 1.01, lab, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=9)
ax.set(xscale="log", xlabel="sqrt(box area / image area)", ylabel="% of training boxes this small or smaller",
       title="object sizes, cumulative (COCO size classes as relative thresholds)\n")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
fig.tight_layout()
save_figure(fig, CHAPTER, 3, "object_sizes")
plt.show()

sizes = pd.DataFrame({name: {"boxes": len(rel), "small (%)": 100 * np.mean(rel < SMALL),
                             "medium (%)": 100 * np.mean((rel >= SMALL) & (rel < LARGE)),
                             "large (%)": 100 * np.mean(rel >= LARGE)}
                      for name, rel in boxed.items()}).T.round(1)
save_table(sizes, CHAPTER, 2, "Training boxes by COCO size class (relative thresholds 0.058 and 0.17)");

# %% [markdown]
# ## Sample training images (COCO) with their boxes
#
# Twelve training images drawn with the seed, with their boxes; the labels of each
# image are listed beside it, each in the colour of its boxes (colours are per
# image; a dotted box is a crowd region).

# %%
train = DATA["coco"][0]
pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:12].tolist()
colours = plt.get_cmap("tab10")
fig, axes = plt.subplots(3, 4, figsize=(14, 7.5))
for ax, i in zip(axes.flat, pick):
    ax.imshow(open_rgb(train.image_paths[i]))
    present = sorted(set(b.label for b in train.boxes[i]) | set(torch.nonzero(train.labels[i]).flatten().tolist()))
    colour = {k: colours(n % 10) for n, k in enumerate(present)}
    for b in train.boxes[i]:
        ax.add_patch(plt.Rectangle((b.x, b.y), b.w, b.h, fill=False, lw=1.5,
                                   ls=":" if b.crowd else "-", edgecolor=colour[b.label]))
    for row, k in enumerate(present):  # one line per label, beside the image, in its box colour
        ax.text(1.04, 1.0 - 0.11 * row, train.classes[k], transform=ax.transAxes, color=colour[k],
                fontsize=9, fontweight="bold", va="top")
    ax.set_xticks([])
    ax.set_yticks([])
for ax in axes.flat[len(pick):]:
    ax.axis("off")
fig.subplots_adjust(wspace=0.75, hspace=0.08)
save_figure(fig, CHAPTER, 4, "samples_coco")
plt.show()

# %% [markdown]
# ## Metric conventions, on one set of scores
#
# `mlbook.metrics` computes every metric the papers report over a score matrix
# [N, C] and a target matrix [N, C], with the choices that differ across the
# literature as named options: which labels count as *predicted* (the top k per
# image, the top k but only those scoring ≥ 0.5, or every label ≥ 0.5); whether
# CF1 is the harmonic mean of the averaged CP and CR or the mean of per-class F1;
# what precision a class gets when it is never predicted; how tied scores enter AP;
# how mAP@10 is defined; and whether VOC's difficult labels are ignored or counted
# as negatives. First, what each paper uses, as far as its text and numbers show:

# %%
rows = {}
for paper, conv in metrics.PAPER_CONVENTIONS.items():
    ranking = conv["map"] or "–"
    if conv.get("map_at_k"):
        ranking += " · mAP@k " + ", ".join(f"{k}={v}" for k, v in conv["map_at_k"].items())
    rows[paper] = {"prediction rule": ", ".join(conv["protocols"]), "CF1": conv["cf1"],
                   "empty precision": conv["empty_precision"], "ranking metric": ranking,
                   "difficult (VOC)": conv["difficult"] or "–"}
save_table(pd.DataFrame(rows).T.rename_axis("paper"), CHAPTER, 3,
           "Each paper's evaluation convention (mlbook.metrics.PAPER_CONVENTIONS)")
for paper, conv in metrics.PAPER_CONVENTIONS.items():
    print(f"{paper}: {conv['source']}\n")

# %% [markdown]
# The scores: the shared backbone's (chapter [03](03_shared_backbone)) predictions
# on the COCO test split, as probabilities (sigmoid of its logits). The stage is
# trained on first use and cached, so the chapters after this one reuse it. (In the
# `full` profile the backbone is an ImageNet network with no classifier for these
# classes; the section then falls back to a toy score set, labels plus Gaussian
# noise, and says so.)

# %%
test = DATA["coco"][1]
_, result = features.shared_backbone("coco", P, coco_root, seed, device, (weights or {}).get(P.backbone))


def toy_scores(labels, strength=1.0, noise=0.6):
    """A toy score set: sigmoid(4 * (strength * labels - 0.5 + noise * N(0, 1))), seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.sigmoid(4 * (strength * labels - 0.5 + noise * torch.randn(labels.shape, generator=g)))


if result.get("test_scores") is not None:
    scores, source = torch.sigmoid(result["test_scores"]), "shared backbone, coco test split"
else:
    scores, source = toy_scores(test.labels), "TOY scores (labels + noise): no trained classifier here"
targets = test.labels
E = metrics.evaluate_all(scores, targets)
print(f"{source}: {E['n_images']} images x {E['n_classes']} classes, mAP {100 * E['mAP']:.1f}, "
      f"classes never in the top 3: {int((metrics.predict_labels(scores, k=3).sum(0) == 0).sum())}, "
      f"never >= 0.5: {int((metrics.predict_labels(scores, threshold=0.5).sum(0) == 0).sum())}")

# %% [markdown]
# ### How much each choice moves CP / CR / CF1 / OP / OR / OF1
#
# Starting from one baseline, top-3 with harmonic CF1 and a never-predicted class
# counting as precision 0 (the most common reading), each row changes **one**
# choice. The Δ columns are the change of CF1 and OF1 from the baseline, in points.
# (A 0.5 floor on the top k gives exactly the 0.5 threshold's predictions whenever no
# image has more than k labels scoring 0.5 or more; the empty-precision choice does
# nothing when every class is predicted at least once.)

# %%
BASE = ("top3", "harmonic", "zero")
variants = [("baseline", *BASE)]
variants += [(f"prediction: {p}", p, "harmonic", "zero") for p in metrics.PROTOCOLS if p != "top3"]
variants += [(f"CF1: {c}", "top3", c, "zero") for c in metrics.CF1_OPTIONS if c != "harmonic"]
variants += [(f"empty precision: {e}", p, "harmonic", e) for p in ("top3", "thr0.5")
             for e in metrics.EMPTY_PRECISION_OPTIONS if (p, e) != ("top3", "zero")]


def six(protocol, cf1, empty):
    return E["prf"][protocol][metrics.variant_key(cf1, empty)]


base = six(*BASE)
rows = []
for label, p, c, e in variants:
    r = six(p, c, e)
    rows.append({"choice": label, "prediction": p, "CF1 as": c, "empty precision": e,
                 **{k: round(100 * v, 1) for k, v in r.items()},
                 "Δ CF1": round(100 * (r["CF1"] - base["CF1"]), 1),
                 "Δ OF1": round(100 * (r["OF1"] - base["OF1"]), 1)})
moves = pd.DataFrame(rows).set_index("choice")
save_table(moves, CHAPTER, 4, f"One choice at a time from top-3 / harmonic / zero ({source})");

# %% [markdown]
# Left: the six numbers under each prediction rule (harmonic CF1, empty precision
# zero). Right: CF1 under every prediction rule × CF1 definition × empty-precision
# choice; the spread of each column is how far two papers that report "CF1" on the
# same scores can be apart. (The mean of per-class F1 does not depend on the
# empty-precision choice: a class never predicted has F1 = 0 either way, so its three
# squares coincide.)

# %%
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(14, 4.4), gridspec_kw={"width_ratios": [3, 2]})
protocols = list(metrics.PROTOCOLS)
width = 0.8 / len(metrics.PRF_KEYS)
for j, key in enumerate(metrics.PRF_KEYS):
    vals = [100 * six(p, "harmonic", "zero")[key] for p in protocols]
    ax0.bar(np.arange(len(protocols)) + (j - 2.5) * width, vals, width, label=key)
ax0.set_xticks(range(len(protocols)), protocols)
ax0.set(ylabel="%", ylim=(0, 100), title="prediction rule (CF1 harmonic, empty precision zero)")
ax0.legend(ncol=6, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1))
markers = {"harmonic": "o", "mean_f1": "s", "geometric": "^"}
fills = {"zero": "tab:red", "skip": "tab:gray", "one": "tab:green"}
for x, p in enumerate(protocols):
    for ci, c in enumerate(metrics.CF1_OPTIONS):
        for ei, e in enumerate(metrics.EMPTY_PRECISION_OPTIONS):
            ax1.plot(x + 0.2 * (ci - 1) + 0.06 * (ei - 1), 100 * six(p, c, e)["CF1"], markers[c],
                     color=fills[e], ms=6, alpha=0.85, ls="none")
handles = [plt.Line2D([], [], marker=m, color="k", ls="none", label=f"CF1 {c}") for c, m in markers.items()]
handles += [plt.Line2D([], [], marker="o", color=f, ls="none", label=f"empty {e}") for e, f in fills.items()]
ax1.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
ax1.set_xticks(range(len(protocols)), protocols, rotation=30, ha="right")
ax1.set(ylabel="CF1 (%)", title="CF1 under every convention")
fig.tight_layout()
save_figure(fig, CHAPTER, 5, "convention_spread")
plt.show()

# %% [markdown]
# ### Ranking metrics: AP ties and mAP@10
#
# AP with tied scores: scikit-learn treats a group of tied scores as one threshold;
# a "stable" implementation ranks tied items by their position in the file. On a
# network's float scores ties are rare, so the two agree; on scores rounded to two
# decimals (as when scores are saved as text) they do not. mAP@10 has four readings
# (the papers never write the formula): AP over the top 10 *images* of each class or
# the top 10 *labels* of each image, normalised by min(10, positives) or by the
# positives retrieved.

# %%
rounded = torch.round(scores * 100) / 100
rows = {"mAP, ties sklearn": (metrics.mean_average_precision(scores, targets, ties="sklearn"),
                              metrics.mean_average_precision(rounded, targets, ties="sklearn")),
        "mAP, ties stable": (metrics.mean_average_precision(scores, targets, ties="stable"),
                             metrics.mean_average_precision(rounded, targets, ties="stable"))}
for per in ("class", "image"):
    for norm in ("min", "retrieved"):
        rows[f"mAP@10, per={per}, normalize={norm}"] = tuple(
            metrics.map_at_k(s, targets, 10, per=per, normalize=norm) for s in (scores, rounded))
ranking = pd.DataFrame(rows, index=["scores (%)", "scores rounded to 0.01 (%)"]).T.mul(100).round(2)
save_table(ranking, CHAPTER, 5, f"mAP under tie handling and the four readings of mAP@10 ({source})");

# %% [markdown]
# ### VOC: difficult labels ignored or counted as negatives
#
# VOC 2007 marks some objects "difficult" (`0` in the class lists). The official
# protocol ignores them: such an image is neither a positive nor a negative for that
# class. Scoring them as negatives instead (or as positives) changes AP. The demo
# trains no VOC model, so this uses a **toy score set** on the VOC test labels:
# positives get a strong signal, difficult labels half of it (they are hard to see),
# plus seeded Gaussian noise. Only the *differences* between the rows mean anything.

# %%
vtest = DATA["voc"][1]
difficult = vtest.ignore if vtest.ignore is not None else torch.zeros_like(vtest.labels, dtype=torch.bool)
vscores = toy_scores(vtest.labels * torch.where(difficult, 0.5, 1.0))
rows = {}
for label, kw in (("ignored (VOC protocol)", {"ignore": difficult}),
                  ("counted as negatives", {"ignore": difficult, "difficult": "negative"}),
                  ("counted as positives", {"ignore": None})):
    rows[label] = {"mAP": metrics.mean_average_precision(vscores, vtest.labels, **kw),
                   **{f"top-3 {k}": v for k, v in metrics.prf(vscores, vtest.labels, k=3, **kw).items()
                      if k in ("CF1", "OF1")}}
voc_table = (pd.DataFrame(rows).T.mul(100).round(2)).rename_axis("difficult labels")
print(f"VOC test: {len(vtest)} images, {int(difficult.sum())} difficult labels "
      f"({int(difficult.any(1).sum())} images)")
save_table(voc_table, CHAPTER, 6, "Toy scores on the VOC test labels: difficult ignored vs negative vs positive");

# %% [markdown]
# ## What moves the numbers most
#
# - **The prediction rule moves all six of CP/CR/CF1/OP/OR/OF1; CR, OP, OR and OF1 move with nothing else.**
#   Top-3 and top-5 force a fixed number of labels per image, so precision falls
#   and recall rises with k whatever the model; a 0.5 floor or a 0.5 threshold
#   instead lets the number of labels follow the image. Numbers under different
#   rules are not comparable, and a paper's table only means something with its
#   rule stated (the papers' own are in the conventions table above).
# - **A threshold presumes calibrated scores.** A BCE-trained model tends to
#   score rare classes low, so under a 0.5 threshold (or floor) some classes are
#   never predicted: CR drops and CP then depends on the empty-precision choice.
#   Top-k predicts something for every image whatever the calibration.
# - **Per-class numbers depend on the tail.** How a never-predicted class enters
#   CP (zero, one, or left out) only matters when some classes are never predicted,
#   which happens under a threshold more often than under top-k, and mostly for rare
#   classes; the harmonic CF1 of averaged CP and CR and the mean of per-class F1 are
#   different numbers, not rounding variants of one.
# - **Ranking metrics are stable, their definitions are not.** mAP does not depend
#   on any threshold, and tie handling matters only when scores are coarse;
#   but the four readings of mAP@10 give different numbers, and no paper says which
#   it used.
# - **VOC's difficult labels** change AP when counted as negatives instead of being
#   ignored (the official protocol); a VOC number should say which.
#
# The later chapters therefore report each paper under its own convention (the
# table above), and the tables here let a reader see how far a number would move
# under another.
