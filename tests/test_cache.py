"""The experiment cache: reuse, invalidation, force, atomic writes."""
import json
import os
from pathlib import Path

import pytest
import torch

from mlbook import cache as experiments


@pytest.fixture()
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("MLBOOK_FORCE", raising=False)
    return tmp_path / "runs"


def test_second_call_loads_instead_of_recomputing(runs):
    calls = []

    def compute(folder):
        calls.append(folder)
        return {"x": torch.arange(3), "score": 0.5}

    a = experiments.run("m", {"lr": 0.1}, compute, verbose=False)
    b = experiments.run("m", {"lr": 0.1}, compute, verbose=False)
    assert len(calls) == 1
    assert torch.equal(a["x"], b["x"]) and b["score"] == 0.5
    folder = experiments.run_dir("m", {"lr": 0.1})
    assert folder.parent == runs / "m"
    assert json.loads((folder / "config.json").read_text()) == {"lr": 0.1}


def test_config_change_invalidates_and_key_order_does_not(runs):
    calls = []
    compute = lambda folder: calls.append(1) or {"n": len(calls)}  # noqa: E731
    experiments.run("m", {"a": 1, "b": 2}, compute, verbose=False)
    experiments.run("m", {"b": 2, "a": 1}, compute, verbose=False)
    assert len(calls) == 1
    experiments.run("m", {"a": 1, "b": 3}, compute, verbose=False)
    assert len(calls) == 2
    assert experiments.config_hash({"a": 1}) != experiments.config_hash({"a": 1.5})


def test_force_recomputes(runs, monkeypatch):
    calls = []
    compute = lambda folder: calls.append(1) or {"n": len(calls)}  # noqa: E731
    experiments.run("m", {"a": 1}, compute, verbose=False)
    assert experiments.run("m", {"a": 1}, compute, force=True, verbose=False)["n"] == 2
    monkeypatch.setenv("MLBOOK_FORCE", "1")
    assert experiments.run("m", {"a": 1}, compute, verbose=False)["n"] == 3


def test_failed_compute_leaves_no_result(runs):
    def boom(folder):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        experiments.run("m", {"a": 1}, boom, verbose=False)
    assert not experiments.is_cached("m", {"a": 1})
    assert experiments.run("m", {"a": 1}, lambda f: {"ok": True}, verbose=False)["ok"]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "ckpt.pt"
    experiments.atomic_torch_save({"v": 1}, target)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        experiments.atomic_torch_save({"v": Unpicklable()}, target)
    assert torch.load(target)["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind


def test_unhashable_config_is_rejected(runs):
    with pytest.raises(TypeError, match="cannot be hashed"):
        experiments.config_hash({"f": object()})


def test_compute_must_return_a_dict(runs):
    with pytest.raises(TypeError, match="must return a dict"):
        experiments.run("m", {"a": 1}, lambda f: 3, verbose=False)
    assert os.listdir(runs / "m")  # the folder exists, but no result.pt
    assert not experiments.is_cached("m", {"a": 1})


# --- fingerprints (code and data), weights_only, torchrun ranks -----------------------

def test_code_and_data_fingerprints_recompute_only_what_changed(runs, tmp_path, caplog):
    caplog.set_level("INFO", logger="mlbook.cache")
    model_a, model_b = tmp_path / "model_a.py", tmp_path / "model_b.py"
    model_a.write_text("X = 1\n")
    model_b.write_text("Y = 1\n")
    calls = []
    compute = lambda tag: (lambda folder: calls.append(tag) or {"n": len(calls)})  # noqa: E731
    experiments.run("a", {"k": 1}, compute("a"), code=[model_a], data="d1")
    experiments.run("b", {"k": 1}, compute("b"), code=[model_b], data="d1")
    assert calls == ["a", "b"]
    model_a.write_text("X = 2\n")            # edit one model file: only its rows recompute
    experiments.run("a", {"k": 1}, compute("a"), code=[model_a], data="d1")
    experiments.run("b", {"k": 1}, compute("b"), code=[model_b], data="d1")
    assert calls == ["a", "b", "a"]
    assert "code changed (model_a.py)" in caplog.text
    caplog.clear()
    experiments.run("b", {"k": 1}, compute("b"), code=[model_b], data="d2")   # other data
    assert calls == ["a", "b", "a", "b"]
    assert "data changed" in caplog.text


def test_the_cache_lines_go_to_the_log_not_to_stdout(runs, capsys, caplog):
    """A chapter's output cells are its stdout and stderr: the "[cache] loaded" / "[run] computed in"
    lines must not reach them (they go to the ``mlbook.cache`` logger, silent without a handler)."""
    import io

    caplog.set_level("INFO", logger="mlbook.cache")
    experiments.run("m", {"a": 1}, lambda folder: {"v": 1})
    experiments.run("m", {"a": 1}, lambda folder: {"v": 1})
    out = capsys.readouterr()
    assert "[cache]" not in out.out + out.err and "[run]" not in out.out + out.err
    assert "[run] m/" in caplog.text and "computed in" in caplog.text and ": loaded" in caplog.text
    caplog.clear()
    caplog.set_level("DEBUG", logger="mlbook.cache")
    with experiments.quiet():                   # a grid's runs: DEBUG, below what log_to shows
        experiments.run("m", {"a": 1}, lambda folder: {"v": 1})
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    caplog.set_level("INFO", logger="mlbook.cache")
    stream = io.StringIO()                      # what `python -m mlbook train` attaches (to stderr)
    handler = experiments.log_to(stream)
    try:
        assert experiments.log_to(stream) is handler                         # once per stream
        experiments.run("m", {"a": 1}, lambda folder: {"v": 1})
    finally:
        experiments.log.removeHandler(handler)
    assert stream.getvalue().startswith("[cache] m/") and stream.getvalue().endswith(": loaded\n")


class Custom:
    """An object a pickle would rebuild by running code."""


def test_results_load_without_running_pickled_code(runs):
    folder = experiments.run_dir("m", {"x": 1})
    experiments.run("m", {"x": 1}, lambda f: {"ok": torch.ones(2)}, verbose=False)
    torch.save({"evil": Custom()}, folder / experiments.RESULT)        # a pickle with an object in runs/
    with pytest.raises(Exception):
        experiments.load_result(folder)                                 # weights_only=True refuses it


def _rank_main(rank, world, init_file, runs_dir, out):
    import torch.distributed as dist

    os.environ["MLBOOK_RUNS"] = runs_dir
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    result = experiments.run("ddp", {"k": 1}, lambda folder: {"value": float(rank + 1)}, verbose=False)
    torch.save(result["value"], os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_two_gloo_ranks_write_one_result_and_return_it(runs, tmp_path):
    import torch.multiprocessing as mp

    out = tmp_path / "out"
    out.mkdir()
    mp.spawn(_rank_main, args=(2, str(tmp_path / "init"), str(runs), str(out)), nprocs=2, join=True)
    values = [torch.load(out / f"rank{r}.pt") for r in range(2)]
    assert values == [1.0, 1.0]                                          # every rank returns rank 0's result
    folders = list((runs / "ddp").iterdir())
    assert len(folders) == 1 and experiments.load_result(folders[0])["value"] == 1.0


# --- the code a run executes (not its whole file) -----------------------------------------

def _load_probe(path, source: str):
    import importlib.util
    import sys

    path.write_text(source)
    spec = importlib.util.spec_from_file_location("mlbook._fingerprint_probe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


PROBE = '''
LIMIT = {limit}

def helper(x):
    return x + LIMIT

def run(x):
    return helper(x) * 2

def figure(x):
    return "{label}"
'''


def test_fingerprint_covers_what_a_run_calls_and_nothing_else(tmp_path):
    import sys

    path = tmp_path / "probe.py"
    try:
        base = experiments.code_fingerprint([_load_probe(path, PROBE.format(limit=1, label="a")).run])
        assert {"mlbook._fingerprint_probe.run", "mlbook._fingerprint_probe.helper",
                "mlbook._fingerprint_probe.LIMIT"} <= set(base)
        assert "mlbook._fingerprint_probe.figure" not in base
        figure_edit = experiments.code_fingerprint([_load_probe(path, PROBE.format(limit=1, label="b")).run])
        assert figure_edit == base                                  # editing a figure does not retrain
        constant_edit = experiments.code_fingerprint([_load_probe(path, PROBE.format(limit=2, label="a")).run])
        assert constant_edit != base                                # a constant the run reads does
    finally:
        sys.modules.pop("mlbook._fingerprint_probe", None)


def test_fingerprint_of_a_real_run_reaches_the_training_loop_and_the_model_file():
    from mlbook.experiments import order_free_rnn

    fp = experiments.code_fingerprint([order_free_rnn.run])
    assert "mlbook.train.fit" in fp and "mlbook/models/order_free_rnn.py" in fp
    assert "mlbook.experiments.shared.holdout_split" in fp
    assert not any(k.startswith("mlbook.figures") for k in fp)
    assert "mlbook.experiments.order_free_rnn.claim_values" not in fp


def test_would_compute_probes_without_computing_or_loading(runs):
    calls = []

    def row(tag):
        return experiments.run("probe", {"tag": tag}, lambda folder: calls.append(tag) or {"v": 1}, verbose=False)

    assert experiments.would_compute(row, "a") and calls == []      # not stored: it would compute
    row("a")
    assert calls == ["a"] and not experiments.would_compute(row, "a")
    assert experiments.would_compute(row, "a") is False and calls == ["a"]
    assert experiments.would_compute(lambda: None) is False          # asks for nothing cached


def test_probe_through_counts_a_row_behind_a_stored_stage(runs):
    """A row that first loads a stored stage and then computes its own entry is one to compute
    (``run_all`` sends it to a worker); ``would_compute`` stops at the stage and says it is stored."""
    calls = []

    def stage():
        return experiments.run("probe", {"stage": 1}, lambda folder: calls.append("stage") or {"v": 2}, verbose=False)

    def row(tag):
        base = stage()["v"]
        return experiments.run("probe", {"row": tag}, lambda folder: calls.append(tag) or {"v": base + 1}, verbose=False)

    stage()
    assert calls == ["stage"]
    assert experiments.would_compute(row, "a") is False               # the first entry it asks for is stored
    assert experiments.probe_through(row, "a") == (True, None)        # but its own is not
    assert calls == ["stage"]                                         # nothing computed to find out
    row("a")
    computes, value = experiments.probe_through(row, "a")
    assert not computes and value["v"] == 3 and calls == ["stage", "a"]


def test_probing_state_never_enters_a_code_fingerprint(runs):
    """``would_compute`` probes with a run-time flag that ``cache.run`` reads; the flag must not be
    part of the fingerprint of what reads it, or a fingerprint first computed while probing (and kept
    for the process) would differ from one computed outside, and a warm run would recompute."""
    from mlbook.experiments import shared

    fresh = experiments._fingerprint.__wrapped__          # not the per-process memo
    outside = {f: fresh((f,)) for f in (experiments.run, shared.cached)}
    inside = {}

    def probe():
        inside.update({f: fresh((f,)) for f in outside})
        assert experiments._PROBING.get()                  # measured while the flag is set
        experiments.run("probe", {"k": 1}, lambda folder: {"v": 1}, verbose=False)

    assert experiments.would_compute(probe) is True
    assert inside == outside
    for fp in outside.values():
        assert not any("_PROBING" in k or k.startswith("mlbook.cache.") for k, _ in fp)
    # what the runner reaches elsewhere in the package still counts (the fingerprint loses only
    # the runner's own names)
    assert "mlbook.experiments.shared.cached" in dict(outside[shared.cached])
    assert "mlbook.profiles.runs_dir" in dict(outside[shared.cached])


def test_entries_stored_with_the_runners_names_stay_current(runs):
    """Results stored when the fingerprint still named the cache's own code (``mlbook.cache.run``,
    ``mlbook.cache._PROBING``) are loaded, not recomputed."""
    from mlbook.profiles import runs_dir

    calls = []

    def compute(folder):
        calls.append(1)
        return {"v": 1}

    experiments.run("m", {"a": 1}, compute, code=[runs_dir], verbose=False)
    meta_path = experiments.run_dir("m", {"a": 1}) / experiments.META
    meta = json.loads(meta_path.read_text())
    meta["code"].update({"mlbook.cache.run": "0" * 16, "mlbook.cache._PROBING": "1" * 16})
    meta_path.write_text(json.dumps(meta))
    experiments.run("m", {"a": 1}, compute, code=[runs_dir], verbose=False)
    assert calls == [1]


def test_code_fingerprint_is_the_same_in_every_process():
    """A constant's digest must not hold a memory address or a hash-seeded set order, or every
    chapter's process would find the shared backbone stale and train it again."""
    import subprocess
    import sys

    prog = ("import hashlib, json; from mlbook import cache; from mlbook.experiments import features, rlsd; "
            "print(hashlib.sha256(json.dumps([cache.code_fingerprint((f,)) for f in "
            "(features.shared_backbone, rlsd.run)], sort_keys=True).encode()).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in (1, 2)}
    assert len(outs) == 1


def test_a_full_disk_names_the_file_and_the_space_left(tmp_path, monkeypatch):
    """torch.save on a full disk raises a bare "unexpected pos" RuntimeError; the error names the file."""
    from mlbook.cache import atomic_torch_save

    def full_disk(obj, f):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 484162112 vs 484162004")

    monkeypatch.setattr(torch, "save", full_disk)
    target = tmp_path / "runs" / "result.pt"
    with pytest.raises(OSError, match=r"writing .*result\.pt failed .* GiB free on its disk"):
        atomic_torch_save({"x": 1}, target)
    assert not target.exists() and not list(target.parent.glob(".*.tmp"))   # no partial file left


def _rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc")
def test_results_are_memory_mapped_so_weights_they_keep_take_no_memory_until_read(runs):
    """A chapter loads every run of its grid; RLSD's results keep 484 MB of weights each. Loaded (and
    freshly computed) results map their tensors from the file: RSS grows by what is read only."""
    big = 64 * 2 ** 20                                                  # 256 MB of float32 weights

    def compute(folder):
        return {"state_dict": {"fc6": torch.ones(big)}, "scores": torch.full((10, 3), 0.25)}

    before = _rss_bytes()
    computed = experiments.run("m", {"big": 1}, compute, verbose=False)
    loaded = experiments.run("m", {"big": 1}, compute, verbose=False)
    assert _rss_bytes() - before < 64 * 2 ** 20                          # neither holds the 256 MB
    assert torch.equal(computed["scores"], loaded["scores"]) and loaded["scores"][0, 0] == 0.25
    assert loaded["state_dict"]["fc6"][-5:].tolist() == [1.0] * 5        # read on demand, the same values


def test_run_time_state_never_enters_a_code_fingerprint():
    """A module-level memo (MiniLM's loaded model, the data fingerprints, AP rows) fills as a process
    works: were its value part of a fingerprint, a warm run (the model never loaded: the vectors are
    cached) would find every ranking run of chapter 07 stale and train it again. Memos are lower-case
    names by the package's convention, and ``_constant_name`` leaves them (and ``__file__``) out."""
    from mlbook import papers, word_vectors
    from mlbook.experiments import transformation_ranking

    fresh = experiments._fingerprint.__wrapped__
    before = dict(fresh((transformation_ranking.run, word_vectors._minilm_model)))
    word_vectors._models["sentinel"] = object()
    try:
        after = dict(fresh((transformation_ranking.run, word_vectors._minilm_model)))
    finally:
        word_vectors._models.pop("sentinel")
    assert before == after
    every = {}
    for paper in papers.PAPERS:
        every.update(fresh((papers.experiment_module(paper.key).run,)))
    assert not [k for k in every if k.rsplit(".", 1)[1].startswith("__")]      # no __file__ (a path), no __name__
    assert not [k for k in every if k.endswith(("._models", "._fingerprints", "._ap_rows", "._measured"))]


def test_module_level_memos_are_lower_case():
    """An empty dict, list or set bound at module level is run-time state (a memo): it must carry a
    lower-case name, so that no code fingerprint reads it as a constant."""
    import ast

    package = Path(experiments.__file__).parent
    offenders = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
                continue
            value = node.value
            empty = ((isinstance(value, ast.Dict) and not value.keys)
                     or (isinstance(value, (ast.List, ast.Set)) and not value.elts)
                     or (isinstance(value, ast.Call) and getattr(value.func, "id", "") in ("dict", "list", "set")))
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if empty and any(name.upper() == name for name in names):
                offenders.append(f"{path.name}:{node.lineno} {names}")
        for node in ast.walk(ast.parse(path.read_text())):   # a name rebound through `global` is state too
            if isinstance(node, ast.Global):
                offenders += [f"{path.name}:{node.lineno} global {name}" for name in node.names if name.upper() == name]
    assert not offenders, offenders


def _compute_slowly(runs_path: str, marks: str) -> float:
    os.environ["MLBOOK_RUNS"] = runs_path

    def compute(folder):
        with open(marks, "a") as fh:
            fh.write("computed\n")
        import time
        time.sleep(1.0)
        return {"v": 2.0}
    return experiments.run("shared_entry", {"a": 1}, compute, verbose=False)["v"]


def test_two_processes_asking_for_one_entry_compute_it_once(runs, tmp_path):
    """A chapter beside another (02 reads the COCO backbone that 03 trains) waits for the entry the
    other is computing (a lock per entry) instead of computing it a second time."""
    import multiprocessing
    marks = tmp_path / "marks.txt"
    with multiprocessing.get_context("fork").Pool(2) as pool:
        values = pool.starmap(_compute_slowly, [(str(runs), str(marks))] * 2)
    assert values == [2.0, 2.0]
    assert marks.read_text().count("computed") == 1
