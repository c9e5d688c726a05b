"""The book on genuine photos: chapters on a COCO-2014-layout root built from coco128, and the
full-profile code path (ResNet trunks, on-disk images, bf16 autocast) at tiny sizes."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
COCO128 = ROOT.parent / "shared" / "data" / "coco128"
pytestmark = [pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 absent"), pytest.mark.slow]


@pytest.fixture(scope="module")
def coco2014(tmp_path_factory) -> Path:
    """coco128 laid out as COCO 2014: train2014/ and val2014/ with the genuine annotations,
    split by image id (the lower two thirds train, the rest val)."""
    root = tmp_path_factory.mktemp("coco2014")
    doc = json.loads((COCO128 / "annotations" / "instances_train2017.json").read_text())
    ids = sorted(im["id"] for im in doc["images"])
    cut = ids[len(ids) * 2 // 3]
    (root / "annotations").mkdir()
    for split, keep in (("train2014", lambda i: i < cut), ("val2014", lambda i: i >= cut)):
        images = [im for im in doc["images"] if keep(im["id"])]
        wanted = {im["id"] for im in images}
        part = {**doc, "images": images, "annotations": [a for a in doc["annotations"] if a["image_id"] in wanted]}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(part))
        (root / split).mkdir()
        for im in images:
            shutil.copy(COCO128 / "train2017" / im["file_name"], root / split / im["file_name"])
    return root


def test_chapters_on_real_coco_write_real_tables_beside_their_notebooks(coco2014, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "MLBOOK_PROFILE": "smoke"}
    proc = subprocess.run([sys.executable, "-m", "mlbook", "reproduce", "--profile", "smoke", "--chapters", "04,05,06,07",
                           "--coco-root", str(coco2014), "--output-dir", str(out), "--no-build"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert {p.name for p in out.glob("*.ipynb")} == {"04_order_free_rnn.ipynb", "05_cadm.ipynb", "06_rlsd.ipynb",
                                                     "07_transformation_ranking.ipynb"}
    figs = out / "figures"                                    # the run's tables go where its notebooks go
    coco_table = (figs / "04_order_free_rnn" / "table_2.md").read_text()
    nus_table = (figs / "04_order_free_rnn" / "table_1.md").read_text()
    assert "on real data" in coco_table and "on generated data" in nus_table
    assert "on real data" in (figs / "05_cadm" / "table_1.md").read_text()
    assert "generated" in (figs / "07_transformation_ranking" / "table_3.md").read_text()   # NUS-WIDE only
    assert "on real data" in (figs / "06_rlsd" / "table_3.md").read_text()                  # RLSD's COCO table
    tidy = pd.read_csv(figs / "05_cadm" / "table_1.csv")
    assert set(tidy["data set"]) == {"coco (real)"}
    committed = ROOT / "figures" / "04_order_free_rnn" / "table_2.md"
    assert not committed.exists() or "on real data" not in committed.read_text()


def test_full_profile_path_at_tiny_sizes(coco2014, tmp_path):
    """A ResNet trunk with a weights file (random init, saved as torchvision writes it), images read
    from disk, the Order-Free RNN on frozen ResNet maps and CADM fine-tuning the ResNet end to end
    (ResNet-50 here, for speed: ResNet-101/152 take the same code path)."""
    import torchvision

    from mlbook import bench
    from mlbook.experiments import cadm, order_free_rnn
    from mlbook.profiles import get_profile

    files = {}
    for name in ("resnet50",):
        files[name] = tmp_path / f"{name}.pth"
        # zero-initialised residual branches keep a random trunk's activations in float16 range
        torch.save(getattr(torchvision.models, name)(weights=None, zero_init_residual=True).state_dict(), files[name])
    tiny = get_profile("full").replace(image_size=32, batch_size=16, num_workers=0, head_epochs=1,
                                       finetune_epochs=1, patience=1, train_seeds=1)
    r = order_free_rnn.run_row("Ours", "coco", tiny, str(coco2014), weights=str(files["resnet50"]), device="cpu",
                               backbone="resnet50")   # the paper's ResNet-152 has the same code path
    assert r["sequences"].shape[0] == 42 and 0 <= r["metrics"]["OF1"] <= 1
    c = cadm.run_variant("lambda0.5", "coco", tiny.replace(backbone="resnet50"), str(coco2014),
                         weights=str(files["resnet50"]), device="cpu", recipe=cadm.Recipe(epochs=1, batch_size=16))
    assert c["test_outputs"]["logits"].shape == (42, 80) and len(c["history"]) == 1
    assert c["fig_cadm"].shape[-2:] == (1, 1)                  # 32 px / 32: ResNet's conv5 grid
    # the bf16 autocast and channels-last branch of a GPU run, on the CPU
    speed = bench.bench_train(model="cadm", profile="full", image_size=32, batch_size=2, steps=1, warmup=0,
                              device="cpu", dtype="bfloat16", channels_last=True, num_classes=5)
    assert set(speed) == {"baseline", "lambda0.5"} and all(v > 0 for v in speed.values())
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        order_free_rnn.run_row("Ours", "coco", tiny, str(coco2014), weights=str(tmp_path / "absent.pth"),
                               backbone="resnet50")
