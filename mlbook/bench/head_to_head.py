"""``bench head-to-head``: the speed of chapter 08's own rows, each on random maps of the protocol's shape.

For every row of ``experiments.head_to_head_rows.OWN_ROWS`` that has a network (the linear heads
BCE network, Softmax, WARP and ASL on the pooled maps; CNN-RNN on the pooled maps; Query2Label on the
maps themselves), the network ``own_network`` builds and the loss ``own_model`` gives it, it times
(a) training: forward, the row's own loss, backward and an Adam step on a batch of the protocol's
size with random multi-hot labels, and (b) inference: the row's score function without gradients
(CNN-RNN: its beam search). KNN is left out: it has no network, and its scoring is a lookup among
the training images whose cost is the reference set's size, not the row's. The trunk is not timed
(every row reads the same frozen maps). Rates and ratios to the BCE network come from one run on
one machine; they go into no results table, and no test asserts them.
"""
from __future__ import annotations

import csv
from pathlib import Path

import torch

from ..experiments import features
from ..experiments.head_to_head_rows import BASELINE, OWN_ROWS, own_model
from ..experiments.protocol import protocol_for
from ..profiles import get_profile, pick_device
from .common import timed_steps

#: the rows timed: those with a network
ROWS = tuple(r for r, (kind, _) in OWN_ROWS.items() if kind != "knn")


def parse_rows(text: str | None) -> tuple[str, ...]:
    """``--rows`` "BCE network,WARP" -> ("BCE network", "WARP"); all of ``ROWS`` for None."""
    return ROWS if text is None else tuple(r.strip() for r in text.split(",") if r.strip())


def bench_head_to_head(rows: tuple[str, ...] = ROWS, profile: str = "demo", device: str = "cpu", steps: int = 20,
                       threads: int | None = 1, warmup: int = 2, out: str | Path | None = None) -> list[dict]:
    """Train and inference images per second of each row (and their ratios to the BCE network, which is
    always timed); prints a table, writes it to ``out`` (CSV) if given, and returns its rows."""
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        why = " (KNN has no network to time)" if "KNN" in unknown else ""
        raise ValueError(f"--rows: no timed row {', '.join(map(repr, unknown)) or 'named'}{why}; "
                         f"choose among {', '.join(ROWS)}")
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, not {steps}")
    if threads:
        torch.set_num_threads(threads)
    prof, protocol = get_profile(profile), protocol_for(profile)
    trunk = features.trunk_of(prof, protocol.trunk)
    D, h, w = features.map_shape(trunk, prof.size_for(trunk))
    C, B = prof.gen_classes or 80, protocol.batch_size          # the full profile: COCO's 80 labels
    dev = torch.device(pick_device(device))
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(B, D, h, w, generator=g)                  # stands for the trunk's (non-negative) maps
    y = (torch.rand(B, C, generator=g) < 0.15).float()
    y[torch.arange(B), torch.randint(0, C, (B,), generator=g)] = 1.0
    print(f"{prof.name} profile: {trunk} maps {D} x {h} x {w}, {C} labels, batch {B}, {steps} steps, "
          f"on {dev}, {torch.get_num_threads()} thread(s)")

    rates = {}
    for row in dict.fromkeys((BASELINE, *rows)):
        kind, loss_name = OWN_ROWS[row]
        x = maps if kind == "query2label" else features.pooled(maps)   # what own_run feeds the row
        torch.manual_seed(0)
        model, loss_fn, score = own_model(kind, loss_name, x, y, torch.arange(B), protocol)
        model.to(dev).train()
        batch = tuple(t.to(dev) for t in (x, *loss_fn.columns(torch.arange(B))))
        opt = torch.optim.Adam(model.parameters(), lr=protocol.lrs[0], weight_decay=protocol.weight_decay)

        def train_step():
            loss = loss_fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        train = B * steps / timed_steps(train_step, steps, warmup, dev)
        model.eval()

        @torch.no_grad()
        def infer_step():
            score(model, batch[0])

        rates[row] = (train, B * steps / timed_steps(infer_step, steps, warmup, dev))
        model.train()

    base_train, base_infer = rates[BASELINE]
    table = [{"row": r, "train_img_s": t, "infer_img_s": i, "train_ratio": t / base_train,
              "infer_ratio": i / base_infer} for r, (t, i) in rates.items() if r in rows or r == BASELINE]
    print(f"{'row':12s} {'train img/s':>12s} {'infer img/s':>12s} {'train / BCE':>12s} {'infer / BCE':>12s}")
    for r in table:
        print(f"{r['row']:12s} {r['train_img_s']:12.0f} {r['infer_img_s']:12.0f} "
              f"{r['train_ratio']:12.3g} {r['infer_ratio']:12.3g}")
    print("(one run on one machine: speed relative to the BCE network, in no results table)")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows({k: (v if k == "row" else f"{v:.6g}") for k, v in r.items()} for r in table)
        print(f"wrote {out}")
    return table
