"""``beam_search_reference``: the beam search of ``mlbook.decoding`` written plainly, one image and one
path at a time: the tests' oracle and the baseline of ``bench decode``."""
from __future__ import annotations

import heapq

import torch

from ..decoding import NEG_INF, StepFn, _log_threshold


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
