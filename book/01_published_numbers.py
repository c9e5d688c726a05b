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
# # The published numbers
#
# Eleven tables from the four papers, transcribed number by number
# (`mlbook/reference/*.csv`, percentages as printed, `–` where the paper prints a
# dash). Before reproducing them we check them against themselves:
#
# 1. **F1 against precision and recall.** A row that prints P, R and F1 should satisfy
#    F1 = 2PR/(P+R) at the printed precision: a printed 47.6 stands for anything in
#    [47.55, 47.65], so we ask whether the printed F1's interval meets the range of
#    2PR/(P+R) over the intervals of P and R.
# 2. **Which convention explains a mismatch.** Overall (micro) OF1 *is* the harmonic
#    mean of OP and OR, so a mismatch there is an error. Per-class CF1 has two
#    conventions in the literature: the harmonic mean of CP and CR, or the mean of
#    the per-class F1 values. The harmonic mean is jointly concave, so by Jensen's
#    inequality the mean of per-class F1 can only fall *below* 2·CP·CR/(CP+CR):
#    a CF1 below it fits that convention, one above it fits neither.
#    For each unexplained row we list the single-digit edits that would repair it.
# 3. **Numbers copied between papers.** KNN, Softmax, WARP, CNN-RNN and the
#    Order-Free RNN are reported by several papers on the same data and protocol:
#    do the copies agree?
# 4. **The text against the tables.** When a paper's text quotes a number from its own
#    tables ("improvements … by 4.1% in C-F1", "3.2% mAP lower"), is it the number
#    the table gives? The chapters repeat such sentences, so we check them here.
#
# Everything here is a deterministic function of the transcribed tables; the test
# suite checks these cells' outputs exactly.

# %% tags=["parameters"]
import os

profile = os.environ.get("MLBOOK_PROFILE", "demo")

# %%
import mlbook  # first: it sets the portable numerics (mlbook.numerics) before numpy and torch load
import matplotlib.pyplot as plt
import pandas as pd

from mlbook import audit
from mlbook.report import reference, reference_index, save_figure, save_table

CHAPTER = "01_published_numbers"
pd.set_option("display.width", 200)

# %% [markdown]
# ## The eleven tables

# %%
# NBVAL_CHECK_OUTPUT
index = reference_index()
for _, meta in index.iterrows():
    table = reference(meta["file"][:-4])
    print(f"### {meta['paper']}: {meta['table']} ({meta['dataset']}; {meta['protocol']})")
    print(f"{meta['caption']}\n")
    print(table.to_markdown(floatfmt=".1f", missingval="–"))
    print()

# %% [markdown]
# ## 1–2. Is F1 = 2PR/(P+R)?

# %%
# NBVAL_CHECK_OUTPUT
f1 = audit.audit_f1()
counts = f1.groupby(["kind", "finding"]).size().unstack(fill_value=0)
print(f"{len(f1)} (P, R, F1) triples checked in {f1['file'].nunique()} tables\n")
print(counts.to_markdown())

# %%
# NBVAL_CHECK_OUTPUT
flagged = f1[f1["finding"] != "consistent"][
    ["paper", "table", "method", "protocol", "kind", "P", "R", "F1 printed", "2PR/(P+R)", "gap",
     "finding", "single-digit fixes"]].reset_index(drop=True)
save_table(flagged, CHAPTER, "f1_audit", "Rows whose printed F1 is not 2PR/(P+R) at the printed precision",
           show=False)
print(flagged.drop(columns=["paper"]).to_markdown(index=False))

# %% [markdown]
# ## 3. Do the papers agree when they report the same method?

# %%
# NBVAL_CHECK_OUTPUT
cross = audit.audit_cross_paper()
summary = cross.groupby(["dataset", "protocol", "method"])["finding"].agg(
    compared="size", disagree=lambda s: int((s == "disagree").sum()))
print(summary.to_markdown())
print()
disagree = cross[cross["finding"] == "disagree"].copy()
disagree["which fits its own F1"] = [audit.explain_disagreement(r, f1) for _, r in disagree.iterrows()]
save_table(cross, CHAPTER, "cross_paper", "Metrics reported by more than one paper", show=False)
print(disagree.to_markdown(index=False))

# %% [markdown]
# ## A consistency check that passes: mAP against the mean of the APs
#
# RLSD's Table I prints twenty per-class APs and their mean for each method on VOC
# 2007; the printed mAP should equal the mean of the printed APs to within rounding.

# %%
# NBVAL_CHECK_OUTPUT
maps = audit.audit_map()
save_table(maps, CHAPTER, "map_audit", "mAP against the mean of the printed per-class APs", show=False)
print(maps[["method", "mAP printed", "mean of APs", "gap", "finding"]].to_markdown(index=False))

# %% [markdown]
# ## 4. Text against tables
#
# Every sentence of the four papers that states a number the paper's own tables also
# give is transcribed in `mlbook/reference/text_claims.csv`: the exact words, which
# table, and either a *value* (one cell: "It achieves the 87.3% mAP") or a
# *difference* of two rows in one column ("The gap between the Multi-CNN and our RLSD
# (4.3%)" is RLSD minus Multi-CNN). A sentence that states an *order* without a number
# ("the combination of the k classifiers outperformed WARP and CNN-RNN") is transcribed
# as *higher*, one row per column the tables print, with the second row's table where
# the two rows stand in different tables. Where the text leaves the reading open (which
# metric, which "previous state of the art") the `note` column says which reading we
# took. We recompute each number from the transcribed table.
#
# Both sides are rounded, so each number stands for an interval: a printed table value
# is ±0.05, a difference of two printed values ±0.1, and the text's number is ± half a
# unit of its own last digit (±0.05 for "4.1", ±0.5 for "2%"). A claim **agrees** when
# the two intervals meet, that is when |stated − table| is at most the sum of the two
# roundings (the `tolerance` column); otherwise it **disagrees**. It is **not
# checkable** when the table lacks the row, the column or the cell, or when the number
# is about something outside the table's cells. An order (*higher*) agrees when the
# printed values allow it, that is when the first row minus the second is above −0.1
# (the rounding of a difference); it is printed as "stated > 0".

# %%
# NBVAL_CHECK_OUTPUT
text = audit.audit_text_claims()
short_paper = {"order": "Order-Free RNN", "rlsd": "RLSD", "ranking": "Ranking", "cadm": "CADM"}
text["paper (short)"] = text["table"].str.split("_").str[0].map(short_paper)


def _num(x, fmt=".1f"):
    return "–" if pd.isna(x) else format(x, fmt)


shown = pd.DataFrame({
    "paper": text["paper (short)"], "table": text["table label"], "quote": text["quote"],
    "computed from the table": text["reading"], "stated": text["stated as printed"],
    "table gives": text["from table"].map(_num), "stated − table": text["discrepancy"].map(_num),
    "tolerance": text["tolerance"].map(lambda x: _num(x, ".2f")), "finding": text["finding"]})
save_table(text.drop(columns=["paper (short)"]), CHAPTER, "text_vs_table",
           "Numbers stated in the papers' texts against the papers' own tables", show=False)
print(text.groupby(["paper (short)", "finding"]).size().unstack(fill_value=0).to_markdown())
print()
print(shown.to_markdown(index=False))

# %% [markdown]
# The claims that do not hold, each with the number the table gives, how far beyond
# the rounding tolerance it lies, and the reading we took:

# %%
# NBVAL_CHECK_OUTPUT
for _, r in text[text["finding"] == "disagrees"].iterrows():
    print(f"- {r['paper (short)']}, {r['section']}: \"{r['quote']}\"\n"
          f"  stated {r['stated as printed']}, {r['table label']} gives {r['from table']:.1f} "
          f"({r['reading']}); {r['beyond tolerance']:.2f} beyond the tolerance of {r['tolerance']:.2f}\n"
          f"  note: {r['note'] or '–'}")
for _, r in text[text["finding"] == "not checkable"].iterrows():
    print(f"- not checkable: {r['paper (short)']}, \"{r['quote']}\": {r['why']} ({r['note']})")

# %% [markdown]
# What to look for in the list above:
#
# - **A disagreement far beyond its tolerance** is a sentence that does not describe the
#   table it cites: no rounding of the printed numbers produces it. A chapter that
#   repeats such a sentence should quote the table's number instead, and say so.
# - **A disagreement just beyond its tolerance**, with a whole-number claim, is more
#   likely loose wording (a number truncated rather than rounded) than a wrong table.
# - **The notes** record every reading we had to choose. A claim that agrees only under
#   one reading of an ambiguous sentence is weaker evidence than one that agrees under all.
# - **Not checkable** claims are about numbers the transcribed tables do not hold (for
#   example image counts printed in a caption), not about errors.

# %% [markdown]
# ## The findings at a glance
#
# Each dot is one (table, method, protocol) row: the printed F1 minus 2PR/(P+R)
# computed from the printed P and R. The grey band is what rounding to one
# decimal can explain.

# %%
colours = {"consistent": "#4c9f70", "below 2PR/(P+R): fits mean of per-class F1": "#e39b2d",
           "inconsistent": "#c8413b"}
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
for ax, kind in zip(axes, ["per-class", "overall"]):
    part = f1[f1["kind"] == kind].reset_index(drop=True)
    lo_hi = [audit.harmonic_range(p, r) for p, r in zip(part["P"], part["R"])]
    ax.axhspan(-0.1, 0.1, color="0.9", zorder=0)
    for finding, colour in colours.items():
        sel = part["finding"] == finding
        ax.scatter(part.index[sel], part["gap"][sel], s=22, color=colour, label=finding, zorder=2)
    short = {"order": "Order-Free", "rlsd": "RLSD", "ranking": "Ranking", "cadm": "CADM"}
    keyed = []
    for j, (i, row) in enumerate(part[part["finding"] != "consistent"].iterrows(), 1):
        ax.annotate(str(j), (i, row["gap"]), fontsize=8, xytext=(4, 2), textcoords="offset points")
        keyed.append(f"{j}  {row['method']}, {short[row['file'].split('_')[0]]} {row['table']}, "
                     f"{row['protocol'][:5]}")
    ax.text(0.02, 0.03 if kind == "per-class" else 0.3, "\n".join(keyed), transform=ax.transAxes,
            fontsize=7, va="bottom", family="monospace")
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_title(f"{kind} F1 ({'CF1' if kind == 'per-class' else 'OF1'})")
    ax.set_xlabel("row (tables in index order)")
axes[0].set_ylabel("printed F1 − 2PR/(P+R)  (points)")
axes[1].legend(loc="lower right", fontsize=8)
fig.suptitle("Published F1 values against the harmonic mean of the printed P and R")
fig.tight_layout()
save_figure(fig, CHAPTER, 1, "f1_consistency")
plt.show()

# %% [markdown]
# ## What the audit found
#
# - **Most rows are consistent.** The great majority of printed F1 values equal
#   2PR/(P+R) within rounding, including every row of the Order-Free RNN, RLSD
#   and ranking papers' per-class columns.
# - **Four overall-F1 rows, three distinct errors.** OF1 is by definition the harmonic
#   mean of OP and OR, so these are errors in a printed number:
#   *KNN on NUS-WIDE* in the Order-Free RNN paper (OP 43.9 gives OF1 48.2, not
#   47.6; RLSD prints OP 42.9 for the same row, which fits: the Order-Free RNN
#   paper's 43.9 is most likely a typo for 42.9);
#   *WARP on MS-COCO* (OF1 60.7 where 59.8 and 61.4 give 60.6), the same in the
#   Order-Free RNN and RLSD papers, so one copied the other's number;
#   *MCG-CNN+LSTM on MS-COCO* in RLSD (OP 61.3, OR 59.3 give 60.3, not 61.3: a
#   one-digit slip in OF1 or OP).
# - **The CADM paper's per-class F1 is not one convention.** For SRN (both data sets,
#   both protocols), Multi-Evidence (top-3) and its own λ = 0.5 row on NUS-WIDE (top-3),
#   the printed CF1 lies 1–4.5 points *below* 2·CP·CR/(CP+CR), which only the
#   mean-of-per-class-F1 convention explains, while its other rows, baseline and
#   λ = 0 included, use the harmonic mean. Numbers computed under different
#   conventions are compared in one column, and the λ = 0.5 top-3 CF1 on NUS-WIDE
#   (56.3) would read 60.8 under the convention of its neighbours.
# - **Copies agree, with one exception.** Every other number that two papers report
#   for the same method, data set and protocol is identical, which also shows that
#   the later papers copied rather than re-ran the baselines.
# - **The texts do not always match their own tables.** Section 4 prints the sentences
#   whose numbers the tables contradict, with counts per paper of those that agree. One
#   is an order, not a number: the ranking paper says that voting over its row
#   classifiers with N = 3 "outperformed WARP and CNN-RNN" (Sec. 4.4), yet its Table 5
#   prints a C-P of 29.1 for that vote, below WARP's 31.7 and CNN-RNN's 40.5 in its
#   Table 3 (whose baseline rows come from another split, 150,000 / 59,347 images).
# - **Per-class APs add up.** All twelve mAP values of RLSD's VOC table equal the
#   mean of their twenty printed APs within rounding.
#
# The chapters print CF1 under the convention each paper states (or, where it
# states none, the one its numbers fit), and `mlbook.metrics` offers both.
