"""The full profile as a GPU user runs it (issue 17): frozen maps that never sit in memory whole,
dry-run limits carried by the profile, the weights error through the CLI, and one command run as
typed — ``python -m mlbook reproduce --profile full --chapters 04,05,06,07,08 --limit-images 4
--max-steps 1 ...`` — on genuine photos, with random weights for every trunk at the papers' sizes.

The last one takes far longer than a unit test on a CPU (the papers' networks at 448 px): it runs
under ``make test-full`` (``MLBOOK_TEST_FULL=1``) and is skipped by ``make test``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from mlbook import papers, report, train
from mlbook.experiments import features, shared
from mlbook.models import baselines as B
from mlbook.profiles import LIMIT_ENV, STEPS_ENV, get_profile

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
VOC2007 = SHARED_DATA / "voc2007"
CHAPTERS = (*(p.chapter for p in papers.PAPERS), papers.COMPARISON_CHAPTER)   # the chapters that train
TRUNKS = tuple(p.trunk for p in papers.PAPERS)   # the registry's full-profile trunks


# --- frozen maps on disk and streamed -------------------------------------------------------------

class Trunk(torch.nn.Module):
    """A tiny frozen trunk that counts the images it has seen."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return self.conv(x)


class Images(Dataset):
    """(image, label) pairs; ``fail_at``: the item whose read raises (an interrupted run)."""

    def __init__(self, n: int, fail_at: int | None = None):
        g = torch.Generator().manual_seed(1)
        self.x, self.y = torch.randn(n, 3, 8, 8, generator=g), torch.arange(n)
        self.fail_at = fail_at

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == self.fail_at:
            raise KeyboardInterrupt("interrupted")
        return self.x[i], self.y[i]


def test_maps_written_to_disk_resume_after_an_interruption_and_read_back(tmp_path):
    trunk = Trunk().eval()
    file = tmp_path / "train.f16"
    with pytest.raises(KeyboardInterrupt):
        features.write_maps(file, Images(10, fail_at=7), lambda: trunk, (4, 4, 4), "cpu", 2, "test", chunk=3)
    assert not file.exists() and (tmp_path / "train.f16.rows").read_text() == "6"   # two whole chunks kept
    seen = trunk.seen
    assert features.write_maps(file, Images(10), lambda: trunk, (4, 4, 4), "cpu", 2, "test", chunk=3) == 10
    assert trunk.seen - seen == 4                      # only images 6-9 computed again
    assert file.stat().st_size == 10 * 4 * 4 * 4 * 2 and not (tmp_path / "train.f16.rows").exists()
    maps = features.DiskMaps(file, 10, (4, 4, 4))
    expected = features.trunk_maps(trunk, Images(10).x)
    assert torch.equal(torch.stack([maps.read(i) for i in range(10)]), expected)
    assert torch.equal(torch.from_numpy(maps.memmap()[3].copy()), expected[3])
    assert torch.equal(maps[2:9], expected[2:9])                           # a batch, as maps[i:i + b] in memory
    view = maps.subset([8, 2])
    assert view.shape == (2, 4, 4, 4) and torch.equal(view.rows(torch.tensor([5, 6]))[1][0], expected[2])


def test_streamed_maps_are_the_disk_maps_computed_on_the_device_stage(tmp_path):
    trunk = Trunk().eval()
    images = Images(7)
    features.write_maps(tmp_path / "m.f16", images, lambda: trunk, (4, 4, 4), "cpu", 3, "test")
    disk = features.DiskMaps(tmp_path / "m.f16", 7, (4, 4, 4))
    stream = features.StreamedMaps(images, lambda: trunk, (4, 4, 4))
    labels = torch.arange(7) * 10
    for maps in (disk, stream):
        got = features.map_apply(lambda x, y: (x.sum((1, 2, 3)), y), features.take(maps, [6, 0, 3]), labels[[6, 0, 3]],
                               batch_size=2)
        assert torch.equal(got[1], labels[[6, 0, 3]])
        assert torch.equal(got[0], features.trunk_maps(trunk, images.x[[6, 0, 3]]).float().sum((1, 2, 3)))
    assert torch.equal(features.pooled(disk), features.pooled(stream))
    # the stage runs where train.fit trains: the loss sees maps, never images
    rows = stream.rows(labels.float())
    seen = []
    train.fit(torch.nn.Linear(4, 1), rows, lambda m, b: seen.append(b[0].shape) or m(b[0].float().mean((2, 3))).sum(),
              epochs=1, batch_size=4, device="cpu", progress=False,
              make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1))
    assert seen == [torch.Size([4, 4, 4, 4]), torch.Size([3, 4, 4, 4])]


def test_maps_past_float16_stop_where_they_are_made_not_as_a_nan_loss(tmp_path):
    """Random ResNet weights with torchvision's default init give conv5 maps near 7e8, past float16 where
    the maps are kept: streamed or written to disk, they stop with a line naming the cause (chapter 04's
    dry run on a small NUS-WIDE copy stopped instead with "loss became nan", streamed maps unchecked)."""
    trunk = Trunk().eval()
    with torch.no_grad():
        trunk.conv.weight.mul_(1e8)
    stream = features.StreamedMaps(Images(4), lambda: trunk, (4, 4, 4))
    with pytest.raises(FloatingPointError, match=r"streamed Trunk maps: not finite in float16 .*weights random"):
        features.map_apply(lambda x: x.sum((1, 2, 3)), stream)
    with pytest.raises(FloatingPointError, match="not finite in float16"):
        features.write_maps(tmp_path / "m.f16", Images(4), lambda: trunk, (4, 4, 4), "cpu", 2, "test")


def test_map_helpers_on_tensors_are_the_calls_the_demo_always_made():
    maps = torch.randn(5, 3, 2, 2).half()
    y = torch.arange(5)
    ds = features.map_rows(features.take(maps, [4, 1]), y[[4, 1]])
    assert isinstance(ds, TensorDataset) and torch.equal(ds[0][0], maps[4]) and ds[1][1] == 1
    assert torch.equal(features.map_apply(lambda x: x * 2, maps), maps.float() * 2)
    assert torch.equal(features.pooled(maps), B.pooled(maps))


def test_predict_never_concatenates_when_given_a_place_to_write():
    data = TensorDataset(torch.arange(10.0)[:, None])
    out = torch.zeros(10, 2, dtype=torch.float16)
    assert train.predict(lambda b: b[0].repeat(1, 2), data, batch_size=3, device="cpu", out=out) is out
    assert torch.equal(out[:, 1], torch.arange(10.0).half())
    got = []
    assert train.predict(lambda b: b[0], data, batch_size=4, device="cpu", collect=lambda r, y: got.append((r, len(y)))) \
        is None and got == [(0, 4), (4, 4), (8, 2)]


def _fit(n_steps_seen: list, **kw) -> list[dict]:
    model = torch.nn.Linear(2, 1)
    opt_steps = []

    def make(m):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        opt.register_step_post_hook(lambda *a: opt_steps.append(1))
        return opt

    data = TensorDataset(torch.randn(16, 2), torch.randn(16, 1))
    history = train.fit(model, data, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), epochs=3, batch_size=4,
                        device="cpu", progress=False, make_optimizer=make, **kw)
    n_steps_seen.append(len(opt_steps))
    return history


def test_fit_stops_after_max_steps_over_all_epochs():
    steps = []
    history = _fit(steps, max_steps=6)                     # 4 steps per epoch: epoch 2 stops after its 2nd
    assert steps == [6] and [r["steps"] for r in history] == [4, 2] and history[-1]["max_steps_reached"]
    with train.step_limit(3):                               # what a dry run's profile sets around each run
        history = _fit(steps)
    assert steps[-1] == 3 and len(history) == 1
    history = _fit(steps)                                   # no cap: the history is as it always was
    assert steps[-1] == 12 and all("steps" not in r for r in history)


def test_a_dry_run_is_part_of_the_profile_the_cache_key_and_every_caption(monkeypatch):
    assert not get_profile("full").dry_run and report.caption_suffix("full") == ""
    monkeypatch.setenv(LIMIT_ENV, "16")
    monkeypatch.setenv(STEPS_ENV, "2")
    p = get_profile("full")
    assert (p.max_train, p.max_test, p.max_steps, p.dry_run) == (16, 16, 2, True)
    assert shared.data_key("coco", p, "/c", 0)["max_steps"] == 2
    monkeypatch.setenv("MLBOOK_PROFILE", "full")
    assert "DRY RUN" in report.caption_suffix() and "16 training" in report.caption_suffix()
    monkeypatch.setenv(STEPS_ENV, "0")
    with pytest.raises(ValueError, match="positive integer"):
        get_profile("full")


def test_maps_are_kept_where_they_fit():
    full = get_profile("full")
    assert features.map_storage("resnet152", "coco", full) == "stream"      # 98 GB of float16 maps at 448 px
    assert features.map_storage("vgg16", "voc", full) == "disk"             # 8 GB
    assert features.map_storage("alexnet", "nuswide", full) == "disk"       # 224 px: 6 x 6 x 256
    assert features.map_storage("small_cnn", "coco", get_profile("demo")) == "memory"
    assert features.map_bytes("resnet152", 448, 122218) == 122218 * 2048 * 14 * 14 * 2


# --- the CLI: weights listed before any work ------------------------------------------------------

def _cli(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlbook", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def test_reproduce_full_without_weights_lists_every_network_before_any_work(tmp_path):
    proc = _cli("reproduce", "--profile", "full", "--chapters", "04,05,06,07", "--coco-root", str(tmp_path),
                "--output-dir", str(tmp_path / "out"), "--no-build", env={"TORCH_HOME": str(tmp_path / "hub")})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out, out[-2000:]
    assert "ImageNet weights missing for resnet152, resnet101, vgg16, alexnet" in out or \
        "ImageNet weights missing for alexnet, resnet101, resnet152, vgg16" in out, out[-2000:]
    assert "--weights alexnet=FILE" in out and not (tmp_path / "out").exists()   # nothing ran


def test_reproduce_full_without_data_roots_lists_every_flag_before_any_work(tmp_path):
    import torchvision

    torch.save(torchvision.models.alexnet(weights=None).state_dict(), tmp_path / "alexnet-random-init.pth")
    proc = _cli("reproduce", "--profile", "full", "--chapters", "06,07", "--no-build", "--output-dir", str(tmp_path / "o"),
                "--weights", f"alexnet={tmp_path / 'alexnet-random-init.pth'}", "--weights", f"vgg16={tmp_path / 'none.pth'}")
    assert proc.returncode != 0 and "vgg16" in proc.stderr + proc.stdout   # weights first: vgg16's file is absent
    proc = _cli("reproduce", "--profile", "full", "--chapters", "07", "--no-build", "--output-dir", str(tmp_path / "o"),
                "--weights", f"alexnet={tmp_path / 'alexnet-random-init.pth'}")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out and "need --nuswide-root" in out, out[-2000:]


# --- one command, as typed: the dry run of chapters 04-07 ------------------------------------------

def build_voc2007(root: Path) -> Path:
    """A VOC 2007 root from ../shared/data/voc2007 (the genuine lists, CRLF, and five genuine test
    images): every list subset to the five images that exist, three of them moved from test to
    trainval (their genuine test labels kept) so that the training split is not empty; no
    annotation file exists for them (no boxes)."""
    ids = sorted(p.stem for p in (VOC2007 / "JPEGImages").glob("*.jpg"))
    splits = {"trainval": ids[:3], "train": ids[:2], "val": ids[2:3], "test": ids[3:]}
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (root / "Annotations").mkdir()
    shutil.copytree(VOC2007 / "JPEGImages", root / "JPEGImages")
    labels = {}
    for f in (VOC2007 / "ImageSets" / "Main").glob("*_test.txt"):
        labels[f.name[:-len("_test.txt")]] = dict(line.split() for line in f.read_text().splitlines() if line.strip())
    for split, members in splits.items():
        (main / f"{split}.txt").write_bytes("".join(f"{i}\r\n" for i in members).encode())
        for cls, values in labels.items():
            (main / f"{cls}_{split}.txt").write_bytes("".join(f"{i} {values[i]}\r\n" for i in members).encode())
    return root


def random_weights(folder: Path) -> dict[str, Path]:
    """Random torchvision state dicts of every paper trunk, saved as torchvision saves them under a
    plain name (a random file cannot carry the hash prefix of the real checkpoint's name; the
    keys-and-shapes check still runs). Zero-initialised residual branches keep a random ResNet's
    maps within float16."""
    import torchvision

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in TRUNKS:
        kw = {"zero_init_residual": True} if name.startswith("resnet") else {}
        torch.manual_seed(0)
        files[name] = folder / f"{name}-random-init.pth"
        torch.save(getattr(torchvision.models, name)(weights=None, **kw).state_dict(), files[name])
    return files


def random_imagenet_file(name: str, path: Path, seed: int = 0) -> Path:
    """A random state dict with the keys and shapes of torchvision's ImageNet network ``name`` (the
    weights check accepts it), drawn directly: seconds faster than the network's own initialisation."""
    import torchvision

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in getattr(torchvision.models, name)(weights=None).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    torch.save({k: torch.randn(shape, generator=g) / 100 for k, shape in shapes.items()}, path)
    return path


def build_visual_genome(root: Path) -> Path:
    """A region set in Visual Genome's layout (image_data.json, region_descriptions.json, images),
    generated: RLSD's localization layer is pre-trained on it."""
    from mlbook.data.visual_genome import write_generated_regions

    return write_generated_regions(root, n_images=24, image_size=64, seed=0, n_classes=10)


DRY_IMAGES, DRY_STEPS = 4, 1   # the README's dry run; at 16 images and 2 steps chapter 06 alone ran over an hour on a
                               # 2-core CPU (VGG16 at 448 px streamed through each of its 122 runs)


def dry_run_args(coco: Path, nuswide: Path, voc: Path, vg: Path, weights: dict, out: Path, images: int = DRY_IMAGES,
                 steps: int = DRY_STEPS) -> list[str]:
    """The command of the README's dry run, as a user types it."""
    return ["reproduce", "--profile", "full", "--chapters", ",".join(c[:2] for c in CHAPTERS), "--limit-images", str(images),
            "--max-steps", str(steps), "--no-build", "--output-dir", str(out), "--coco-root", str(coco),
            "--nuswide-root", str(nuswide), "--voc-root", str(voc), "--vg-root", str(vg), "--device", "cpu",
            *[a for name, f in weights.items() for a in ("--weights", f"{name}={f}")]]


RUSAGE_WRAPPER = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    start = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "mlbook", *sys.argv[1:]])
    print("DRY-RUN-RESOURCES " + json.dumps({"rc": rc, "seconds": time.perf_counter() - start,
          "peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
    """)


def run_dry_run(args: list[str], env: dict, log: Path) -> dict:
    """Run the command in a child of a small wrapper that reports the peak RSS of the largest process
    under it (``RUSAGE_CHILDREN``: reproduce and every chapter kernel it waited for) and the wall time."""
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", RUSAGE_WRAPPER, *args], cwd=ROOT, env={**os.environ, **env},
                       stdout=f, stderr=subprocess.STDOUT, check=False)
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("DRY-RUN-RESOURCES ")]
    return json.loads(lines[-1].split(" ", 1)[1])


def planned_peak_host_gib(images: int, steps: int) -> float:
    """The plan's peak host memory of the dry run on a CPU (the device's share is host memory)."""
    from mlbook.plan import plan

    table = plan("h200", seeds=get_profile("full").train_seeds, profile=get_profile("full").limited(images, steps),
                 device="cpu")
    return float(table.loc[table["chapter"] != "", "host GiB"].max())


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("MLBOOK_TEST_FULL") != "1", reason="the full-profile dry run: make test-full")
@pytest.mark.skipif(not VOC2007.is_dir() or not (SHARED_DATA / "coco128").is_dir(), reason="../shared/data absent")
def test_full_profile_dry_run_through_the_cli(tmp_path):
    from test_real_data import build_coco2014

    coco = build_coco2014(tmp_path / "coco2014")
    voc = build_voc2007(tmp_path / "voc2007")
    nuswide = tmp_path / "nuswide"
    gen = _cli("data", "generate", "--dataset", "nuswide", "--profile", "smoke", "--out", str(nuswide))
    assert gen.returncode == 0, gen.stderr
    vg = build_visual_genome(tmp_path / "visual_genome")
    weights = random_weights(tmp_path / "weights")
    out = tmp_path / "out"
    env = {"MLBOOK_RUNS": str(tmp_path / "runs"), "MLBOOK_DATA": str(tmp_path / "data"),
           "TORCH_HOME": str(tmp_path / "hub"), "MLBOOK_PROFILE": "full"}
    measured = run_dry_run(dry_run_args(coco, nuswide, voc, vg, weights, out), env, tmp_path / "dry_run.log")
    log = (tmp_path / "dry_run.log").read_text()
    assert measured["rc"] == 0, log[-4000:]
    assert {p.stem for p in out.glob("*.ipynb")} == set(CHAPTERS)
    for chapter in CHAPTERS:
        tables = sorted((out / "figures" / chapter).glob("table_*.md"))
        assert tables, chapter
        for table in tables:
            assert "DRY RUN" in table.read_text().split("\n\n")[0], table
    peak = measured["peak_rss_kib"] / 2 ** 20
    planned = planned_peak_host_gib(DRY_IMAGES, DRY_STEPS)
    print(f"dry run: {measured['seconds']:.0f} s, peak RSS {peak:.2f} GiB, planned {planned:.2f} GiB")
    assert peak <= planned, f"peak RSS {peak:.2f} GiB above the plan's {planned:.2f} GiB"
