"""Transformation ranking experiments (mlbook.experiments.transformation_ranking): held-out
(zero-shot) labels reach neither the head's training nor the backbone under it, the random
control's vectors, the chance levels (exact random-ranking AP, exact random Jaccard), every
claim of the chapter's claims data computable, and one cached smoke row end to end."""
import dataclasses
import itertools
import math
from pathlib import Path

import pytest
import torch

from mlbook import claims, metrics
from mlbook.experiments import (features, shared, transformation_ranking, transformation_ranking_evidence,
                                transformation_ranking_rows)
from mlbook.models import transformation_ranking as model_file

CHAPTER = "07_transformation_ranking"


def _toy(n=40, L=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, 3, 2, 2, generator=g)
    labels = (torch.rand(n, L, generator=g) < 0.35).float()
    labels[torch.arange(n), torch.randint(0, L, (n,), generator=g)] = 1.0   # at least one positive each
    W = torch.nn.functional.normalize(torch.randn(L, d, generator=g), dim=1)
    return maps, labels, W


def _settings(**kw):
    base = dict(epochs=3, batch_size=8, lr=1e-2, hidden=7, k=3, margins=(0.1, 1.0), patience=5, holdout=0.2)
    return transformation_ranking.Settings(**{**base, **kw})


def test_zero_shot_labels_fixed_by_the_data_seed_and_split():
    a, b = transformation_ranking.zero_shot_labels(24, seed=0), transformation_ranking.zero_shot_labels(24, seed=0)
    assert torch.equal(a, b) and len(a) == 5 and len(set(a.tolist())) == 5
    assert not torch.equal(a, transformation_ranking.zero_shot_labels(24, seed=1))
    assert not torch.equal(a, transformation_ranking.zero_shot_labels(24, seed=0, split=1))
    known = transformation_ranking.known_mask(24, a)
    assert known.sum() == 19 and not known[a].any()
    assert transformation_ranking.known_mask(24, None) is None


def test_held_out_labels_never_reach_the_head():
    """Changing the held-out labels' word vectors and annotations changes nothing that training produces."""
    maps, labels, W = _toy()
    unseen = torch.tensor([1, 4])
    known = transformation_ranking.known_mask(W.shape[0], unseen)
    W2, labels2 = W.clone(), labels.clone()
    W2[unseen] = torch.nn.functional.normalize(torch.randn(len(unseen), W.shape[1]), dim=1)
    labels2[:, unseen] = 1.0 - labels2[:, unseen]
    s = _settings()
    runs = [transformation_ranking.fit_ranker(maps, y, w, s, known=known, seed=0, train_seed=3, device="cpu")
            for w, y in ((W, labels), (W2, labels2))]
    (m1, margin1, curve1, hist1), (m2, margin2, curve2, hist2) = runs
    assert margin1 == margin2 and curve1 == curve2
    assert [h["loss"] for h in hist1] == [h["loss"] for h in hist2]
    for (k1, v1), (k2, v2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2), k1
    # ...whereas without the mask the held-out labels do change training
    m3 = transformation_ranking.fit_ranker(maps, labels2, W2, s, seed=0, train_seed=3, device="cpu")[0]
    assert any(not torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m3.state_dict().values()))


def test_loss_sees_no_held_out_label(monkeypatch):
    """Spy on Eq. 3: every call during training gets the mask with the held-out labels False."""
    maps, labels, W = _toy()
    unseen = torch.tensor([0, 5])
    seen = []
    real = model_file.hinge_rank_loss

    def spy(norms, targets, margin, n_negatives=40, generator=None, known=None):
        seen.append(known.clone())
        return real(norms, targets, margin, n_negatives, generator, known)

    monkeypatch.setattr(model_file, "hinge_rank_loss", spy)
    transformation_ranking.fit_ranker(maps, labels, W, _settings(margins=(0.5,)),
                                      known=transformation_ranking.known_mask(6, unseen), device="cpu")
    assert seen and all(k is not None and not k[unseen].any() and k.sum() == 4 for k in seen)


def _scrambled_splits(real_splits, columns):
    """``shared.splits`` with the training targets of ``columns`` inverted (images unchanged)."""
    def splits(*args, **kwargs):
        data = real_splits(*args, **kwargs)
        labels = data.train.labels.clone()
        labels[:, columns] = 1.0 - labels[:, columns]
        return shared.Splits(dataclasses.replace(data.train, labels=labels), data.test)
    return splits


def test_zero_shot_backbone_never_sees_the_held_out_targets(monkeypatch, tmp_path):
    """The features under a zero-shot head are bit-identical when the held-out labels' training
    targets are inverted; a backbone trained on every label is not."""
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    real_splits = shared.splits
    C = real_splits("nuswide", "smoke").train.num_classes
    s = transformation_ranking.settings_for("smoke")
    unseen = transformation_ranking.zero_shot_labels(C, 0, s.zero_shot_fraction, split=1)

    def computed(name, scrambled):
        monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / name))
        splits = _scrambled_splits(real_splits, unseen) if scrambled else real_splits
        monkeypatch.setattr(shared, "context", lambda d, p, root=None, seed=0: shared.RunContext.over(
            splits(d, p, root, seed), d, p, root, seed))
        zero_shot = transformation_ranking.zero_shot_features("nuswide", "smoke", device="cpu", split=1)
        every_label = features.backbone_features("nuswide", "smoke", None, 0, "cpu", trunk=transformation_ranking.TRUNK)
        return zero_shot, every_label

    (zs_a, all_a), (zs_b, all_b) = computed("original", False), computed("scrambled", True)
    assert torch.equal(zs_a["train"], zs_b["train"]) and torch.equal(zs_a["test"], zs_b["test"])
    assert not torch.equal(all_a["train"], all_b["train"])       # the test can fail: the targets do matter
    assert not torch.equal(zs_a["train"], all_a["train"])         # and the zero-shot backbone is another one


def test_maps_on_disk_train_and_score_as_maps_in_memory(tmp_path):
    """The full profile's maps live on disk (``features.DiskMaps``): the head trains, scores and votes
    on them exactly as on the same maps held in memory."""
    maps, labels, W = _toy()
    maps = maps.half()
    file = tmp_path / "train.f16"
    file.write_bytes(maps.numpy().tobytes())
    on_disk = features.DiskMaps(file, len(maps), tuple(maps.shape[1:]))
    s = _settings(margins=(0.5,))
    (m1, _, curve1, _), (m2, _, curve2, _) = (transformation_ranking.fit_ranker(x, labels, W, s, seed=0, train_seed=1,
                                                                                device="cpu")
                                              for x in (maps, on_disk))
    assert curve1 == curve2
    for v1, v2 in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(v1, v2)
    torch.testing.assert_close(transformation_ranking.test_norms(m1, maps, W),
                               transformation_ranking.test_norms(m1, on_disk, W))
    e1, e2 = (transformation_ranking.committee_evidence(m1, x, W) for x in (maps, on_disk))
    torch.testing.assert_close(e1["jaccard"], e2["jaccard"])
    for n in ("1", "3", "5"):
        torch.testing.assert_close(e1["committee_scores"][n], e2["committee_scores"][n])


class Started(Exception):
    """Raised by a spy in place of training: the model was built, and checked as it starts."""


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    from test_full_profile import random_imagenet_file

    return random_imagenet_file("alexnet", tmp_path_factory.mktemp("weights") / "alexnet-random.pth")


def test_full_profile_head_starts_from_alexnet_fc6_fc7(monkeypatch, tmp_path, alexnet_file):
    """Sec. 3.2 / 3.6, Table 1: in the full profile the head on AlexNet's 256 x 6 x 6 pool5 maps is its
    own ImageNet fc6 (9216 -> 4096) and fc7 from the weights file and a new fc8 (4096 -> k x d),
    trained at 1e-6, in the margin stages and the rows alike, each model from its own copy."""
    from mlbook.profiles import get_profile

    full = transformation_ranking.settings_for("full")
    assert (full.fc_init, full.lr, full.pool, full.hidden) == ("alexnet", 1e-6, False, 4096)
    trunk = transformation_ranking.TRUNK
    assert features.map_shape(trunk, get_profile("full").size_for(trunk)) == (256, 6, 6)
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    weights = {"alexnet": str(alexnet_file)}
    alexnet = torch.load(alexnet_file, weights_only=True)
    kept = lambda fc, i: torch.equal(fc.weight, alexnet[f"classifier.{i}.weight"]) and \
        torch.equal(fc.bias, alexnet[f"classifier.{i}.bias"])                            # noqa: E731
    started = []

    def spy(model, *args, **kwargs):
        fc6, fc7, fc8 = model.body[2], model.body[5], model.head
        started.append(kept(fc6, 1) and kept(fc7, 4) and (fc6.in_features, fc8.in_features) == (9216, 4096)
                       and isinstance(fc8, model_file.TransformationHead) and fc8.out_features == model.k * model.d)
        raise Started
    monkeypatch.setattr(transformation_ranking, "fit", spy)
    data = shared.splits("nuswide", "smoke")
    pool5 = lambda n: torch.randn(n, 256, 6, 6).half()                                   # noqa: E731
    monkeypatch.setattr(features, "backbone_features",
                        lambda *a, **k: {"train": pool5(len(data.train)), "test": pool5(len(data.test))})
    head = {k: getattr(full, k) for k in ("fc_init", "hidden", "lr", "pool")}
    for row in (transformation_ranking_rows.margin_stage("words"), "Ours zero-shot (split 0)"):
        with pytest.raises(Started):
            transformation_ranking.run(row, "nuswide", "smoke", device="cpu", weights=weights, settings=head)
    assert started == [True, True]
    first, second = (transformation_ranking.new_ranker(9216, 5, dataclasses.replace(full, k=3), weights)
                     for _ in range(2))
    assert torch.equal(first.body[2].weight, second.body[2].weight)
    assert first.body[2].weight.data_ptr() != second.body[2].weight.data_ptr()            # one copy per model
    # pooled maps: a new fc6
    pooled = transformation_ranking.new_ranker(256, 5, dataclasses.replace(full, k=3, pool=True), weights)
    assert pooled.body[2].in_features == 256 and kept(pooled.body[5], 4)


def test_demo_and_smoke_heads_start_random(monkeypatch):
    maps, labels, W = _toy()
    assert [transformation_ranking.settings_for(p).fc_init for p in ("smoke", "demo")] == ["random", "random"]
    s = transformation_ranking.settings_for("smoke")
    started = []

    def spy(model, *args, **kwargs):
        started.append(model.state_dict())
        raise Started
    monkeypatch.setattr(transformation_ranking, "fit", spy)
    with pytest.raises(Started):
        transformation_ranking.fit_ranker(maps, labels, W, s, train_seed=3, device="cpu")
    torch.manual_seed(3)
    drawn = model_file.FrozenMapsRanker(12, s.hidden, s.k, W.shape[1], s.dropout).state_dict()
    assert started[0].keys() == drawn.keys() and all(torch.equal(started[0][k], v) for k, v in drawn.items())
    with pytest.raises(ValueError, match="fc_init"):
        transformation_ranking.new_ranker(12, 5, dataclasses.replace(s, fc_init="imagenet"))


def test_margin_chosen_on_hold_out_by_cf1_plus_of1():
    maps, labels, W = _toy()
    model, m, curve, history = transformation_ranking.fit_ranker(maps, labels, W, _settings(), device="cpu")
    scores = {mm: v["CF1"] + v["OF1"] for mm, v in curve}
    assert [mm for mm, _ in curve] == [0.1, 1.0] and scores[m] == max(scores.values())
    assert history and "val_loss" in history[0]


def test_random_control_takes_the_word_vectors_dimension_and_a_draw_per_seed(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("3 300\n" + "".join(f"{w} " + " ".join(["0.1"] * 299 + [str(i + 1)]) + "\n"
                                         for i, w in enumerate(["dog", "cat", "sky"])))
    names = ["dog", "cat", "sky"]
    file_vectors = transformation_ranking.row_vectors(names, str(path), str(path), seed=0, train_seed=0)
    control = [transformation_ranking.row_vectors(names, "random", str(path), seed=0, train_seed=t) for t in (0, 1)]
    assert file_vectors.shape == control[0].shape == (3, 300)
    assert not torch.equal(control[0], control[1])                       # a new draw per training seed
    assert torch.equal(control[1], transformation_ranking.row_vectors(names, "random", str(path), seed=0, train_seed=1))
    word_key = transformation_ranking._word_key
    assert word_key("random", control[1], 0, 1) != word_key("random", control[0], 0, 0)


def test_rows_and_stages_name_every_run_of_the_grid():
    """The face: ``rows`` (the table rows, ``row_options`` tells what each changes) and ``stages``
    (the margins, the zero-shot splits' features) are the names of the chapter's own runs."""
    for profile in ("smoke", "demo", "full"):
        rows, stages = transformation_ranking.rows(profile), transformation_ranking.stages(profile)
        assert isinstance(rows, tuple) and rows == tuple(transformation_ranking.row_options(profile))
        assert isinstance(stages, tuple) and not set(rows) & set(stages)
        grid = transformation_ranking.grid(profile, ("nuswide",), (0, 1))
        assert {r.row for r in grid if r.paper == "transformation_ranking"} == {*rows, *stages}


def test_the_evidence_and_the_names_are_a_lower_layer():
    """Neither the evidence module nor the shared names import the runs' module (no cycle)."""
    import ast
    import importlib

    for lower in (transformation_ranking_evidence, transformation_ranking_rows):
        imported = set()
        for node in ast.walk(ast.parse(Path(lower.__file__).read_text())):
            if isinstance(node, ast.ImportFrom):
                imported |= {(node.module or "").rsplit(".", 1)[-1], *(a.name for a in node.names)}
            elif isinstance(node, ast.Import):
                imported |= {a.name.rsplit(".", 1)[-1] for a in node.names}
        assert "transformation_ranking" not in imported, lower.__name__
    assert importlib.import_module("mlbook.experiments.transformation_ranking").claim_values \
        is transformation_ranking_evidence.claim_values


def test_random_jaccard_is_the_exact_expectation():
    for L, n in ((6, 2), (7, 3), (5, 5)):
        sets = [frozenset(c) for c in itertools.combinations(range(L), n)]
        exact = sum(len(a & b) / len(a | b) for a in sets for b in sets) / len(sets) ** 2
        assert transformation_ranking_evidence.random_jaccard(L, n) == pytest.approx(exact, abs=1e-12)
    assert transformation_ranking_evidence.random_jaccard(81) == pytest.approx(0.03516, abs=1e-5)


def _fake_results(seeds=(0, 1, 2), n=60, L=10, splits=2):
    """A results dict with every row the chapter's claims name, from random scores."""
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n, L, generator=g) < 0.3).float()
    y[:, 0] = 1.0

    def ranking_row(unseen=()):
        scores = torch.randn(n, L, generator=g)
        raw = {"scores": scores, "committee_scores": {k: torch.randn(n, L, generator=g) for k in "135"},
               "jaccard": torch.rand(n, generator=g, dtype=torch.float64), "unseen": torch.tensor(unseen)}
        return transformation_ranking.with_metrics(raw, y)

    results = {}
    for t in seeds:
        for row in ("Ours", "Ours (random vectors)", "Ours (k=10)"):
            results["nuswide", row, t] = ranking_row()
        for j in range(splits):
            for name in transformation_ranking_rows.ZERO_SHOT_NAMES:
                results["nuswide", f"{name} (split {j})", t] = ranking_row([1 + 2 * j, 2 + 2 * j])
        for row in ("WARP", "CNN-RNN"):
            scores = torch.randn(n, L, generator=g)
            results["nuswide", row, t] = {"scores": scores, "pred": metrics.predict_labels(scores, k=3)}
    return results, shared.Splits(None, type("Test", (), {"labels": y})())


def test_every_claim_of_the_chapter_is_computable_or_says_why_not():
    results, data = _fake_results()
    weights = metrics.image_weights(60, 20, seed=1)
    catalogue = claims.load(CHAPTER)
    assert {c.id.split(".")[1] for c in catalogue} >= {"zero_shot_words_vs_random", "zero_shot_vs_chance",
                                                       "complementary", "fewer_images"}
    evidence = shared.Evidence(results, {"nuswide": data}, [0, 1, 2])
    for c in catalogue:
        options = transformation_ranking.claim_options(c, evidence)
        if not options["testable"]:
            assert options["why_not"], c.id
            continue
        values = transformation_ranking.claim_values(c, evidence, weights)
        for metric, (better, worse) in values.items():
            for side, row in ((better, c.better), (worse, c.worse)):
                assert side.shape == ((1 if row in c.fixed else 3), 21), (c.id, metric, row)
                assert torch.isfinite(side).all(), (c.id, metric, row)


def test_held_out_map_pools_every_split_and_the_exact_chance_level():
    results, data = _fake_results(seeds=(0,))
    y = data.test.labels
    u = torch.tensor([1, 2, 3, 4])                      # the held-out labels of splits 0 and 1
    for j in (0, 1):                                    # a perfect ranking of every held-out label
        results["nuswide", f"Ours zero-shot (split {j})", 0]["scores"] = y.clone()
    ones = torch.ones(1, len(y), dtype=torch.float64)
    held_out_map = transformation_ranking_evidence.held_out_map
    assert held_out_map(results, "nuswide", "Ours zero-shot", [0], y, ones).item() == pytest.approx(1.0)
    chance = held_out_map(results, "nuswide", "random ranking", [0], y, ones).item()
    assert chance == pytest.approx(metrics.random_ranking_ap(y[:, u]).mean().item())
    assert chance > y[:, u].mean().item()               # above the prevalence


def test_jaccard_claim_against_its_chance_level():
    results, data = _fake_results()
    c = claims.get("07.complementary.nuswide")
    evidence = shared.Evidence(results, {"nuswide": data}, [0, 1, 2])
    better, worse = transformation_ranking.claim_values(c, evidence, metrics.image_weights(60, 5))["mean Jaccard"]
    assert torch.allclose(worse, torch.full_like(worse, transformation_ranking_evidence.random_jaccard(10)))
    assert better[:, 0].tolist() == pytest.approx([results["nuswide", "Ours", t]["jaccard"].mean().item()
                                                   for t in range(3)])


def test_run_smoke_zero_shot_row(monkeypatch, tmp_path):
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    row = "Ours (random vectors) zero-shot (split 0)"
    r = transformation_ranking.run(row, "nuswide", "smoke", device="cpu")
    n, L = r["scores"].shape
    assert r["pred"].sum(1).eq(3).all() and r["pred_top5"].sum(1).eq(5).all()
    assert set(r["committee_scores"]) == {"1", "3", "5"} and r["committee_scores"]["3"].shape == (n, L)
    assert r["jaccard"].shape == (n,) and bool(((r["jaccard"] >= 0) & (r["jaccard"] <= 1)).all())
    assert torch.equal(r["unseen"], transformation_ranking.zero_shot_labels(L, 0))
    assert r["margin"] == transformation_ranking.ZERO_SHOT_MARGIN and not math.isnan(r["metrics"]["mAP"])
    again = transformation_ranking.run(row, "nuswide", "smoke", device="cpu")   # from the cache
    assert torch.equal(again["scores"], r["scores"])
