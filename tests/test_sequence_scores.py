"""A sequence model's scores per label for the ranking metrics (``decoding.SEQUENCE_SCORE_RULE``)."""
from __future__ import annotations

import pytest
import torch

from mlbook import decoding, metrics
from mlbook.experiments import baselines as baseline_exp
from mlbook.models import baselines

# three images, three labels and END; per image and step, P(label | image, path so far)
STEP_PROBS = torch.tensor([
    [[0.50, 0.20, 0.25, 0.05], [0.00, 0.40, 0.45, 0.15]],   # path 0, 1: label 2 (0.45) beats 1 (0.40), never emitted
    [[0.30, 0.10, 0.60, 0.00], [0.70, 0.20, 0.00, 0.10]],   # path 2, 0
    [[0.35, 0.60, 0.05, 0.00], [0.90, 0.00, 0.90, 0.10]],   # path 1, then ended: the second step is no part of it
])
PATHS = torch.tensor([[0, 1], [2, 0], [1, -1]])


def _step_fn(context, state, emitted, prev):
    """The hand-made model: step t reads STEP_PROBS[:, t]; emitted labels are out of the pool (Eq. 10)."""
    (probs,), (t,) = context, state
    p = probs[torch.arange(len(t)), t]
    logp = p.log().masked_fill(torch.cat([emitted, torch.zeros_like(emitted[:, :1])], 1), -1e9)
    return logp, (t + 1,)


def _scores() -> torch.Tensor:
    return decoding.path_label_scores(_step_fn, (STEP_PROBS,), (torch.zeros(3, dtype=torch.long),), PATHS, 3)


def test_path_scores_rank_emitted_labels_first():
    s = _scores()
    hand = torch.tensor([[0.75, 0.70, 0.225],    # emitted: 1/2 + p/2 (p the best step probability); else p/2
                         [0.85, 0.10, 0.80],
                         [0.175, 0.80, 0.025]])   # the step after the path's end is not read
    assert torch.allclose(s, hand, atol=1e-6)
    emitted = decoding.sequences_to_sets(PATHS, 3) > 0
    for i in range(3):   # every never-emitted label: above 0, below every emitted label of its image
        assert bool((s[i][~emitted[i]] > 0).all())
        assert float(s[i][~emitted[i]].max()) < float(s[i][emitted[i]].min())
    assert float(s[0, 2]) < float(s[0, 1])        # the high-probability label 2 was never emitted


def test_map_of_path_scores_matches_hand_computation():
    y = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 1, 1]])
    # class 0: 0.85+, 0.75+, 0.175- -> AP 1; class 1: 0.80+, 0.70-, 0.10+ -> (1 + 2/3) / 2;
    # class 2: 0.80-, 0.225+, 0.025+ -> (1/2 + 2/3) / 2
    hand = (1 + (1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 3
    assert metrics.mean_average_precision(_scores(), y) == pytest.approx(hand, abs=1e-6)


def test_cnn_rnn_scores_follow_the_rule_on_its_top_k_path():
    torch.manual_seed(3)
    rnn = baselines.CNNRNN(12, 6, embed=8, hidden=16).eval()
    feats = torch.randn(9, 12)
    seqs = baseline_exp.cnn_rnn_topk(rnn, feats, 3, beam=3)
    s = rnn.label_scores(feats, seqs, batch_size=4)          # batches of 4: the same as one batch
    emitted = decoding.sequences_to_sets(seqs, 6) > 0
    assert s.shape == (9, 6) and bool((s[emitted] > 0.5).all())
    assert bool((s[~emitted] > 0).all()) and bool((s[~emitted] < 0.5).all())
    assert torch.allclose(s, rnn.label_scores(feats, seqs), atol=1e-6)
