"""What every benchmark shares: timing a training step, the dtypes a bench trains under."""
from __future__ import annotations

import time

import torch


def timed_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds that ``steps`` calls of ``step()`` take after ``warmup`` untimed ones (CUDA synchronised)."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


DTYPES = {None: None, "float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
