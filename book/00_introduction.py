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
# # Multi-label image classification, reproduced
#
# This book reproduces four papers on multi-label image classification, where an
# image carries a *set* of labels ("person", "surfboard", "sea") and a model must
# predict all of them:
#
# | chapter | paper | what it adds |
# |---|---|---|
# | [Order-Free RNN](04_order_free_rnn) | Chen et al., *Order-Free RNN with Visual Attention for Multi-Label Classification*, AAAI 2018 | an LSTM that emits labels in its own order of confidence, with soft attention over conv maps |
# | [CADM + LCE](05_cadm) | *Class-aware map disentangling with label correlation embedding*, ICME 2019 | one map per class from the classifier weights, and an embedding loss that pulls co-occurring labels together |
# | [RLSD](06_rlsd) | Zhang et al., *Multilabel image classification with regional latent semantic dependencies*, IEEE TMM 2018 | a localization layer proposes multi-object regions; an LSTM reads each region's labels, max-pooled over regions |
# | [Transformation ranking](07_transformation_ranking) | *Multi-label image classification by an image-dependent ranking of label word vectors* | the image maps every label's word vector through a k × d matrix; the shortest transformed vectors are its labels |
#
# Chapter [08](08_head_to_head) then trains every method of the four papers, their shared
# baselines and two of today's yardsticks (the asymmetric loss, a Query2Label decoder) under one
# protocol, so that their differences are measured on equal terms.
#
# No public code exists for any of them; every model, loss and metric here is
# written from the paper text, with the paper's equation numbers in the code.
# Where a paper is ambiguous, or needs something this book cannot have offline
# (ImageNet weights, Visual Genome, MCG proposals, word2vec GoogleNews), the
# chapter names the substitute and says why.
#
# Before any training, [The published numbers](01_published_numbers) audits the
# papers' own tables: are the printed F1 values consistent with the printed
# precision and recall, and do papers agree on the numbers they copy from each
# other? [Data and evaluation](02_data_and_metrics) shows the data sets and how much
# each metric convention moves the numbers, and [The shared backbone](03_shared_backbone)
# trains the small CNN that stands in for ImageNet pretraining in the demo.
#
# ## The reproduction scorecard
#
# Every comparative sentence of the four papers is a row of its chapter's claims table,
# tested the book's one way (`mlbook.claims`: several training seeds, an interval whose
# false-verdict rate is measured, one of four verdicts). Per paper, how many of its claims
# this run supports, contradicts, cannot resolve, or cannot test; each paper links to its
# chapter, whose claims table gives the evidence of every row. A not resolved claim is split
# by what the run could have seen (`mlbook.claims.replication`): *with power* when the run's
# smallest detectable effect at its seeds (80% power at the book's level) is no larger than the
# paper's own Δ (its distance to the test's decision boundary), so an effect of the paper's size
# would most likely have been resolved; *without power* when it is larger, so the run could not
# have seen it (each chapter's power table gives the seeds per row that would); *no published
# Δ* when the paper's tables give no number to size it by. A paper's row counts only its
# own sentences; the book's own questions (its readings of a table, its controls and options)
# are counted apart, on a row of their own, so that no paper is scored on words it did not write,
# and so are the questions of chapter [08](08_head_to_head), which trains every method under one
# protocol (does each row beat a plain BCE network, is it within 1 point of ASL). The counts are read from the
# chapters' claims files of this run (`figures/<chapter>/table_claims.csv` and
# `claims_measurements.csv`), never typed.
# Real-data columns appear when a run on real data exists (`real_figures`, the figures folder
# of such a run).

# %% tags=["parameters"]
import os

profile = os.environ.get("MLBOOK_PROFILE", "demo")
real_figures = None   # the figures folder of a real-data run (e.g. _build/full-custom/figures), if one exists

# %%
import mlbook  # first: it sets the portable numerics (mlbook.numerics) before numpy and torch load
import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from myst_nb import glue

from mlbook import claims
from mlbook import numerics
from mlbook.figures import book
from mlbook.plan import FIRST_PAGE, cached_plan
from mlbook.profiles import PROFILES, figures_dir, get_profile
from mlbook.report import reference_index, save_figure, save_table

CHAPTER = "00_introduction"
first = book.what_to_run_first(figures_dir(), profile)
if first:   # the paper chapters have not filled this figures folder yet: one line, then what is there
    print(first)
card = book.scorecard(figures_dir(), label=profile)
words = len(book.SCORE_WORDS)      # the verdict columns, not resolved split by power
if real_figures:
    card = card.join(book.scorecard(Path(real_figures), label="real data").iloc[:, :words])
save_table(card, CHAPTER, "scorecard", "Reproduction scorecard: claims per paper and verdict (not resolved split by "
           "whether the run could have seen the paper's effect), and the verdicts an independent rerun is expected "
           f"to change ({profile} run)")
names = ("supported", "contradicted", "with_power", "without_power", "no_reference", "not_testable")
n_papers = len(book.paper_chapters())
lines = {"total": card.iloc[:n_papers, :words].sum(), "own": card.iloc[n_papers, :words],
         "h2h": card.iloc[n_papers + 1, :words]}
for who, counts in lines.items():   # the papers' sentences (total_*), the book's own questions (own_*, h2h_*)
    for name, n in zip(names, counts):
        glue(f"{who}_{name}", int(n), display=False)
    glue(f"{who}_claims", int(counts.sum()), display=False)
    glue(f"{who}_not_resolved", int(counts.iloc[2:5].sum()), display=False)
glue("rerun_changes", book.rerun_text(figures_dir()), display=False)
n_tested, n_wrong = book.expected_wrong(figures_dir())
glue("n_tested", n_tested, display=False)
glue("expected_wrong", f"{n_wrong:.1f}", display=False)
glue("false_rate", f"{100 * (1 - claims.LEVEL):g}%", display=False)

# %%
fig = book.scorecard_figure(figures_dir())
save_figure(fig, CHAPTER, 1, "scorecard")
plt.show()

# %% [markdown]
# Of the papers' {glue:text}`total_claims` sentences, {glue:text}`total_supported` are supported,
# {glue:text}`total_contradicted` contradicted and {glue:text}`total_not_testable` not testable on
# this run. Of the not resolved ones, {glue:text}`total_with_power` are not resolved *with power*
# (had the paper's effect been the truth, a run like this one would have resolved it four times
# in five: that it did not weighs against an effect that large), {glue:text}`total_without_power`
# *without power* (this run was too small to see the paper's effect: it says little either way),
# and {glue:text}`total_no_reference` have no published Δ to size the run by. The book's own questions, counted apart:
# {glue:text}`own_claims`, of which {glue:text}`own_supported` supported,
# {glue:text}`own_contradicted` contradicted, {glue:text}`own_not_resolved` not resolved and
# {glue:text}`own_not_testable` not testable; those of the head-to-head chapter:
# {glue:text}`h2h_claims`, of which {glue:text}`h2h_supported` supported, {glue:text}`h2h_contradicted`
# contradicted and {glue:text}`h2h_not_resolved` not resolved.
#
# In the figure every dot is one primary metric's measured difference between the two rows a
# claim compares (better − worse), the bar its interval, the colour **that metric's own
# verdict** (a claim with several primary metrics combines them by its quantifier, so a green
# bar can belong to a claim that is not resolved; the claims tables give both); a cross marks
# the difference the paper's own table gives for the same two rows, a blue tick a margin's
# boundary (non-inferiority and equivalence claims). Each axis carries one unit: the papers'
# metrics in points, one panel per paper; CADM logits, shares of pairs or regions and epochs in
# panels of their own. On generated data the absolute numbers are not the papers' (below), so
# the question the figure answers is the sign and the size of each effect, not its value.

# %%
reading = book.replication_card(figures_dir(), label=profile)
save_table(reading, CHAPTER, "replication", "The paper's own Δ against this run's interval, per paper: intervals "
           "(claim × primary metric) that hold it, lie below it (effect smaller than published) or above it "
           f"(larger), or have no published Δ ({profile} run)")
for name, n in zip(("consistent", "smaller", "larger", "no_published"), reading.iloc[:n_papers, :4].sum()):
    glue(f"rep_{name}", int(n), display=False)
glue("rep_intervals", int(reading["intervals"].iloc[:n_papers].sum()), display=False)

# %% [markdown]
# **Is the paper's number inside the interval?** Where the paper's own table gives both rows a
# claim compares, its Δ is set against this run's interval on the same metric, on the claim's
# signed scale (positive favours the claim; "lower is better" flips the sign): inside the
# interval, *consistent with the paper*; above it, the effect here is *smaller than published*;
# below it, *larger than published*. Of the {glue:text}`rep_intervals` intervals of the papers'
# sentences, {glue:text}`rep_consistent` are consistent with the paper, {glue:text}`rep_smaller`
# show an effect smaller than published, {glue:text}`rep_larger` one larger than published, and
# {glue:text}`rep_no_published` have no published Δ (the table; each chapter's claims table
# gives the reading per claim, after its verdict). A consistent reading from a wide interval is
# not a confirmation (zero may be inside too: that is the power split above), and on generated
# data an effect smaller than published says more about the data than about the paper.
#
# **How many verdicts chance alone gives.** Each tested claim is judged at the book's level: a
# claim with no true effect is still supported or contradicted in {glue:text}`false_rate` of
# runs (measured in `tests/test_claims.py`). Among the {glue:text}`n_tested` tested claims,
# about {glue:text}`expected_wrong` verdicts would be such chance verdicts if none of them had a
# true effect: a handful of surprising verdicts is what the standard itself predicts.
#
# **How many verdicts a rerun would change.** A rerun with another `--seed` draws new data, a
# new backbone and new training seeds, and an interval near a decision boundary can land on its
# other side. Each chapter's claims table gives, per claim, the chance that such an independent
# rerun gives the same verdict (`mlbook.claims.stability`: from the claim's own Δ, standard error
# and degrees of freedom, checked against simulated reruns); summed over the claims, 1 − that
# chance is the number of verdicts a rerun is expected to change, the scorecard's last column:
# {glue:text}`rerun_changes`. A verdict is one run's reading of a claim; a count of supported
# claims that moves by about that much between runs is noise, not news.

# %% [markdown]
# ## How to run it
#
# **Read it.** The rendered book (`_build/html/index.html`) shows every chapter
# with the outputs of its last run: tables of reproduced numbers next to the
# published ones, regenerated figures, and a verdict on each of the paper's claims.
#
# **Run everything, headless.** From a fresh clone:
#
# ```bash
# make reproduce   # installs .venv on first use, runs every chapter (demo profile), builds the HTML
# make test        # unit tests, every chapter under nbval (smoke profile), the book build
# ```
#
# `make reproduce` is `python -m mlbook reproduce --profile demo`. The entry point
# takes `--profile {smoke,demo,full}`, `--chapters 04,05`, data roots
# (`--coco-root`, `--nuswide-root`, `--voc-root`), `--device` and `--seed`;
# it executes each chapter with papermill, writes the executed notebook back as
# the chapter's `.ipynb`, prints each chapter's wall time, and builds the book.
#
# **Run a chapter interactively.** `jupyter lab`, open `book/<chapter>.py` (jupytext
# opens it as a notebook), edit the parameters cell (profile, data roots, device,
# seed), run it.
#
# **Run on real data.** With MS-COCO 2014, NUS-WIDE and VOC 2007 on disk and a GPU:
#
# ```bash
# python -m mlbook data summary --dataset coco --root /data/coco   # check your copy first
# python -m mlbook reproduce --profile full --coco-root /data/coco --nuswide-root /data/nuswide --voc-root /data/VOC2007
# ```
#
# Long trainings can be run ahead of time (also under `torchrun` for several GPUs)
# with `python -m mlbook train --method NAME --dataset coco --root ... --profile full`;
# results are cached under `runs/<method>/<config-hash>/`, and the chapters pick
# them up instead of retraining. ImageNet weights are read from the torch hub
# cache or a file you name; nothing is downloaded unless you ask for it.

# %% [markdown]
# ## Profiles
#
# One code path, three sizes. A chapter's parameters cell (this chapter's is above the
# scorecard) holds the profile; the profile sets every size, and nothing else in a chapter
# branches on it.

# %%
rows = [dataclasses.asdict(get_profile(p)) for p in PROFILES]
print(pd.DataFrame(rows).set_index("name").T.to_markdown())

# %% [markdown]
# - **smoke**: tens of tiny generated images, one epoch: seconds per chapter. The
#   tests run every chapter this way under nbval; its numbers mean nothing.
# - **demo** (the default, `make reproduce`): a few thousand small generated images;
#   the whole book runs in minutes on a 2-core CPU. The numbers are real
#   measurements of real training, on the generated data.
# - **full**: the papers' settings (ResNet-101/152 with ImageNet weights, 448 px,
#   tens of epochs) on the real data sets, on a GPU.
#
# **The same numbers on any machine.** The demo and smoke profiles run in the portable
# numerics (`mlbook.numerics`): MKL's reproducible SSE2 branch, ATen's AVX2 kernels,
# oneDNN and NNPACK off, numpy's and OpenBLAS's AVX2 code, one thread per computation.
# Their numbers are the same bytes on any x86-64 CPU with AVX2, Intel or AMD, whatever
# its instruction set, caches or core count; `MLBOOK_PORTABLE=0` trades that for each
# CPU's fastest kernels. The full profile keeps the fast kernels and is compared with a
# tolerance. This process:

# %%
print(numerics.describe())

# %% [markdown]
# ## The embedded default: why demo numbers differ from the papers
#
# MS-COCO, NUS-WIDE, VOC and ImageNet weights cannot be downloaded where this book
# is built and tested. So the book ships a *generator* that writes a data set in
# each benchmark's real on-disk format (COCO's `instances_*.json`, NUS-WIDE's
# `ImageList/` and `Groundtruth/` files, VOC's `ImageSets/Main` and XML
# annotations): the very loaders that read the real data read the generated one.
# It is built to show what the papers are about: labels that co-occur through
# scenes, objects from large to a few pixels, a long-tailed label frequency, a box
# for every object, and class names that are real words.
#
# The demo trains small models on small images of drawn shapes, not ResNets on
# photographs. Its numbers therefore **cannot be compared with the published ones
# in absolute terms**; every table still prints them side by side, so that the
# comparison a reader makes is between *methods within one run*: does the paper's
# method beat its baselines here, by how much, and which of its claims survive a
# change of data. With the `full` profile on real data, the same tables are
# direct reproductions.

# %% [markdown]
# ## What the full profile costs on a GPU
#
# Before renting a GPU: every training run of the `full` profile, the FLOPs of one image
# counted by `torch.utils.flop_counter` on the meta device (no weights, nothing typed in),
# times the images and epoch budgets it sees, and the GPU hours at 40% of an H100's dense
# bf16 peak (`python -m mlbook plan --profile full --gpu h100`; other GPUs and utilisations
# are flags). Epochs are budgets (early stopping only shortens a run), and data loading is
# not counted, so read it as an order of magnitude.

# %%
cost = cached_plan(**FIRST_PAGE)
cost

# %%
index = reference_index()
print(f"{len(index)} published tables from {index['paper'].nunique()} papers are audited "
      "in the next chapter and reproduced in the paper chapters.")
