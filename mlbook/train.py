"""The one training loop every chapter uses.

- device chosen automatically (CUDA if present), AMP (bf16 autocast) on CUDA;
- DistributedDataParallel when launched by ``torchrun`` (NCCL on GPU, gloo on CPU);
- a checkpoint after every epoch (atomic), resumed after an interruption;
- early stopping on a held-out part of the training set: training stops when the
  hold-out loss has not improved for ``patience`` epochs, and the weights of the
  best epoch are restored (the test split is never seen here);
- a progress bar over epochs; seeded and deterministic on CPU: the shuffle of
  epoch e depends only on (seed, e), so a resumed run sees the same batches;
- a cap on optimizer steps (``max_steps``, or the ambient ``step_limit`` a dry run sets):
  training stops after that many steps over all epochs;
- a device stage: a dataset may carry ``on_device(batch) -> batch``, applied to every batch
  once it is on the device (streamed frozen maps: the trunk runs there, per batch), in
  ``fit``, ``evaluate_loss`` and ``predict`` alike.

``loss_fn(model, batch)`` keeps the loop model-agnostic: each chapter says what a
batch is and what its loss is, the loop does the rest. It returns a scalar
tensor, or a dict ``{"loss": total, "<term>": tensor, ...}`` whose terms (e.g.
CADM's L_cls, pull and push) are logged separately in the history.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from .cache import atomic_torch_save
from .profiles import pick_device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def distributed_world() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def to_device(batch: Any, device: str | torch.device) -> Any:
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class _EpochSampler(RandomSampler):
    """Random order that depends only on (seed, epoch): resume-safe."""

    def __init__(self, data, seed: int):
        super().__init__(data)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=g).tolist())


_STEP_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("mlbook_step_limit", default=None)


@contextlib.contextmanager
def step_limit(steps: int | None):
    """Cap every ``fit`` inside the block at ``steps`` optimizer steps (None: no cap); a dry
    run's ``Profile.max_steps``, set around each cached computation by ``experiments.shared``."""
    token = _STEP_LIMIT.set(steps)
    try:
        yield
    finally:
        _STEP_LIMIT.reset(token)


def _carried(dataset, name: str):
    """An attribute a dataset carries, looked up through ``Subset`` wrappers (None if absent)."""
    while dataset is not None:
        value = getattr(dataset, name, None)
        if value is not None:
            return value
        dataset = getattr(dataset, "dataset", None)
    return None


def device_stage(dataset) -> Callable[[Any], Any] | None:
    """The ``on_device`` batch transform a dataset carries (streamed maps), or None."""
    return _carried(dataset, "on_device")


def loader_workers(dataset, asked: int = 0) -> int:
    """DataLoader workers: ``asked``, else the ``loader_workers`` a dataset of images on disk carries."""
    return asked or int(_carried(dataset, "loader_workers") or 0)


def _on_device(batch: Any, device, stage) -> Any:
    batch = to_device(batch, device)
    return stage(batch) if stage is not None else batch


def _terms(out) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total loss, {term: value}) from what a loss_fn returned."""
    if isinstance(out, dict):
        return out["loss"], {k: v for k, v in out.items() if k != "loss"}
    return out, {}


@torch.no_grad()
def evaluate_loss(model, dataset: Dataset, loss_fn, *, batch_size: int, device: str) -> dict[str, float]:
    """Mean loss (and its terms) of ``model`` in eval mode over ``dataset``."""
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    stage = device_stage(dataset)
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=loader_workers(dataset)):
        batch = _on_device(batch, device, stage)
        loss, terms = _terms(loss_fn(model, batch))
        n = _batch_len(batch)
        for k, v in {"loss": loss, **terms}.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
        count += n
    return {k: v / max(count, 1) for k, v in sums.items()}


def fit(
    model: torch.nn.Module,
    dataset: Dataset,
    loss_fn: Callable[[torch.nn.Module, Any], Any],
    *,
    epochs: int,
    batch_size: int,
    make_optimizer: Callable[[torch.nn.Module], torch.optim.Optimizer],
    make_scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    val_dataset: Dataset | None = None,
    val_loss_fn: Callable[[torch.nn.Module, Any], Any] | None = None,
    patience: int | None = None,
    device: str = "auto",
    checkpoint: str | os.PathLike | None = None,
    seed: int = 0,
    num_workers: int = 0,
    amp: bool = True,
    grad_clip: float | None = None,
    on_epoch_end: Callable[[int, torch.nn.Module], dict] | None = None,
    progress: bool = True,
    desc: str = "train",
    max_steps: int | None = None,
) -> list[dict]:
    """Train ``model`` in place; return the per-epoch history.

    Each record has ``epoch``, ``loss`` (and the loss terms) on the training set,
    ``val_loss`` (and ``val_<term>``) on ``val_dataset`` if given, ``seconds``
    and ``images``. With ``val_dataset`` and ``patience``, training stops after
    ``patience`` epochs without a lower hold-out loss and the best epoch's weights
    are restored; the last record then has ``stopped_early`` and every record
    ``best_epoch``. ``epochs`` is the budget. ``val_loss_fn`` defaults to ``loss_fn``
    (called in eval mode, so dropout and augmentation that depend on
    ``model.training`` are off). ``make_scheduler`` is stepped once per epoch;
    ``on_epoch_end(epoch, model)`` may return extra numbers for the history.
    A checkpoint at ``checkpoint`` is written after every epoch and resumed from.
    ``max_steps`` (default: the ambient ``step_limit``, None: no cap) ends training after that
    many optimizer steps over all epochs; records then carry ``steps`` and the last one
    ``max_steps_reached``.
    """
    from tqdm.auto import tqdm

    rank, world = distributed_world()
    device = pick_device(device)
    if world > 1 and device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    seed_everything(seed)
    model.to(device)
    train_model = model
    if world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None
        )
    optimizer = make_optimizer(model)
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    val_loss_fn = val_loss_fn or loss_fn

    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = _EpochSampler(dataset, seed)
    num_workers = loader_workers(dataset, num_workers)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=device.startswith("cuda"), drop_last=False,
        persistent_workers=num_workers > 0,
    )
    use_amp = amp and device.startswith("cuda")
    stage = device_stage(dataset)
    step_cap = max_steps if max_steps is not None else _STEP_LIMIT.get()

    history: list[dict] = []
    start_epoch, best_loss, best_epoch, best_state = 0, float("inf"), 0, None
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        history, start_epoch = state["history"], state["epoch"] + 1
        best_loss, best_epoch, best_state = state["best_loss"], state["best_epoch"], state["best_state"]
        if rank == 0 and progress:
            print(f"resuming {desc} from {ckpt.name} at epoch {start_epoch + 1}/{epochs}")
    if history and (history[-1].get("stopped_early") or history[-1].get("max_steps_reached")):
        start_epoch = epochs   # an early-stopped (or step-capped) run that was checkpointed is finished
    steps_done = sum(r.get("steps", 0) for r in history)

    bar = tqdm(range(start_epoch, epochs), desc=desc, disable=not progress or rank != 0,
               initial=start_epoch, total=epochs, leave=False)
    for epoch in bar:
        sampler.set_epoch(epoch)
        train_model.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        count, steps = 0, 0
        for batch in loader:
            batch = _on_device(batch, device, stage)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss, terms = _terms(loss_fn(train_model, batch))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {loss.item()} at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            n = _batch_len(batch)
            for k, v in {"loss": loss, **terms}.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
            count += n
            steps += 1
            if step_cap is not None and steps_done + steps >= step_cap:
                break
        if scheduler is not None:
            scheduler.step()
        record = {"epoch": epoch + 1, **{k: v / max(count, 1) for k, v in sums.items()},
                  "seconds": time.perf_counter() - t0, "images": count * world}
        if step_cap is not None:   # only under a cap, so an uncapped run's history is as before
            steps_done += steps
            record["steps"] = steps
            if steps_done >= step_cap:
                record["max_steps_reached"] = True
        if val_dataset is not None:
            val = evaluate_loss(model, val_dataset, val_loss_fn, batch_size=batch_size, device=device)
            record.update({f"val_{k}": v for k, v in val.items()})
            if val["loss"] < best_loss - 1e-6:
                best_loss, best_epoch = val["loss"], epoch + 1
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if on_epoch_end is not None:
            model.eval()
            with torch.no_grad():
                record.update(on_epoch_end(epoch, model) or {})
        stop = (val_dataset is not None and patience is not None and epoch + 1 - best_epoch >= patience)
        if stop:
            record["stopped_early"] = True
        stop = stop or bool(record.get("max_steps_reached"))
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        if ckpt is not None and rank == 0:
            atomic_torch_save({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": torch.get_rng_state(), "epoch": epoch, "history": history,
                "best_loss": best_loss, "best_epoch": best_epoch, "best_state": best_state,
            }, ckpt)
        if stop:
            break
    bar.close()
    if best_state is not None:   # the weights of the epoch with the lowest hold-out loss
        model.load_state_dict(best_state)
        for r in history:
            r["best_epoch"] = best_epoch
    model.eval()
    return history


def _batch_len(batch: Any) -> int:
    if torch.is_tensor(batch):
        return batch.shape[0]
    if isinstance(batch, (list, tuple)):
        return _batch_len(batch[0])
    if isinstance(batch, dict):
        return _batch_len(next(iter(batch.values())))
    return 1


@torch.no_grad()
def predict(
    fn: Callable[[Any], torch.Tensor],
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: str = "auto",
    num_workers: int = 0,
    out: torch.Tensor | None = None,
    collect: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor | None:
    """Apply ``fn(batch_on_device) -> tensor`` over a dataset in order; concatenate on CPU (float32).

    Outputs as large as a data set's conv maps are never held whole: ``out``, a preallocated
    tensor (over a memory-mapped file, say), receives them row by row in its own dtype and is
    returned; ``collect(first_row, outputs)`` is called with each batch's outputs instead (it
    writes them where it wants) and nothing is returned.
    """
    device = pick_device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                        num_workers=loader_workers(dataset, num_workers))
    stage = device_stage(dataset)
    if out is not None:
        def collect(row, y):   # noqa: F811 (the preallocated tensor as a collector)
            out[row:row + len(y)] = y.to("cpu", out.dtype)
    if collect is not None:
        row = 0
        for batch in loader:
            y = fn(_on_device(batch, device, stage))
            collect(row, y)
            row += len(y)
        return out
    outs = [fn(_on_device(batch, device, stage)).float().cpu() for batch in loader]
    return torch.cat(outs) if outs else torch.empty(0)
