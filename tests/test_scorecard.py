"""Chapter 00's scorecard on a figures folder the paper chapters have not filled (yet): one line says what
to run first, and the scorecard and its figure draw what is there instead of raising."""
import shutil
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
    assert card["claims"].sum() == 0 and len(card) == 5 and card.index[-1] == book.BOOK_OWN
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
