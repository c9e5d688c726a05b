"""The result cache: a frozen config in, a cached result out (DESIGN.md, "Experiments and caching").

``run(method, config, compute, code=..., data=...)`` stores what ``compute``
returns under ``runs/<method>/<config-hash>/`` and, on a second call with the
same config, loads it instead of recomputing. A result is reused only if it was
made by the same code and from the same data: each entry records a fingerprint
of the source of the modules that produced it (``code``) and of the data it saw
(``data``); when either differs, the entry is recomputed and one line says why.
Those lines ("loaded", "recomputing", "computed in") go to the ``mlbook.cache`` logger at INFO,
which prints nothing unless a handler is attached (``log_to``): a chapter's output never shows
them, ``python -m mlbook train`` writes them to stderr.

Results hold tensors, numbers, strings, lists and dicts only, and are loaded
with ``torch.load(weights_only=True)``: no pickle in ``runs/`` runs code on load.
Every write goes to a temporary file in the same folder and is then renamed, so
a crash never leaves a half-written result or checkpoint behind. The run folder
is handed to ``compute`` for its checkpoint, so an interrupted run resumes.

Under ``torchrun`` every rank runs ``compute`` (training is data-parallel), rank 0
alone writes the entry, and the other ranks wait for it and return rank 0's result.
"""
from __future__ import annotations

import contextlib
import contextvars
import fcntl
import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any, Callable, Iterable

import torch

from .profiles import runs_dir

RESULT, META = "result.pt", "result.json"
log = logging.getLogger(__name__)


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
    """``torch.save`` to a temporary file renamed over ``path``. A full disk makes torch raise a bare
    "unexpected pos" RuntimeError; the error then names the file and the space left."""
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:
            free = shutil.disk_usage(Path(path).parent).free
            if free < 2 ** 30 or "unexpected pos" in str(err):
                raise OSError(f"writing {path} failed ({err}); {free / 2 ** 30:.2f} GiB free on its disk: "
                              "free some space (or set MLBOOK_RUNS to a larger disk) and rerun, finished runs "
                              "are kept") from err
            raise


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


# --- keys and fingerprints -----------------------------------------------------

def canonical(obj: Any) -> Any:
    """A config as stable JSON values (dataclasses, paths and tuples included)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return canonical(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and obj != obj:  # NaN
        return "nan"
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"config value {obj!r} of type {type(obj).__name__} cannot be hashed")


def config_hash(config: dict) -> str:
    text = json.dumps(canonical(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir(method: str, config: dict) -> Path:
    return runs_dir() / method / config_hash(config)


def _digest(text: str | bytes) -> str:
    return hashlib.sha256(text if isinstance(text, bytes) else text.encode()).hexdigest()[:16]


def _in_package(obj: Any) -> bool:
    name = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    return name == "mlbook" or name.startswith("mlbook.")


def _names(obj: Any) -> set[str]:
    """Every global or attribute name the code of a function or class refers to (nested
    functions, lambdas and methods included)."""
    codes = []
    if inspect.isclass(obj):
        for v in vars(obj).values():
            v = getattr(v, "__func__", v)
            if inspect.isfunction(v):
                codes.append(v.__code__)
    elif hasattr(obj, "__code__"):
        codes.append(obj.__code__)
    names: set[str] = set()
    while codes:
        c = codes.pop()
        names.update(c.co_names)
        codes += [k for k in c.co_consts if isinstance(k, CodeType)]
    return names


def _closure(obj: Any, out: dict[str, str]) -> None:
    """Add ``obj`` (a function or class of the package) and, transitively, what it refers to:
    the package's functions and classes it names (directly or as attributes of a package
    module), whole model files (``mlbook.models.*``, the papers' code) and the values of
    simple constants it reads (``_constant_name``)."""
    obj = inspect.unwrap(obj)
    key = f"{obj.__module__}.{obj.__qualname__}"
    if key in out:
        return
    out[key] = _digest(inspect.getsource(obj))
    scope = vars(sys.modules[obj.__module__])
    names = _names(obj)
    for name in sorted(names):
        value = scope.get(name)
        if isinstance(value, ModuleType):
            if not _in_package(value):
                continue
            if value.__name__.startswith("mlbook.models"):
                out.update(code_fingerprint([value, *_model_parts(value)]))
                continue
            for attr in sorted(names):
                member = getattr(value, attr, None)
                if (inspect.isfunction(member) or inspect.isclass(member)) and member.__module__ == value.__name__:
                    _closure(member, out)
        elif (inspect.isfunction(value) or inspect.isclass(value)) and _in_package(value):
            _closure(value, out)
        elif _constant_name(name) and (isinstance(value, (bool, int, float, str, tuple, frozenset)) or (
                isinstance(value, dict) and len(repr(value)) < 10_000)):
            out[f"{obj.__module__}.{name}"] = _digest(_stable_repr(value, out))


def _constant_name(name: str) -> bool:
    """A constant by the package's convention: UPPER_CASE (``_PROFILES``, ``MEAN``). A lower-case
    module-level name is run-time state (a memo such as ``word_vectors._models``, filled when a model
    loads) and a dunder is the module's own (``__file__``: the checkout's path): neither is code, and
    either would make a fingerprint depend on what the process did before or on where it runs."""
    return not name.startswith("__") and name.upper() == name


def _model_parts(module: ModuleType) -> list[ModuleType]:
    """The other model files a model file imports from at its top (a paper's model in parts:
    ``rlsd.py`` reads its localization layer from ``rlsd_localization.py``): they count whole with it."""
    parts = {getattr(v, "__name__", None) if isinstance(v, ModuleType) else getattr(v, "__module__", None)
             for v in vars(module).values() if isinstance(v, ModuleType) or inspect.isfunction(v) or inspect.isclass(v)}
    return [sys.modules[n] for n in sorted(p for p in parts if p and p.startswith("mlbook.models") and p != module.__name__)]


def _stable_repr(value: Any, out: dict[str, str]) -> str:
    """``repr`` of a constant that is the same in every process: functions and classes by name (the
    package's own added to the closure: a table of writers changes with its writers), sets sorted
    (string hashes differ between processes), no memory addresses."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_stable_repr(k, out)}: {_stable_repr(v, out)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        return type(value).__name__ + "(" + ", ".join(_stable_repr(v, out) for v in value) + ")"
    if isinstance(value, (set, frozenset)):
        return type(value).__name__ + "(" + ", ".join(sorted(_stable_repr(v, out) for v in value)) + ")"
    if inspect.isfunction(value) or inspect.isclass(value):
        if _in_package(value):
            _closure(value, out)
        return f"{value.__module__}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def code_fingerprint(items: Iterable[ModuleType | str | os.PathLike | Callable]) -> dict[str, str]:
    """{name: sha256 of its source, 16 hex} of the code a result was made by.

    A module or file counts whole (the papers' model files, the training loop); a function
    or class counts with what it executes (``_closure``): its own source and the package's
    functions, classes and constants it reaches, so editing a figure helper next to a run
    function does not invalidate the run's results. Computed once per process and set of
    functions (files are read again; ``inspect.getsource`` parses a class's whole module: a chapter asks for the same
    fingerprint hundreds of times).
    """
    items = tuple(items)
    if all(inspect.isfunction(m) or inspect.isclass(m) for m in items):
        return dict(_fingerprint(items))
    return dict(_fingerprint.__wrapped__(items))     # files are read again: they may have changed


@functools.lru_cache(maxsize=None)
def _fingerprint(items: tuple) -> tuple:
    out: dict[str, str] = {}
    for m in items:
        if inspect.isfunction(m) or inspect.isclass(m):
            _closure(m, out)
            continue
        path = Path(inspect.getfile(m) if isinstance(m, ModuleType) else m).resolve()
        try:
            name = str(path.relative_to(Path(__file__).resolve().parent.parent))
        except ValueError:
            name = path.name
        out[name] = _digest(path.read_bytes())
    return tuple(sorted((k, v) for k, v in out.items() if not _runner(k)))


def _runner(key: str) -> bool:
    """Whether a fingerprint name is this module's own: the runner that stores and loads a result
    (and its run-time state) is not the code that made it, so its names are dropped from every
    fingerprint (what its functions reach elsewhere in the package still counts). Entries stored
    before this rule name them; the comparison (``_changed``) ignores them, so they stay current."""
    return key.startswith(__name__ + ".")


def _changed(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and not _runner(k))


# --- the runner --------------------------------------------------------------

def _rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def load_result(folder: Path) -> dict:
    """A stored result, its tensors memory-mapped from the file (copy-on-write, the file is never
    written): a chapter loads every run of its grid, and the weights some results keep (RLSD's
    VGG16 fc6 of 411 MB, for the rows that start from CNN+LSTM) take no memory until read, so the
    chapter's process holds what it reads (scores, histories), not the grid's weights. The entry it
    came from is remembered (``entry_of``), so what is derived from it can be cached in turn."""
    result = torch.load(folder / RESULT, map_location="cpu", weights_only=True, mmap=True)
    result[ENTRY] = f"{folder.parent.name}/{folder.name}:{_digest((folder / META).read_bytes())}"
    return result


#: the key of a loaded result that names its stored entry: "<method>/<config hash>:<digest of its
#: fingerprints>" (a recomputed entry gets another); copies of the result made to add metrics carry it
ENTRY = "cache_entry"


def entry_of(result: dict) -> str | None:
    """The stored entry a loaded result (or a copy of it) came from, or None for a result that was
    never stored: a key for what is computed from loaded results (a chapter's claims, ``chapter.py``)."""
    return result.get(ENTRY)


_QUIET = contextvars.ContextVar("quiet", default=False)


@contextlib.contextmanager
def quiet():
    """Per-run "loaded" / "computed in" lines inside go to the log at DEBUG, not INFO (a grid's
    hundreds of runs; its caller reports)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def log_to(stream=None, level: int = logging.INFO) -> logging.Handler:
    """Show the cache's lines ("[cache] ...: loaded", "[run] ...: computed in 1.4 s") on ``stream``
    (default: stderr), as ``python -m mlbook train`` does; once per stream. Returns the handler."""
    stream = stream or sys.stderr
    for handler in log.handlers:
        if getattr(handler, "stream", None) is stream:
            return handler
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(min(level, log.level or level))
    return handler


def _say(verbose: bool, message: str) -> None:
    if verbose:
        log.log(logging.DEBUG if _QUIET.get() else logging.INFO, message)


def run(method: str, config: dict, compute: Callable[[Path], dict], *,
        code: Iterable[ModuleType | str] = (), data: dict | str | None = None,
        numerics: str | None = None, force: bool = False, verbose: bool = True) -> dict:
    """Return the cached result of ``compute`` for ``(method, config)``.

    ``compute(folder)`` gets the run folder (for checkpoints) and returns a dict
    of tensors, numbers, strings, lists and dicts; it is saved atomically to
    ``result.pt`` with ``config.json`` and ``result.json`` (fingerprints, wall time).
    ``code``: the modules whose source produced the result; ``data``: a fingerprint
    of the data it saw; ``numerics``: the numerics mode it ran in ("portable" or "native",
    ``mlbook.numerics``), whose bits differ. ``force=True`` (or ``MLBOOK_FORCE=1``) recomputes.
    The result carries ``wall_s``: the seconds ``compute`` took when it ran.
    """
    folder = run_dir(method, config)
    fingerprint = {"code": code_fingerprint(code), "data": canonical(data)}
    if numerics is not None:
        fingerprint["numerics"] = numerics
    force = force or os.environ.get("MLBOOK_FORCE", "") == "1"
    rank, world = _rank_world()
    probing = _PROBING.get()
    if probing:
        current = not force and _current(folder, fingerprint) == []
        if probing == "first" or not current:
            raise Probe(current)
        # probing "through": a stored result is loaded and the call goes on to what it asks next
    if world > 1:
        return _load_or_compute(method, config, compute, folder, fingerprint, force, verbose, rank)
    # one process: a chapter running beside another (chapter 02 reads the COCO backbone that
    # chapter 03 is training) waits for the entry instead of computing it a second time
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)      # released when the process ends, even by a crash
        try:
            return _load_or_compute(method, config, compute, folder, fingerprint, force, verbose, rank)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load_or_compute(method: str, config: dict, compute: Callable[[Path], dict], folder: Path, fingerprint: dict,
                     force: bool, verbose: bool, rank: int) -> dict:
    if (folder / RESULT).exists() and (folder / META).exists() and not force:
        changed = _current(folder, fingerprint)
        if changed == []:
            _say(verbose and rank == 0, f"[cache] {method}/{folder.name}: loaded")
            return load_result(folder)
        why = (f"{changed[0]} changed" if changed in (["data"], ["numerics"])
               else f"code changed ({', '.join(changed)})")
        _say(verbose and rank == 0, f"[cache] {method}/{folder.name}: {why}; recomputing")
        force = True
    if rank == 0:
        if force and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(canonical(config), indent=2, sort_keys=True), folder / "config.json")
    _barrier()
    start = time.perf_counter()
    result = compute(folder)
    if not isinstance(result, dict):
        raise TypeError(f"{method}: compute() must return a dict, got {type(result).__name__}")
    result = dict(result)
    result.setdefault("wall_s", time.perf_counter() - start)
    if rank == 0:
        atomic_torch_save(result, folder / RESULT)
        atomic_write_text(json.dumps({**fingerprint, "wall_s": result["wall_s"]}, indent=2), folder / META)
        _say(verbose, f"[run] {method}/{folder.name}: computed in {result['wall_s']:.1f} s")
    _barrier()
    # every rank returns the one result rank 0 wrote, read back as a later call reads it: a computed
    # run and a loaded one are the same object, and the compute's own tensors are freed on return
    return load_result(folder)


def is_cached(method: str, config: dict) -> bool:
    return (run_dir(method, config) / RESULT).exists()


def _current(folder: Path, fingerprint: dict) -> list[str] | None:
    """None if nothing is stored; else what changed since it was stored ([] = current):
    the changed code names, or ["data"], or ["numerics"]."""
    if not ((folder / RESULT).exists() and (folder / META).exists()):
        return None
    meta = json.loads((folder / META).read_text())
    changed = _changed(meta.get("code", {}), fingerprint["code"])
    if changed:
        return changed
    if meta.get("data") != fingerprint["data"]:
        return ["data"]
    return [] if meta.get("numerics") == fingerprint.get("numerics") else ["numerics"]


class Probe(Exception):
    """Raised by ``run`` while ``would_compute`` probes a call: is its result stored and current?"""

    def __init__(self, cached: bool):
        super().__init__(cached)
        self.cached = cached


# run-time state, never a constant: a context variable, which the code fingerprint does not read
_PROBING = contextvars.ContextVar("probing", default=False)


def would_compute(fn: Callable, *args, **kwargs) -> bool:
    """Whether ``fn(*args, **kwargs)`` would compute (not load) the first cached result it asks
    for; nothing is computed or loaded to find out (``mlbook.warm``'s quick look at a chapter)."""
    token = _PROBING.set("first")
    try:
        fn(*args, **kwargs)
    except Probe as probe:
        return not probe.cached
    finally:
        _PROBING.reset(token)
    return False


def probe_through(fn: Callable, *args, **kwargs) -> tuple[bool, object]:
    """(True, None) if ``fn(*args, **kwargs)`` would compute any cached result it asks for, else
    (False, its value). Stored results are loaded on the way, so a call that first loads a stage
    (a margin, a CNN+LSTM it starts from) and then computes its own row counts as one to compute:
    ``run_all`` sends those to its worker processes instead of computing them here one by one."""
    token = _PROBING.set("through")
    try:
        return False, fn(*args, **kwargs)
    except Probe:
        return True, None
    finally:
        _PROBING.reset(token)
