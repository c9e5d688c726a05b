"""Object proposals from a proposal tool, for the MCG-CNN+LSTM baseline (RLSD, Sec. IV-C-c).

The paper feeds the top-256 MCG proposals of each image to the regional LSTM. MCG
is a MATLAB tool with no maintained Python package, so the book substitutes
selective search (Uijlings et al. 2013, the paper's [43]), another single-object
proposal method, from OpenCV contrib (``opencv-contrib-python-headless``), or reads a
user's own precomputed proposals (``read_proposal_files``: e.g. the published MCG boxes of COCO).

- ``selective_search_boxes``: one image, deterministic (OpenCV ranks with C ``rand()``,
  which is reseeded before every search).
- ``selective_search_many``: many images over worker processes, each image's boxes
  cached in a small file, so an interrupted run resumes and a rerun only reads.

Boxes are float32 (x1, y1, x2, y2) in pixels of the original image, ranked best first.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .. import numerics

MIN_SIDE = 128   # selective search's graph segmentation needs more than a demo image's 48 px
CACHE_VERSION = 1   # bump when the boxes a setting produces change


_opencv_one_thread = False   # set once per process; a forked child inherits it


def _ximgproc():
    """OpenCV with its contrib modules, on one thread. OpenCV's thread pool does not survive a fork:
    a forked ``run_all`` worker hung for ever in its first OpenCV call once the parent had searched on
    several threads. So mlbook never lets the pool start (processes are the parallelism), and sets
    this before any OpenCV work in the process, never again after (the setting itself hung). In the
    portable numerics (``mlbook.numerics``) OpenCV's CPU-dispatched code (its AVX2/AVX-512 and IPP
    paths: blurs and colour conversions inside the search) is off too, so the boxes do not depend on
    the CPU."""
    global _opencv_one_thread
    try:
        import cv2
    except ImportError:
        raise ImportError("selective search needs OpenCV with the contrib modules: "
                          "pip install opencv-contrib-python-headless") from None
    if not hasattr(cv2, "ximgproc"):
        raise ImportError("this OpenCV has no ximgproc (contrib) module: uninstall opencv-python(-headless) "
                          "and pip install opencv-contrib-python-headless")
    if not _opencv_one_thread:
        cv2.setNumThreads(1)
        cv2.setUseOptimized(not (numerics.portable_enabled() and numerics.environment_in_force()))
        _opencv_one_thread = True
    return cv2


def _seed_c_rand(seed: int = 0) -> None:
    """Seed the C library's ``rand()``, which OpenCV's selective search ranks its regions with: the
    same image then gives the same boxes whatever ran before it in the process."""
    for name in (None, ctypes.util.find_library("c"), "msvcrt"):
        try:
            ctypes.CDLL(name).srand(seed)
            return
        except (OSError, AttributeError, TypeError):
            continue


def selective_search_boxes(image, top: int | None = 256, mode: str = "fast", min_side: int = MIN_SIDE,
                           size: int | None = None) -> torch.Tensor:
    """Selective search proposals [n <= top, 4] as float (x1, y1, x2, y2) pixels, in its ranking order.

    ``image``: a PIL image or an H x W x 3 uint8 RGB array. ``mode``: "fast" or
    "quality" (OpenCV's two strategies) or "single". ``size``: search a copy shrunk to that
    shorter side when it is larger (the cost grows with the pixels searched); then images whose shorter side is
    still below ``min_side`` are upsampled for the search. Boxes are returned in the pixels of
    ``image`` as given, clipped to it.
    """
    cv2 = _ximgproc()
    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {rgb.shape} {rgb.dtype}")
    H, W = rgb.shape[:2]
    scale = min(1.0, size / min(H, W)) if size else 1.0     # ``size`` only ever shrinks
    scale = max(scale, min_side / min(H, W))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])                 # OpenCV's channel order
    if scale != 1:
        bgr = cv2.resize(bgr, (max(1, round(W * scale)), max(1, round(H * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    sy, sx = bgr.shape[0] / H, bgr.shape[1] / W
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    strategies = {"fast": ss.switchToSelectiveSearchFast, "quality": ss.switchToSelectiveSearchQuality,
                  "single": ss.switchToSingleStrategy}
    if mode not in strategies:
        raise ValueError(f"mode must be one of {sorted(strategies)}, not {mode!r}")
    strategies[mode]()
    _seed_c_rand(0)
    rects = ss.process()[:top]                                  # (x, y, w, h), ranked
    boxes = torch.as_tensor(np.asarray(rects, dtype=np.float32).reshape(-1, 4))
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2] /= sx
    boxes[:, 1::2] /= sy
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
    return boxes


# --- many images: worker processes and a per-image cache ----------------------------------------------

def settings_folder(top: int, mode: str, min_side: int, size: int | None) -> str:
    """The cache sub-folder of one search setting (with the OpenCV version that computes it)."""
    cv2 = _ximgproc()
    return f"ss_{mode}_top{top}_min{min_side}_size{size or 'orig'}_cv{cv2.__version__}_v{CACHE_VERSION}"


def _search_file(path: str, top: int, mode: str, min_side: int, size: int | None) -> np.ndarray:
    from .base import open_rgb

    return selective_search_boxes(open_rgb(path), top, mode, min_side, size).numpy()


def _write_atomic(boxes: np.ndarray, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, boxes, allow_pickle=False)
    os.replace(tmp, target)


def _search_and_cache(path: str, top: int, mode: str, min_side: int, size: int | None,
                      cache_file: str | None) -> np.ndarray:
    """One image's boxes, written to its cache file (in the worker: finished images survive an interrupt)."""
    boxes = _search_file(path, top, mode, min_side, size)
    if cache_file is not None:
        _write_atomic(boxes, Path(cache_file))
    return boxes


def _one_thread() -> None:
    """Worker initialiser: one OpenCV and torch thread per process (the processes are the parallelism)."""
    _ximgproc()
    torch.set_num_threads(1)


def _cache_files(image_paths: list[str], cache_dir, settings: str) -> list[Path] | None:
    if cache_dir is None:
        return None
    names = [Path(p).name for p in image_paths]
    seen: dict[str, str] = {}
    for name, p in zip(names, image_paths):
        if seen.setdefault(name, p) != p:
            raise ValueError(f"two images share the file name {name} ({seen[name]}, {p}): the proposal "
                             "cache is keyed by file name; use one cache_dir per folder")
    folder = Path(cache_dir) / settings
    folder.mkdir(parents=True, exist_ok=True)
    return [folder / f"{name}.npy" for name in names]


def _read_cached(file: Path) -> np.ndarray | None:
    try:
        boxes = np.load(file, allow_pickle=False)
    except (FileNotFoundError, ValueError, OSError, EOFError):
        return None                                         # absent or unreadable: compute again
    return boxes if boxes.ndim == 2 and boxes.shape[1] == 4 else None


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def selective_search_many(image_paths, *, top: int | None = 256, mode: str = "fast", min_side: int = MIN_SIDE,
                          workers: int | None = None, cache_dir=None, size: int | None = None) -> list[torch.Tensor]:
    """``selective_search_boxes`` of every image file, over worker processes: [n_i <= top, 4] per image,
    in ``image_paths`` order, in pixels of the original images.

    ``workers``: processes (default one per core), each with one OpenCV thread; the boxes do not
    depend on the number of workers or the order (every search reseeds OpenCV's ``rand()``).
    ``cache_dir``: each image's boxes are kept as ``<cache_dir>/<settings>/<image file name>.npy``
    (``settings_folder``: mode, top, min_side, size, OpenCV version), written atomically as each
    image finishes, so an interrupted run resumes where it stopped and a rerun only reads.
    ``size``: search the image shrunk to that shorter side when larger (None: the original size); the boxes
    are still returned in the original image's pixels. Selective search's cost grows with the
    pixels searched: on genuine COCO photos (640 x ~480) "fast" took 1.7-2.1 s per image per
    worker at the original size, 0.6 s at ``size=320`` and 0.26-0.33 s at ``size=224``
    (one thread per worker, on a 2-core CPU); COCO 2014's 123k images at the original size
    are about 60 core-hours.
    """
    _ximgproc()
    paths = [str(p) for p in image_paths]
    files = _cache_files(paths, cache_dir, settings_folder(top, mode, min_side, size))
    out: list[np.ndarray | None] = [None] * len(paths)
    if files is not None:
        out = [_read_cached(f) for f in files]
    todo = [i for i, b in enumerate(out) if b is None]
    jobs = [(paths[i], top, mode, min_side, size, None if files is None else str(files[i])) for i in todo]
    n = min(workers or default_workers(), len(jobs))
    if n <= 1:
        for i, job in zip(todo, jobs):
            out[i] = _search_and_cache(*job)   # OpenCV is on one thread (_ximgproc)
    else:
        context = multiprocessing.get_context("spawn")   # fork in a threaded caller (a test runner, a kernel) can deadlock
        with ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=_one_thread) as pool:
            for i, boxes in zip(todo, pool.map(_search_and_cache, *zip(*jobs), chunksize=1)):
                out[i] = boxes
    return [torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32)) for b in out]


# --- a user's own proposals ---------------------------------------------------------------------------

def _parse_box_line(line: str, file: Path, number: int, W: int, H: int) -> list[float]:
    """One ``x1 y1 x2 y2`` line -> the box clipped to the W x H image; an error names file and line."""
    fields = line.split()
    where = f"{file}, line {number}"
    if len(fields) != 4:
        raise ValueError(f"{where}: expected 4 numbers 'x1 y1 x2 y2', got {len(fields)} fields: {line.strip()!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in fields)
    except ValueError:
        raise ValueError(f"{where}: not a number in {line.strip()!r}") from None
    if not all(np.isfinite([x1, y1, x2, y2])):
        raise ValueError(f"{where}: non-finite coordinate in {line.strip()!r}")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: degenerate box (x2 <= x1 or y2 <= y1): {line.strip()!r}")
    x1, x2 = min(max(x1, 0.0), W), min(max(x2, 0.0), W)
    y1, y2 = min(max(y1, 0.0), H), min(max(y2, 0.0), H)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: box {line.strip()!r} lies outside the {W} x {H} image")
    return [x1, y1, x2, y2]


def read_proposal_file(file, width: int, height: int, top: int | None = None) -> torch.Tensor:
    """The ranked boxes [n, 4] of one proposal file (one ``x1 y1 x2 y2`` line per box, image pixels,
    best first), clipped to the ``width`` x ``height`` image, the first ``top`` kept. Blank lines are
    skipped; any other malformed line is an error naming the file and the line."""
    file = Path(file)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: proposal file not found")
    boxes = [_parse_box_line(line, file, number, width, height)
             for number, line in enumerate(file.read_text().splitlines(), start=1) if line.strip()]
    out = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return out if top is None else out[:top]


def read_proposal_files(root, image_paths, top: int | None = 256) -> list[torch.Tensor]:
    """A user's own precomputed proposals (e.g. MCG boxes for COCO): for each image, the file
    ``<root>/<image file stem>.txt``, one box per line ``x1 y1 x2 y2`` in that image's pixels,
    ranked best first. Returns [n_i <= top, 4] float32 per image, clipped to the image (its size
    read from the file header). A missing file, a line that is not four finite numbers, or a
    degenerate box (x2 <= x1, y2 <= y1, or nothing left inside the image) is an error naming the
    file and the line: nothing is skipped silently."""
    from .base import image_size

    root = Path(root)
    out = []
    for path in image_paths:
        file = root / f"{Path(path).stem}.txt"
        if not file.is_file():
            raise FileNotFoundError(f"{file}: no proposal file for image {path}")
        W, H = image_size(path)
        out.append(read_proposal_file(file, W, H, top))
    return out
