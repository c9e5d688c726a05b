"""The names chapter 07's runs, evidence and tables share (the lowest layer of the paper's
experiments: it imports nothing of them): the stages' names, the zero-shot sources, the published
tables by their number, the metric names of the claims and the top of Fig. 9's label sets.
``transformation_ranking`` (the runs) and ``transformation_ranking_evidence`` (the claims'
evidence and the tables) both import them from here."""
from __future__ import annotations

SET_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1")
TOP5 = " top-5"          # suffix of a metric measured on the top-5 label sets (Table 4)
TABLES_BY_NUMBER = {3: "ranking_table3_nuswide_top3", 4: "ranking_table4_nuswide_top5",
                    5: "ranking_table5_nuswide_voting_top3"}   # the paper's Tables 3, 4, 5 (all NUS-WIDE)
JACCARD_TOP = 5          # Sec. 4.4: "we obtained the top 5 predicted labels from each classifier"
ZERO_SHOT_NAMES = ("Ours zero-shot", "Ours (random vectors) zero-shot")   # the book's vectors, the control


def margin_stage(words: str) -> str:
    return f"margin ({words})"            # words: "words" (the book's vectors) or "random"


def zero_shot_stage(split: int) -> str:
    return f"zero-shot features (split {split})"
