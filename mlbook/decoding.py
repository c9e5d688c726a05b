"""Decoding label sequences from a recurrent multi-label model: greedy and beam search.

A model plugs in through one function::

    step_fn(context, state, emitted, prev) -> (logp [N, W], new_state)

- ``context``: tuple of per-image tensors (conv maps, ...), expanded once to the
  N = images x beams rows and never reordered;
- ``state``: tuple of per-path tensors [N, ...] (LSTM h and c, last confidences);
  reordered as beams are re-ranked;
- ``emitted`` [N, C] bool: the labels already on the path (the order-free RNN's
  hard label vector y~_{t-1}; its complement is the candidate pool C_t, Eq. 10);
- ``prev`` [N] long: the last label (-1 before the first step);
- ``logp``: log P(label | image, path) for the C labels, plus one column for an
  END token when ``end_index`` is given (CNN-RNN).

Two stopping rules, as the two papers use them:

- **threshold** (Order-Free RNN, Sect. "Testing"): a path is extended only by a
  label that keeps its probability (Eq. 11, the product of the step
  probabilities) >= ``threshold``; decoding of an image stops when no path can
  be extended or at ``max_len`` labels, and returns the most probable path of
  the last length reached.
- **END token** (CNN-RNN): a path ends by emitting END; the most probable ended
  path wins (paths of ``max_len`` labels count as ended).

``beam_search`` is batched over images and beams (one model call per step);
``beam_search_reference`` is the same search written plainly, one image and one
path at a time, for tests and for ``bench_decode``.
"""
from __future__ import annotations

import heapq
import math
import time
from typing import Callable, Sequence

import torch

NEG_INF = float("-inf")
StepFn = Callable[[tuple, tuple, torch.Tensor, torch.Tensor], tuple]


def _log_threshold(threshold: float) -> float:
    return math.log(threshold) if threshold > 0 else NEG_INF


def _expand(tensors: Sequence[torch.Tensor], k: int) -> tuple:
    return tuple(t.repeat_interleave(k, dim=0) for t in tensors)


def _step_live(step_fn, ctx, st, emitted, prev, live):
    """Call the model on the live paths only (dead beams and finished images are skipped);
    dead rows get log P = -inf and keep their state."""
    if bool(live.all()):
        return step_fn(ctx, st, emitted, prev)
    ix = live.nonzero().squeeze(1)
    lp, ns = step_fn(tuple(c.index_select(0, ix) for c in ctx), tuple(x.index_select(0, ix) for x in st),
                     emitted.index_select(0, ix), prev.index_select(0, ix))
    logp = lp.new_full((live.shape[0], lp.shape[1]), NEG_INF).index_copy_(0, ix, lp)
    return logp, tuple(x.index_copy(0, ix, n) for x, n in zip(st, ns))


@torch.no_grad()
def beam_search(step_fn: StepFn, context: tuple, state: tuple, num_labels: int, *,
                beam: int = 3, max_len: int = 5, threshold: float = 0.0,
                end_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched beam search. Returns (sequences [B, max_len] long, -1 padded; log P_path [B]).

    At every step all K x C successors of the K paths of each image are scored
    (Eq. 11: log P_path + log P(l_t | ...)) and the best K kept (Sect. "Testing").
    """
    B = state[0].shape[0]
    K, C = beam, num_labels
    dev = state[0].device
    ctx, st = _expand(context, K), _expand(state, K)
    scores = torch.full((B, K), NEG_INF, device=dev)
    scores[:, 0] = 0.0                                          # one live path per image at t = 0
    seqs = torch.full((B, K, max_len), -1, dtype=torch.long, device=dev)
    emitted = torch.zeros(B * K, C, dtype=torch.bool, device=dev)
    prev = torch.full((B * K,), -1, dtype=torch.long, device=dev)
    out_seq = torch.full((B, max_len), -1, dtype=torch.long, device=dev)
    out_score = torch.zeros(B, device=dev) if end_index is None else torch.full((B,), NEG_INF, device=dev)
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    log_tau = _log_threshold(threshold)
    base = torch.arange(B, device=dev)[:, None] * K

    for t in range(max_len):
        if end_index is not None:                               # a live path below the best ended one can't win
            scores = scores.masked_fill(scores <= out_score[:, None], NEG_INF)
            done |= torch.isinf(scores).all(1)
        if bool(done.all()):
            break
        logp, new_st = _step_live(step_fn, ctx, st, emitted, prev,
                                  torch.isfinite(scores).view(-1) & ~done.repeat_interleave(K))
        if end_index is not None:                               # paths that end here
            ended = scores + logp[:, end_index].view(B, K)
            best, arg = ended.max(1)
            better = (best > out_score) & ~done
            out_score = torch.where(better, best, out_score)
            out_seq[better] = seqs[better, arg[better]]
        lab = logp[:, :C].masked_fill(emitted, NEG_INF)        # candidate pool C_t (Eq. 10)
        cand = scores.view(B * K, 1) + lab
        cand = cand.masked_fill(cand < log_tau, NEG_INF).view(B, K * C)
        cand[done] = NEG_INF
        top, idx = cand.topk(K, dim=1)
        alive = torch.isfinite(top)
        extend = alive.any(1)
        if end_index is None:
            done |= ~extend                                     # threshold rule: keep the last output
        parent = torch.div(idx, C, rounding_mode="floor")
        label = idx % C
        rows = (base + parent).view(-1)
        seqs = seqs.gather(1, parent[:, :, None].expand(B, K, max_len)).clone()
        seqs[:, :, t] = label
        scores = top
        st = tuple(s.index_select(0, rows) for s in new_st)
        emitted = emitted.index_select(0, rows)
        emitted[torch.arange(B * K, device=dev), label.view(-1)] = True
        prev = label.view(-1)
        if end_index is None:
            out_seq = torch.where(extend[:, None], seqs[:, 0], out_seq)
            out_score = torch.where(extend, scores[:, 0], out_score)
    if end_index is not None:                                   # max_len reached: live paths end too
        best, arg = scores.max(1)
        better = best > out_score
        out_score = torch.where(better, best, out_score)
        out_seq[better] = seqs[better, arg[better]]
    return out_seq, out_score


@torch.no_grad()
def greedy_decode(step_fn: StepFn, context: tuple, state: tuple, num_labels: int, *,
                  max_len: int = 5, threshold: float = 0.0,
                  end_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding: at each step the most probable label of the pool (Eq. 9).

    Stops when the path probability would fall below ``threshold``, when END is
    the most probable token, or at ``max_len``. Same output format as ``beam_search``.
    """
    B, C = state[0].shape[0], num_labels
    dev = state[0].device
    emitted = torch.zeros(B, C, dtype=torch.bool, device=dev)
    prev = torch.full((B,), -1, dtype=torch.long, device=dev)
    out = torch.full((B, max_len), -1, dtype=torch.long, device=dev)
    score = torch.zeros(B, device=dev)
    live = torch.ones(B, dtype=torch.bool, device=dev)
    log_tau = _log_threshold(threshold)
    st = tuple(state)
    for t in range(max_len):
        logp, st = step_fn(context, st, emitted, prev)
        lab = logp[:, :C].masked_fill(emitted, NEG_INF)
        best, label = lab.max(1)
        ok = live & (score + best >= log_tau) & torch.isfinite(best)
        if end_index is not None:
            ok &= best > logp[:, end_index]
        out[ok, t] = label[ok]
        score = torch.where(ok, score + best, score)
        emitted[ok, label[ok]] = True
        prev = torch.where(ok, label, prev)
        live = ok
        if not bool(live.any()):
            break
    return out, score


# --- the plain reference: one image, one path at a time ----------------------------

@torch.no_grad()
def beam_search_reference(step_fn: StepFn, context: tuple, state: tuple, num_labels: int, *,
                          beam: int = 3, max_len: int = 5, threshold: float = 0.0,
                          end_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
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
            paths = heapq.nlargest(beam, cands, key=lambda p: p[0])
            if end_index is None:
                best = (paths[0][0], paths[0][1])
        if end_index is not None and paths and paths[0][0] > best[0] and len(paths[0][1]) == max_len:
            best = (paths[0][0], paths[0][1])
        out[b, :len(best[1])] = torch.tensor(best[1], dtype=torch.long)
        out_score[b] = best[0]
    return out, out_score


def sequences_to_sets(seqs: torch.Tensor, num_labels: int, k: int | None = None) -> torch.Tensor:
    """[B, T] label sequences (-1 padded) -> [B, C] scores: emission order as a rank score.

    The first label gets 1, later ones less (T - rank) / T, labels not emitted 0;
    so "top-k with a floor > 0" keeps the first k labels emitted. ``k`` truncates.
    """
    B, T = seqs.shape
    s = seqs if k is None else seqs[:, :k]
    rank_score = (T - torch.arange(s.shape[1], dtype=torch.float32)) / T
    out = torch.zeros(B, num_labels + 1)
    out.scatter_(1, torch.where(s >= 0, s, num_labels).cpu(), rank_score.expand(B, -1).contiguous())
    return out[:, :num_labels]


# --- benchmark ----------------------------------------------------------------------------

def bench_decode(n_images: int = 200, num_labels: int = 24, beam: int = 3, max_len: int = 5,
                 feat_dim: int = 128, grid: int = 6, hidden: int = 128, seed: int = 0,
                 threshold: float = 0.05, device: str = "cpu", print_result: bool = True) -> dict:
    """Batched beam search vs the per-image reference on one untrained-but-fixed model.

    Same model, same inputs, one run; prints the time of each, the speed-up and
    whether both return the same label sequences. The per-image reference runs on CPU;
    ``device`` is where the batched search runs ("auto" = CUDA if present).
    """
    from .profiles import pick_device

    device = pick_device(device)
    from .models.order_free_rnn import OrderFreeConfig, OrderFreeRNN

    torch.manual_seed(seed)
    model = OrderFreeRNN(OrderFreeConfig(num_classes=num_labels, feat_dim=feat_dim, hidden=hidden,
                                         att_dim=hidden // 2, pred_hidden=hidden)).eval()
    maps = torch.randn(n_images, feat_dim, grid, grid)
    context, state = model.decode_inputs(maps)
    kw = dict(beam=beam, max_len=max_len, threshold=threshold)
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
