"""The experiment cache: reuse, invalidation, force, atomic writes."""
import json
import os

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
