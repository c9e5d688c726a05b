"""The names chapter 07's runs, evidence and tables share (the lowest layer of the paper's
experiments: it imports nothing of them): the stages' names, the zero-shot sources, the published
tables by their number, the metric names of the claims, the top of Fig. 9's label sets, the word
vectors of a row and the zero-shot splits.
``transformation_ranking`` (the runs) and ``transformation_ranking_evidence`` (the claims'
evidence and the tables) both import them from here."""
from __future__ import annotations

import torch

from .. import word_vectors as wv
from ..profiles import runs_dir

SET_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1")
TOP5 = " top-5"          # suffix of a metric measured on the top-5 label sets (Table 4)
TABLES_BY_NUMBER = {3: "ranking_table3_nuswide_top3", 4: "ranking_table4_nuswide_top5",
                    5: "ranking_table5_nuswide_voting_top3"}   # the paper's Tables 3, 4, 5 (all NUS-WIDE)
JACCARD_TOP = 5          # Sec. 4.4: "we obtained the top 5 predicted labels from each classifier"
ZERO_SHOT_NAMES = ("Ours zero-shot", "Ours (random vectors) zero-shot")   # the book's vectors, the control
RANDOM_DRAW = 1000       # the random control of (data seed s, training seed t) is drawn with seed 1000 s + t


def margin_stage(words: str) -> str:
    return f"margin ({words})"            # words: "words" (the book's vectors) or "random"


def zero_shot_stage(split: int) -> str:
    return f"zero-shot features (split {split})"


# --- word vectors and the zero-shot split -------------------------------------------------------

def word_matrix(names: list[str], source: str = "minilm", seed: int = 0, d: int | None = None) -> torch.Tensor:
    """W [L, d] for the label names (``mlbook.word_vectors``; MiniLM cached under runs/word_vectors)."""
    return wv.label_vectors(names, source, cache_dir=runs_dir() / "word_vectors", seed=seed, d=d)


def row_vectors(names: list[str], source: str, words: str, seed: int, train_seed: int) -> torch.Tensor:
    """W of a row: the book's vectors (``words``), or for ``source == "random"`` the control with
    the dimension of ``words``, drawn per (data seed, training seed)."""
    if source == "random":
        return word_matrix(names, "random", RANDOM_DRAW * seed + train_seed, d=wv.source_dim(words))
    return word_matrix(names, source)


def zero_shot_labels(num_classes: int, seed: int = 0, fraction: float = 0.2, split: int = 0) -> torch.Tensor:
    """The label indices held out of training in zero-shot split ``split`` (sorted), fixed by the
    data seed and the split number."""
    g = torch.Generator().manual_seed(seed + 424242 + 1009 * split)
    n = max(1, int(round(num_classes * fraction)))
    return torch.randperm(num_classes, generator=g)[:n].sort().values


def known_mask(num_classes: int, unseen: torch.Tensor | None) -> torch.Tensor | None:
    """[L] bool, False for the held-out labels (None when nothing is held out)."""
    if unseen is None or len(unseen) == 0:
        return None
    return torch.ones(num_classes, dtype=torch.bool).index_fill_(0, unseen, False)
