"""The claims registry as a referee reads it: every row dated, an amended test shown beside its
original, no claim twice, and the first page scoring each paper on its own sentences only."""
import datetime
import math
from pathlib import Path

import torch

from mlbook import claims, papers
from mlbook.figures import book

ROOT = Path(__file__).resolve().parents[1]


def test_every_registry_row_carries_its_registration_date():
    for c in claims.load():
        assert datetime.date.fromisoformat(c.registered) <= datetime.date.today(), c.id
        if c.amended:   # an amendment keeps its original test and says why
            assert c.amended >= c.registered and c.amendment_reason and c.original() != c, c.id


def test_the_known_amendments_keep_their_original_tests():
    merged = claims.get("04.merged_beams.coco")
    assert merged.test == "equivalence" and merged.original().test == "superiority"
    complementary = claims.get("07.complementary.nuswide")
    assert complementary.original().worse == "Jaccard 0.5" and complementary.original().fixed == ("Jaccard 0.5",)
    assert complementary.original().test == "superiority" and complementary.test == "non-inferiority"


def test_an_amended_claim_renders_both_verdicts():
    """Δ ≈ +3 with a tight interval: the amended equivalence (±1) contradicts, the original superiority supports."""
    claim = claims.get("04.merged_beams.coco")
    rng = torch.Generator().manual_seed(0)
    base = torch.randn(3, 51, generator=rng, dtype=torch.float64) * 0.001
    values = {m: (0.53 + base, 0.50 + base.flip(0)) for m in claim.metrics}
    row = claims.evaluate(claim, values)
    assert row["verdict"] == claims.CONTRADICTED and row["original verdict"] == claims.SUPPORTED
    cell = row["original test (amended claims)"]
    assert "superiority" in cell and "supported" in cell and claim.amendment_reason in cell
    table = claims.table([row])
    assert table.loc[0, "registered"] == claim.registered and "supported" in table.loc[0, "original test (amended claims)"]


def test_no_claim_repeats_another():
    """Two claims comparing the same rows on the same metrics with the same test are one claim
    (05.lce_embed_only repeated 05.embedding: the embed-only row's predictions are λ = 0's)."""
    keys = [(c.dataset, c.better, c.worse, c.metrics, c.test, c.margin, c.direction) for c in claims.load()]
    assert len(keys) == len(set(keys))
    assert not [c for c in claims.load() if c.id.startswith("05.lce_embed_only")]


def test_the_scorecard_counts_only_the_papers_sentences_per_paper():
    figures = ROOT / "figures"
    card = book.scorecard(figures)
    table = book.read_claims(figures)
    is_quoted = book.quoted(table)
    names = book.paper_chapters()
    for chapter, name in names.items():
        expected = int((is_quoted & (table["chapter"] == chapter)).sum())
        assert card.loc[f"[{name}]({chapter})", "claims"] == expected
    head = table["chapter"] == papers.COMPARISON_CHAPTER
    assert card.loc[book.BOOK_OWN, "claims"] == int((~is_quoted & ~head).sum()) > 0
    assert card.loc[book.HEAD_TO_HEAD, "claims"] == int(head.sum()) > 0       # chapter 08's questions, apart
    assert card["claims"].sum() == len(table)


def test_the_expected_chance_verdicts_follow_the_level():
    n, wrong = book.expected_wrong(ROOT / "figures")
    table = book.read_claims(ROOT / "figures")
    assert n == int((table["verdict"] != claims.NOT_TESTABLE).sum()) > 0
    assert math.isclose(wrong, n * (1 - claims.LEVEL))
