"""Chapter 00's scorecard on a figures folder the paper chapters have not filled (yet): one line says what
to run first, and the scorecard and its figure draw what is there instead of raising."""
import shutil

import pytest
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # a test draws no window; the chapters themselves never force a backend

from mlbook.figures import book  # noqa: E402  (after the backend choice)

ROOT = Path(__file__).resolve().parents[1]


def test_an_empty_folder_says_what_to_run_first_in_one_line(tmp_path):
    line = book.what_to_run_first(tmp_path, "smoke")
    assert "\n" not in line and "chapter(s) 04,05,06,07" in line
    assert "python -m mlbook reproduce --profile smoke --chapters 04,05,06,07" in line
    card = book.scorecard(tmp_path, label="smoke")
    assert card["claims"].sum() == 0 and len(card) == 6 and list(card.index[-2:]) == [book.BOOK_OWN, book.HEAD_TO_HEAD]
    assert book.replication_card(tmp_path)["intervals"].sum() == 0
    book.scorecard_figure(tmp_path)


def test_a_partly_run_folder_names_only_the_missing_chapters(tmp_path):
    """04 ran to its end; 05 stopped after its measurements, before its claims table (the figure once
    raised KeyError 'id' here)."""
    shutil.copytree(ROOT / "figures" / "04_order_free_rnn", tmp_path / "04_order_free_rnn")
    (tmp_path / "05_cadm").mkdir()
    shutil.copy(ROOT / "figures" / "05_cadm" / "claims_measurements.csv", tmp_path / "05_cadm")
    assert "chapter(s) 05,06,07 " in book.what_to_run_first(tmp_path)
    book.scorecard_figure(tmp_path)
    (tmp_path / "04_order_free_rnn" / "table_claims.csv").unlink()
    book.scorecard_figure(tmp_path)


def test_the_committed_figures_need_nothing_first():
    assert book.what_to_run_first(ROOT / "figures") is None


# --- the power split, the replication reading and the figure, on a folder written by hand -------------

def write_chapter(folder, claims_rows, measurements):
    """One chapter's two claims files, as ``report.save_claims`` writes them (ids the registry does not
    hold: a claim is the paper's sentence when its text is quoted)."""
    import pandas as pd
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(claims_rows).to_csv(folder / "table_claims.csv", index=False)
    pd.DataFrame(measurements).to_csv(folder / "claims_measurements.csv", index=False)


def measurement(claim_id, verdict, metric, low, high, published, mde, metric_verdict, direction="higher"):
    return {"id": claim_id, "data set": "coco", "metric": metric, "test": "superiority", "margin": 0.0,
            "delta": (low + high) / 2, "low": low, "high": high, "se": (high - low) / 4, "df": 10.0,
            "seeds_better": 3, "seeds_worse": 3, "n_resamples": 1000, "published_delta": published, "mde": mde,
            "metric_verdict": metric_verdict, "verdict": verdict, "direction": direction, "too_few_seeds": False}


@pytest.fixture
def by_hand(tmp_path):
    """04: a claim the run could have seen at the paper's Δ (consistent), one it could not (the paper's Δ
    above the interval), one without a published Δ, one with two metrics (CF1 supported alone, the paper's
    Δ below its interval; OF1 not resolved, no published Δ), one not testable, and a book's own question on
    epochs, lower is better, contradicted."""
    nr = "not resolved"
    claims_rows = [{"id": "04.t_seen.coco", "claim": "“seen”", "verdict": nr},
                   {"id": "04.t_unseen.coco", "claim": "“unseen”", "verdict": nr},
                   {"id": "04.t_none.coco", "claim": "“none”", "verdict": nr},
                   {"id": "04.t_two.coco", "claim": "“two”", "verdict": nr},
                   {"id": "04.t_untestable.coco", "claim": "“untestable”", "verdict": "not testable"},
                   {"id": "04.t_epochs.coco", "claim": "fewer epochs (the book's reading)", "verdict": "contradicted"}]
    measurements = [measurement("04.t_seen.coco", nr, "CF1", -1.0, 3.0, 2.0, 1.5, nr),
                    measurement("04.t_unseen.coco", nr, "CF1", -1.0, 3.0, 6.0, 7.0, nr),
                    measurement("04.t_none.coco", nr, "CF1", -1.0, 3.0, None, 4.0, nr),
                    measurement("04.t_two.coco", nr, "CF1", 1.0, 3.0, -1.0, 0.5, "supported"),
                    measurement("04.t_two.coco", nr, "OF1", -0.5, 1.5, None, 1.0, nr),
                    measurement("04.t_epochs.coco", "contradicted", "epochs to the best hold-out loss", 1.0, 4.0,
                                None, 1.0, "contradicted", direction="lower")]
    write_chapter(tmp_path / "04_order_free_rnn", claims_rows, measurements)
    return tmp_path


def test_not_resolved_is_split_by_power_per_paper(by_hand):
    card = book.scorecard(by_hand, label="demo")
    paper = card.loc["[Order-Free RNN (AAAI 2018)](04_order_free_rnn)"]
    assert [paper[f"{w} (demo)"] for w in book.SCORE_WORDS] == [0, 0, 1, 1, 2, 1]
    assert paper["claims"] == 5
    own = card.loc[book.BOOK_OWN]
    assert own["contradicted (demo)"] == 1 and own["claims"] == 1
    assert card["claims"].sum() == 6 and list(card.columns[:len(book.SCORE_WORDS)]) == [
        f"{w} (demo)" for w in book.SCORE_WORDS]
    assert book.expected_wrong(by_hand) == (5, pytest.approx(5 * 0.05))


def test_the_replication_reading_counts_intervals_per_paper(by_hand):
    from mlbook.claims import replication as rp
    card = book.replication_card(by_hand, label="demo")
    paper = card.loc["[Order-Free RNN (AAAI 2018)](04_order_free_rnn)"]
    assert [paper[f"{w} (demo)"] for w in rp.READINGS] == [1, 1, 1, 2] and paper["intervals"] == 5
    assert card.loc[book.BOOK_OWN, f"{rp.NO_PUBLISHED} (demo)"] == 1
    assert card.loc["[CADM + LCE (ICME 2019)](05_cadm)", "intervals"] == 0


def test_the_figure_colours_each_metric_by_its_own_verdict_one_unit_per_axis(by_hand):
    from matplotlib.colors import to_hex
    fig = book.scorecard_figure(by_hand)
    axes = {ax.get_title(loc="left"): ax for ax in fig.axes}
    points = axes["04 · Order-Free RNN (AAAI 2018)"]
    bars = {tuple(line.get_xdata()): to_hex(line.get_color()) for line in points.lines if len(line.get_xdata()) == 2}
    assert bars[(1.0, 3.0)] == to_hex("tab:green")       # t_two's CF1: supported alone, the claim not resolved
    assert bars[(-0.5, 1.5)] == to_hex(book.COLOURS["not resolved"])
    assert "epochs" not in points.get_xlabel() and "points" in points.get_xlabel()
    epochs = next(ax for title, ax in axes.items() if "epochs" in title)
    assert "epochs" in epochs.get_xlabel() and len(epochs.get_yticklabels()) == 1
    assert "(lower better)" in epochs.get_yticklabels()[0].get_text()
    assert to_hex(next(line for line in epochs.lines if len(line.get_xdata()) == 2).get_color()) == to_hex("tab:red")
    sizes = [t.get_fontsize() for ax in fig.axes for t in [*ax.get_yticklabels(), *ax.get_xticklabels(),
                                                           ax.xaxis.label, ax.title]]
    sizes += [t.get_fontsize() for legend in fig.legends for t in legend.get_texts()]
    assert min(sizes) >= 8 and fig.get_figwidth() <= 8.5


def test_the_head_to_head_questions_have_their_own_line(by_hand):
    """Chapter 08's claims (the book's own questions under one protocol) count on their own line of the
    scorecard and of the replication reading, neither a paper's nor the other own questions'."""
    from mlbook.claims import replication as rp
    from mlbook.papers import COMPARISON_CHAPTER
    rows = [{"id": "08.asl_beats_bce.coco", "claim": "ASL has a higher mAP", "verdict": "supported"},
            {"id": "08.knn_near_asl.coco", "claim": "KNN within 1 point", "verdict": "not resolved"}]
    write_chapter(by_hand / COMPARISON_CHAPTER, rows,
                  [measurement("08.asl_beats_bce.coco", "supported", "mAP", 0.5, 2.0, None, 1.0, "supported"),
                   measurement("08.knn_near_asl.coco", "not resolved", "mAP", -3.0, 1.0, None, 2.0, "not resolved")])
    card = book.scorecard(by_hand, label="demo")
    line = card.loc[book.HEAD_TO_HEAD]
    assert line["supported (demo)"] == 1 and line["claims"] == 2
    assert card.loc[book.BOOK_OWN, "claims"] == 1 and card["claims"].sum() == 8
    reading = book.replication_card(by_hand, label="demo")
    assert reading.loc[book.HEAD_TO_HEAD, f"{rp.NO_PUBLISHED} (demo)"] == 2
    assert reading.loc[book.BOOK_OWN, "intervals"] == 1
