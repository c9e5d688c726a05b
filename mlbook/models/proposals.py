"""Object proposals from a proposal tool, for the MCG-CNN+LSTM baseline (RLSD, Sec. IV-C-c).

The paper feeds the top-256 MCG proposals of each image to the regional LSTM. MCG
is a MATLAB tool with no maintained Python package, so the book substitutes
selective search (Uijlings et al. 2013, the paper's [43]), another single-object
proposal method, from OpenCV contrib (``opencv-contrib-python-headless``).
"""
from __future__ import annotations

import numpy as np
import torch

MIN_SIDE = 128   # selective search's graph segmentation needs more than a demo image's 48 px


def _ximgproc():
    try:
        import cv2
    except ImportError:
        raise ImportError("selective search needs OpenCV with the contrib modules: "
                          "pip install opencv-contrib-python-headless") from None
    if not hasattr(cv2, "ximgproc"):
        raise ImportError("this OpenCV has no ximgproc (contrib) module: uninstall opencv-python(-headless) "
                          "and pip install opencv-contrib-python-headless")
    return cv2


def selective_search_boxes(image, top: int = 256, mode: str = "fast", min_side: int = MIN_SIDE) -> torch.Tensor:
    """Selective search proposals [n <= top, 4] as float (x1, y1, x2, y2) pixels, in its ranking order.

    ``image``: a PIL image or an H x W x 3 uint8 RGB array. ``mode``: "fast" or
    "quality" (OpenCV's two strategies) or "single". Images whose shorter side is below
    ``min_side`` are upsampled for the search and the boxes scaled back.
    """
    cv2 = _ximgproc()
    rgb = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 image, got {rgb.shape} {rgb.dtype}")
    H, W = rgb.shape[:2]
    scale = max(1.0, min_side / min(H, W))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])                 # OpenCV's channel order
    if scale > 1:
        bgr = cv2.resize(bgr, (round(W * scale), round(H * scale)), interpolation=cv2.INTER_LINEAR)
    sy, sx = bgr.shape[0] / H, bgr.shape[1] / W
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    strategies = {"fast": ss.switchToSelectiveSearchFast, "quality": ss.switchToSelectiveSearchQuality,
                  "single": ss.switchToSingleStrategy}
    if mode not in strategies:
        raise ValueError(f"mode must be one of {sorted(strategies)}, not {mode!r}")
    strategies[mode]()
    rects = ss.process()[:top]                                  # (x, y, w, h), ranked
    boxes = torch.as_tensor(np.asarray(rects, dtype=np.float32).reshape(-1, 4))
    boxes[:, 2:] += boxes[:, :2]
    boxes[:, 0::2] /= sx
    boxes[:, 1::2] /= sy
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
    return boxes
