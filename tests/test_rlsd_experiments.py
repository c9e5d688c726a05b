"""The RLSD chapter's runner (mlbook.experiments.rlsd) on the smoke profile, in a scratch runs/data folder."""
from __future__ import annotations

import pytest
import torch

from mlbook.data.base import Box


@pytest.fixture()
def scratch(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    from mlbook.experiments import rlsd as X

    X._splits_cached.cache_clear()
    yield X
    X._splits_cached.cache_clear()


def test_generated_region_set_is_deterministic_and_complete(scratch, tmp_path):
    X = scratch
    root = X.generated_vg_root("smoke", 6, seed=0)
    first = (root / "region_descriptions.json").read_text()
    again = X.generated_vg_root("smoke", 6, seed=0)
    assert again == root and (root / "region_descriptions.json").read_text() == first
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]     # no temporary folder left
    vg = X.visual_genome("smoke")
    assert len(vg) == X.settings_for("smoke").vg_images and all(len(im.boxes) for im in vg)


def test_precomputed_regions_are_the_models_own(scratch):
    """The rows feed the frozen layer's regions as boxes: the same regions RLSD picks itself."""
    X = scratch
    from mlbook.models import rlsd as M

    s = X.settings_for("smoke")
    torch.manual_seed(0)
    model = M.RLSD(X.model_config(s, 8, 5)).eval()
    maps = torch.randn(3, 8, 4, 4)
    own, mask, _ = model.regions(maps, 32)
    boxes, counts = X.layer_regions(model.loc, maps, s, 32, train=False)
    for b in range(3):
        got = torch.cat([boxes[b, :counts[b]], M.whole_image_box(32)[None]])
        assert torch.allclose(own[b][mask[b]], got)
    model.train()
    own_train, _, _ = model.regions(maps, 32)
    boxes, counts = X.layer_regions(model.loc, maps, s, 32, train=True)
    assert torch.allclose(own_train[:, :-1], boxes)


def test_rows_train_and_score(scratch):
    X = scratch
    g = X.run_row("CNN+LSTM", "coco", "smoke")
    r = X.run_row("RLSD", "coco", "smoke")
    n, L = r["scores"].shape
    assert g["scores"].shape == (n, L) and n > 0
    assert float(r["scores"].min()) >= 0 and float(r["scores"].max()) <= 1
    assert r["init"] and all(k.startswith(("encoder.", "lstm.")) for k in r["init"])
    ft = X.pretrain_localization("coco", "smoke", kind="ft")
    assert ft["n_images"] + ft["n_without_boxes"] == len(X.splits("coco", "smoke").train)
    with pytest.raises(ValueError, match="kind"):
        X.localization_config("coco", "smoke", kind="other")


def test_objects_per_region_counts_centres():
    from mlbook.experiments import rlsd as X

    regions = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 32.0, 32.0]]])
    boxes = [[Box(1, 1, 2, 2, 0), Box(20, 20, 4, 4, 1)]]          # centres (2, 2) and (22, 22)
    idx, vals = X.objects_per_region(regions, torch.tensor([2]), boxes, [(32, 32)], side=32)
    assert idx.tolist() == [0] and vals.tolist() == [1.5]          # 1 in the small region, 2 in the large
    idx, vals = X.objects_per_region(regions, torch.tensor([2]), [[]], [(32, 32)], side=32)
    assert len(idx) == 0                                           # images without boxes left out
