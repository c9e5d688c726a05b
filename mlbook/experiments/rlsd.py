"""Training and evaluating the RLSD rows of Tables I-IV (Zhang et al., TMM 2018; chapter 06): the
paper's face (``rows``, ``stages``, ``grid``, ``run``, ``claim_values``, ``claim_options``). It reads
three lower modules: ``rlsd_setup`` (the settings, the row specifications and the inputs every run
shares), ``rlsd_regions`` (the region sources: the stages) and ``rlsd_evidence`` (the claims'
evidence); none of them imports this one.

Stages (cached, on the frozen conv maps of the trunk; rows of ``run`` too, so a grid lists them):
- "localization (region set)" (Sec. III-D-a): the localization layer trained on a region set
  (genuine Visual Genome at ``vg_root`` or the generated stand-in), then frozen;
  "localization (ft-RPN)" (Sec. IV-A): that layer fine-tuned on the clustered object boxes of
  the target training images. Each stores the regions the frozen layer gives every image
  (training: the top and the lowest M/2 of all anchors by confidence; test: NMS, top M). The
  region-set layer is trained once per training seed (its regions' claim reads them all); the
  rows read training seed 0's layer, and ft-RPN fine-tunes that one.
- "selective search": the proposals of every image (MCG replaced), selected by the SAME rule:
  training the first and the last M/2 of its whole ranking, test the first M.
Rows (``ROW_SPECS``, one training seed each): the paper's CNN+LSTM (global mode, Eq. 14; also the
LSTM pre-training), RLSD, SS-CNN+LSTM and RLSD+ft-RPN (initialised from the CNN+LSTM of the
same seed), and the book's controls and ablations, each differing from its ``parent`` in one
field of ``Row``. Baselines (``mlbook.experiments.baselines`` on the same trunk): Multi-CNN (the
linear head with BCE), WARP, CNN-RNN, KNN, softmax. Results hold the test scores [N, L] and the
history; metrics are computed after loading.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..costs import (RunCost, map_input, maps_label, measured, outputs_bytes, row_disk, ss_seconds,
                     training_memory, trunk_net, weights_file_bytes)
from ..data import NUM_CLASSES
from ..models import baselines as baseline_models
from ..models import rlsd as rlsd_model
from ..models import rlsd_localization
from ..profiles import get_profile, pick_device
from ..train import fit
from . import baselines, features, shared
from .rlsd_evidence import claim_options, claim_values
from .protocol import Protocol, first_test_image, forward_flops, record, trainable_parameters
from .rlsd_regions import folder_key, layer_regions, pretrain_localization, proposals
from .rlsd_setup import (BASELINE_ROWS, ROW_SPECS, STAGE_KEYS, TRUNK, Row, Settings, base_config, frozen_features,
                         image_side, model_config, region_encoder, settings_for)

OPTIONS = ("vg_root", "proposals_root")


def rows(profile) -> tuple[str, ...]:
    """Every RLSD-family row this module trains (``ROW_SPECS``), by the name its table prints; the
    baselines' rows are ``mlbook.experiments.baselines``'s."""
    return tuple(ROW_SPECS)


def stages(profile) -> tuple[str, ...]:
    """The shared steps several rows read (``STAGE_KEYS``): the localization layers and the proposals."""
    return tuple(STAGE_KEYS)


def grid(profile, datasets, seeds, boxed=("voc", "coco")) -> list[shared.Run]:
    """Every run of chapter 06, in waves: the stages; the ft-RPN layer (data sets with boxes), the
    baselines and the rows that start from scratch; then the rows that start from CNN+LSTM."""
    runs = shared.feature_runs(datasets, trunk=TRUNK)
    runs += [shared.Run("rlsd", "localization (region set)", d, s) for d in datasets for s in seeds]
    runs += [shared.Run("rlsd", "selective search", d) for d in datasets]
    runs += [shared.Run("rlsd", "localization (ft-RPN)", d, wave=1) for d in datasets if d in boxed]
    runs += [dataclasses.replace(r, wave=1) for r in baselines.grid(profile, datasets, seeds,
                                                                      rows=tuple(BASELINE_ROWS.values()), trunk=TRUNK)]
    runs += [shared.Run("rlsd", row, d, s, wave=2 if spec.init else 1) for row, spec in ROW_SPECS.items()
             for d in datasets if (spec.regions != "ft" or d in boxed) and (not spec.datasets or d in spec.datasets)
             for s in seeds]
    return runs


def _boxes_list(boxes: torch.Tensor, counts: torch.Tensor) -> list[torch.Tensor]:
    return [b[:int(n)] for b, n in zip(boxes, counts)]


@torch.no_grad()
def _batched(fn, x: torch.Tensor, *more, device: str = "cpu", batch: int = 256) -> torch.Tensor:
    """fn(x[i:i+b], *more[i:i+b]) over batches on ``device``, concatenated on the CPU."""
    return torch.cat([fn(x[i:i + batch].to(device).float(), *(m[i:i + batch] for m in more)).cpu()
                      for i in range(0, len(x), batch)])


def predict_scores(model: rlsd_model.RLSD, maps: torch.Tensor, side: int, boxes=None, counts=None,
                   device: str = "cpu") -> torch.Tensor:
    """Fused p (Eq. 13) of every image, in eval mode, computed on ``device``; returned on the CPU."""
    model.to(device).eval()
    if boxes is None:
        return _batched(lambda x: model(x, side), maps, device=device)
    return _batched(lambda x, b, n: model(x, side, boxes=[r.to(device) for r in _boxes_list(b, n)]),
                    maps, boxes, counts, device=device)


def _whole_image_logits(head, maps: torch.Tensor, side: int, grid: int) -> torch.Tensor:
    """Multi-CNN (2-fc): the whole image read as CNN+LSTM reads it (bilinear grid, Sec. III-A-2b),
    the region encoder's two fc layers, then a linear layer to the labels."""
    whole = rlsd_localization.whole_image_box(side, maps).expand(len(maps), 1, 4)
    regions = rlsd_model.bilinear_region_features(maps.float(), whole, side, grid, grid)
    return head["out"](head["encoder"](regions[:, 0]))


def _fit_control(row: str, spec: Row, feats: dict, data, s: Settings, profile, side: int, *, seed: int,
                 train_seed: int, device: str, weights, folder: Path) -> dict:
    """A Multi-CNN control, on Multi-CNN's own optimizer settings (``baselines.settings_for``):
    head "linear" (pooled maps, as Multi-CNN) or "2fc" (the region encoder as RLSD's starts,
    ``region_encoder``); loss "bce" (as Multi-CNN) or "eq14"."""
    hs = baselines.settings_for(profile)
    L = data.train.num_classes
    torch.manual_seed(train_seed)
    if spec.head == "2fc":
        encoder = region_encoder(s, weights)
        if encoder is None:   # random: drawn as the global model draws it
            encoder = rlsd_model.RLSD(model_config(s, feats["train"].shape[1], L, "global")).encoder
        model = torch.nn.ModuleDict({"encoder": encoder, "out": torch.nn.Linear(encoder.out_features, L)})
        logits = lambda m, x: _whole_image_logits(m, x, side, s.grid)  # noqa: E731
        x_train, x_test = feats["train"], feats["test"]
    else:
        model, logits = baseline_models.LinearHead(feats["train"].shape[1], L), lambda m, x: m(x)  # noqa: E731
        x_train, x_test = (features.pooled(feats[split], device) for split in ("train", "test"))   # lazy maps too
    if spec.loss == "bce":
        bce = baseline_models.HEAD_LOSSES["bce"]
        loss, prob = (lambda m, b: bce(logits(m, b[0]), b[1])), torch.sigmoid  # noqa: E731
    else:   # Eq. 14 on a softmax over the labels
        loss = lambda m, b: rlsd_model.rlsd_loss(logits(m, b[0]).softmax(-1), b[1], b[2])  # noqa: E731
        prob = lambda z: z.softmax(-1)  # noqa: E731
    inputs = (x_train, data.train.labels, shared.ignore_mask(data.train))
    history = baselines.train_head(model, inputs, loss, hs, seed=seed, train_seed=train_seed, device=device,
                                   folder=folder, desc=row)
    dev = pick_device(device)
    model.to(dev).eval()
    return {"history": history, "scores": _batched(lambda x: prob(logits(model, x)), x_test, device=dev),
            "head_settings": dataclasses.asdict(hs)}


def fit_lstm_row(row: str, spec: Row, dataset: str, feats: dict, data, s: Settings, profile, *, folder: Path, root=None,
                 seed: int = 0, train_seed: int = 0, device: str = "auto", weights=None, vg_root=None,
                 proposals_root=None, settings: dict | None = None):
    """Train one LSTM row (CNN+LSTM, or RLSD and its region variants: Eqs. 5-14) on the fit part,
    early stopping on the hold-out part. A row that starts from CNN+LSTM reads CNN+LSTM's run with
    the same ``settings``; a row with regions reads its stage (the frozen layer, or the proposals).
    Returns (model, {"config", "init", "history"}, the regions stage or None)."""
    side = image_side(profile)
    mode = "global" if spec.regions is None else "rlsd"
    torch.manual_seed(train_seed)
    model = rlsd_model.RLSD(model_config(s, feats["train"].shape[1], data.train.num_classes, mode, spec.fusion),
                            encoder=region_encoder(s, weights))   # the init rows then copy CNN+LSTM's
    out: dict = {"config": dataclasses.asdict(model.cfg), "init": []}
    y = data.train.labels
    tensors = [feats["train"], y, shared.ignore_mask(data.train)]
    regions = None
    if spec.init:
        base = run("CNN+LSTM", dataset, profile, root=root, seed=seed, train_seed=train_seed, device=device,
                   weights=weights, vg_root=vg_root, settings=settings)
        out["init"] = model.init_from_global(base["state_dict"])            # Sec. III-D-b
    if spec.regions is not None:
        regions = run({v: k for k, v in STAGE_KEYS.items()}[spec.regions], dataset, profile, root=root,
                      seed=seed, device=device, weights=weights, vg_root=vg_root, proposals_root=proposals_root)
        if spec.regions in ("vg", "ft"):
            model.loc.load_state_dict(regions["state_dict"])
        model.loc.requires_grad_(False)                                     # frozen (Sec. III-D)
        tensors += [regions["regions_train"][:, :s.train_regions],
                    regions["counts_train"].clamp(max=s.train_regions)]

    def loss_fn(m, batch):
        x, yy, ii = batch[:3]
        b = _boxes_list(*batch[3:]) if len(batch) > 3 else None
        return rlsd_model.rlsd_loss(m(x.float(), side, boxes=b), yy, ii)     # Eqs. 13-14

    fit_idx, val_idx = shared.holdout_split(len(y), s.holdout, seed)
    part = lambda idx: torch.utils.data.TensorDataset(*(t[idx] for t in tensors))  # noqa: E731
    params = [p for p in model.parameters() if p.requires_grad]
    out["history"] = fit(model, part(fit_idx), loss_fn, epochs=s.epochs, batch_size=s.batch_size, device=device,
                         seed=train_seed, val_dataset=part(val_idx), patience=s.patience,
                         make_optimizer=lambda m: torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay),
                         checkpoint=folder / "checkpoint.pt", desc=f"{row} {dataset}", progress=False)
    return model, out, regions


def run(row: str, dataset: str, profile, *, root: str | None = None, seed: int = 0, train_seed: int = 0,
        device: str = "auto", weights=None, vg_root: str | None = None, proposals_root: str | None = None,
        settings: dict | None = None, force: bool = False) -> dict:
    """Train and evaluate one RLSD-family row (``ROW_SPECS``), or compute one stage (``STAGE_KEYS``),
    cached. A row returns {"scores" [N_test, L] (p of Eq. 13, or the control's probabilities), "history",
    "config", "init" (tensors copied from CNN+LSTM), "state_dict"}."""
    if row in STAGE_KEYS:
        if STAGE_KEYS[row] == "ss":
            return proposals(dataset, profile, root, seed, force=force, proposals_root=proposals_root)
        return pretrain_localization(dataset, profile, root, seed, device, weights, vg_root, STAGE_KEYS[row], force,
                                     train_seed=train_seed)
    profile = get_profile(profile)
    s = dataclasses.replace(settings_for(profile), **(settings or {}))
    side = image_side(profile)
    dev = pick_device(device)
    ctx = shared.context(dataset, profile, root, seed)
    data = ctx.data
    spec = ROW_SPECS[row]
    row_fields = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("serves", "datasets")}
    config = {**base_config("row", dataset, profile, root, seed, weights, s), "method": row, "row": row_fields,
              "train_seed": train_seed, "vg": ("real" if vg_root else "generated") if spec.regions in ("vg", "ft") else None,
              "proposals": folder_key(proposals_root) if spec.regions == "ss" else None}

    def compute(folder: Path) -> dict:
        feats = frozen_features(dataset, profile, root, seed, device, weights)
        if spec.head != "lstm":                                                 # a Multi-CNN control
            return _fit_control(row, spec, feats, data, s, profile, side, seed=seed, train_seed=train_seed,
                                device=device, weights=weights, folder=folder)
        model, out, regions = fit_lstm_row(row, spec, dataset, feats, data, s, profile, folder=folder, root=root, seed=seed,
                                           train_seed=train_seed, device=device, weights=weights, vg_root=vg_root,
                                           proposals_root=proposals_root, settings=settings)
        test_boxes = () if regions is None else (regions["regions_test"], regions["counts_test"])
        out["scores"] = predict_scores(model, feats["test"], side, *test_boxes, device=dev)
        out["state_dict"] = {k: v.cpu() for k, v in model.state_dict().items() if not k.startswith("loc.")}
        return out

    return ctx.cached("rlsd", config, compute, code=(run,), force=force)


# --- chapter 08's protocol -------------------------------------------------------------------------

METHOD_ROW = "RLSD"   # the paper's method: regions of the layer trained on the region set, the LSTM from CNN+LSTM

def protocol_knobs(profile) -> tuple[dict, ...]:
    """No knob of its own under chapter 08's protocol: M, T and its sizes are chapter 06's."""
    return ({},)


def protocol_run(dataset: str, profile, protocol: Protocol, *, lr: float, knob: dict, root: str | None = None,
                 seed: int = 0, train_seed: int = 0, device: str = "auto", weights=None, force: bool = False,
                 vg_root: str | None = None, proposals_root: str | None = None) -> dict:
    """The paper's method, "RLSD" (the regions of the localization layer trained on the region set; the
    LSTM starts from CNN+LSTM trained under the same protocol), under chapter 08's protocol
    (``experiments.protocol``), cached. It reads its own trunk's maps (``TRUNK``): the shared small CNN
    in demo and smoke, as every row; VGG16 in the full profile, where the other rows read ResNet-101
    (its region pipeline is built on VGG16's stride-16 maps). Scores: p of Eq. 13 on the test
    images and on the hold-out images, each with the test rule's regions of the frozen layer."""
    profile = get_profile(profile)
    settings = protocol.fit_settings(lr)
    s = dataclasses.replace(settings_for(profile), **settings)
    side = image_side(profile)
    dev = pick_device(device)
    ctx = shared.context(dataset, profile, root, seed)
    config = {**base_config("head_to_head", dataset, profile, root, seed, weights, s), **protocol.key(lr, knob),
              "method": METHOD_ROW, "train_seed": train_seed, "vg": "real" if vg_root else "generated"}

    def compute(folder: Path) -> dict:
        feats = frozen_features(dataset, profile, root, seed, device, weights)
        model, out, regions = fit_lstm_row(METHOD_ROW, ROW_SPECS[METHOD_ROW], dataset, feats, ctx.data, s, profile,
                                           folder=folder, root=root, seed=seed, train_seed=train_seed, device=device,
                                           weights=weights, vg_root=vg_root, proposals_root=proposals_root,
                                           settings=settings)
        held_maps = features.take(feats["train"], ctx.holdout[1])
        held_boxes = layer_regions(model.loc, held_maps, s, side, train=False, device=dev)
        test_boxes = (regions["regions_test"], regions["counts_test"])
        scores = predict_scores(model, feats["test"], side, *test_boxes, device=dev)       # in eval mode from here
        held = predict_scores(model, held_maps, side, *held_boxes, device=dev)
        flops = forward_flops(lambda x, b: model(x, side, boxes=[b]), first_test_image(feats["test"], dev),
                              test_boxes[0][0, :int(test_boxes[1][0])].to(dev))
        return record(scores, held, out["history"], params=trainable_parameters(model), flops=flops)

    return ctx.cached("rlsd", config, compute, code=(protocol_run,), force=force)


# --- the full profile's cost (mlbook plan) ---

class _RLSDRows(torch.nn.Module):
    """RLSD on maps and M training regions per image, as its rows train it."""

    def __init__(self, cfg, side: int):
        super().__init__()
        self.m, self.side = rlsd_model.RLSD(cfg), side

    def forward(self, maps, boxes):
        return self.m(maps, self.side, boxes=list(boxes) if self.m.cfg.mode != "global" else None)


class _Localization(torch.nn.Module):
    """The localization layer's outputs its loss reads (box deltas and confidences)."""

    def __init__(self, loc, side: int):
        super().__init__()
        self.loc, self.side = loc, side

    def forward(self, maps):
        out = self.loc(maps, self.side, details=True)
        return out["deltas"].sum() + out["scores"].sum()


def _encoder_label(s) -> str:
    """RLSD's region encoder in a plan row: its width and where it starts (``Settings.encoder_init``)."""
    return f"fc6/fc7 {s.fc_dim} ({'random' if s.encoder_init == 'random' else s.encoder_init + ' ImageNet'})"


def _encoder_file_bytes(s) -> int:
    """The weights file a model whose encoder starts from a network's fc6/fc7 loads (0: random)."""
    return 0 if s.encoder_init == "random" else weights_file_bytes(s.encoder_init)


def _control_cost(run, ctx, s, reads, label):
    """Multi-CNN (2-fc): the region encoder on the whole image, then a linear layer."""
    chw, C = reads["chw"], NUM_CLASSES[run.dataset]
    enc = measured(("2fc", dataclasses.astuple(s), C),
                   lambda: torch.nn.Sequential(rlsd_model.RLSD(model_config(s, chw[0], C, "global")).encoder,
                                               torch.nn.Linear(s.fc_dim, C)),
                   ((1, chw[0], s.grid, s.grid),), train=True)
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    n_train, n_test = ctx.split(run.dataset)
    host, gpu = training_memory(enc, ctx.batch(s.batch_size, run.dataset), "adam")
    host, gpu = ctx.peaks(host=host + reads["host"] + outputs_bytes(n_train + n_test, C) + _encoder_file_bytes(s),
                          gpu=gpu + reads["gpu"])
    return RunCost(ctx.chapter, f"Multi-CNN (2-fc) on {label}, {_encoder_label(s)}", run.dataset,
                   enc.flops + reads["flops"], n_fit, epochs, 1,
                   n_test * (enc.flops / 3 + reads["flops"]), host, gpu, row_disk(reads, enc, "adam", n_test * C * 4)[0],
                   maps=reads["storage"], kept_bytes=n_test * C * 4)


def _ss_size_label(size: int | None) -> str:
    return "original size" if size is None else f"{size} px shorter side"


def cost(run, ctx):
    """A row or stage of chapter 06 on the frozen maps of ``TRUNK``: selective search (CPU hours), a
    localization layer, the RLSD and CNN+LSTM rows, the Multi-CNN controls."""
    prof = ctx.profile
    s = settings_for(prof)
    C = NUM_CLASSES[run.dataset]
    side = prof.size_for(TRUNK)
    reads = map_input(ctx, TRUNK, run.dataset, ctx.batch(s.batch_size, run.dataset))
    chw = reads["chw"]
    n_train, n_test = ctx.split(run.dataset)
    label = maps_label(TRUNK, reads["storage"])
    if run.row == "selective search":
        seconds = (n_train + n_test) * ss_seconds(getattr(s, "ss_size", None))
        host, gpu = ctx.peaks(host=(n_train + n_test) * (s.train_regions + s.test_regions) * 16 * 2, gpu=0.0)
        return RunCost(ctx.chapter, f"selective search ({s.ss_mode}, {_ss_size_label(getattr(s, 'ss_size', None))})",
                       run.dataset, 0.0, 0, 0, 1, host_bytes=host, gpu_bytes=gpu,
                       disk_bytes=(n_train + n_test) * s.test_regions * 16 * 2, ss_core_seconds=seconds,
                       kept_bytes=(n_train + n_test) * s.test_regions * 16 * 2)   # the per-image cache and the result
    if run.row in STAGE_KEYS:
        anchor_kinds = len(rlsd_localization.ANCHOR_SCALES) * len(rlsd_localization.ANCHOR_RATIOS)
        loc = measured(("loc", dataclasses.astuple(s)), lambda: _Localization(rlsd_localization.LocalizationLayer(
            chw[0], anchor_kinds, s.loc_hidden), side), ((1, *chw),), train=True)
        region_set = STAGE_KEYS[run.row] == "vg"
        images = min(s.vg_images, prof.max_train or s.vg_images) if region_set else n_train
        epochs = ctx.epochs(s.loc_epochs, images, s.batch_size)
        # the region set's maps are computed once and held; the target images' maps are read every epoch
        once = images * trunk_net(TRUNK, side).flops if region_set else 0.0
        fwd = 0.0 if region_set else reads["flops"]
        host, gpu = training_memory(loc, ctx.batch(s.batch_size, run.dataset), "adam")
        maps = images * 2 * chw[0] * chw[1] * chw[2] if region_set else 0.0   # the region set's maps, held
        anchors = images * chw[1] * chw[2] * anchor_kinds * (4 * 4 + 8)   # targets, labels
        host, gpu = ctx.peaks(host=host + maps + anchors + (n_train + n_test) * s.train_regions * 16 * 2
                              + reads["host"], gpu=gpu + reads["gpu"])
        peak, kept = row_disk(reads, loc, "adam", 4 * loc.params + (n_train + n_test) * s.train_regions * 16)
        return RunCost(ctx.chapter, f"localization layer ({run.row.split('(')[1].rstrip(')')}) on {label}",
                       run.dataset, loc.flops + fwd, images, epochs, 1,
                       once + (n_train + n_test) * (loc.flops / 3 + reads["flops"]),
                       host, gpu, peak, maps=reads["storage"], kept_bytes=kept)
    spec = ROW_SPECS[run.row]
    if spec.head != "lstm":
        if spec.head == "linear":   # Multi-CNN (Eq. 14): Multi-CNN's linear head on the pooled maps of the trunk
            return baselines.cost(dataclasses.replace(run, row="Resnet-baseline", options=(("trunk", TRUNK),)), ctx)
        return _control_cost(run, ctx, s, reads, label)
    mode = "global" if spec.regions is None else "rlsd"
    cfg = model_config(s, chw[0], C, mode, spec.fusion)
    # a random encoder has the shapes of VGG16's fc6/fc7 (``region_encoder``): the same count
    net = measured(("rlsd", dataclasses.astuple(cfg), side), lambda: _RLSDRows(cfg, side),
                   ((1, *chw), (1, s.train_regions, 4)), train=True, frozen=("m.loc",))
    n_fit, epochs = ctx.train_images(run.dataset, s.epochs, s.batch_size)
    forward = net.flops / 3 + reads["flops"]
    host, gpu = training_memory(net, ctx.batch(s.batch_size, run.dataset), "adam")
    regions = (n_train + n_test) * (s.train_regions + s.test_regions) * 16
    host, gpu = ctx.peaks(host=host + reads["host"] + regions + outputs_bytes(n_train + n_test, C)
                          + _encoder_file_bytes(s), gpu=gpu + reads["gpu"])
    what = "RLSD (regions)" if mode == "rlsd" else "CNN+LSTM (global)"
    peak, kept = row_disk(reads, net, "adam", 4 * net.trainable + n_test * C * 4)   # weights (the rows start from them)
    return RunCost(ctx.chapter, f"{what} on {label}, {_encoder_label(s)}, M = {s.train_regions}", run.dataset,
                   net.flops + reads["flops"], n_fit, epochs, 1,
                   epochs * (n_train - n_fit) * forward + n_test * forward, host, gpu, peak,
                   maps=reads["storage"], kept_bytes=kept)
