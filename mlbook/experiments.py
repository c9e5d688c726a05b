"""Experiments: a frozen config in, a cached result out (DESIGN.md, "Experiments and caching").

``run(method, config, compute)`` stores what ``compute`` returns under
``runs/<method>/<config-hash>/result.pt`` and, on a second call with the same
config, loads it instead of recomputing. The run folder is also handed to
``compute`` so it can keep a checkpoint there and resume after a crash.
Every write goes to a temporary file in the same folder and is then renamed,
so a crash never leaves a half-written result or checkpoint behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .profiles import runs_dir


# --- atomic writes ---------------------------------------------------------

@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


# --- config hashing --------------------------------------------------------

def _canonical(obj: Any) -> Any:
    """Make a config JSON-serialisable in a stable way (dataclasses, paths, tuples)."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _canonical(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN
        return "nan"
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"config value {obj!r} of type {type(obj).__name__} cannot be hashed")


def config_hash(config: dict) -> str:
    text = json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir(method: str, config: dict) -> Path:
    return runs_dir() / method / config_hash(config)


# --- the runner --------------------------------------------------------------

def run(
    method: str,
    config: dict,
    compute: Callable[[Path], dict],
    *,
    force: bool = False,
    verbose: bool = True,
) -> dict:
    """Return the cached result of ``compute`` for ``(method, config)``.

    ``compute(folder)`` gets the run folder (for checkpoints and extras) and
    returns a dict of tensors/arrays/numbers; it is saved atomically to
    ``result.pt`` along with ``config.json``. ``force=True`` (or the
    environment variable ``MLBOOK_FORCE=1``) recomputes and overwrites; a
    checkpoint left by an interrupted run is resumed unless forced.
    """
    folder = run_dir(method, config)
    result_file = folder / "result.pt"
    force = force or os.environ.get("MLBOOK_FORCE", "") == "1"
    if result_file.exists() and not force:
        result = torch.load(result_file, map_location="cpu", weights_only=False)
        if verbose:
            print(f"[cache] {method}/{folder.name}: loaded")
        return result
    if force and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(_canonical(config), indent=2, sort_keys=True), folder / "config.json")
    start = time.perf_counter()
    result = compute(folder)
    if not isinstance(result, dict):
        raise TypeError(f"{method}: compute() must return a dict, got {type(result).__name__}")
    result = dict(result)
    result.setdefault("wall_s", time.perf_counter() - start)
    atomic_torch_save(result, result_file)
    if verbose:
        print(f"[run] {method}/{folder.name}: computed in {result['wall_s']:.1f} s")
    return result


def is_cached(method: str, config: dict) -> bool:
    return (run_dir(method, config) / "result.pt").exists()


def cli_method(run_one: Callable[..., dict], name: str) -> Callable[..., dict]:
    """A ``python -m mlbook train --method`` entry: ``run_one(name, dataset, profile, ...)``
    with the test metrics also at the top level of the result."""
    def train(dataset, profile, root=None, seed=0, device="auto", **kw) -> dict:
        result = run_one(name, dataset, profile, root, seed, device, **kw)
        return {**result, **result["metrics"]}
    train.__name__ = train.__qualname__ = f"train_{name}"
    return train
