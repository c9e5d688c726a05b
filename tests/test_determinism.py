"""Every number is the same whatever the worker count (issue: bit-identical reruns).

The RLSD and transformation-ranking grids (smoke) are computed twice from cold caches, once
by one worker (everything in this process) and once by two forked workers, and every tensor
and number of every result must be identical, bit for bit.
"""
from __future__ import annotations

import math

import pytest
import torch

from mlbook import cache
from mlbook.experiments import rlsd, shared
from mlbook.experiments import transformation_ranking as ranking
from mlbook.profiles import get_profile


def _flatten(obj, prefix=""):
    """(path, leaf) pairs of a result: tensors, numbers and strings."""
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            if k not in ("wall_s", "seconds", "ms_per_image", "train_seconds", "train_img_s", cache.ENTRY):
                yield from _flatten(obj[k], f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(
            torch.nan_to_num(a, nan=-12345.0), torch.nan_to_num(b, nan=-12345.0))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def _grid():
    p = get_profile("smoke")
    g = [r for r in rlsd.grid(p, ("voc",), [0, 1]) if r.row not in ("KNN", "Softmax")]
    keep = {"Ours", "Ours (random vectors)", "Ours zero-shot (split 0)"}
    g += [r for r in ranking.grid(p, ("nuswide",), [0, 1])
          if r.wave < 1 and "split 1" not in r.row and "split 2" not in r.row or r.row in keep]
    return p, g


def _compute(tmp_path, monkeypatch, name: str, workers: int) -> dict:
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / name))
    shared._splits.cache_clear()   # the data of the previous MLBOOK_DATA folder
    shared._context.cache_clear()
    p, g = _grid()
    setting = shared.Setting(p, {"voc": None, "nuswide": None}, 0, "cpu", None, {})
    return shared.run_all(g, setting, n_workers=workers)


@pytest.mark.slow
def test_one_worker_and_two_workers_give_identical_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    one = _compute(tmp_path, monkeypatch, "runs1", 1)
    two = _compute(tmp_path, monkeypatch, "runs2", 2)
    assert one.keys() == two.keys() and len(one) > 20
    different = []
    for key in one:
        a, b = dict(_flatten(one[key])), dict(_flatten(two[key]))
        assert a.keys() == b.keys(), key
        different += [f"{key} {path}" for path in a if not _same(a[path], b[path])]
    assert not different, f"{len(different)} values differ, e.g. {different[:5]}"


@pytest.mark.parametrize("threads", [1, 2])
def test_pinned_computation_ignores_the_callers_thread_count(threads):
    """A pinned computation runs on the profile's thread count, whatever the caller set."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with shared.pinned(get_profile("smoke")):
            assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(old)
