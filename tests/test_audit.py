"""The audit of the published tables (chapter 01)."""
import re
from pathlib import Path

import pandas as pd
import pytest

from mlbook import audit, report


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


# --- text against tables ------------------------------------------------------------

PAPERS = Path(__file__).resolve().parents[1].parent / "shared" / "papers"


def _claim(texts):
    text = audit.audit_text_claims()
    return text[text["quote"].str.contains(texts, regex=False)]


def test_known_text_disagreements_are_found():
    text = audit.audit_text_claims()
    ofr = text[(text["table"] == "order_free_rnn_table2_coco") & (text["column"] == "CF1")].iloc[0]
    assert (ofr["row_a"], ofr["row_b"], ofr["stated"]) == ("Ours", "Resnet-baseline", 4.1)
    assert ofr["from table"] == pytest.approx(8.7) and ofr["finding"] == "disagrees"
    cadm = _claim("3.2% mAP lower").iloc[0]
    assert (cadm["row_a"], cadm["row_b"], cadm["column"]) == ("Ours (lambda=0.5)", "Ours (lambda=0)", "mAP")
    assert cadm["stated"] == 3.2 and cadm["from table"] == pytest.approx(2.4) and cadm["finding"] == "disagrees"


def test_correct_text_claims_agree():
    value = _claim("It achieves the 87.3% mAP").iloc[0]
    assert value["kind"] == "value" and value["from table"] == 87.3 and value["finding"] == "agrees"
    rlsd = _claim("The gap between the Multi-CNN and our RLSD").iloc[0]
    assert rlsd["from table"] == pytest.approx(4.3) and rlsd["finding"] == "agrees"
    lstm = _claim("the gap between Multi-CNN and CNN+LSTM").iloc[0]
    assert lstm["from table"] == pytest.approx(0.5) and lstm["finding"] == "agrees"


def test_every_claim_points_at_a_real_table_row_and_column():
    claims = audit.text_claims()
    index = report.reference_index()
    papers = dict(zip(index["file"].str[:-4], index["paper"]))
    assert set(claims["kind"]) <= set(audit.KINDS)
    assert set(audit.audit_text_claims()["finding"]) <= set(audit.FINDINGS)
    for _, c in claims.iterrows():
        assert c["table"] in report.reference_files(), c["table"]
        assert c["paper"] == papers[c["table"]], c["quote"]
        if c["kind"] == "higher":  # an order without a number
            assert c["stated"] == "> 0", c["quote"]
        else:
            assert f"{c['stated']}%" in c["quote"], c["quote"]  # the stated number is the quote's
            float(c["stated"])
        if not c["column"]:  # about something outside the table's cells: must say so
            assert c["note"] and not c["row_a"] and not c["row_b"], c["quote"]
            continue
        table = report.reference(c["table"])
        assert c["column"] in table.columns, (c["table"], c["column"])
        assert c["row_a"] in table.index, (c["table"], c["row_a"])
        if c["kind"] in ("difference", "higher"):
            table_b = report.reference(c["table_b"] or c["table"])
            assert c["row_b"] in table_b.index and c["column"] in table_b.columns, (c["table_b"], c["row_b"])
        else:
            assert not c["row_b"], c["quote"]


@pytest.mark.skipif(not PAPERS.exists(), reason="../shared/papers is not present (a user's clone)")
def test_every_quote_is_in_its_paper():
    files = {"Order-Free RNN": "order_free_rnn_aaai2018",
             "Regional Latent": "rlsd_regional_latent_semantic_dependencies",
             "Image-dependent": "image_dependent_transformation_ranking",
             "Class-aware": "cadm_label_correlation_embedding_icme2019"}

    def norm(s):  # join words broken at a line-end hyphen, collapse white space
        return re.sub(r"\s+", " ", re.sub(r"-\s*\n\s*", "-", s))

    texts = {k: norm((PAPERS / f"{v}.txt").read_text()) for k, v in files.items()}
    for _, c in audit.text_claims().iterrows():
        key = next(k for k in files if c["paper"].startswith(k))
        assert c["quote"] in texts[key], c["quote"]


def test_text_claim_rounding_rule_on_a_hand_case():
    # a difference of printed values is ±0.1; '4.1' is ±0.05, '4' is ±0.5; a value is ±0.05
    assert audit.stated_half("4") == 0.5 and audit.stated_half("4.1") == pytest.approx(0.05)
    assert audit.claim_tolerance("difference", "4.1") == pytest.approx(0.15)
    assert audit.claim_tolerance("difference", "4") == pytest.approx(0.6)
    assert audit.claim_tolerance("value", "84") == pytest.approx(0.55)
    cols = ["paper", "section", "quote", "table", "kind", "row_a", "row_b", "column", "stated", "note"]
    hand = pd.DataFrame([  # Order-Free RNN, COCO: Ours − Softmax CF1 = 62.1 − 58.0 = 4.1
        ["p", "s", "q", "order_free_rnn_table2_coco", "difference", "Ours", "Softmax", "CF1", s, ""]
        for s in ("4.2", "4.3", "4", "3.5", "5")] + [
        ["p", "s", "q", "order_free_rnn_table2_coco", "value", "Ours", "", "CF1", "62.2", ""],
        ["p", "s", "q", "order_free_rnn_table2_coco", "value", "Ours", "", "mAP", "60", ""],
        ["p", "s", "q", "order_free_rnn_table2_coco", "value", "Nobody", "", "CF1", "60", ""],
    ], columns=cols)
    out = audit.audit_text_claims(hand)
    assert list(out["finding"]) == ["agrees",  # 4.2 ± 0.05 meets 4.1 ± 0.1
                                    "disagrees",  # 4.3 ± 0.05 misses 4.1 ± 0.1 by 0.05
                                    "agrees",  # 4 ± 0.5 meets [4.0, 4.2]
                                    "disagrees",  # 3.5 is printed with a decimal: ± 0.05 only
                                    "disagrees",  # 5 ± 0.5 misses [4.0, 4.2] by 0.3
                                    "agrees",  # value: 62.2 ± 0.05 meets 62.1 ± 0.05
                                    "not checkable", "not checkable"]
    assert out["discrepancy"].iloc[1] == pytest.approx(0.2)
    assert out["beyond tolerance"].iloc[1] == pytest.approx(0.05)
    assert out["tolerance"].iloc[2] == pytest.approx(0.6) and out["beyond tolerance"].iloc[4] == pytest.approx(0.3)
    assert "no column 'mAP'" in out["why"].iloc[6] and "no row 'Nobody'" in out["why"].iloc[7]
