"""Backbones: conv feature extractors that every chapter's head sits on.

A backbone maps images [B, 3, S, S] to conv feature maps [B, D, h, w] and
exposes ``out_channels``. Two kinds:

- ``SmallCNN``: the demo/smoke stand-in for an ImageNet-pretrained ResNet, a
  4-layer CNN trained once per data set from scratch (see ``mlbook.stages``).
- torchvision ResNets (full profile): ImageNet weights from the torch hub cache
  or a file the user names. Nothing is downloaded unless asked for explicitly.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Four 3x3 conv-BN-ReLU blocks (32-64-128-128 channels), stride 8 overall.

    At 48 px the output is a 6 x 6 grid of 128-d vectors: the "conv maps" the
    attention and CADM heads work on, like ResNet's 7 x 7 / 14 x 14 conv5 maps.
    """

    def __init__(self, widths=(32, 64, 128, 128)):
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
        return self.body(x)

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
        return SmallCNNTop(self.body[self._block_end(n):], self.out_channels)


class SmallCNNTop(nn.Module):
    """The top blocks of a SmallCNN, fine-tuned on the cached output of its frozen first blocks."""

    def __init__(self, body: nn.Sequential, out_channels: int):
        super().__init__()
        self.body, self.out_channels = body, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and fc: conv5_x maps [B, 2048, S/32, S/32]."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.body = nn.Sequential(*(list(resnet.children())[:-2]))
        self.out_channels = resnet.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


_RESNET_WEIGHTS = {
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "resnet152": "ResNet152_Weights",
}


def imagenet_weights_file(name: str) -> Path:
    """Where torchvision keeps the ImageNet checkpoint of ``name`` in the torch hub cache."""
    import torchvision

    weights = getattr(torchvision.models, _RESNET_WEIGHTS[name]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def resnet_backbone(name: str, weights: str | os.PathLike | None = None, *, download: bool | None = None) -> ResNetTrunk:
    """A ResNet trunk with ImageNet weights.

    ``weights``: a state-dict file the user names; else the torch hub cache
    (``imagenet_weights_file``); ``download=True`` (or ``MLBOOK_DOWNLOAD_WEIGHTS=1``, which
    ``--download-weights`` sets) lets torchvision fetch them. Fails with a message saying
    where to put the file instead of downloading.
    """
    import torchvision

    if name not in _RESNET_WEIGHTS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_RESNET_WEIGHTS)} or 'small_cnn'")
    model = getattr(torchvision.models, name)(weights=None)
    path = Path(weights) if weights else imagenet_weights_file(name)
    if download is None:
        download = os.environ.get("MLBOOK_DOWNLOAD_WEIGHTS", "") == "1"
    if path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    elif download:
        enum = getattr(torchvision.models, _RESNET_WEIGHTS[name]).IMAGENET1K_V1
        model.load_state_dict(enum.get_state_dict(progress=True))
    else:
        raise FileNotFoundError(
            f"ImageNet weights for {name} not found at {path}. Put the torchvision checkpoint there, "
            f"or name a file (python -m mlbook reproduce --weights {name}=FILE; train --weights FILE; "
            f"a chapter's parameter weights={{'{name}': FILE}}), or allow a download explicitly "
            f"(--download-weights, which needs network). Nothing is downloaded silently."
        )
    return ResNetTrunk(model)


def build_backbone(name: str, **kwargs) -> nn.Module:
    if name == "small_cnn":
        return SmallCNN()
    return resnet_backbone(name, **kwargs)


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
