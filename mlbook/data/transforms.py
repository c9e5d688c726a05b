"""Image transforms: the on-disk path (PIL -> tensor) and the in-memory path (uint8 batches).

Both give the same tensors: resize to a square side with PIL's bilinear filter
(torchvision's Resize on a PIL image), scale to [0, 1], normalise with the
ImageNet mean and std (what the full profile's ImageNet backbones expect; the
demo backbone is trained with the same normalisation so the code path is one).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torchvision import transforms as T

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def image_transform(size: int, train: bool) -> T.Compose:
    """PIL image -> normalised float tensor [3, size, size]; a random horizontal flip when training.
    torchvision is imported here, on first use: importing it costs a process 1.7 s (it imports torch._dynamo)."""
    from torchvision import transforms as T

    steps = [T.Resize((size, size))]
    if train:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + [T.ToTensor(), T.Normalize(MEAN, STD)])


def normalize_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 batch [N, 3, H, W] -> the float tensors ``image_transform`` would give."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def random_hflip(images: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Flip each image of a batch left-right with probability ``p`` (torch's global RNG)."""
    flip = torch.rand(images.shape[0], device=images.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
