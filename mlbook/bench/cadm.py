"""``bench train --model cadm [--rows baseline,lambda0.5]``: training throughput of the CADM variants on synthetic tensors."""
from __future__ import annotations

import torch

from ..experiments.cadm import Settings, make_optimizer
from ..models.backbones import ResNetTrunk, SmallCNN
from ..models.cadm import VARIANTS, feature_map_size, make_loss, make_model
from ..profiles import get_profile, pick_device
from .common import DTYPES, timed_steps

def bench_train(rows: tuple[str, ...] = ("baseline", "lambda0.5"), profile: str = "demo", image_size: int | None = None,
                batch_size: int | None = None, steps: int = 10, device: str = "auto",
                dtype: str | None = None, channels_last: bool = False, warmup: int = 2,
                num_classes: int | None = None) -> dict:
    """Training throughput (img/s) of the baseline and CADM lambda = 0.5 on synthetic tensors.

    Sizes come from the profile (demo: SmallCNN at 48 px; full: ResNet-101 at 448 px,
    randomly initialised since weights do not change the speed); ``image_size`` and
    ``batch_size`` override. ``dtype`` "bfloat16"/"float16" trains under autocast
    (float16 with a gradient scaler on CUDA); ``channels_last`` converts model and input.
    One full SGD step (forward, Eq. 5 loss, backward, update) is timed per batch.
    ``rows``: the variants timed (``--rows``). Prints one line per variant and the CADM / baseline
    ratio; returns {variant: img/s}.
    """
    prof = get_profile(profile)
    size, bs = image_size or prof.image_size, batch_size or prof.batch_size
    classes = num_classes or prof.gen_classes or 80
    unknown = [r for r in rows if r not in VARIANTS]
    if unknown:
        raise ValueError(f"--rows: no CADM variant {', '.join(unknown)}; choose among {', '.join(VARIANTS)}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
    amp_dtype = DTYPES[dtype]
    dev = torch.device(pick_device(device))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    memory = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator().manual_seed(0)
    x = torch.randn(bs, 3, size, size, generator=g)  # stands for normalised images
    y = (torch.rand(bs, classes, generator=g) < 0.15).float()
    y[torch.arange(bs), torch.randint(0, classes, (bs,), generator=g)] = 1.0
    batch = (x.to(dev).contiguous(memory_format=memory), y.to(dev), torch.zeros_like(y, dtype=torch.bool).to(dev))

    results = {}
    for variant in rows:
        torch.manual_seed(0)
        if prof.backbone == "small_cnn":
            backbone = SmallCNN()
        else:
            import torchvision

            backbone = ResNetTrunk(getattr(torchvision.models, prof.backbone)(weights=None))
        net = make_model(variant, backbone, classes, feature_map_size(backbone, size)).to(dev).to(memory_format=memory).train()
        loss_fn = make_loss(VARIANTS[variant]["lam"])
        opt = make_optimizer(Settings(epochs=1))(net)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16 and dev.type == "cuda")

        def step():
            with torch.autocast(device_type=dev.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                loss = loss_fn(net, batch)["loss"]
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        results[variant] = bs * steps / timed_steps(step, steps, warmup, dev)
        print(f"train {variant:9s} {prof.backbone} {size}px batch {bs} C={classes} on {dev} "
              f"dtype={dtype or 'float32'} channels_last={channels_last}: {results[variant]:8.1f} img/s")
    if "baseline" in results and "lambda0.5" in results:
        print(f"CADM (lambda=0.5) / baseline throughput ratio: {results['lambda0.5'] / results['baseline']:.2f}")
    return results
