"""Backbones: conv feature extractors that every chapter's head sits on.

A backbone ("trunk") maps images [B, 3, S, S] to conv feature maps [B, D, h, w] and
exposes ``out_channels`` (D) and ``stride`` (input pixels per map cell, so h = S / stride
up to the networks' rounding). ``build_backbone(name, weights, download)`` builds them:

- ``small_cnn``: ``SmallCNN``, the demo/smoke stand-in for an ImageNet-pretrained network,
  a 4-layer CNN trained once per data set from scratch (``experiments.shared``).
- ``resnet50`` / ``resnet101`` / ``resnet152``: conv5_x, 2048 channels, stride 32
  (Order-Free RNN: frozen ResNet-152; CADM: ResNet-101 at 448 px).
- ``vgg16``: conv5_3 + ReLU without the last max-pool, 512 channels, stride 16, the maps
  RLSD reads (Sec. III-A-1); ``vgg16_fc67`` gives VGG's own fc6/fc7, its region encoder.
- ``alexnet``: conv5 + max-pool + the 6 x 6 pooling that fc6 reads (pool5), 256 channels
  (the ranking paper's network, Table 1).

ImageNet weights come from checked files (``mlbook.weights``): ``weights`` is None (the torch
hub cache), a state-dict file, or a dict {network name: file}, what ``reproduce --weights
NAME=FILE`` hands the chapters; nothing is downloaded unless ``download=True`` or
``MLBOOK_DOWNLOAD_WEIGHTS=1`` (``--download-weights``). torchvision is imported on first use
only (it costs about a second).
"""
from __future__ import annotations


import torch
from torch import nn

from ..weights import WeightsError, _spec, imagenet_network


# --- the trunks -----------------------------------------------------------------------------------

class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks (16-32-64-128 channels), stride 8 overall.

    At 48 px the output is a 6 x 6 grid of 128-d vectors: the "conv maps" the
    attention and CADM heads work on, like ResNet's 7 x 7 / 14 x 14 conv5 maps.
    The widths are the demo's budget: in the portable numerics (``mlbook.numerics``:
    MKL's SSE2 branch, no oneDNN) a training step of 16-32-64-128 costs about what
    one of 32-64-128-128 costs with each CPU's fastest kernels (a third of the
    multiply-adds: 9.0 M against 28.5 M per image at 48 px).
    """

    stride = 8   # three 2x max-pools

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()
        layers, c_in = [], 3
        for i, c_out in enumerate(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.out_channels = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channels_last(self.body, x)

    def _block_end(self, n: int) -> int:
        """Index in ``body`` just after conv block ``n`` (its pooling included)."""
        ends = [i + 1 for i, m in enumerate(self.body) if isinstance(m, (nn.MaxPool2d,))]
        ends.append(len(self.body))
        if not 0 <= n <= len(ends):
            raise ValueError(f"SmallCNN has {len(ends)} blocks, not {n}")
        return 0 if n == 0 else ends[n - 1]

    def first_blocks(self, n: int) -> nn.Sequential:
        """The first ``n`` conv blocks (shared weights): a frozen stem whose output can be cached."""
        return self.body[:self._block_end(n)]

    def last_blocks(self, n: int) -> "SmallCNNTop":
        """The blocks after the first ``n`` (shared weights), as a backbone on cached stem maps."""
        return SmallCNNTop(self.body[self._block_end(n):], self.out_channels, self.stride)


class SmallCNNTop(nn.Module):
    """The top blocks of a SmallCNN, fine-tuned on the cached output of its frozen first blocks.

    ``stride`` is in pixels of the *image* (the whole SmallCNN's, 8), not of the stem maps it
    reads: its output cells cover the same image pixels as the full network's.
    """

    def __init__(self, body: nn.Sequential, out_channels: int, stride: int = SmallCNN.stride):
        super().__init__()
        self.body, self.out_channels, self.stride = body, out_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channels_last(self.body, x)


def _channels_last(body: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``body(x)`` computed in channels-last layout, returned contiguous: oneDNN's convolutions
    are faster on it (a SmallCNN training step at 48 px, batch 64, one thread: 300-330 img/s
    contiguous, 430-460 channels-last on the book's 2-core CPU). The values differ from the
    contiguous layout's in float rounding only, and repeat bit for bit."""
    return body(x.contiguous(memory_format=torch.channels_last)).contiguous()


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and fc: conv5_x maps [B, 2048, S/32, S/32]."""

    stride = 32
    out_channels = 2048   # ResNet-50/101/152 (bottleneck blocks); set from the network's fc below

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*(list(resnet.children())[:-2]))
        self.out_channels = resnet.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class VGG16Trunk(nn.Module):
    """torchvision VGG16's ``features`` without the last max-pool: conv5_3 + ReLU, [B, 512, S/16, S/16].

    RLSD's image features (Sec. III-A-1: "the output of the last convolutional layer",
    C = 512, H' = floor(H / 16)); regions are then sampled from these maps to 7 x 7 and
    fed to VGG's fc6/fc7 (``vgg16_fc67``), as Fast R-CNN reads conv5_3.
    """

    stride = 16
    out_channels = 512

    def __init__(self, vgg: nn.Module):
        super().__init__()
        if not isinstance(vgg.features[-1], nn.MaxPool2d):
            raise ValueError("expected a torchvision VGG whose features end with the pool5 max-pool")
        self.body = vgg.features[:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AlexNetTrunk(nn.Module):
    """torchvision AlexNet's ``features`` (conv5 + its max-pool) and adaptive 6 x 6 pooling: pool5 [B, 256, 6, 6].

    What fc6 reads (Table 1 of the ranking paper: 6 x 6 x 256 = 9216 inputs). ``stride``
    32 is the network's own downsampling (conv1 stride 4, three 2x max-pools); at the
    224 / 227 px inputs AlexNet is made for, the maps are 6 x 6 and the adaptive pooling
    is the identity; at other sizes it resamples them to 6 x 6.
    """

    stride = 32
    out_channels = 256

    def __init__(self, alexnet: nn.Module):
        super().__init__()
        self.body = nn.Sequential(alexnet.features, alexnet.avgpool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


_TRUNKS = {"resnet50": ResNetTrunk, "resnet101": ResNetTrunk, "resnet152": ResNetTrunk,
           "vgg16": VGG16Trunk, "alexnet": AlexNetTrunk}


def trunk_shape(name: str) -> tuple[int, int]:
    """(out_channels, stride) of the trunk ``name``, without building it."""
    if name == "small_cnn":
        return 128, SmallCNN.stride
    if name not in _TRUNKS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {backbone_names()}")
    return _TRUNKS[name].out_channels, _TRUNKS[name].stride


def backbone_names() -> list[str]:
    return ["small_cnn", *_TRUNKS]


# --- building ---------------------------------------------------------------------------------------

def _trunk_of(name: str, network: nn.Module) -> nn.Module:
    return _TRUNKS[name](network)


def build_backbone(name: str, weights=None, download: bool | None = None) -> nn.Module:
    """The trunk ``name`` (see the module docstring); the ImageNet ones with checked weights.

    ``weights``: None (the torch hub cache), a file, or {network name: file}. ``small_cnn`` is
    returned untrained (its weights come from the shared-backbone stage, not from a file).
    """
    if name == "small_cnn":
        if weights is not None and not isinstance(weights, dict):
            raise WeightsError(f"small_cnn has no ImageNet weights file (got {weights}); its weights are "
                               "trained by the shared-backbone stage")
        return SmallCNN()
    if name not in _TRUNKS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {backbone_names()}")
    return _trunk_of(name, imagenet_network(name, weights, download))


def random_backbone(name: str) -> nn.Module:
    """The trunk ``name`` with random weights: for shapes, FLOP counts and speed, never for results.
    Works on the meta device (``with torch.device("meta"): random_backbone(...)``)."""
    if name == "small_cnn":
        return SmallCNN()
    if name not in _TRUNKS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {backbone_names()}")
    return _trunk_of(name, _spec(name).builder(weights=None))


def fc67_layers(vgg: nn.Module) -> nn.Sequential:
    """fc6 (25088 -> 4096), ReLU, Dropout, fc7 (4096 -> 4096), ReLU, Dropout of a torchvision VGG
    (its ``classifier`` without fc8), sharing its weights. Reads a flattened 512 x 7 x 7 region
    in (channel, row, column) order, as VGG flattens pool5."""
    layers = vgg.classifier[:6]
    kinds = [type(m) for m in layers]
    if kinds != [nn.Linear, nn.ReLU, nn.Dropout] * 2:
        raise ValueError(f"not a torchvision VGG classifier: {kinds}")
    return layers


def vgg16_fc67(weights=None, download: bool | None = None) -> nn.Sequential:
    """VGG16's pretrained fc6/fc7 with their ReLU/Dropout: RLSD's region encoder (Sec. III-A-3,
    "two 4096-d fully-connected layers ... regularized by dropout"), on a flattened 7 x 7 x 512
    region. ``weights`` as ``build_backbone``'s (the vgg16 file, checked)."""
    return fc67_layers(imagenet_network("vgg16", weights, download))


# --- heads --------------------------------------------------------------------------------------------

class GlobalPoolClassifier(nn.Module):
    """Backbone + global pooling + linear: the "ResNet baseline" of the papers.

    ``pool="avg"`` is what torchvision's ResNet does; CADM's baseline uses
    global max pooling (``pool="max"``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, pool: str = "avg"):
        super().__init__()
        self.backbone, self.pool = backbone, pool
        self.fc = nn.Linear(backbone.out_channels, num_classes)

    def pooled(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.amax(dim=(2, 3)) if self.pool == "max" else maps.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pooled(self.backbone(x)))
