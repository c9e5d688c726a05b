"""A chapter's claims are evaluated once per set of stored results (``chapter.cached_claim_rows``): a warm
rerun reads them back, a retrained run or a changed claim evaluates them afresh, and evidence built
by hand (no stored entry) is never cached."""
from __future__ import annotations

import types

import pytest
import torch

from mlbook import cache, chapter, claims
from mlbook.experiments import shared

CALLS = []


def _claim_values(claim, evidence, weights):
    CALLS.append(claim.id)
    out = {}
    for side, row in ((0, claim.better), (1, claim.worse)):
        seeds = [evidence.results[(claim.dataset, row, s)]["score"] for s in evidence.seeds]
        out.setdefault("mAP", [None, None])[side] = torch.stack([s + 0 * weights[:, 0].sum() for s in seeds])[
            :, None].expand(-1, weights.shape[0]) + weights[:, :3].sum(1) * 1e-3
    return {m: tuple(v) for m, v in out.items()}


def _claim_options(claim, evidence):
    return {}


def _module(tmp_path):
    file = tmp_path / "fake_paper.py"
    file.write_text("# the fake paper's experiments module\n")
    return types.SimpleNamespace(claim_values=_claim_values, claim_options=_claim_options, __file__=str(file),
                                 __name__="fake_paper")


def _claim(**change):
    fields = dict(id="04.fake.coco", chapter="04_order_free_rnn", dataset="coco", text="A beats B",
                  source="here", better="A", worse="B", metrics=("mAP",), registered="2026-12-07")
    return claims.Claim(**{**fields, **change})


def _stored(row, seed, score, force=False):
    return cache.run("fake_rows", {"row": row, "seed": seed}, lambda folder: {"score": torch.tensor(score)},
                     force=force, verbose=False)


def _evidence(results):
    data = {"coco": types.SimpleNamespace(test=list(range(30)))}
    return shared.Evidence(results, data, (0, 1, 2))


@pytest.fixture
def stored(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    CALLS.clear()
    return {("coco", row, s): _stored(row, s, score + 0.01 * s)
            for row, score in (("A", 0.6), ("B", 0.5)) for s in range(3)}


def test_a_second_evaluation_reads_the_stored_rows(stored, tmp_path):
    module, catalogue = _module(tmp_path), [_claim()]
    first = chapter.cached_claim_rows("04_order_free_rnn", catalogue, _evidence(stored), module, 0)
    assert CALLS and all(cache.entry_of(r) for r in stored.values())
    CALLS.clear()
    again = chapter.cached_claim_rows("04_order_free_rnn", catalogue, _evidence(stored), module, 0)
    assert CALLS == [] and again == first and first[0]["verdict"] == claims.SUPPORTED


def test_a_retrained_run_or_a_changed_claim_evaluates_afresh(stored, tmp_path):
    module = _module(tmp_path)
    chapter.cached_claim_rows("04_order_free_rnn", [_claim()], _evidence(stored), module, 0)
    CALLS.clear()
    chapter.cached_claim_rows("04_order_free_rnn", [_claim(test="non-inferiority", margin=1.0, margin_source="why")],
                         _evidence(stored), module, 0)
    assert CALLS
    CALLS.clear()
    stored[("coco", "A", 0)] = _stored("A", 0, 0.3, force=True)          # retrained: another entry
    rows = chapter.cached_claim_rows("04_order_free_rnn", [_claim()], _evidence(stored), module, 0)
    assert CALLS and rows[0]["measurements"][0]["delta"] < 10


def test_evidence_built_by_hand_is_never_cached(stored, tmp_path):
    by_hand = {k: {"score": v["score"]} for k, v in stored.items()}
    for _ in range(2):
        CALLS.clear()
        chapter.cached_claim_rows("04_order_free_rnn", [_claim()], _evidence(by_hand), _module(tmp_path), 0)
        assert CALLS
