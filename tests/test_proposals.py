"""Selective search over many images (workers, cache, resizing) and a user's own proposal files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mlbook.data import proposals as P

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "ximgproc"):
    pytest.skip("OpenCV without the contrib modules", allow_module_level=True)

SETTINGS = dict(top=40, mode="fast", min_side=1)


def _blocks(rng: np.random.Generator, h: int, w: int, n: int = 6) -> np.ndarray:
    """An RGB image of a few flat coloured rectangles on a noisy background."""
    img = rng.integers(80, 110, size=(h, w, 3), dtype=np.uint8)
    for _ in range(n):
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        img[y:y + int(rng.integers(6, h // 2)), x:x + int(rng.integers(6, w // 2))] = rng.integers(0, 256, 3)
    return img


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Four lossless images of different sizes (and one grayscale file)."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(120, 160), (100, 90), (128, 128), (96, 150)]):
        img = Image.fromarray(_blocks(rng, h, w))
        paths.append(folder / f"img_{i}.png")
        (img.convert("L") if i == 3 else img).save(paths[-1])
    return paths


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_boxes_in_image_pixels(images):
    boxes = P.selective_search_many(images, workers=1, **SETTINGS)
    for path, b in zip(images, boxes):
        W, H = Image.open(path).size
        assert b.dtype == torch.float32 and b.shape[1] == 4 and 1 <= len(b) <= 40
        assert (b[:, 2:] > b[:, :2]).all() and b.min() >= 0
        assert (b[:, 0::2] <= W).all() and (b[:, 1::2] <= H).all()


def test_workers_and_order_do_not_change_the_boxes(images):
    one = P.selective_search_many(images, workers=1, **SETTINGS)
    two = P.selective_search_many(images, workers=2, **SETTINGS)
    assert _same(one, two)
    backwards = P.selective_search_many(images[::-1], workers=2, **SETTINGS)
    assert _same(one, backwards[::-1])


def test_cache_resumes_and_rerun_reads(images, tmp_path, monkeypatch):
    first = P.selective_search_many(images, workers=1, cache_dir=tmp_path, **SETTINGS)
    folder = tmp_path / P.settings_folder(40, "fast", 1, None)
    files = sorted(folder.glob("*.npy"))
    assert [f.name for f in files] == [f"{p.name}.npy" for p in images]
    assert not list(folder.glob(".*"))                                       # no temporary files left
    calls = []
    search = P._search_file
    monkeypatch.setattr(P, "_search_file", lambda path, *a: calls.append(Path(path).name) or search(path, *a))
    files[1].unlink()                                                        # as if interrupted there
    again = P.selective_search_many(images, workers=1, cache_dir=tmp_path, **SETTINGS)
    assert calls == [images[1].name] and _same(first, again)
    calls.clear()
    assert _same(first, P.selective_search_many(images, workers=1, cache_dir=tmp_path, **SETTINGS))
    assert calls == []
    other = P.selective_search_many(images[:1], workers=1, cache_dir=tmp_path, **dict(SETTINGS, top=5))
    assert calls == [images[0].name] and torch.equal(other[0], first[0][:5])   # settings are part of the key


def test_size_searches_smaller_and_returns_original_pixels(tmp_path):
    small = _blocks(np.random.default_rng(1), 60, 80)
    big = small.repeat(2, axis=0).repeat(2, axis=1)              # each pixel a 2 x 2 block
    Image.fromarray(small).save(tmp_path / "small.png")
    Image.fromarray(big).save(tmp_path / "big.png")
    direct = P.selective_search_many([tmp_path / "small.png"], workers=1, **SETTINGS)[0]
    resized = P.selective_search_many([tmp_path / "big.png"], workers=1, size=60, **SETTINGS)[0]
    assert len(direct) > 3
    torch.testing.assert_close(resized, direct * 2)             # searched at 80 x 60, boxes at 160 x 120


def test_same_file_name_in_two_folders_is_refused_with_a_cache(images, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / images[0].name).write_bytes(images[0].read_bytes())
    with pytest.raises(ValueError, match="share the file name"):
        P.selective_search_many([images[0], other / images[0].name], workers=1, cache_dir=tmp_path / "c",
                                **SETTINGS)
    with pytest.raises(ValueError, match="mode must be one of"):
        P.selective_search_many(images[:1], workers=1, top=5, mode="slow", min_side=1)


def test_unreadable_cache_file_is_recomputed(images, tmp_path):
    first = P.selective_search_many(images[:2], workers=1, cache_dir=tmp_path, **SETTINGS)
    (tmp_path / P.settings_folder(40, "fast", 1, None) / f"{images[0].name}.npy").write_bytes(b"\x93NUMPY broken")
    assert _same(first, P.selective_search_many(images[:2], workers=1, cache_dir=tmp_path, **SETTINGS))


# --- a user's own proposals --------------------------------------------------------------------------------

def _write(root: Path, image: Path, text: str) -> Path:
    root.mkdir(exist_ok=True)
    file = root / f"{image.stem}.txt"
    file.write_text(text)
    return file


def test_read_proposal_files(images, tmp_path):
    root = tmp_path / "mcg"
    _write(root, images[0], "10 20 50 60\n-5 0 200.5 119\n\n1.5 2 3 4\n")      # image is 160 x 120
    _write(root, images[1], "")                                                 # no proposals: allowed
    boxes = P.read_proposal_files(root, images[:2], top=2)
    torch.testing.assert_close(boxes[0], torch.tensor([[10.0, 20, 50, 60], [0, 0, 160, 119]]))
    assert boxes[1].shape == (0, 4)
    assert len(P.read_proposal_files(root, images[:1], top=None)[0]) == 3


@pytest.mark.parametrize("text, error", [
    ("10 20 50 60\n1 2 3\n", r"img_0.txt, line 2: expected 4 numbers"),
    ("1 2 x 4\n", r"img_0.txt, line 1: not a number"),
    ("0 0 5 5\n0 0 5 5\n30 10 30 40\n", r"img_0.txt, line 3: degenerate box"),
    ("0 0 5 5\n170 10 190 40\n", r"img_0.txt, line 2: box .* lies outside the 160 x 120 image"),
    ("0 0 nan 5\n", r"img_0.txt, line 1: non-finite"),
])
def test_read_proposal_files_errors(images, tmp_path, text, error):
    root = tmp_path / "mcg"
    _write(root, images[0], text)
    with pytest.raises(ValueError, match=error):
        P.read_proposal_files(root, images[:1], top=256)


def test_read_proposal_files_missing_file(images, tmp_path):
    root = tmp_path / "mcg"
    _write(root, images[0], "0 0 5 5\n")
    with pytest.raises(FileNotFoundError, match=r"img_1.txt: no proposal file for image .*img_1.png"):
        P.read_proposal_files(root, images[:2], top=256)


FORK_AFTER_SEARCH = """
import os, sys
import numpy as np
from mlbook.data.proposals import selective_search_boxes, selective_search_many
img = np.random.default_rng(0).integers(0, 256, (160, 200, 3), dtype=np.uint8)
selective_search_boxes(img, top=20)          # OpenCV used in this process first, as an earlier test does
pid = os.fork()                              # run_all forks its workers
if pid == 0:
    selective_search_boxes(img, top=20)
    selective_search_many([sys.argv[1]], top=20, workers=1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_process_forked_after_a_search_can_search(images):
    """OpenCV's thread pool does not survive a fork: a forked run_all worker that searched (or set
    OpenCV's thread count) hung for ever once its parent had searched on several threads, as a test
    run's worker does. mlbook keeps OpenCV on one thread in every process, so there is no pool."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", FORK_AFTER_SEARCH, str(images[0])], capture_output=True, text=True,
                          timeout=60, env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
