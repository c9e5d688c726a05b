"""Chapter 08's protocol and grid (mlbook/experiments/protocol.py, head_to_head.py): the one threshold
rule on hand-worked scores, the grid's rows from the registry, its points and waves, the registered
questions, the published table read from its files. The chapter itself runs under nbval (smoke)."""
from __future__ import annotations

import pytest
import torch

from mlbook import claims, papers
from mlbook.experiments import head_to_head, protocol, shared
from mlbook.report import reference


def test_the_threshold_rule_on_hand_worked_scores():
    """Hold-out scores [[0.9, 0.2], [0.4, 0.6]], labels [[1, 0], [0, 1]]: the candidates are the four
    scores; t = 0.6 predicts exactly the labels (CF1 = OF1 = 1), t = 0.4 adds a false positive,
    t = 0.9 misses one: t* = 0.6. The rule reads ranks, so any increasing map of the scores moves t*
    with them (x 100 - 7: t* = 53), and a tie of the criterion keeps the smallest t."""
    scores = torch.tensor([[0.9, 0.2], [0.4, 0.6]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert protocol.threshold(scores, labels) == pytest.approx(0.6)
    assert protocol.threshold(scores * 100 - 7, labels) == pytest.approx(53.0)
    same = torch.tensor([[0.5, 0.5], [0.5, 0.5]])     # one candidate: every label predicted
    assert protocol.threshold(same, labels) == pytest.approx(0.5)
    ignore = torch.tensor([[False, False], [True, False]])   # the ignored 0.4 is no candidate
    assert protocol.threshold(scores, labels, ignore) == pytest.approx(0.6)


def test_the_protocol_of_each_profile():
    demo, full = protocol.protocol_for("demo"), protocol.protocol_for("full")
    assert demo.trunk == "small_cnn" and full.trunk == papers.COMPARISON_TRUNK == protocol.FULL_TRUNK
    assert demo.epochs == 15 and demo.batch_size == 64 and demo.lrs == (3e-3, 1e-2)
    assert full.epochs == 30 and full.lrs == (1e-3, 3e-3) and full.weight_decay == 0.0
    assert demo.fit_settings(0.01) == {"epochs": 15, "patience": 3, "batch_size": 64, "holdout": 0.1, "lr": 0.01}
    assert protocol.point_label(0.003, {}) == "lr=0.003"
    assert protocol.point_label(0.01, {"margin": 10.0}) == "lr=0.01; margin=10"
    assert protocol.point_label(0.0, {"k": 5}) == "k=5"


def test_the_rows_are_the_registry_s_methods_beside_the_chapter_s_own():
    rows = head_to_head.rows("demo")
    assert rows[0] == head_to_head.BASELINE and rows[-2:] == head_to_head.YARDSTICKS
    assert [p.method_label for p in papers.PAPERS] == [r for r in rows if r in head_to_head.paper_rows()]
    assert set(rows) == set(head_to_head.OWN_ROWS) | {p.method_label for p in papers.PAPERS}
    for p in papers.PAPERS:
        module = p.experiments()
        assert module.protocol_knobs("demo") and all(isinstance(k, dict) for k in module.protocol_knobs("demo"))
        assert p.published_row in reference(p.tables[0]).index


def test_the_grid_has_every_point_then_every_seed():
    seeds = [0, 1, 2]
    grid = head_to_head.grid("demo", seeds=seeds)
    rows = head_to_head.rows("demo")
    points = [r for r in grid if r.paper == "head_to_head" and "[" in r.row]
    finals = [r for r in grid if r.paper == "head_to_head" and "[" not in r.row and r.wave == 0]
    assert grid.index(finals[0]) > max(grid.index(p) for p in points)   # a row's seeds read its points: after them
    assert len(points) == 2 * sum(len(head_to_head.points(r, "demo")) for r in rows)
    assert all(r.train_seed == 0 for r in points)
    assert sorted(r.key for r in finals) == sorted((d, r, s) for d in head_to_head.DATASETS for r in rows for s in seeds)
    assert len({r.key for r in grid}) == len(grid)          # no two runs share a key
    # before any row: the shared backbone's maps, and a backbone of its own for every later seed
    assert {r.paper for r in grid if r.wave < 0} == {"features", "head_to_head"}
    assert sorted(r.key for r in grid if r.paper == "head_to_head" and r.wave < 0) == sorted(
        (d, head_to_head.BACKBONE, s) for d in head_to_head.DATASETS for s in seeds[1:])
    assert all(r.wave == 0 for r in points + finals)
    for r in points:   # every point's name parses back to its row and point
        name, point = head_to_head.parse_row(r.row, "demo")
        assert point in head_to_head.points(name, "demo")
    assert head_to_head.parse_row("Query2Label [lr=0.003]", "demo") == ("Query2Label", (0.003, {}))
    assert head_to_head.parse_row("KNN", "demo") == ("KNN", None)
    with pytest.raises(ValueError, match="unknown head-to-head row 'VGG'"):
        head_to_head.parse_row("VGG", "demo")
    with pytest.raises(ValueError, match="no such grid point of ASL"):
        head_to_head.parse_row("ASL [lr=0.5]", "demo")


def test_both_questions_are_registered_for_every_row_and_data_set():
    catalogue = claims.load(papers.COMPARISON_CHAPTER)
    rows = head_to_head.rows("demo")
    asked = {(c.dataset, c.better, head_to_head.question(c)) for c in catalogue}
    want = {(d, r, "beats BCE") for d in head_to_head.DATASETS for r in rows if r != head_to_head.BASELINE}
    want |= {(d, r, "near ASL") for d in head_to_head.DATASETS for r in rows if r != head_to_head.YARDSTICK}
    assert asked == want and len(catalogue) == len(want)
    for c in catalogue:
        assert not c.quoted and c.registered == "2026-12-07" and c.metrics == ("mAP",)
        assert (c.test, c.margin) == (("superiority", 0.0) if c.worse == head_to_head.BASELINE else ("equivalence", 1.0))
        # registered unpaired, with KNN fixed (no training seed); amended when every seed got its own
        # backbone: seed-paired, KNN varying with its seed's backbone; the original is kept beside
        assert c.paired and not c.fixed and c.amended == "2026-12-07" and c.amendment_reason
        assert not c.original().paired and c.original().fixed == (("KNN",) if "KNN" in (c.better, c.worse) else ())


def test_the_published_table_is_read_from_the_papers_and_the_yardsticks_files():
    table = head_to_head.published_yardsticks(reference)
    coco = table.loc["coco"]
    asl = coco[coco.index.str.startswith("ASL")]
    assert 86.6 in set(asl["mAP"]) and any("TResNet-L, 448 px" in t for t in asl["trunk"])
    cadm = coco.loc[[m for m in coco.index if m.startswith("CADM + LCE")][0]]
    assert (cadm["mAP"], cadm["CF1@3"], cadm["OF1@3"]) == (82.3, 73.5, 76.0)   # the paper's Table 1 row
    assert {"nuswide", "coco"} == set(table.index.get_level_values(0))
    assert table["source"].notna().all()


def test_a_training_seed_reads_a_backbone_of_its_own_in_the_demo_and_the_trunk_s_weights_in_full():
    demo, full = protocol.protocol_for("demo"), protocol.protocol_for("full")
    assert [demo.backbone_seed(s) for s in (0, 1, 2)] == [0, 1, 2]
    assert demo.backbone_seed(1, seed=5) == 6                   # the first seed reads the data seed's shared backbone
    assert full.backbone_seed(2) is None and not head_to_head.stages("full")
    plain = shared.context("coco", "smoke")
    with shared.backbone_seed(0):                               # the data seed's: the shared backbone, the same keys
        assert shared.context("coco", "smoke") is plain
    with shared.backbone_seed(1):                               # another backbone: every key under it names it
        other = shared.context("coco", "smoke")
        assert other.key == {**plain.key, "backbone_seed": 1} and other.holdout[1].equal(plain.holdout[1])
    assert shared.context("coco", "smoke") is plain
