"""``bench train --model transformation_ranking``: training throughput of the transformation ranking
model on synthetic tensors."""
from __future__ import annotations

import warnings

import torch

from ..experiments.transformation_ranking import FrozenMapsRanker, settings_for
from ..models import transformation_ranking as transformation_ranking_model
from ..profiles import get_profile, pick_device
from .common import timed_steps


def bench_train(profile: str = "demo", batch_size: int | None = None, steps: int = 10, device: str = "auto",
                  dtype: str | None = None, channels_last: bool = False, warmup: int = 2, num_labels: int = 81,
                  k: int = 100) -> dict:
    """Training throughput (img/s) of the transformation ranking model (forward, Eq. 3 hinge rank
    loss over the label vectors, backward, Adam step) on synthetic tensors.

    Demo/smoke: the chapter's head on frozen 128 x 6 x 6 conv maps (``FrozenMapsRanker``, A = k x 384
    with MiniLM's d); full: AlexNet with fc8 = k x 300 (Table 1) at 224 px, randomly initialised
    (weights do not change the speed). Returns {"img/s": ...}.
    """
    prof = get_profile(profile)
    dev = torch.device(pick_device(device))
    amp_dtype = {None: None, "float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    g = torch.Generator().manual_seed(0)
    if prof.backbone == "small_cnn":
        st = settings_for(prof)
        d, bs = 384, batch_size or st.batch_size
        net = FrozenMapsRanker(128 * 36, st.hidden, k, d, st.dropout)     # the chapter's demo head
        x = torch.randn(bs, 128, 6, 6, generator=g)
        what = f"head on 128x6x6 maps (hidden {st.hidden}), k={k}, d={d}"
    else:
        d, bs = transformation_ranking_model.PAPER_D, batch_size or prof.batch_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net = transformation_ranking_model.alexnet_transformation_net(k, d)
        x = torch.randn(bs, 3, 224, 224, generator=g)
        what = f"AlexNet 224 px, k={k}, d={d}"
    memory = torch.channels_last if channels_last and x.ndim == 4 else torch.contiguous_format
    net = net.to(dev).to(memory_format=memory).train()
    x = x.to(dev).contiguous(memory_format=memory)
    W = torch.nn.functional.normalize(torch.randn(num_labels, d, generator=g), dim=1).to(dev)
    y = (torch.rand(bs, num_labels, generator=g) < 0.03).float().to(dev)
    y[:, 0] = 1
    opt = torch.optim.Adam(net.parameters(), lr=1e-6)

    def step():
        with torch.autocast(device_type=dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            A = net(x).float()
        loss = transformation_ranking_model.hinge_rank_loss(transformation_ranking_model.label_norms(A, W), y, margin=1.0, n_negatives=40, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rate = bs * steps / timed_steps(step, steps, warmup, dev)
    print(f"train ranking ({what}) batch {bs} L={num_labels} on {dev} dtype={dtype or 'float32'} "
          f"channels_last={channels_last}: {rate:8.1f} img/s")
    return {"img/s": rate}
