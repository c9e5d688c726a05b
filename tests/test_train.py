"""The training loop: determinism, checkpoint/resume, DDP on CPU with gloo."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from mlbook.train import fit, predict


def _data(n=64, d=5, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, c, generator=g)
    y = (x @ w > 0).float()
    return TensorDataset(x, y)


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.binary_cross_entropy_with_logits(model(x), y)


def _train(epochs, checkpoint=None, on_epoch_end=None, seed=0):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.2), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    hist = fit(model, _data(), _loss, epochs=epochs, batch_size=16, device="cpu", seed=seed,
               make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
               make_scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5),
               checkpoint=checkpoint, on_epoch_end=on_epoch_end, progress=False)
    return model, hist


def test_loss_decreases_and_runs_are_deterministic():
    m1, h1 = _train(6)
    m2, h2 = _train(6)
    assert h1[-1]["loss"] < h1[0]["loss"]
    for a, b in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(a, b)
    m3, _ = _train(6, seed=1)  # another shuffle seed gives another model
    assert not torch.equal(m1[0].weight, m3[0].weight)


def test_resume_after_interruption_equals_uninterrupted(tmp_path):
    full, hist_full = _train(4)

    def crash(epoch, model):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(4, checkpoint=tmp_path / "ckpt.pt", on_epoch_end=crash)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=False)
    assert state["epoch"] == 1  # epochs 0 and 1 were saved, epoch 2 crashed before its save
    resumed, hist = _train(4, checkpoint=tmp_path / "ckpt.pt")
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert hist[-1]["loss"] == pytest.approx(hist_full[-1]["loss"], abs=1e-6)


def test_nonfinite_loss_stops_with_a_message():
    model = torch.nn.Linear(5, 3)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(model, _data(), lambda m, b: m(b[0]).sum() * float("nan"), epochs=1, batch_size=8, device="cpu",
            make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1), progress=False)


def test_predict_keeps_order():
    ds = TensorDataset(torch.arange(10).float().unsqueeze(1))
    out = predict(lambda b: b[0] * 2, ds, batch_size=3, device="cpu")
    assert torch.equal(out.squeeze(1), torch.arange(10).float() * 2)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    model, hist = _train(3)
    torch.save({"state": model.state_dict(), "images": hist[-1]["images"]}, os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_on_cpu_stay_in_sync(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for a, b in zip(r0["state"].values(), r1["state"].values()):
        assert torch.equal(a, b)  # gradients were all-reduced: both ranks hold the same model
    assert r0["images"] == 64  # each rank saw half the data; the record counts the world
    single, _ = _train(3)
    assert not torch.equal(single[0].weight, r0["state"]["0.weight"])  # it really trained differently


def test_early_stopping_restores_the_best_epoch_and_logs_terms(tmp_path):
    """Hold-out loss that rises after epoch 2: training stops after `patience` more epochs and keeps epoch 2."""
    from mlbook.train import fit

    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = torch.nn.Linear(3, 1)
    seen = []

    def loss_fn(m, batch):
        err = (m(batch[0]).squeeze(1) - batch[1]).pow(2).mean()
        return {"loss": err, "mse": err, "zero": err * 0}

    def val_loss(m, batch):   # a hold-out loss that is best after the second epoch, whatever the weights
        seen.append(m.weight.detach().clone())
        epoch = len(seen)
        return {"loss": torch.tensor(abs(epoch - 2) + 1.0)}

    data = torch.utils.data.TensorDataset(x, y)
    hist = fit(model, data, loss_fn, epochs=10, batch_size=64, device="cpu", val_dataset=torch.utils.data.TensorDataset(x[:1], y[:1]),
               val_loss_fn=val_loss, patience=2, make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
               checkpoint=tmp_path / "ckpt.pt", progress=False)
    assert len(hist) == 4 and hist[-1]["stopped_early"] and all(h["best_epoch"] == 2 for h in hist)
    assert {"loss", "mse", "zero", "val_loss"} <= set(hist[0])
    assert torch.equal(model.weight.detach(), seen[1])          # the weights of epoch 2 were restored
    # a resumed, finished run does not train again
    again = fit(model, data, loss_fn, epochs=10, batch_size=64, device="cpu", val_dataset=data, val_loss_fn=val_loss,
                patience=2, make_optimizer=lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                checkpoint=tmp_path / "ckpt.pt", progress=False)
    assert len(again) == 4
