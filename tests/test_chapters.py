"""Chapter hygiene: every .py chapter is paired with an in-sync .ipynb that papermill accepts."""
from pathlib import Path

import jupytext
import nbformat
import pytest

from mlbook.reproduce import chapters, select, strip_injected

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters(ROOT)


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_chapters_and_the_toc_lists_them_all():
    assert len(CHAPTERS) >= 2
    toc = (ROOT / "_toc.yml").read_text()
    for py in CHAPTERS:
        assert f"book/{py.stem}" in toc, f"{py.name} is not in _toc.yml"


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_pair_in_sync(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.exists(), f"{py.name} has no paired notebook (run: jupytext --sync {py})"
    source = jupytext.read(py)
    paired = nbformat.read(ipynb, as_version=4)
    assert _cells(source) == _cells(paired), f"{ipynb.name} is out of sync with {py.name}: jupytext --sync"


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_kernelspec_parameters_and_no_injected_cell(py):
    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "papermill needs a kernelspec"
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert sum("parameters" in t for t in tags) == 1, "exactly one cell tagged 'parameters'"
    assert not any("injected-parameters" in t for t in tags), "a papermill injected cell was committed"
    # per-cell run metadata would be copied into the .py by jupytext --sync
    assert not any("papermill" in c.metadata or "execution" in c.metadata for c in nb.cells)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'os.environ.get("MLBOOK_PROFILE", "demo")' in params.source


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_committed_notebook_has_outputs_and_no_errors(py):
    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any(c.get("outputs") for c in code), f"{py.stem}.ipynb was never executed"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{py.stem}.ipynb carries an error output"
    assert "Agg" not in py.read_text(), "matplotlib.use('Agg') hides figures from the notebook"


@pytest.mark.parametrize("py", CHAPTERS, ids=lambda p: p.stem)
def test_committed_notebook_holds_no_machine_path(py):
    import re

    text = py.with_suffix(".ipynb").read_text()
    leaks = re.findall(r"(?:/work/|/tmp/|/root/|/home/|/Users/)[^\s\"']*", text)
    assert not leaks, f"{py.stem}.ipynb holds machine paths: {sorted(set(leaks))[:3]}"


def test_strip_injected_and_select():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("a = 2", metadata={"tags": ["injected-parameters"]}),
    ])
    assert strip_injected(nb) == 1 and len(nb.cells) == 1
    assert select(CHAPTERS, None) == CHAPTERS
    assert select(CHAPTERS, "00") == [CHAPTERS[0]]
    with pytest.raises(ValueError, match="no chapter matches"):
        select(CHAPTERS, "no_such_chapter")


def test_stages_run_the_preparing_chapters_first_and_the_introduction_last():
    from mlbook.reproduce import stages

    names = [[p.stem[:2] for p in stage] for stage in stages(CHAPTERS)]
    # papers: longest first (demo_seconds), then the comparison chapter, which reads their stages
    assert names == [["03", "01", "02"], ["06", "07", "05", "04", "08"], ["00"]]
    assert [[p.stem[:2] for p in s] for s in stages(select(CHAPTERS, "00,04"))] == [["04"], ["00"]]


def test_paper_chapters_run_one_at_a_time_with_every_core(monkeypatch):
    from mlbook.reproduce import stage_lanes, stage_workers, stages

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    prepare, papers, intro = stages(CHAPTERS)
    assert [stage_lanes(s, "demo") for s in (prepare, papers, intro)] == [2, 1, 1]
    assert [stage_workers(s, stage_lanes(s, "demo")) for s in (prepare, papers, intro)] == [2, 2, 2]
    assert stage_lanes(prepare, "full") == 1 and stage_lanes(papers, "demo", lanes=2) == 2
    assert stage_workers(papers, 2) == 1                                    # --lanes 2: the cores shared


class _Probe:
    """A finished ``mlbook.warm`` process as ``lane_plan`` reads it."""

    def __init__(self, out: str, returncode: int = 0):
        self.out, self.returncode, self.read = out, returncode, False

    def communicate(self, timeout=None):
        self.read = True
        return self.out, ""


def test_warm_paper_chapters_run_side_by_side_after_the_cold_ones(monkeypatch):
    from mlbook.reproduce import lane_plan, stages

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    probe = _Probe('["04_order_free_rnn", "06_rlsd"]')
    plan = lane_plan(stages(CHAPTERS), "demo", None, probe)
    assert [[p.stem[:2] for p in s] for s in next(plan)[0:1]] == [["03", "01", "02"]] and not probe.read
    rest = [([p.stem[:2] for p in s], lanes) for s, lanes in plan]          # the probe is read at the papers
    assert probe.read and rest == [(["07", "05", "08"], 1), (["06", "04"], 2), (["00"], 1)]
    failed = [([p.stem[:2] for p in s], n) for s, n in lane_plan(stages(CHAPTERS), "demo", None, _Probe("", 1))]
    assert failed == [(["03", "01", "02"], 2), (["06", "07", "05", "04", "08"], 1), (["00"], 1)]


def test_chapter_08_is_prefetched_at_the_lowest_priority_beside_the_paper_chapters(monkeypatch):
    import argparse
    import subprocess

    from mlbook import reproduce

    started = []

    class _Popen:
        def __init__(self, command, **kw):
            started.append((command, kw))

    monkeypatch.setattr(subprocess, "Popen", _Popen)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    prepare, paper_stage, intro = reproduce.stages(CHAPTERS)
    args = argparse.Namespace(lanes=None, profile="demo")
    assert reproduce.start_prefetch(prepare, CHAPTERS, args, {}) is None        # not before the backbones exist
    assert reproduce.start_prefetch(paper_stage, CHAPTERS, args, {}) is not None
    command, kw = started[-1]
    assert command[1:4] == ["-m", "mlbook.warm", "--prefetch"] and kw["stdout"] == subprocess.DEVNULL
    assert kw["start_new_session"] and kw["preexec_fn"] is reproduce.lowest_priority   # a CPU group of its own, nice 19
    without_08 = [c for c in CHAPTERS if not c.stem.startswith("08")]
    assert reproduce.start_prefetch(paper_stage, without_08, args, {}) is None  # nothing to prefetch
    assert reproduce.start_prefetch(paper_stage, CHAPTERS, argparse.Namespace(lanes=2, profile="demo"), {}) is None
    assert reproduce.start_prefetch(paper_stage, CHAPTERS, argparse.Namespace(lanes=None, profile="full"), {}) is None
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert reproduce.start_prefetch(paper_stage, CHAPTERS, args, {}) is None    # no idle core to take
    assert len(started) == 1


def test_the_warm_probe_finds_nothing_warm_before_the_data_exist(tmp_path):
    """``python -m mlbook.warm`` as reproduce starts it: with no generated data yet (the preparing chapters
    are writing them) every chapter is cold, and the probe writes no data of its own."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "MLBOOK_DATA": str(tmp_path / "data"), "MLBOOK_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-m", "mlbook.warm", json.dumps({"profile": "smoke"})], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [] and not (tmp_path / "data").exists()


def test_experiments_files_and_chapter_code_cells_stay_small():
    """Issue 14's limits: no experiments file over 500 lines, no chapter code cell over 40 lines."""
    import jupytext

    long_files = {p.name: n for p in (ROOT / "mlbook" / "experiments").glob("*.py")
                  if (n := len(p.read_text().splitlines())) > 500}
    assert not long_files
    long_cells = {(py.name, i): n for py in CHAPTERS for i, c in enumerate(jupytext.read(py).cells)
                  if c.cell_type == "code" and (n := len(c.source.splitlines())) > 40}
    assert not long_cells
