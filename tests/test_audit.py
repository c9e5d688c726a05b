"""The audit of the published tables (chapter 01)."""
import pytest

from mlbook import audit


def test_harmonic_range_brackets_the_exact_value():
    lo, hi = audit.harmonic_range(50.0, 50.0)
    assert lo == pytest.approx(49.95) and hi == pytest.approx(50.05)
    assert audit.f1_consistent(43.9, 53.4, 48.2)
    assert not audit.f1_consistent(43.9, 53.4, 47.6)


def test_digit_edits_and_typo_candidates():
    assert 42.9 in audit.digit_edits(43.9) and 34.9 in audit.digit_edits(43.9)  # substitution, swap
    assert "P 43.9→42.9" in audit.typo_candidates(43.9, 53.4, 47.6)


def test_known_findings():
    f1 = audit.audit_f1()
    bad = f1[f1["finding"] == "inconsistent"]
    assert set(zip(bad["file"], bad["method"])) == {
        ("order_free_rnn_table1_nuswide", "KNN"), ("order_free_rnn_table2_coco", "WARP"),
        ("rlsd_table3_coco_top3", "WARP"), ("rlsd_table3_coco_top3", "MCG-CNN+LSTM")}
    assert (bad["kind"] == "overall").all()
    below = f1[f1["finding"].str.startswith("below")]
    assert (below["gap"] < 0).all() and set(below["file"]) == {"cadm_table1_coco", "cadm_table2_nuswide"}
    cross = audit.audit_cross_paper()
    dis = cross[cross["finding"] == "disagree"]
    assert list(zip(dis["method"], dis["metric"])) == [("KNN", "OP")]
    assert (audit.audit_map()["finding"] == "consistent").all()
