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
# # Class-aware disentangled maps and label correlation embedding (CADM)
#
# Chen, Wei, Jin and Guo, *Multi-label image recognition with joint class-aware map
# disentangling and label correlation embedding*, ICME 2019.
#
# A CNN gives conv maps $X \in \mathbb{R}^{d \times h \times w}$. A global-max-pooled linear
# classifier $\theta_{fcls}$ predicts the labels (stream 1). The same classifier weights,
# applied at every position of $X$, give one map per class, the *class-aware disentangled
# maps* (CADMs, $A = \theta_{fcls}^\top X$); their maxima are a second prediction (stream 2),
# and the two are averaged. On top, each CADM is embedded into a *label vector* $a_c$ by a
# small MLP, and a metric-learning loss pulls the vectors of an image's positive labels
# together and pushes its negative labels away.
#
# The paper's claims, tested at the end through `mlbook.claims` (the claims are data,
# `mlbook/reference/claims_05_cadm.csv`, each row dated when it was registered, most on
# 2026-11-28 after early demo runs, and a test changed after its result was seen kept beside
# its original; several training seeds; a t interval over seeds and test images; one of four
# verdicts): the embedding
# ($\lambda = 0.5$) beats the same model without it ($\lambda = 0$); both beat the GMP +
# linear baseline; the embedding strengthens the CADMs of labels whose original CADM is
# weak (Fig. 4); positive labels have strong CADMs and negatives weak ones (Fig. 2).
# The text's "3.2% mAP lower" for $\lambda = 0$ disagrees with the paper's own Table 1 (2.4);
# the claims table prints the table's margin.
#
# Code: the model and its loss in `mlbook/models/cadm.py` and `mlbook/losses.py`; fine-tuning,
# evaluation and the evidence in `mlbook/experiments/cadm.py`; Figs. 2 and 4 in
# `mlbook/figures/cadm.py`.

# %% tags=["parameters"]
import os

profile = os.environ.get("MLBOOK_PROFILE", "demo")
coco_root = None
nuswide_root = None
device = "auto"
seed = 0              # the data seed: which generated data set, which shared backbone
weights = None        # full profile: {"resnet101": FILE} ImageNet weights (None: the torch hub cache)
train_seeds = None    # training seeds of every variant (None: the profile's count)

# %%
import mlbook  # first: it sets the portable numerics (mlbook.numerics) before numpy and torch load
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

from mlbook import claims, papers
from mlbook.chapter import claims_section
from mlbook.experiments import cadm, features, shared
from mlbook.figures import cadm as figures
from mlbook.losses import label_correlation_embedding_loss
from mlbook.models import cadm as model_file
from mlbook.profiles import get_profile, pick_device
from mlbook.report import learning_curves, reference, save_comparison, save_figure, save_timings, show_source

CHAPTER = "05_cadm"
prof = get_profile(profile)
device = pick_device(device)
seeds = list(range(train_seeds if train_seeds is not None else prof.train_seeds))
roots = {"coco": coco_root, "nuswide": nuswide_root}
kind = {d: shared.data_kind(roots[d]) for d in roots}
TITLES = {"coco": (1, "MS-COCO"), "nuswide": (2, "NUS-WIDE")}     # data set -> (table number, name)
VARIANTS = list(model_file.VARIANTS)
BACKBONE = f"{features.trunk_of(prof, cadm.TRUNK)}, {prof.image_size} px"
settings, options = cadm.settings_for(prof), model_file.CADMOptions()
pd.set_option("display.width", 200)
print(f"profile {prof.name}: backbone {BACKBONE}, device {device}, training seeds {seeds}")
print(settings)
print(options)

# %% [markdown]
# ## 1. The backbone and stream 1 (Sec. 2.2, Eqs. 1–2)
#
# $X = f_{cnn}(I)$ (Eq. 1). Stream 1 max-pools $X$ over positions ("global max-pooling for
# keeping the highlighted activations of small-scale objects", Sec. 2.3) and applies a linear
# classifier, $\hat y_{fcls} = \theta_{fcls}^\top \mathrm{GMP}(X)$ (Eq. 2). The backbone with
# stream 1 alone is the paper's baseline. The paper fine-tunes ImageNet ResNet-101 at 448 px
# end to end (the full profile). In the demo the backbone is the book's shared small CNN
# (chapter [03](03_shared_backbone)), trained on the fit part of the training set only;
# its first three conv blocks stay frozen and their output is cached, and the last block is
# fine-tuned with the new layers.

# %%
data = {d: shared.splits(d, prof, roots[d], seed) for d in TITLES}
for d, s in data.items():
    print(f"{d}: {kind[d]} data, {len(s.train)} train / {len(s.test)} test images, {s.train.num_classes} classes")
start = {d: features.shared_backbone(d, prof, roots[d], seed, device, weights, trunk=cadm.TRUNK)[1]["test_mAP"]
         for d in TITLES}
paper = papers.get(CHAPTER)
glue("paper_trunk", f"{paper.trunk}: {paper.trunk_use}", display=False)

# %% [markdown]
# ## 2. Class-aware disentangled maps and stream 2 (Sec. 2.3, Eqs. 3, 6–7)
#
# Row $c$ of the classifier is a filter for class $c$; applied at each position,
#
# $$
# A_c = \theta_{fcls}^{c\,\top} X \in \mathbb{R}^{h \times w} \ \text{(Eq. 6)}, \qquad
# A = \theta_{fcls}^\top X \in \mathbb{R}^{C \times h \times w} \ \text{(Eq. 7)},
# $$
#
# a class activation map for a max-pooled classifier (the bias is omitted, as in the paper).
# Stream 2 is $\hat y_{scls,c} = \max_{ij} A_{c,ij}$ and the prediction
#
# $$
# \hat y = \tfrac{1}{2}\,(\hat y_{fcls} + \hat y_{scls}) \quad \text{(Eq. 3)},
# $$
#
# trained with BCE (Eq. 4). In `forward` below: `self.fc(maps.amax(dim=(2, 3)))` is Eq. 2,
# `class_aware_maps` (an `einsum`) Eq. 7, `cadm.amax(dim=(2, 3))` stream 2 and
# `0.5 * (fcls + scls)` Eq. 3.

# %%
show_source(model_file.class_aware_maps, model_file.CADMNet.forward)

# %% [markdown]
# ## 3. Label correlation embedding (Sec. 2.4, Eqs. 5, 8–12)
#
# Each CADM is flattened and mapped to a label vector $a_c = f_{embed}(f_{flat}(A_c))$ by "a
# two-layer fully connected network with ReLU" (Eq. 8; widths not given: 256 hidden, 64 out,
# named options). The positives $S$ of an image should form a cluster around their mean
# $\bar a$ (Eqs. 9–11) and the negatives lie beyond a unit margin:
#
# $$
# L_{lce} = \sum_{j \in S} \lVert a_j - \bar a \rVert^2 + \sum_{k \notin S} \big[\,1 - \lVert a_k - \bar a \rVert^2\,\big]_+ \quad \text{(Eq. 12)},
# \qquad L = L_{cls} + \lambda L_{lce} \quad \text{(Eq. 5)}, \ \lambda = 0.5 .
# $$
#
# In `label_correlation_embedding_loss`, `pull` is the first sum and `push` the second; the
# training loop logs both separately, with $L_{cls}$.
#
# **Two readings of Eq. 12.** The equation puts the hinge on each negative; the sentence
# after it puts one hinge around the sum over negatives. We follow the equation
# (`negatives="per_label"`) and keep the sentence as `negatives="summed"`.
#
# **Where $L_{lce}$'s gradient goes** is a choice the paper leaves open: Eqs. 9/11 name only
# $\theta_{embed}$, but if $L_{lce}$ trained $f_{embed}$ alone it could not change the CADMs or
# the classification at all. The default (`lce_grad="all"`) lets it reach $\theta_{fcls}$ and
# the backbone through the CADMs; the other reading (`lce_grad="embed"`) is trained as an
# extra variant and measured below.
#
# The hand-worked case of the unit tests: image 1 has positives at (0, 0) and (2, 0), so
# $\bar a = (1, 0)$ and the pull is 2, and a negative at squared distance 1.25 (no hinge);
# image 2 has one positive and a negative at squared distance 0.25, which costs 0.75.

# %%
a = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 0.5]], [[1.0, 1.0], [1.5, 1.0], [5.0, 5.0]]])
y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
for neg in ("per_label", "summed"):
    per_image = [label_correlation_embedding_loss(a[i:i + 1], y[i:i + 1], negatives=neg, reduction="sum").item()
                 for i in range(2)]
    print(f"negatives={neg:9s}: per image (sum over classes) {per_image}")

# %% [markdown]
# ## 4. Training (Sec. 3.2)
#
# The paper: 448 × 448 inputs with random horizontal flips, ImageNet ResNet-101, SGD with
# momentum 0.9, weight decay $10^{-4}$, learning rate 0.01 divided by 10 every 20 epochs, 60
# epochs: the full profile. The demo uses the same SGD with a 10× rate on the new layers and a
# constant rate, and **stops early**: every variant trains until the BCE on a held-out tenth
# of the training set has not improved for `patience` epochs, and keeps its best epoch. Random
# flips are kept by caching the frozen blocks' maps of the mirrored images too. Every variant
# is trained with each training seed on the same data and backbone; the runs come from one
# grid (`cadm.grid`), each a cached experiment.

# %%
setting = shared.Setting(prof, roots, seed, device, weights)
grid = cadm.grid(prof, list(TITLES), seeds)
results = shared.run_all(grid, setting)
save_timings(CHAPTER, [{"what": f"{r.row}, {r.dataset}, seed {r.train_seed}", "seconds": results[r.key]["wall_s"],
                        **({"train s": results[r.key]["train_seconds"], "train img/s": results[r.key]["train_img_s"]}
                           if r.paper == "cadm" else {})} for r in grid])
training = pd.DataFrame([{"data set": d, "variant": v,
                          "epochs (mean)": np.mean([len(results[d, v, s]["history"]) for s in seeds]),
                          "stopped early (of seeds)": sum(bool(results[d, v, s]["history"][-1].get("stopped_early"))
                                                          for s in seeds)}
                         for d in TITLES for v in VARIANTS]).set_index(["data set", "variant"])
training

# %% [markdown]
# "Stopped early" counts the seeds whose hold-out BCE stopped improving before the epoch
# budget; the others used the whole budget, their hold-out loss still falling slowly at the
# end (visible in the curves below): on the demo the budget, not convergence, ends those
# runs. The wall time and images per second of every run are in `timings.csv`, not here.
#
# ### Learning curves, one loss term at a time
#
# Training $L_{cls}$, the hold-out BCE, and the two halves of $\lambda L_{lce}$ (pull, push)
# for the $\lambda = 0.5$ variant, per epoch and seed; the dot marks the epoch kept.

# %%
for d in TITLES:
    curves = {v: [results[d, v, s]["history"] for s in seeds] for v in VARIANTS}
    fig = learning_curves(curves, ("cls", "val_loss", "pull", "push"),
                          f"{TITLES[d][1]} ({kind[d]}): loss terms per epoch")
    save_figure(fig, CHAPTER, "curves", d)
    plt.show()

# %% [markdown]
# With $\lambda = 0.5$ both halves of $L_{lce}$ fall within the first few epochs and then stay
# small next to $L_{cls}$, so the embedding adds little gradient once the positives cluster.
# The embed-only reading cannot change the classifier: with the same seed its predictions should
# be those of $\lambda = 0$, and they are identical, logit for logit, in
# {glue:text}`n_embed_only_same` of the {glue:text}`n_embed_only_runs` (data set, seed) pairs;
# so it has no claim of its own: its comparison with λ = 0.5 would repeat 05.embedding, the
# λ = 0.5 vs λ = 0 comparison, row for row.
#
# ### Did fine-tuning help? The starting point against every variant
#
# A fine-tuned model must not end below the model it started from: the shared backbone with
# its own classifier (chapter 03). The table gives both test mAPs and the check.

# %%
start_pct = {d: np.nan if m is None else round(100 * m, 1) for d, m in start.items()}   # full: no start mAP
check = pd.DataFrame([{"data set": d, "variant": v, "start mAP": start_pct[d],
                       "fine-tuned mAP (mean of seeds)": round(100 * np.mean([results[d, v, s]["metrics"]["mAP"]
                                                                               for s in seeds]), 1)}
                      for d in TITLES for v in VARIANTS]).set_index(["data set", "variant"])
check["not below start"] = check["fine-tuned mAP (mean of seeds)"] >= check["start mAP"]
glue("n_below", int((check["fine-tuned mAP (mean of seeds)"] < check["start mAP"]).sum()), display=False)
if check["start mAP"].isna().any():   # an ImageNet trunk (full profile) has no start mAP on these labels
    check["not below start"] = check["not below start"].where(check["start mAP"].notna())
logits = {(d, v, s): results[d, v, s]["test_outputs"]["logits"] for d in TITLES for v in VARIANTS for s in seeds}
same = [torch.equal(logits[d, "lambda0", s], logits[d, "lambda0.5_embed_only", s]) for d in TITLES for s in seeds]
glue("n_embed_only_same", sum(same), display=False)
glue("n_embed_only_runs", len(same), display=False)
check

# %% [markdown]
# {glue:text}`n_below` of the fine-tuned rows end below their starting point.
#
# ## 5. Tables 1 and 2
#
# Both protocols of Sec. 3.1: **All**, a label is predicted when its confidence $\sigma(\hat y_c)$
# is greater than 0.5, and **top-3**, with per-class (C) and overall (O) precision, recall
# and F1 (CF1 = harmonic mean of CP and CR, which the printed numbers satisfy), plus mAP;
# mean over the training seeds. Each cell reads `reproduced (paper)`; the row names say which
# backbone produced them. (The paper's Table 2 λ = 0.5 top-3 row is internally inconsistent:
# 64.3 / 57.7 gives CF1 60.8, printed 56.3.)

# %%
for d, (n, title) in TITLES.items():
    published = reference(cadm.TABLES[d])
    reproduced = pd.DataFrame.from_dict(
        {model_file.VARIANTS[v]["label"]: {k: 100 * np.mean([results[d, v, s]["metrics"][k] for s in seeds])
                                           for k in results[d, v, seeds[0]]["metrics"]} for v in VARIANTS},
        orient="index")
    here = {label: f"{label} [here: {BACKBONE}]" for label in reproduced.index}
    save_comparison(reproduced.rename(index=here), published.rename(index=here), CHAPTER, n,
                    f"Table {n}: {title}, reproduced on {kind[d]} data ({prof.name} profile, "
                    f"{len(seeds)} seeds) (paper)",
                    dataset=f"{d} ({kind[d]})")

# %% [markdown]
# The differences between the variants' mean mAPs on the demo are a fraction of a point, well
# inside the seed-to-seed spread; whether any of them is real is what the claims below decide.
#
# ## 6. Fig. 2: CADMs sorted by their summed activation
#
# For a few test images we sort the C CADMs of the λ = 0.5 model (first seed) by their
# summed activation and show the strongest, overlaid on the image, on a **diverging**
# colour scale centred on 0 (red positive, blue negative, one scale per row), so a map that
# is negative everywhere is visible as such rather than blank. Green titles are the image's
# true labels, grey ones negatives.

# %%
fig = figures.sorted_cadms(results["coco", "lambda0.5", seeds[0]], data["coco"].test, prof.image_size)
fig.suptitle("Fig. 2 (coco, λ = 0.5): CADMs in descending order of summed activation; green = true label; "
             "red > 0 > blue", fontsize=9, y=1.02)
save_figure(fig, CHAPTER, 2, "cadm_sorted")
plt.show()

# %% [markdown]
# > It is clear that positive labels correspond to strong activations in their own CADM,
# > while negative labels almost activate nothing by comparison. (Fig. 2 caption)
#
# The true labels' maps are mostly positive where their object is, but ranked by summed
# activation they come first in only some rows, and a true label of a small object can fall
# outside the maps shown; most negatives' maps are negative (blue) almost everywhere, which is
# what "almost activate nothing" means for a classifier whose negative logits are strongly
# negative, though some fire on another class's object. The claims
# measure it over every test image: the share of (positive, negative) pairs of an image in
# which the positive label's summed CADM is the larger.
#
# ## 7. Fig. 4: CADMs without and with the embedding loss
#
# For three test images and two of their labels (the two with the largest annotated object
# area, the paper's "apparent" labels), the CADM of the λ = 0 model (left of each pair) and of
# the λ = 0.5 model (right), first seed, on one diverging scale per label; titles give each
# map's peak.

# %%
fig = figures.with_and_without_embedding(results["coco", "lambda0", seeds[0]], results["coco", "lambda0.5", seeds[0]],
                                         data["coco"].test, prof.image_size)
fig.suptitle("Fig. 4 (coco): CADM without (left) and with (right) the label correlation embedding",
             fontsize=9, y=1.02)
save_figure(fig, CHAPTER, 4, "embedding")
plt.show()

# %% [markdown]
# > when utilizing our label correlation embedding, it could significantly strengthen the
# > activations of these relevant labels' CADMs [...] It is reasonable to benefit the
# > recognition of the labels whose original CADM is weak. (Sec. 3.4)
#
# The maps of the two models sit on the same objects; whether the embedding makes the weak
# labels' maps stronger is measured in the claims.
#
# **Which CADMs are "weak".** A label's CADM is weak if its mean λ = 0 peak over the
# **hold-out** images where it is present (the tenth of the training set that early stopping
# reads) is in the lowest third of the labels' means; the subgroup judged is every positive
# test pair of those labels (`cadm.weak_subgroups`). No test image takes part in the choice.
# Chosen on test outputs, the subgroup would hold the pairs where λ = 0's noise happened to
# push the peak down, and on them any second model would look stronger by regression to the
# mean, with or without an embedding; choosing on another seed's test outputs, as this chapter
# first did, removes the training seed's noise but not the noise of the (image, label) pairs
# that λ = 0 models share (in a simulation with no true effect but such a per-pair part, the
# claim came out *supported* far more often than the rule's error rate). For training seed $i$ the labels are chosen by
# the λ = 0 models of the **other** seeds, so that seed $i$'s own training noise does not
# choose them either. A class-level choice is coarser than the paper's examples (single
# labels of single images), but it is the one a hold-out set can make for the test images.
#
# ## 8. Claims
#
# Every claim is a row of the claims data, `mlbook/reference/claims_05_cadm.csv`, with the
# paper's words, its primary metrics, its test and the date it was registered (most rows
# 2026-11-28, after early demo runs); a test changed after its result was seen keeps its
# original beside it, and the claims table shows both verdicts. The paper names
# its primary metrics itself:
#
# > In general, average overall F1 (OF1), average per-class F1 (CF1) and mAP are relatively
# > more important for evaluation. (Sec. 3.1)
#
# and its sentences on the ablation name one of them:
#
# > Compared with the results of λ = 0.5, the model without label correlation embedding has a
# > significant performance drop, i.e., 3.2% mAP lower than our proposal. (Sec. 3.3.1)
#
# > We obtain about 1% improvement comparing with the result of λ = 0, which is consistent
# > with the observations on MS-COCO. (Sec. 3.3.2)
#
# So **mAP is the primary metric** of the embedding claim (the NUS-WIDE sentence names no
# metric; it is read as mAP, as on MS-COCO), and the four F1s of Sec. 3.1 (CF1 and OF1 under
# both protocols) are shown next to it, not voted: voting five correlated metrics under the
# symmetric rule would leave almost every comparison *not resolved* by construction. The
# verdicts come from `claims.evaluate`: a t interval on the difference of the seed means
# with the test images' variance added; *supported* only if every primary metric supports
# the claim, *contradicted* only if every one contradicts it; no verdict from fewer than 3
# seeds.
#
# **05.all_cadm_peak, amended** (amended 2026-12-07, after the 2026-11-28 run had
# contradicted it on both data sets). Its test compared the mean CADM peak over all positive
# pairs in raw logits. Logits of differently trained models have their own scales (nothing
# ties the scale of λ = 0.5's CADMs, trained with an extra loss, to λ = 0's), so a difference
# of raw peaks can come from the scale alone; and the sentence is about "these relevant labels", the
# labels of Fig. 4 whose original CADM is weak, not all of them. The amended test reads, over
# the positive test pairs of the weak-CADM labels chosen above, the share of the image's
# negative labels whose CADM peak lies below the label's (`cadm.negatives_below`): a rank,
# unchanged when a model's CADMs are scaled or shifted. The original test is kept in the
# claims data and measured beside the new one (the claims table's column for amended claims).
#
# **05.weak_cadm, amended twice** (both on 2026-12-07). As registered, it chose the weak pairs
# on another seed's test outputs; the first amendment chose them on hold-out images (above). It
# then read "benefit the recognition" as the mean CADM peak of those labels in logits, and that
# reading carries the same scale problem: a λ = 0.5 model whose peaks spread more widely wins
# it without recognising anything better. The second amendment reads the sentence as it is
# worded, the recognition of those labels: their mean AP, on the same hold-out-chosen labels.
# The registered original (test-chosen pairs) is no longer computed; the claims table gives
# both dates and the reasons.

# %%
evidence = shared.Evidence(results, data, seeds)
section = claims_section(CHAPTER, evidence, seed=seed, glue=glue, profile=prof)

# %% [markdown]
# Of these claims, {glue:text}`n_supported` are supported, {glue:text}`n_contradicted`
# contradicted, {glue:text}`n_not_resolved` not resolved and {glue:text}`n_not_testable` not
# testable on this run. The per-seed Δs in each row show how much of the interval is
# training noise. A method that does not beat its baseline on the demo is a finding about
# these data and this budget, not a reason to tune on the test split.
#
# **Would a rerun agree?** The table's last column is the chance that an independent rerun
# (another `--seed`: new data, backbone and training seeds) gives the same verdict
# (`mlbook.claims.stability`, from each claim's own interval); summed over the claims, such a
# rerun is expected to change about {glue:text}`rerun_changes` of this chapter's verdicts.

# %%
glue("n_seeds", len(seeds), display=False)
for d in TITLES:
    paper_delta = claims.published_delta(reference(cadm.TABLES[d]), "Ours (lambda=0.5)", "Ours (lambda=0)", "mAP")
    glue(f"paper_delta_{d}", paper_delta, display=False)


def finding(row: dict) -> str:
    """A claims row as prose: its verdict, and each primary metric's Δ and interval (points or logits)."""
    parts = [f"Δ {m['delta']:+.1f} [{m['low']:+.1f}, {m['high']:+.1f}]" for m in row["measurements"]]
    return f"{row['verdict']} ({'; '.join(parts)})" if parts else row["verdict"]


by_claim = {r["id"]: r for r in section.rows}
for r in section.rows:
    glue("says_" + r["id"].split(".", 1)[1].replace(".", "_"), finding(r), display=False)
for d in TITLES:
    r = by_claim[f"05.all_cadm_peak.{d}"]
    glue(f"original_all_cadm_peak_{d}", r.get("original verdict", "not measured"), display=False)
    spread = [float(results[d, v, s]["test_outputs"]["scls"].std()) for v in ("lambda0.5", "lambda0") for s in seeds]
    glue(f"peak_scale_{d}", float(np.mean(spread[:len(seeds)]) / np.mean(spread[len(seeds):])), display=False)
embedding = {d: by_claim[f"05.embedding.{d}"]["verdict"] for d in TITLES}
names = lambda ds: " and ".join(TITLES[d][1] for d in ds)  # noqa: E731
held = [d for d, v in embedding.items() if v == claims.SUPPORTED]
against = [d for d, v in embedding.items() if v == claims.CONTRADICTED]
open_ = [d for d, v in embedding.items() if v == claims.NOT_RESOLVED]
glue("embedding_summary", " ".join(
    ([f"The paper's ablation holds on {names(held)}."] if held else [])
    + ([f"On {names(against)} the embedding does worse than λ = 0, against the paper."] if against else [])
    + ([f"On {names(open_)} these {len(seeds)} seeds cannot tell: the power table says how large an effect "
        "they could have seen, and a not resolved verdict is no evidence that the embedding does nothing."]
       if open_ else [])), display=False)
changed = [d for d in TITLES if by_claim[f"05.all_cadm_peak.{d}"].get("original verdict")
           not in (None, by_claim[f"05.all_cadm_peak.{d}"]["verdict"])]
glue("amendment_summary", f"On {names(changed)} the two tests disagree: the original's Δ mixes the two models' "
     "logit scales and every positive label, the amended one neither." if changed else
     "On both data sets the amended test gives the original's verdict.", display=False)

# %% [markdown]
# **How many verdicts could be wrong by chance.** {glue:text}`multiplicity`
#
# **Seeds and power.** The table gives, per claim and primary metric, the smallest true
# effect its interval would detect with 80% power at 3, 5 and 10 training seeds (the seed
# variance scaled to that count, the test-image variance unchanged). The paper's own Δs
# for λ = 0.5 vs λ = 0 ({glue:text}`paper_delta_coco` and {glue:text}`paper_delta_nuswide` mAP
# points in its Tables 1 and 2) are the effects to compare
# with: where the 3-seed figure is larger, this chapter's {glue:text}`n_seeds` seeds cannot
# see an effect of the paper's size, and a *not resolved* says so rather than that the
# embedding does nothing. More seeds cost a fine-tuning run each, and the whole book must
# run in 15 minutes on two CPU cores.
#
# **What this run says.** The embedding against the same model without it (λ = 0.5 vs
# λ = 0, mAP points): {glue:text}`says_embedding_coco` on MS-COCO and
# {glue:text}`says_embedding_nuswide` on NUS-WIDE. {glue:text}`embedding_summary` Both
# variants against the GMP + linear baseline: λ = 0 is {glue:text}`says_lambda0_vs_baseline_coco`
# on MS-COCO and {glue:text}`says_lambda0_vs_baseline_nuswide` on NUS-WIDE, λ = 0.5
# {glue:text}`says_lambda05_vs_baseline_coco` and {glue:text}`says_lambda05_vs_baseline_nuswide`.
# The recognition of the weak-CADM labels (their mean AP, points): {glue:text}`says_weak_cadm_coco` on
# MS-COCO, {glue:text}`says_weak_cadm_nuswide` on NUS-WIDE. The amended peak claim, their rank
# among the image's negatives (points): {glue:text}`says_all_cadm_peak_coco` and
# {glue:text}`says_all_cadm_peak_nuswide`, where the original test in raw logits over all
# positive pairs was *{glue:text}`original_all_cadm_peak_coco`* and
# *{glue:text}`original_all_cadm_peak_nuswide`*; λ = 0.5's CADM peaks spread
# {glue:text}`peak_scale_coco:.2f` and {glue:text}`peak_scale_nuswide:.2f` times as widely as
# λ = 0's (standard deviation over the test pairs, mean of the seeds).
# {glue:text}`amendment_summary` Positive labels against negatives in their summed CADMs
# (Fig. 2, share of pairs won minus one half, points): {glue:text}`says_positive_cadm_coco` and
# {glue:text}`says_positive_cadm_nuswide`.
#
# ## What these data can and cannot test
#
# - **Label correlation.** The generated labels co-occur through scenes, and the background
#   does not give the scene away, so the embedding has label structure to exploit; but the
#   classes are drawn shapes, so a small CNN often sees each label well on its own, which
#   leaves little for a correlation loss to add.
# - **Small CADMs.** At 48 px the CADMs are 6 × 6: they localise coarsely.
# - **Colours.** Two classes share a colour only with very different shapes (12 colours),
#   but at 2–3 pixels a shape is hard to see, so maps of same-coloured classes can fire on
#   each other's small objects.
#
# ## Deviations from the paper
#
# - **Trunk of every row.** Demo and smoke: every variant, the GMP + linear baseline
#   included, fine-tunes the shared small CNN of its data set (48 px inputs, 6 × 6 CADMs),
#   trained from scratch on the fit part of the generated training set only; the held-out
#   tenth, where early stopping is decided, is never seen by it. Full profile:
#   {glue:text}`paper_trunk`, for every row alike. The row names in Tables 1–2 say which.
# - **Partial fine-tuning (demo/smoke).** The first three conv blocks stay frozen and their
#   maps are cached (also those of the mirrored images, for random flips); the last block
#   and the new layers are fine-tuned. The full profile fine-tunes end to end as the paper.
# - **Training length.** Early stopping on the hold-out BCE (patience from the profile)
#   within an epoch budget; the demo's learning rate is constant, with 10× on the new layers,
#   and the gradient's norm is bounded at 10 for every row (at that rate f_embed, trained by
#   L_lce alone in the embed-only reading, diverged in one run without the bound).
# - **Eq. 12.** The hinge per negative label, as typeset; `negatives="summed"` is the sentence.
# - **Gradient of L_lce.** It reaches θ_fcls and the backbone through the CADMs (`lce_grad="all"`);
#   the reading in which it trains f_embed only is measured as an extra variant.
# - **Normalisation.** BCE averaged over classes and images; L_lce divided by C and averaged
#   over the images with at least one positive label.
# - **Unstated sizes.** f_embed is Linear(h·w, 256) – ReLU – Linear(256, 64).
# - **Bias.** Stream 1 keeps the classifier's bias, the CADMs (and so stream 2) omit it, as Sec. 2.3 says.
# - **"Weak" CADMs (Sec. 3.4, Fig. 4).** The paper shows single labels of single images; the
#   book reads the labels whose λ = 0 CADM is weak on average, chosen on hold-out images by the
#   other seeds' λ = 0 models, never on test images. The peak claim (05.all_cadm_peak) was
#   amended on 2026-12-07 from raw logit peaks over all positive pairs to a scale-free rank over
#   those labels; its original test stays in the claims data and table.
