"""The book on genuine photos: chapters on a COCO-2014-layout root built from coco128, and the
full-profile code path (ResNet trunks, on-disk images, frozen maps on disk or streamed, bf16
autocast) at tiny sizes. ``build_coco2014`` is shared with tests/test_full_profile.py."""
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mlbook.data import coco

ROOT = Path(__file__).resolve().parents[1]
COCO128 = ROOT.parent / "shared" / "data" / "coco128"
pytestmark = [pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 absent"), pytest.mark.slow]


def build_coco2014(root: Path) -> Path:
    """coco128 laid out as COCO 2014 under ``root`` (a new or empty folder) as ``python -m mlbook data
    split`` writes it: a third of the images, chosen with seed 0, held out as val2014 (43 images, 42
    of them labelled), the rest train2014 (84 labelled), symlinked to coco128's files."""
    coco.split_root(COCO128, root, test_fraction=1 / 3, seed=0)
    return root


@pytest.fixture(scope="module")
def coco2014(tmp_path_factory) -> Path:
    return build_coco2014(tmp_path_factory.mktemp("coco2014"))


def test_chapters_on_real_coco_write_real_tables_beside_their_notebooks(coco2014, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MLBOOK_PROFILE": "smoke"}
    # 04 (frozen trunk features) and 06 (regions, proposals, boxes) through the CLI; CADM's fine-tuning on
    # genuine photos runs in test_full_profile_path_at_tiny_sizes (cadm.run on this root)
    proc = subprocess.run([sys.executable, "-m", "mlbook", "reproduce", "--profile", "smoke", "--chapters", "04,06",
                           "--coco-root", str(coco2014), "--output-dir", str(out), "--no-build"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    # chapter 07 is left out: it reads NUS-WIDE only, generated here as in its nbval run
    assert {p.name for p in out.glob("*.ipynb")} == {"04_order_free_rnn.ipynb", "06_rlsd.ipynb"}
    figs = out / "figures"                                    # the run's tables go where its notebooks go
    coco_table = (figs / "04_order_free_rnn" / "table_2.md").read_text()
    nus_table = (figs / "04_order_free_rnn" / "table_1.md").read_text()
    assert "on real data" in coco_table and "on generated data" in nus_table
    assert "on real data" in (figs / "06_rlsd" / "table_3.md").read_text()                  # RLSD's COCO table
    tidy = pd.read_csv(figs / "04_order_free_rnn" / "table_2.csv")
    assert set(tidy["data set"]) == {"coco (real)"}
    committed = ROOT / "figures" / "04_order_free_rnn" / "table_2.md"
    assert not committed.exists() or "on real data" not in committed.read_text()


def _random_weights(tmp_path: Path, name: str) -> Path:
    """A random ``name`` state dict saved as torchvision writes one, under a plain name (no hash
    prefix to check); zero-initialised residual branches keep a random ResNet's maps in float16 range."""
    import torchvision

    file = tmp_path / f"{name}-random.pth"
    torch.save(getattr(torchvision.models, name)(weights=None, zero_init_residual=True).state_dict(), file)
    return file


@pytest.mark.parametrize("storage", ["disk", "stream"])
def test_full_profile_path_at_tiny_sizes(coco2014, tmp_path, monkeypatch, storage):
    """A ResNet trunk with a weights file named by network ({name: file}, as ``--weights NAME=FILE``
    hands it), images read from disk, the Order-Free RNN on frozen ResNet maps kept on disk or
    streamed (the disk budget decides), a baseline on their pooled features, and CADM fine-tuning
    the ResNet end to end (ResNet-50 here, for speed: ResNet-101/152 take the same code path)."""
    from mlbook.experiments import baselines, cadm, features, order_free_rnn
    from mlbook.profiles import get_profile

    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv(features.MAP_DISK_ENV, "100" if storage == "disk" else "0")
    weights = {name: str(_random_weights(tmp_path, name)) for name in ("resnet50", cadm.TRUNK)}
    tiny = get_profile("full").replace(image_size=32, batch_size=16, num_workers=0, head_epochs=1,
                                       finetune_epochs=1, patience=1, train_seeds=1, backbone="resnet50")
    feats = features.backbone_features("coco", tiny, str(coco2014), device="cpu", weights=weights, trunk="resnet50")
    assert feats["storage"] == storage and feats["test"].shape == (42, 2048, 1, 1)
    r = order_free_rnn.run("Ours", "coco", tiny, root=str(coco2014), weights=weights, device="cpu", trunk="resnet50")
    assert r["sequences"].shape[0] == 42 and 0 <= r["metrics"]["OF1"] <= 1
    b = baselines.run("Resnet-baseline", "coco", tiny, root=str(coco2014), weights=weights, device="cpu",
                      trunk="resnet50")
    assert b["scores"].shape == (42, 80)
    c = cadm.run("lambda0.5", "coco", tiny, root=str(coco2014), weights=weights, device="cpu",
                 settings={"epochs": 1, "batch_size": 16})
    assert c["test_outputs"]["logits"].shape == (42, 80) and len(c["history"]) == 1
    assert c["fig_cadm"].shape[-2:] == (1, 1)                  # 32 px / 32: ResNet's conv5 grid
    assert not list((tmp_path / "runs").rglob("checkpoint*.pt"))   # full profile: removed once a run is done
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        features.backbone_features("coco", tiny, str(coco2014), weights={"resnet50": str(tmp_path / "absent.pth")},
                                 trunk="resnet50")
