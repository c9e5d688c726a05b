"""``bench train --model rlsd``: training-step throughput of the full RLSD model against the regions M."""
from __future__ import annotations

import dataclasses

import torch

from ..experiments import rlsd as rlsd_experiments
from ..experiments.features import trunk_of as shared_trunk
from ..models import backbones
from ..models import rlsd as rlsd_model
from ..profiles import get_profile, pick_device
from .common import DTYPES, timed_steps


def bench_train(profile: str = "demo", steps: int = 10, device: str = "auto", dtype: str | None = None,
               channels_last: bool = False, M_values=(4, 8, 16, 32, 64)) -> dict:
    """Training-step throughput (img/s) of the full RLSD model (localization layer in the loop,
    bilinear sampling, encoder, regional LSTM, Eq. 14) on random conv maps of the profile's trunk
    shape (the small CNN's maps in demo/smoke, VGG16 conv5 in full), at the profile's sizes and
    for each M in ``M_values``. ``dtype``: None (float32) or "bfloat16" / "float16" (autocast);
    ``channels_last``: the maps' memory format. Prints and returns {"profile", "img_per_s", "by_M"}."""
    p = get_profile(profile)
    s = rlsd_experiments.settings_for(p)
    dev = torch.device(pick_device(device))
    C, stride = backbones.trunk_shape(shared_trunk(p, rlsd_experiments.TRUNK))
    side = p.image_size
    h = side // stride
    L, B = (max(p.gen_classes, 20) if p.gen_classes else 80), min(p.batch_size, 64)
    amp = DTYPES[dtype]

    def rate(m: int) -> float:
        torch.manual_seed(0)
        config = dataclasses.replace(rlsd_experiments.model_config(s, C, L), train_regions=m)
        model = rlsd_model.RLSD(config).to(dev).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.randn(B, C, h, h, device=dev)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = (torch.rand(B, L, device=dev) < 0.1).float()

        def step():
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                loss = rlsd_model.rlsd_loss(model(x, side).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return B * steps / timed_steps(step, steps, 1, dev)

    out = {"profile": p.name, "img_per_s": rate(s.train_regions), "by_M": {}}
    print(f"rlsd train step, {p.name} sizes (M={s.train_regions}, grid {s.grid}, fc {s.fc_dim}, "
          f"LSTM {s.hidden}, maps {C}x{h}x{h}, batch {B}, {dev}, {dtype or 'float32'}): {out['img_per_s']:.0f} img/s")
    for m in M_values:
        out["by_M"][m] = rate(m)
        print(f"  M = {m:4d}: {out['by_M'][m]:8.0f} img/s  ({out['by_M'][m] / out['img_per_s']:.2f}x)")
    return out
