"""``bench decode``: the batched beam search of ``mlbook.decoding`` against the per-image reference, on
the Order-Free RNN's own step function (attention, LSTM, prediction layer)."""
from __future__ import annotations

import time

import torch

from ..decoding import beam_search
from ..models.order_free_rnn import OrderFreeConfig, OrderFreeRNN
from ..profiles import pick_device
from .common import sync
from .decoding import beam_search_reference


def bench_decode(n_images: int = 200, num_labels: int = 24, beam: int = 3, max_len: int = 5,
                 feat_dim: int = 128, grid: int = 6, hidden: int = 128, seed: int = 0,
                 threshold: float = 0.05, device: str = "cpu", print_result: bool = True,
                 merge_sets: bool = False) -> dict:
    """Batched beam search vs the per-image reference on one untrained-but-fixed model.

    Same model, same inputs, one run; prints the time of each, the speed-up and
    whether both return the same label sequences. The per-image reference runs on CPU;
    ``device`` is where the batched search runs ("auto" = CUDA if present).
    """
    device = pick_device(device)

    torch.manual_seed(seed)
    model = OrderFreeRNN(OrderFreeConfig(num_classes=num_labels, feat_dim=feat_dim, hidden=hidden,
                                         att_dim=hidden // 2, pred_hidden=hidden)).eval()
    maps = torch.randn(n_images, feat_dim, grid, grid)
    context, state = model.decode_inputs(maps)
    kw = dict(beam=beam, max_len=max_len, threshold=threshold, merge_sets=merge_sets)
    on = lambda xs: tuple(x.to(device) for x in xs)  # noqa: E731
    model.to(device)
    beam_search(model.step_fn, on(context), on(state), num_labels, **kw)         # warm-up
    sync(device)
    t0 = time.perf_counter()
    fast, fast_s = beam_search(model.step_fn, on(context), on(state), num_labels, **kw)
    sync(device)
    t_fast = time.perf_counter() - t0
    fast, fast_s = fast.cpu(), fast_s.cpu()
    model.cpu()
    t0 = time.perf_counter()
    slow, slow_s = beam_search_reference(model.step_fn, context, state, num_labels, **kw)
    t_slow = time.perf_counter() - t0
    same = (fast == slow).all(1).float().mean().item()
    result = {"images": n_images, "beam": beam, "max_len": max_len, "batched_s": t_fast,
              "per_image_s": t_slow, "speedup": t_slow / t_fast, "same_sequences": same,
              "max_abs_score_diff": (fast_s - slow_s).abs().max().item()}
    if print_result:
        print(f"beam search, {n_images} images, beam {beam}, up to {max_len} labels, C={num_labels}, "
              f"batched on {device}")
        print(f"  batched     {t_fast * 1e3:9.1f} ms")
        print(f"  per image   {t_slow * 1e3:9.1f} ms")
        print(f"  speed-up    {t_slow / t_fast:9.1f}x   same sequences: {same:.1%}")
    return result
