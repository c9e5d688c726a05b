"""Transformation ranking runner (mlbook.experiments.transformation_ranking): the fast norms equal
the paper's, held-out (zero-shot) labels never reach training, the zero-shot evidence helpers,
and one cached smoke run end to end."""
import dataclasses

import pytest
import torch

from mlbook import metrics
from mlbook.experiments import transformation_ranking as tr
from mlbook.models import transformation_ranking as M


def _toy(n=40, L=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, 3, 2, 2, generator=g)
    labels = (torch.rand(n, L, generator=g) < 0.35).float()
    labels[torch.arange(n), torch.randint(0, L, (n,), generator=g)] = 1.0   # at least one positive each
    W = torch.nn.functional.normalize(torch.randn(L, d, generator=g), dim=1)
    return maps, labels, W


def _settings(**kw):
    base = dict(epochs=3, batch_size=8, lr=1e-2, hidden=7, k=3, margins=(0.1, 1.0), patience=5, holdout=0.2)
    return tr.RankSettings(**{**base, **kw})


@pytest.mark.parametrize("batch", [4, 20])   # fewer images than labels (A formed) and more (factorised)
@pytest.mark.parametrize("pool", [False, True])
def test_fast_norms_equal_the_paper_norms(batch, pool):
    torch.manual_seed(0)
    model = tr.FrozenMapsRanker(3 if pool else 12, 9, k=4, d=5, pool=pool).eval()
    maps = torch.randn(batch, 3, 2, 2)
    W = torch.randn(10, 5)
    ref = M.label_norms(model(maps), W)
    assert torch.allclose(model.norms(maps, W), ref, atol=1e-5, rtol=1e-5)


def test_zero_shot_labels_fixed_by_the_data_seed():
    a, b = tr.zero_shot_labels(24, seed=0), tr.zero_shot_labels(24, seed=0)
    assert torch.equal(a, b) and len(a) == 5 and len(set(a.tolist())) == 5
    assert not torch.equal(a, tr.zero_shot_labels(24, seed=1))
    known = tr.known_mask(24, a)
    assert known.sum() == 19 and not known[a].any()
    assert tr.known_mask(24, None) is None


def test_held_out_labels_never_reach_training():
    """Changing the held-out labels' word vectors and annotations changes nothing that training produces."""
    maps, labels, W = _toy()
    unseen = torch.tensor([1, 4])
    known = tr.known_mask(W.shape[0], unseen)
    W2, labels2 = W.clone(), labels.clone()
    W2[unseen] = torch.nn.functional.normalize(torch.randn(len(unseen), W.shape[1]), dim=1)
    labels2[:, unseen] = 1.0 - labels2[:, unseen]
    s = _settings()
    runs = [tr.fit_ranker(maps, y, w, s, known=known, seed=0, train_seed=3, device="cpu")
            for w, y in ((W, labels), (W2, labels2))]
    (m1, margin1, curve1, hist1), (m2, margin2, curve2, hist2) = runs
    assert margin1 == margin2 and curve1 == curve2
    assert [h["loss"] for h in hist1] == [h["loss"] for h in hist2]
    for (k1, v1), (k2, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    # ...whereas without the mask the held-out labels do change training
    m3 = tr.fit_ranker(maps, labels2, W2, s, seed=0, train_seed=3, device="cpu")[0]
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))


def test_loss_sees_no_held_out_label(monkeypatch):
    """Spy on Eq. 3: every call during training gets the mask with the held-out labels False."""
    maps, labels, W = _toy()
    unseen = torch.tensor([0, 5])
    seen = []
    real = M.hinge_rank_loss

    def spy(norms, targets, margin, n_negatives=40, generator=None, known=None):
        seen.append(known.clone())
        return real(norms, targets, margin, n_negatives, generator, known)

    monkeypatch.setattr(M, "hinge_rank_loss", spy)
    tr.fit_ranker(maps, labels, W, _settings(margins=(0.5,)), known=tr.known_mask(6, unseen), device="cpu")
    assert seen and all(k is not None and not k[unseen].any() and k.sum() == 4 for k in seen)


def test_margin_chosen_on_hold_out_by_cf1_plus_of1():
    maps, labels, W = _toy()
    model, m, curve, history = tr.fit_ranker(maps, labels, W, _settings(), device="cpu")
    scores = {mm: v["CF1"] + v["OF1"] for mm, v in curve}
    assert [mm for mm, _ in curve] == [0.1, 1.0] and scores[m] == max(scores.values())
    assert history and "val_loss" in history[0]


def test_unseen_recall_and_prevalence():
    labels = torch.tensor([[1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.float32)
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.3, 0.1, 0.2], [0.1, 0.7, 0.9]])
    unseen = torch.tensor([0, 2])
    # top-1 among labels 0 and 2: image0 -> 0 (hit; 2 missed), image1 -> 0 (no positives),
    # image2 -> 0 (miss of 2), image3 -> 2 (miss of 0): 1 hit of 4 positive pairs
    assert float(tr.unseen_recall_at(scores, labels, unseen, 1)[0]) == pytest.approx(0.25)
    w = torch.ones(1, 4, dtype=torch.float64)
    assert tr.prevalence(labels, w)[0].tolist() == pytest.approx([0.5, 0.5, 0.5])
    # a random ranking's mean AP approaches the prevalence
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(4000, 1, generator=g) < 0.2).float()
    ap = metrics.average_precision(torch.rand(4000, 1, generator=g), y)
    assert float(ap[0]) == pytest.approx(float(y.mean()), abs=0.02)


def test_run_row_smoke_zero_shot(monkeypatch, tmp_path):
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    r = tr.run_row("nuswide", "smoke", device="cpu", words="random", zero_shot=True)
    n, L = r["scores"].shape
    assert r["pred"].sum(1).eq(3).all() and r["pred_top5"].sum(1).eq(5).all()
    assert set(r["committee_scores"]) == {"1", "3", "5"} and r["committee_scores"]["3"].shape == (n, L)
    assert r["jaccard"].shape == (n,) and bool(((r["jaccard"] >= 0) & (r["jaccard"] <= 1)).all())
    assert torch.equal(r["unseen"], tr.zero_shot_labels(L, 0))
    assert r["margin"] in tr.settings_for("smoke").margins
    again = tr.run_row("nuswide", "smoke", device="cpu", words="random", zero_shot=True)   # from the cache
    assert torch.equal(again["scores"], r["scores"])
