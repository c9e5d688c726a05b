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

A ranking metric (AP, mAP) needs a score per label, which a decoded sequence does not have:
``path_label_scores`` gives one under the named convention ``SEQUENCE_SCORE_RULE``.

``beam_search`` is batched over images and beams (one model call per step);
``mlbook.bench.beam_search_reference`` is the same search written plainly, one
image and one path at a time, for the tests and the decode benchmark.
"""
from __future__ import annotations

import math
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


def set_codes(num_labels: int, device) -> torch.Tensor:
    """A random 62-bit code per label: a label set's code is the sum of its labels' codes
    (Zobrist hashing), so two paths holding the same set in another order share a code."""
    g = torch.Generator().manual_seed(12345)
    return torch.randint(0, 2 ** 62, (num_labels,), generator=g, dtype=torch.int64).to(device)


def drop_repeated_sets(cand: torch.Tensor, codes: torch.Tensor, keep: int) -> torch.Tensor:
    """``cand`` [B, M] scores, ``codes`` [B, M] set codes: -inf on every candidate whose set
    already appears with a higher score among the best ``keep * keep`` (enough to leave
    ``keep`` distinct sets: a set is reachable from at most ``keep`` parent paths)."""
    m = min(cand.shape[1], keep * keep)
    top, idx = cand.topk(m, dim=1)
    c = codes.gather(1, idx)
    same = (c[:, :, None] == c[:, None, :]) & torch.isfinite(top)[:, None, :]
    earlier = torch.ones(m, m, dtype=torch.bool, device=cand.device).tril(-1)   # [j, i]: i < j
    repeated = (same & earlier).any(2)
    out = torch.full_like(cand, NEG_INF)
    return out.scatter_(1, idx, top.masked_fill(repeated, NEG_INF))


@torch.no_grad()
def beam_search(step_fn: StepFn, context: tuple, state: tuple, num_labels: int, *,
                beam: int = 3, max_len: int = 5, threshold: float = 0.0,
                end_index: int | None = None, merge_sets: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched beam search. Returns (sequences [B, max_len] long, -1 padded; log P_path [B]).

    At every step all K x C successors of the K paths of each image are scored
    (Eq. 11: log P_path + log P(l_t | ...)) and the best K kept (Sect. "Testing").
    ``merge_sets=True`` (not in the paper): of several successors that hold the same
    label set in different orders only the most probable is kept, so the K beams hold
    K different sets instead of reorderings of one.
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
    codes = set_codes(C, dev) if merge_sets else None

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
        if merge_sets:
            path_code = (emitted.long() * codes).sum(1)                              # [B*K]
            cand = drop_repeated_sets(cand, (path_code[:, None] + codes[None, :]).view(B, K * C), K)
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


SEQUENCE_SCORE_RULE = "emitted tier, then best step probability"
"""How a sequence model's decoded path becomes a score per label (``path_label_scores``), the book's
convention for the ranking metrics (AP, mAP, mAP@10) of a sequence model: a label emitted on the
path scores 1/2 + p/2, a label never emitted p/2, where p is the label's highest probability at
any step of the path (the distributions the decoder chose each label from). Every emitted label
of an image outranks every label it did not emit; within each tier the step probability orders
them; no label scores 0 (a softmax probability is never 0). The top-k sets are still read from
the path itself."""


@torch.no_grad()
def path_label_scores(step_fn: StepFn, context: tuple, state: tuple, seqs: torch.Tensor,
                      num_labels: int) -> torch.Tensor:
    """[B, T] decoded label sequences (-1 padded) -> [B, C] scores under ``SEQUENCE_SCORE_RULE``.

    The model is run along each decoded path (the path's labels fed back, teacher-forced, the
    pool of Eq. 10 masking the labels already emitted); at every step t whose label seqs[:, t]
    is on the path, each label's probability exp(log P(label | image, path[:t])) is read, and
    its maximum over those steps is p."""
    B, T = seqs.shape
    C = num_labels
    dev = state[0].device
    seqs = seqs.to(dev)
    emitted = torch.zeros(B, C, dtype=torch.bool, device=dev)
    prev = torch.full((B,), -1, dtype=torch.long, device=dev)
    best = torch.zeros(B, C, device=dev)
    st = tuple(state)
    rows = torch.arange(B, device=dev)
    for t in range(T):
        on_path = seqs[:, t] >= 0
        if not bool(on_path.any()):
            break
        logp, st = step_fn(context, st, emitted, prev)
        best = torch.where(on_path[:, None], torch.maximum(best, logp[:, :C].float().exp()), best)
        label = seqs[:, t].clamp_min(0)
        emitted = emitted.clone()
        emitted[rows[on_path], label[on_path]] = True
        prev = torch.where(on_path, label, prev)
    return (torch.where(emitted, 1.0 + best, best) / 2).cpu()
