"""`python -m mlbook bench ...`: speed ratios measured in one run (never a timed test).

- ``bench_metrics``: the vectorised metrics vs a per-class scikit-learn loop;
- ``bench_decode``: batched beam search vs ``beam_search_reference``, the same
  search written plainly (one image, one path at a time), also the tests' oracle;
- ``bench_train``: training throughput (img/s) of the CADM variants.
"""
from __future__ import annotations

import dataclasses
import heapq
import math
import time

import torch

from . import metrics as M
from .decoding import NEG_INF, StepFn, _log_threshold, beam_search
from .models.order_free_rnn import OrderFreeConfig, OrderFreeRNN
from .profiles import get_profile, pick_device


# --- metrics -------------------------------------------------------------------

def _bench_problem(n: int, c: int, seed: int):
    """A COCO-sized test set: long-tailed targets [n, c] and one score matrix with 3-decimal
    scores (many ties)."""
    g = torch.Generator().manual_seed(seed)
    # long-tailed class frequencies around ~3% positives on average
    freq = torch.linspace(0.06, 0.002, c)
    targets = torch.rand(n, c, generator=g) < freq
    return _bench_scores(targets, g), targets


def _bench_scores(targets: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Scores of a noisy classifier for ``targets``, rounded to 3 decimals: many tied scores."""
    logits = torch.randn(targets.shape, generator=g) + 2.0 * targets
    scores = torch.sigmoid(logits)
    return (torch.round(scores * 1000) / 1000).float()


def bench_metrics(n: int = 40504, c: int = 80, seed: int = 0, repeats: int = 3,
                  threads: int | None = 1, resamples: int = 1000, matrices: int = 6) -> dict:
    """Time this module's metrics against one sort and against a per-class scikit-learn loop.

    On a COCO-sized problem (n x c, 3-decimal scores: many ties), from one run (best of
    ``repeats`` wall times): one ``np.argsort(-scores, axis=0)`` and one ``np.sort`` of the
    matrix, then AP (ties "sklearn", "stable", and with 5% of the entries ignored), each next
    to scikit-learn's per-class ``average_precision_score`` loop and as a multiple of the
    argsort, and top-3 CP/CR next to scikit-learn; then the claims bootstrap at full size:
    ``matrices`` score matrices (2 rows x 3 seeds) x ``resamples`` image resamples (plus the
    test set itself, as ``claims.image_weights`` builds them), timed once.

    Returns ``{"n", "c", "positives", "threads", "argsort_s", "sort_s", "rows": [{"metric",
    "torch_s", "sklearn_s", "ratio" (sklearn_s / torch_s), "over_argsort" (torch_s /
    argsort_s), "max_abs_diff"}], "bootstrap": {"matrices", "resamples", "seconds",
    "per_replicate_s", "max_abs_diff"}}``; ``max_abs_diff`` compares with scikit-learn (the
    bootstrap: row 0 against the plain AP and two resamples against scikit-learn on the
    explicitly resampled images). ``threads=1`` (default) runs torch on one thread like the
    single-threaded scikit-learn loop (a per-core comparison; it also keeps the timing stable
    on a shared machine); ``None`` keeps torch's setting.
    """
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _bench_metrics(n, c, seed, repeats, resamples, matrices)
    finally:
        torch.set_num_threads(old_threads)


def _best_of(repeats: int, fn):
    """(best wall time of ``repeats`` calls, the last result)."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def _sklearn_ap(s, t, keep=None):
    """scikit-learn's AP per class (a Python loop), on the entries ``keep`` if given."""
    import numpy as np
    from sklearn.metrics import average_precision_score

    cols = range(s.shape[1])
    if keep is None:
        return np.array([average_precision_score(t[:, j], s[:, j]) for j in cols])
    return np.array([average_precision_score(t[keep[:, j], j], s[keep[:, j], j]) for j in cols])


def _bench_metrics(n: int, c: int, seed: int, repeats: int, resamples: int, matrices: int) -> dict:
    import numpy as np
    from sklearn.metrics import precision_score, recall_score

    scores, targets = _bench_problem(n, c, seed)
    s_np, t_np = scores.numpy(), targets.numpy().astype(np.int64)
    ignore = torch.rand(n, c, generator=torch.Generator().manual_seed(seed + 1)) < 0.05
    keep = ~ignore.numpy()
    # "stable" ties = sklearn on scores made distinct by the stable order (score desc, row asc)
    order = np.argsort(-s_np, axis=0, kind="stable")
    stable_scores = np.empty(s_np.shape)
    np.put_along_axis(stable_scores, order, -np.arange(n, dtype=np.float64)[:, None], axis=0)

    def sk_top3():
        # the classic per-class loop: binarise top-3 with argsort, then per class
        idx = np.argsort(-s_np, axis=1, kind="stable")[:, :3]
        pred = np.zeros_like(t_np)
        np.put_along_axis(pred, idx, 1, axis=1)
        p = np.array([precision_score(t_np[:, j], pred[:, j], zero_division=0) for j in range(c)])
        r = np.array([recall_score(t_np[:, j], pred[:, j], zero_division=0) for j in range(c)])
        return p, r

    M.average_precision(scores[:100], targets[:100])  # warm-up
    t_argsort, _ = _best_of(repeats, lambda: np.argsort(-s_np, axis=0))
    t_sort, _ = _best_of(repeats, lambda: np.sort(s_np, axis=0))
    rows = []
    for name, ours, reference in (
            ("AP, ties=sklearn", lambda: M.average_precision(scores, targets), lambda: _sklearn_ap(s_np, t_np)),
            ("AP, ties=stable", lambda: M.average_precision(scores, targets, ties="stable"),
             lambda: _sklearn_ap(stable_scores, t_np)),
            ("AP, 5% ignored", lambda: M.average_precision(scores, targets, ignore),
             lambda: _sklearn_ap(s_np, t_np, keep))):
        t_ours, ap = _best_of(repeats, ours)
        t_ref, ap_ref = _best_of(repeats, reference)
        rows.append({"metric": name, "torch_s": t_ours, "sklearn_s": t_ref,
                     "max_abs_diff": float(np.max(np.abs(ap.numpy() - ap_ref)))})
    t_prf, res = _best_of(repeats, lambda: M.prf(scores, targets, k=3))
    s_prf, (p_ref, r_ref) = _best_of(repeats, sk_top3)
    rows.append({"metric": "prf top-3 (CP, CR)", "torch_s": t_prf, "sklearn_s": s_prf,
                 "max_abs_diff": max(abs(res["CP"] - p_ref.mean()), abs(res["CR"] - r_ref.mean()))})
    for r in rows:
        r["ratio"], r["over_argsort"] = r["sklearn_s"] / r["torch_s"], r["torch_s"] / t_argsort
    out = {"n": n, "c": c, "positives": float(t_np.mean()), "threads": torch.get_num_threads(),
           "argsort_s": t_argsort, "sort_s": t_sort, "rows": rows,
           "bootstrap": _bench_bootstrap(scores, targets, seed, resamples, matrices)}
    _print_bench_metrics(out, repeats)
    return out


def _bench_bootstrap(scores, targets, seed: int, resamples: int, matrices: int) -> dict:
    """The claims bootstrap at full size: AP of ``matrices`` score matrices on the test set and
    ``resamples`` image resamples, timed once; checked on row 0 and on two resamples."""
    import numpy as np

    from .claims import image_weights

    g = torch.Generator().manual_seed(seed + 2)
    score_sets = [scores] + [_bench_scores(targets, g) for _ in range(matrices - 1)]
    weights = image_weights(len(targets), resamples, seed)
    t0 = time.perf_counter()
    aps = [M.average_precision(s, targets, weights=weights) for s in score_sets]
    seconds = time.perf_counter() - t0
    plain = M.average_precision(scores, targets)
    same_nan = torch.equal(aps[0][0].isnan(), plain.isnan())
    diffs = [float((aps[0][0] - plain).abs().nan_to_num().max()) if same_nan else math.inf]
    t_np = targets.numpy().astype(np.int64)
    for r in (sorted({1, resamples}) if resamples > 0 else []):
        drawn = np.repeat(np.arange(len(targets)), weights[r].numpy().astype(np.int64))
        present = t_np[drawn].sum(0) > 0                    # sklearn needs a positive
        ref = _sklearn_ap(scores.numpy()[drawn][:, present], t_np[drawn][:, present])
        diffs.append(float(np.max(np.abs(aps[0][r, torch.from_numpy(present)].numpy() - ref))))
    replicates = matrices * resamples
    return {"matrices": matrices, "resamples": resamples, "seconds": seconds,
            "per_replicate_s": seconds / max(replicates, 1), "max_abs_diff": max(diffs)}


def _print_bench_metrics(out: dict, repeats: int) -> None:
    print(f"metrics bench: {out['n']} x {out['c']} scores, {100 * out['positives']:.1f}% positives, "
          f"3-decimal scores (ties), best of {repeats}, torch threads={out['threads']}")
    print(f"one np.argsort(-scores, axis=0) {out['argsort_s']:.4f} s, one np.sort {out['sort_s']:.4f} s")
    print(f"{'metric':22s} {'mlbook s':>9s} {'/argsort':>9s} {'sklearn s':>10s} {'speed-up':>9s} {'max|diff|':>10s}")
    for r in out["rows"]:
        print(f"{r['metric']:22s} {r['torch_s']:9.4f} {r['over_argsort']:8.2f}x {r['sklearn_s']:10.4f} "
              f"{r['ratio']:8.1f}x {r['max_abs_diff']:10.2e}")
    b = out["bootstrap"]
    print(f"claims bootstrap: AP of {b['matrices']} score matrices x (1 + {b['resamples']}) image resamples: "
          f"{b['seconds']:.2f} s, {1e3 * b['per_replicate_s']:.2f} ms per matrix and resample, "
          f"max|diff| {b['max_abs_diff']:.2e}")


# --- decoding -------------------------------------------------------------------

@torch.no_grad()
def beam_search_reference(step_fn: StepFn, context: tuple, state: tuple, num_labels: int, *,
                          beam: int = 3, max_len: int = 5, threshold: float = 0.0,
                          end_index: int | None = None, merge_sets: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The same search as ``beam_search`` as a per-image, per-path Python loop."""
    B, C = state[0].shape[0], num_labels
    log_tau = _log_threshold(threshold)
    out = torch.full((B, max_len), -1, dtype=torch.long)
    out_score = torch.zeros(B)
    for b in range(B):
        ctx = tuple(c[b:b + 1] for c in context)
        paths = [(0.0, [], tuple(s[b:b + 1] for s in state))]     # (log P_path, labels, state)
        best = (0.0, []) if end_index is None else (NEG_INF, [])
        for _ in range(max_len):
            if end_index is not None:
                paths = [p for p in paths if p[0] > best[0]]
            if not paths:
                break
            cands = []
            for score, labels, st in paths:
                emitted = torch.zeros(1, C, dtype=torch.bool)
                emitted[0, labels] = True
                prev = torch.tensor([labels[-1] if labels else -1])
                logp, new_st = step_fn(ctx, st, emitted, prev)
                logp = logp[0].tolist()
                if end_index is not None and score + logp[end_index] > best[0]:
                    best = (score + logp[end_index], labels)
                for c in range(C):
                    s = score + logp[c]
                    if c not in labels and s >= log_tau and s > NEG_INF:
                        cands.append((s, labels + [c], new_st))
            if not cands:
                break
            if merge_sets:   # keep the most probable path of each label set
                best_of: dict = {}
                for cand in sorted(cands, key=lambda p: -p[0]):
                    best_of.setdefault(frozenset(cand[1]), cand)
                cands = list(best_of.values())
            paths = heapq.nlargest(beam, cands, key=lambda p: p[0])
            if end_index is None:
                best = (paths[0][0], paths[0][1])
        if end_index is not None and paths and paths[0][0] > best[0] and len(paths[0][1]) == max_len:
            best = (paths[0][0], paths[0][1])
        out[b, :len(best[1])] = torch.tensor(best[1], dtype=torch.long)
        out_score[b] = best[0]
    return out, out_score


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
    _sync(device)
    t0 = time.perf_counter()
    fast, fast_s = beam_search(model.step_fn, on(context), on(state), num_labels, **kw)
    _sync(device)
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


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


# --- training -------------------------------------------------------------------

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


_BENCH_MODELS = {"cadm": ("baseline", "lambda0.5"), "baseline": ("baseline",),
                 "cadm_baseline": ("baseline",), "lambda0": ("lambda0",), "cadm_lambda0": ("lambda0",),
                 "lambda0.5": ("lambda0.5",)}
_DTYPES = {None: None, "float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def bench_train(model: str = "cadm", profile: str = "demo", image_size: int | None = None,
                batch_size: int | None = None, steps: int = 10, device: str = "auto",
                dtype: str | None = None, channels_last: bool = False, warmup: int = 2,
                num_classes: int | None = None) -> dict:
    """Training throughput (img/s) of the baseline and CADM lambda = 0.5 on synthetic tensors.

    Sizes come from the profile (demo: SmallCNN at 48 px; full: ResNet-101 at 448 px,
    randomly initialised since weights do not change the speed); ``image_size`` and
    ``batch_size`` override. ``dtype`` "bfloat16"/"float16" trains under autocast
    (float16 with a gradient scaler on CUDA); ``channels_last`` converts model and input.
    One full SGD step (forward, Eq. 5 loss, backward, update) is timed per batch.
    Prints one line per model and the CADM / baseline ratio; returns {variant: img/s}.
    """
    from .models.backbones import ResNetTrunk, SmallCNN
    from .models.cadm import VARIANTS, feature_map_size, make_loss, make_model
    from .experiments.cadm import Recipe, make_optimizer

    prof = get_profile(profile)
    size, bs = image_size or prof.image_size, batch_size or prof.batch_size
    classes = num_classes or prof.gen_classes or 80
    if model not in _BENCH_MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(_BENCH_MODELS)}")
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose float32, bfloat16 or float16")
    amp_dtype = _DTYPES[dtype]
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
    for variant in _BENCH_MODELS[model]:
        torch.manual_seed(0)
        if prof.backbone == "small_cnn":
            backbone = SmallCNN()
        else:
            import torchvision

            backbone = ResNetTrunk(getattr(torchvision.models, prof.backbone)(weights=None))
        net = make_model(variant, backbone, classes, feature_map_size(backbone, size)).to(dev).to(memory_format=memory).train()
        loss_fn = make_loss(VARIANTS[variant]["lam"])
        opt = make_optimizer(Recipe(epochs=1))(net)
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


def bench_ranking(profile: str = "demo", batch_size: int | None = None, steps: int = 10, device: str = "auto",
                  dtype: str | None = None, channels_last: bool = False, warmup: int = 2, num_labels: int = 81,
                  k: int = 100) -> dict:
    """Training throughput (img/s) of the transformation ranking model (forward, Eq. 3 hinge rank
    loss over the label vectors, backward, Adam step) on synthetic tensors.

    Demo/smoke: the chapter's head on frozen 128 x 6 x 6 conv maps (``FrozenMapsRanker``, A = k x 384
    with MiniLM's d); full: AlexNet with fc8 = k x 300 (Table 1) at 224 px, randomly initialised
    (weights do not change the speed). Returns {"img/s": ...}.
    """
    import warnings

    from .models import transformation_ranking as TR

    prof = get_profile(profile)
    dev = torch.device(pick_device(device))
    amp_dtype = {None: None, "float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    g = torch.Generator().manual_seed(0)
    if prof.backbone == "small_cnn":
        from .experiments.transformation_ranking import FrozenMapsRanker, settings_for

        st = settings_for(prof)
        d, bs = 384, batch_size or st.batch_size
        net = FrozenMapsRanker(128 * 36, st.hidden, k, d, st.dropout)     # the chapter's demo head
        x = torch.randn(bs, 128, 6, 6, generator=g)
        what = f"head on 128x6x6 maps (hidden {st.hidden}), k={k}, d={d}"
    else:
        d, bs = TR.PAPER_D, batch_size or prof.batch_size
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            net = TR.alexnet_transformation_net(k, d)
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
        loss = TR.hinge_rank_loss(TR.label_norms(A, W), y, margin=1.0, n_negatives=40, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rate = bs * steps / timed_steps(step, steps, warmup, dev)
    print(f"train ranking ({what}) batch {bs} L={num_labels} on {dev} dtype={dtype or 'float32'} "
          f"channels_last={channels_last}: {rate:8.1f} img/s")
    return {"img/s": rate}


def bench_rlsd(profile: str = "demo", steps: int = 10, device: str = "auto", dtype: str | None = None,
               channels_last: bool = False, M_values=(4, 8, 16, 32, 64)) -> dict:
    """Training-step throughput (img/s) of the full RLSD model (localization layer in the loop,
    bilinear sampling, encoder, regional LSTM, Eq. 14) on random conv maps of the profile's trunk
    shape (the small CNN's maps in demo/smoke, VGG16 conv5 in full), at the profile's sizes and
    for each M in ``M_values``. ``dtype``: None (float32) or "bfloat16" / "float16" (autocast);
    ``channels_last``: the maps' memory format. Prints and returns {"profile", "img_per_s", "by_M"}."""
    from .experiments import rlsd as rlsd_experiments
    from .experiments.features import trunk_of as shared_trunk
    from .models import backbones
    from .models import rlsd as rlsd_model

    p = get_profile(profile)
    s = rlsd_experiments.settings_for(p)
    dev = torch.device(pick_device(device))
    C, stride = backbones.trunk_shape(shared_trunk(p, rlsd_experiments.TRUNK))
    side = p.image_size
    h = side // stride
    L, B = (max(p.gen_classes, 20) if p.gen_classes else 80), min(p.batch_size, 64)
    amp = _DTYPES[dtype]

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
