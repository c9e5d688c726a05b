"""Trunks (shapes, strides, channels), ImageNet weights by name and their checks, VGG's fc6/fc7 as
RLSD's region encoder. Everything on random weights: nothing is downloaded."""
from __future__ import annotations

import hashlib
import os

import pytest
import torch
import torchvision
from torch import nn

from mlbook import weights as W
from mlbook.models import backbones as B
from mlbook.models.rlsd import RegionEncoder, bilinear_region_features
from mlbook.models.transformation_ranking import alexnet_transformation_net


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """An empty torch hub cache and no download permission, whatever the machine has."""
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv(W.DOWNLOAD_ENV, raising=False)
    return hub / "checkpoints"


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    """A real torchvision resnet50 state dict (random weights) under torchvision's file-name rule,
    ``resnet50-<first 8 hex digits of its sha256>.pth``."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    state = torchvision.models.resnet50(weights=None).state_dict()
    raw = folder / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    path = folder / f"resnet50-{digest[:8]}.pth"
    raw.rename(path)
    return path, state


# --- trunks ------------------------------------------------------------------------------------------

def _map_side(net: nn.Module, side: int) -> tuple[int, int, int]:
    with torch.device("meta"):
        out = net(torch.empty(1, 3, side, side))
    return tuple(out.shape[1:])


@pytest.mark.parametrize("name, side", [("small_cnn", 32), ("resnet50", 64), ("resnet101", 64),
                                        ("resnet152", 64), ("vgg16", 64)])
def test_trunk_channels_and_stride(name, side):
    with torch.device("meta"):
        net = B.random_backbone(name)
    C, stride = B.trunk_shape(name)
    assert (net.out_channels, net.stride) == (C, stride)
    assert _map_side(net, side) == (C, side // stride, side // stride)
    assert _map_side(net, side + stride)[1] == side // stride + 1      # one more cell per stride pixels


def test_paper_strides_and_channels():
    assert B.trunk_shape("vgg16") == (512, 16)          # RLSD Sec. III-A-1: C = 512, H' = H / 16
    assert B.trunk_shape("alexnet") == (256, 32)
    assert B.trunk_shape("resnet101") == (2048, 32)     # CADM: 448 px -> 14 x 14
    assert B.trunk_shape("small_cnn") == (128, 8)
    assert B.SmallCNN().last_blocks(2).stride == 8      # image pixels, not stem-map cells
    with pytest.raises(ValueError, match="unknown backbone"):
        B.trunk_shape("resnet18")


def test_alexnet_trunk_is_pool5():
    with torch.device("meta"):
        net = B.random_backbone("alexnet")
        features = net.body[0]
    assert net.out_channels == 256
    assert _map_side(net, 224) == (256, 6, 6) == _map_side(net, 227)     # what fc6 reads (9216 inputs)
    assert _map_side(features, 224 + 32)[1] == _map_side(features, 224)[1] + 1 == 7   # stride 32


def test_vgg16_trunk_is_conv5_3_relu():
    with torch.device("meta"):
        net = B.random_backbone("vgg16")
    assert isinstance(net.body[-1], nn.ReLU) and isinstance(net.body[-2], nn.Conv2d)
    assert net.body[-2].out_channels == 512 and sum(isinstance(m, nn.MaxPool2d) for m in net.body) == 4


def test_resnet_trunk_forward_on_cpu():
    torch.manual_seed(0)
    net = B.random_backbone("resnet50").eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 2048, 2, 2) and torch.isfinite(out).all()


# --- the registry -------------------------------------------------------------------------------------

def test_weights_registry_reads_torchvision_names():
    files = {name: spec.file for name, spec in W.WEIGHTS.items()}
    assert files["resnet101"] == "resnet101-63fe2227.pth"
    assert files["resnet152"] == "resnet152-394f9c45.pth"
    assert files["vgg16"] == "vgg16-397923af.pth"
    assert files["alexnet"] == "alexnet-owt-7be5be79.pth"
    assert set(W.WEIGHTS) == set(B.backbone_names()) - {"small_cnn"}


def test_paper_trunks():
    from mlbook import papers

    assert {p.chapter: p.trunk for p in papers.PAPERS} == {
        "04_order_free_rnn": "resnet152", "05_cadm": "resnet101", "06_rlsd": "vgg16",
        "07_transformation_ranking": "alexnet"}
    assert all(p.trunk in W.WEIGHTS and p.trunk_use for p in papers.PAPERS)


def test_weights_file_forms(tmp_path):
    assert W.weights_file(None, "resnet101") is None
    assert W.weights_file("/w/r.pth", "vgg16").as_posix() == "/w/r.pth"          # a path: whichever network
    assert W.weights_file(tmp_path / "r.pth", "alexnet") == tmp_path / "r.pth"
    given = {"resnet101": "/w/r101.pth"}
    assert W.weights_file(given, "resnet101").as_posix() == "/w/r101.pth"
    assert W.weights_file(given, "vgg16") is None
    with pytest.raises(TypeError, match="dict"):
        W.weights_file(["/w/r.pth"], "vgg16")


# --- the check of a weights file -----------------------------------------------------------------------

def test_right_file_passes_and_builds(resnet50_file):
    path, state = resnet50_file
    loaded = W.check_weights_file("resnet50", path)
    assert loaded.keys() == state.keys()
    for weights in ({"resnet50": str(path), "vgg16": "/elsewhere"}, str(path)):     # dict and path forms
        trunk = B.build_backbone("resnet50", weights=weights)
        assert isinstance(trunk, B.ResNetTrunk)
        assert torch.equal(trunk.body[0].weight, state["conv1.weight"])
        assert torch.equal(trunk.body[1].running_var, state["bn1.running_var"])
        assert not any(t.is_meta for t in trunk.state_dict().values())


def test_wrong_architecture_is_named(resnet50_file):
    path, _ = resnet50_file
    with pytest.raises(W.WeightsError) as err:
        W.check_weights_file("resnet101", path)
    message = str(err.value)
    assert message.startswith(f"--weights resnet101={path}: the file is a resnet50 state dict")
    assert "layer3.6.conv1.weight missing" in message and "\n" not in message
    with pytest.raises(W.WeightsError, match="--weights vgg16=.*the file is a resnet50 state dict"):
        B.build_backbone("vgg16", weights={"vgg16": path})
    with pytest.raises(W.WeightsError, match="--weights alexnet=.*the file is a resnet50 state dict"):
        alexnet_transformation_net(3, 5, weights={"alexnet": path})


def test_wrong_head_shape(resnet50_file, tmp_path):
    _, state = resnet50_file
    bad = dict(state, **{"fc.weight": torch.zeros(10, 2048), "fc.bias": torch.zeros(10)})
    torch.save(bad, tmp_path / "mine.pth")
    with pytest.raises(W.WeightsError, match=r"not a resnet50 state dict \(keys/shapes differ: fc.weight has "
                                             r"shape \[10, 2048\], not \[1000, 2048\], and 1 more\)"):
        W.check_weights_file("resnet50", tmp_path / "mine.pth")


def test_corrupted_hash_prefix(resnet50_file, tmp_path):
    path, _ = resnet50_file
    renamed = tmp_path / "resnet50-deadbeef.pth"
    os.link(path, renamed)
    with pytest.raises(W.WeightsError, match="sha256 of the file starts with [0-9a-f]{8}, not deadbeef"):
        W.check_weights_file("resnet50", renamed)


def test_truncated_file(resnet50_file, tmp_path):
    path, _ = resnet50_file
    cut = tmp_path / "resnet50_cut.pth"
    cut.write_bytes(path.read_bytes()[:1_000_000])
    with pytest.raises(W.WeightsError, match=r"resnet50_cut.pth: cannot be read as a PyTorch file"):
        W.check_weights_file("resnet50", cut)


def test_pickled_objects_are_refused(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")             # a pickled module, not a state dict
    with pytest.raises(W.WeightsError, match=r"refused by torch.load\(weights_only=True\)"):
        W.check_weights_file("alexnet", tmp_path / "module.pth", flag="--weights")
    torch.save({"epoch": 3}, tmp_path / "numbers.pth")
    with pytest.raises(W.WeightsError, match="not a state dict"):
        W.check_weights_file("alexnet", tmp_path / "numbers.pth")


def test_missing_file_is_both_errors(tmp_path):
    with pytest.raises(W.WeightsNotFound) as err:
        W.check_weights_file("vgg16", tmp_path / "none.pth")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)
    assert "--weights vgg16=" in str(err.value) and "nothing is downloaded" in str(err.value)


# --- requiring weights before any work ------------------------------------------------------------------

def test_require_weights_lists_every_missing_network(resnet50_file):
    path, _ = resnet50_file
    given = {"resnet50": str(path)}
    assert W.missing_weights(["resnet152", "vgg16", "small_cnn", "resnet50", "alexnet"], given) == \
        ["resnet152", "vgg16", "alexnet"]
    with pytest.raises(W.WeightsNotFound) as err:
        W.require_weights(["resnet152", "vgg16", "resnet50"], given, download=False)
    message = str(err.value)
    assert "ImageNet weights missing for resnet152, vgg16:" in message and "resnet50 " not in message
    assert "--weights resnet152=FILE --weights vgg16=FILE" in message and "--download-weights" in message
    assert "resnet152-394f9c45.pth" in message                      # where the hub cache file would be
    W.require_weights(["resnet50", "small_cnn"], given)             # all present and right: no error


def test_require_weights_checks_hub_files_and_names(resnet50_file, empty_hub):
    path, _ = resnet50_file
    os.link(path, empty_hub / W.WEIGHTS["resnet50"].file)           # random weights under the real name
    assert W.missing_weights(["resnet50"], None) == []
    with pytest.raises(W.WeightsError, match="resnet50 weights in the torch hub cache .*sha256"):
        W.require_weights(["resnet50"], None)
    with pytest.raises(W.WeightsError, match="no ImageNet weights known for 'resnet05'"):
        W.require_weights(["resnet50"], {"resnet05": str(path)})
    with pytest.raises(W.WeightsNotFound, match="--weights resnet101=FILE"):
        B.build_backbone("resnet101")
    with pytest.raises(W.WeightsNotFound, match="--weights alexnet=FILE"):
        alexnet_transformation_net(3, 5, weights={})


# --- VGG's fc6/fc7 as RLSD's region encoder ---------------------------------------------------------------

def test_vgg_fc67_region_encoder_equals_vgg_classifier():
    torch.manual_seed(0)
    vgg = torchvision.models.vgg16(weights=None).eval()
    fc67 = B.fc67_layers(vgg)
    encoder = RegionEncoder.from_vgg16(fc67).eval()
    assert (encoder.in_features, encoder.out_features) == (512 * 7 * 7, 4096)
    assert encoder.net[0].weight is vgg.classifier[0].weight            # VGG's own weights, shared
    assert [k for k in encoder.state_dict()] == ["net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"]
    image = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        maps = B.VGG16Trunk(vgg)(image)                                  # conv5_3: [1, 512, 7, 7]
        region = bilinear_region_features(maps, torch.tensor([[[0.0, 0, 112, 112]]]), 112, 7, 7)
        ours = encoder(region)[0, 0]                                     # the whole image as one region
        theirs = vgg.classifier[:6](torch.flatten(maps, 1))[0]           # VGG's fc7 on the same 7 x 7 maps
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_region_encoder_default_and_mismatch():
    enc = RegionEncoder(12, 8)
    assert enc(torch.randn(5, 3, 2, 2)).shape == (5, 8)
    layers = nn.Sequential(nn.Linear(12, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 8), nn.ReLU(), nn.Dropout())
    with pytest.raises(ValueError, match="not 13 -> 8 -> 8"):
        RegionEncoder(13, 8, layers=layers)
    with pytest.raises(W.WeightsNotFound, match="--weights vgg16=FILE"):
        B.vgg16_fc67()


def test_backbone_seed_override_needs_its_own_runs_folder(monkeypatch, tmp_path):
    """``MLBOOK_BACKBONE_SEED`` (the measurement of how much the backbone adds to a claim's
    variance) changes the backbone's seed and key; the rows above do not name the backbone in their
    keys, so without a runs folder of its own it is refused rather than mixed into the book's."""
    from mlbook.profiles import backbone_seed, runs_dir
    monkeypatch.delenv("MLBOOK_BACKBONE_SEED", raising=False)
    assert backbone_seed(3) == 3
    monkeypatch.setenv("MLBOOK_BACKBONE_SEED", "7")
    assert backbone_seed(0) == 7
    monkeypatch.delenv("MLBOOK_RUNS", raising=False)
    with pytest.raises(ValueError, match="MLBOOK_RUNS"):
        runs_dir()
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path))
    assert runs_dir() == tmp_path
    monkeypatch.setenv("MLBOOK_BACKBONE_SEED", "x")
    with pytest.raises(ValueError, match="MLBOOK_BACKBONE_SEED"):
        backbone_seed(0)
