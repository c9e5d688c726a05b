"""`python -m mlbook plan --profile full [--gpu h100]`: what the full book costs on a GPU, before renting one.

For every training run the full profile makes, the FLOPs of one image (forward, and
forward + backward where the network trains) are counted by
``torch.utils.flop_counter.FlopCounterMode`` on the meta device (no memory, no
weights, nothing typed in), multiplied by the images and epochs the run sees, and
turned into GPU hours at a stated utilisation of the named GPU's dense bf16 peak.
Epochs are the budgets (early stopping can only end a run sooner), so the hours are
an upper estimate at that utilisation; data loading and evaluation are not counted.
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

#: dense bf16 peak of the GPUs a user is likely to rent (vendor data sheets), FLOP/s
GPU_PEAK = {"h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12}
#: images per split of the real data sets as the loaders read them (after dropping unlabelled ones)
SPLITS = {"coco": (82081, 40137), "nuswide": (125449, 83898), "voc": (5011, 4952)}


def count_flops(build, inputs: tuple, train: bool) -> float:
    """FLOPs of one forward (and backward if ``train``) of ``build()`` on meta-device inputs."""
    with torch.device("meta"):
        model = build()
        args = tuple(torch.empty(s, device="meta") for s in inputs)
    model.train(train)
    with FlopCounterMode(display=False) as counter:
        out = model(*args)
        if train:
            (out if torch.is_tensor(out) else out["logits"]).sum().backward()
    return float(counter.get_total_flops())


@dataclasses.dataclass
class RunCost:
    chapter: str
    run: str
    dataset: str
    flops_per_image: float   # one pass (forward, or forward + backward when training)
    images: int
    epochs: int
    runs: int                # variants x training seeds

    @property
    def flops(self) -> float:
        return self.flops_per_image * self.images * self.epochs * self.runs


def full_book_runs(seeds: int = 3) -> list[RunCost]:
    """Every training run of the full profile, with its FLOPs counted on the meta device."""
    import torchvision

    from .experiments.order_free_rnn import settings_for
    from .models.backbones import ResNetTrunk
    from .models.cadm import VARIANTS, CADMNet
    from .models.order_free_rnn import OrderFreeConfig, OrderFreeRNN
    from .profiles import get_profile

    full = get_profile("full")
    S = full.image_size
    trunk = lambda name: (lambda: ResNetTrunk(getattr(torchvision.models, name)(weights=None)))  # noqa: E731
    runs = []
    r152 = count_flops(trunk("resnet152"), ((1, 3, S, S),), train=False)
    s = settings_for(full)
    h = w = S // 32
    for d in ("nuswide", "coco"):
        n_train, n_test = SPLITS[d]
        C = 81 if d == "nuswide" else 80
        runs.append(RunCost("04", "ResNet-152 features (frozen, forward)", d, r152, n_train + n_test, 1, 1))
        head = lambda: _StepLoss(OrderFreeRNN(OrderFreeConfig(num_classes=C, feat_dim=2048, hidden=s.hidden,  # noqa: E731
                                                               att_dim=s.att_dim, pred_hidden=s.pred_hidden)), C)
        f = count_flops(head, ((1, 2048, h, w),), train=True)
        runs.append(RunCost("04", "Order-Free RNN rows (4 rows)", d, f, n_train, s.epochs, 4 * seeds))
        lin = lambda: torch.nn.Linear(2048, C)  # noqa: E731
        runs.append(RunCost("04", "baseline heads (Softmax, WARP, ResNet baseline)", d,
                            count_flops(lin, ((1, 2048),), train=True), n_train, s.epochs, 2 + seeds))
    for d, C in (("coco", 80), ("nuswide", 81)):
        n_train = SPLITS[d][0]
        build = lambda: CADMNet(trunk("resnet101")(), C, (h, w), streams="both", embedding=True)  # noqa: E731
        f = count_flops(build, ((1, 3, S, S),), train=True)
        runs.append(RunCost("05", f"CADM fine-tuning ({len(VARIANTS)} variants)", d, f, n_train, 60,
                            len(VARIANTS) * seeds))
    runs += _rlsd_runs(seeds, S, r101 := count_flops(trunk("resnet101"), ((1, 3, S, S),), train=False))
    runs += _ranking_runs(seeds, S)
    return runs


def _rlsd_runs(seeds: int, S: int, r101: float) -> list[RunCost]:
    """Chapter 06 on frozen ResNet-101 maps: features once, then the CNN+LSTM (global) row and the
    three region rows (RLSD, SS-CNN+LSTM, RLSD+ft-RPN; the last on VOC and COCO) per seed."""
    from .experiments.rlsd import settings_for
    from .models.rlsd import RLSD, RLSDConfig
    from .profiles import get_profile

    s = settings_for(get_profile("full"))
    h = S // 32

    class Rows(torch.nn.Module):
        def __init__(self, mode, C):
            super().__init__()
            self.m = RLSD(RLSDConfig(in_channels=2048, num_labels=C, mode=mode, grid=s.grid, fc_dim=s.fc_dim,
                                     embed=s.embed, hidden=s.hidden, max_steps=s.max_steps,
                                     train_regions=s.train_regions))

        def forward(self, maps, boxes):
            return self.m(maps, S, boxes=boxes)

    runs = []
    for d, C in (("voc", 20), ("coco", 80), ("nuswide", 81)):
        n_train, n_test = SPLITS[d]
        runs.append(RunCost("06", "ResNet-101 features (frozen, forward)", d, r101, n_train + n_test, 1, 1))
        for mode, name, rows in (("global", "CNN+LSTM (global)", 1), ("rlsd", "region rows", 3 if d != "nuswide" else 2)):
            f = count_flops(lambda: Rows(mode, C), ((1, 2048, h, h), (1, s.train_regions, 4)), train=True)
            runs.append(RunCost("06", f"{name} ({rows} row(s))", d, f, n_train, s.epochs, rows * seeds))
    return runs


def _ranking_runs(seeds: int, S: int) -> list[RunCost]:
    """Chapter 07: the transformation head on pooled frozen ResNet-101 maps (NUS-WIDE): MiniLM and
    random vectors per seed, the k sweep and the two zero-shot rows."""
    from .experiments.transformation_ranking import FrozenMapsRanker, settings_for
    from .profiles import get_profile

    s = settings_for(get_profile("full"))
    f = count_flops(lambda: FrozenMapsRanker(2048, s.hidden, s.k, 384, s.dropout, pool=True),
                    ((1, 2048, S // 32, S // 32),), train=True)
    n = 2 * seeds + len(s.k_sweep) + 2
    return [RunCost("07", f"transformation ranking rows ({n} runs)", "nuswide", f, SPLITS["nuswide"][0], s.epochs, n)]


class _StepLoss(torch.nn.Module):
    """The Order-Free RNN unrolled for 3 steps (about the mean label count of COCO, 2.9):
    M_map, then M_att and M_pred per step, as its training loss runs them."""

    def __init__(self, model, num_classes: int, steps: int = 3):
        super().__init__()
        self.model, self.C, self.steps = model, num_classes, steps

    def forward(self, maps):
        context, state, logits = self.model.begin(maps)
        emitted = torch.zeros(maps.shape[0], self.C, dtype=torch.bool, device=maps.device)
        total = logits.sum()
        for _ in range(self.steps):
            p, state, _ = self.model.step(context, state, emitted)
            total = total + p.sum()
        return total


def plan(gpu: str = "h100", utilisation: float = 0.4, seeds: int = 3) -> pd.DataFrame:
    """The cost table: one row per run, GPU hours at ``utilisation`` of the GPU's bf16 peak, and a total."""
    if gpu not in GPU_PEAK:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of {sorted(GPU_PEAK)}")
    rate = GPU_PEAK[gpu] * utilisation
    runs = full_book_runs(seeds)
    rows = [{"chapter": r.chapter, "run": r.run, "data set": r.dataset,
             "GFLOPs / image": f"{r.flops_per_image / 1e9:.4g}", "images x epochs x runs":
             f"{r.images:,} x {r.epochs} x {r.runs}", "PFLOPs": round(r.flops / 1e15, 2),
             "GPU hours": round(r.flops / rate / 3600, 2)} for r in runs]
    rows.append({"chapter": "", "run": f"total ({gpu.upper()}, {utilisation:.0%} of {GPU_PEAK[gpu] / 1e12:.0f} "
                 "TFLOP/s bf16)", "data set": "", "GFLOPs / image": "", "images x epochs x runs": "",
                 "PFLOPs": round(sum(r.flops for r in runs) / 1e15, 1),
                 "GPU hours": round(sum(r.flops for r in runs) / rate / 3600, 1)})
    return pd.DataFrame(rows)
