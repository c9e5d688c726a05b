"""Reporting: the packaged published tables, side-by-side tables, claims, files."""
from pathlib import Path

import pandas as pd
import pytest

from mlbook import report

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def test_every_indexed_table_is_packaged():
    index = report.reference_index()
    assert len(index) == 11
    assert sorted(index["file"].str[:-4]) == report.reference_files()
    table = report.reference("order_free_rnn_table2_coco")
    assert table.loc["Ours", "CF1"] == 62.1 and list(table.columns) == ["CP", "CR", "CF1", "OP", "OR", "OF1"]


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/reference is not present (a user's clone)")
def test_package_copy_matches_shared_reference():
    shared = sorted(SHARED.glob("*.csv"))
    assert shared, f"no reference tables in {SHARED}"   # an empty folder must not pass by checking nothing
    for csv in shared:
        packaged = Path(report.__file__).parent / "reference" / csv.name
        assert packaged.read_text() == csv.read_text(), csv.name


def test_unknown_table_names_the_alternatives():
    with pytest.raises(KeyError, match="cadm_table1_coco"):
        report.reference("nope")


def test_side_by_side_paren_and_delta():
    published = pd.DataFrame({"CP": [50.0, 40.0], "CF1": [45.0, None]}, index=pd.Index(["A", "B"], name="method"))
    reproduced = pd.DataFrame({"CP": [51.26], "CF1": [44.0], "mAP": [60.0]}, index=["A"])
    paren = report.side_by_side(reproduced, published)
    assert list(paren.columns) == ["CP", "CF1", "mAP"]
    assert paren.loc["A", "CP"] == "51.3 (50.0)"
    assert paren.loc["B", "CP"] == "– (40.0)" and paren.loc["B", "CF1"] == "– (–)"
    assert paren.loc["A", "mAP"] == "60.0 (–)"
    delta = report.side_by_side(reproduced, published, style="delta")
    assert delta.loc["A", "CP Δ"] == pytest.approx(1.3)
    assert delta.loc["A", "CF1 Δ"] == pytest.approx(-1.0)


def test_save_table_and_tidy_comparison_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_FIGURES", str(tmp_path))
    df = pd.DataFrame({"x": [1.0]}, index=["row"])
    report.save_table(df, "99_test", 1, "caption", show=False)
    assert (tmp_path / "99_test" / "table_1.csv").read_text().splitlines()[1] == "row,1.0"
    assert (tmp_path / "99_test" / "table_1.md").read_text().startswith("caption")
    reproduced = pd.DataFrame({"CP": [50.0, 40.0]}, index=["A", "B"])
    published = pd.DataFrame({"CP": [48.7, None]}, index=["A", "C"])
    report.save_comparison(reproduced, published, "99_test", 2, "cap", dataset="coco (generated)", show=False)
    tidy = pd.read_csv(tmp_path / "99_test" / "table_2.csv")
    assert list(tidy.columns) == ["table", "data set", "method", "metric", "reproduced", "published", "delta"]
    a = tidy.set_index("method").loc["A"]
    assert a["reproduced"] == 50.0 and a["published"] == 48.7 and a["delta"] == pytest.approx(1.3)
    assert pd.isna(tidy.set_index("method").loc["B", "published"])
    assert "50.0 (48.7)" in (tmp_path / "99_test" / "table_2.md").read_text()


def test_save_figure_writes_png(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setenv("MLBOOK_FIGURES", str(tmp_path))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    path = report.save_figure(fig, "99_test", 2, "line")
    assert path.name == "fig_2_line.png" and path.read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)
