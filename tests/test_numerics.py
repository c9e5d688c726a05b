"""The portable-numerics mode (``mlbook.numerics``): the same bits whatever code path the CPU picks.

A small training run like the book's (a 4-layer conv net, channels-last, 48 px, batch 32, spatial
softmax attention, an LSTM cell, a linear head, BCE, 2 steps of SGD + Adam, one thread, deterministic
algorithms; then numpy float64 exp/log/pow and an OpenBLAS product on its weights) runs in fresh
processes, each with the kernels of another CPU forced:

- MKL made to take its Intel code paths on any CPU (a two-line library preloaded in front of MKL's
  vendor check, built with the C compiler where there is one), its own choice or one level lower
  (``MKL_ENABLE_INSTRUCTIONS``);
- oneDNN capped one level lower (``ONEDNN_MAX_CPU_ISA``);
- ATen's kernels one level lower (``ATEN_CPU_CAPABILITY``), numpy without its AVX-512 loops and
  OpenBLAS on its AVX2 kernels, what an AVX2 CPU picks by itself.

One level lower is AVX2 on an AVX-512 CPU, SSE4 (ATen: its default kernels) on an AVX2 one.

Under the portable mode every forced path gives the same bytes; without it at least one differs
(else the test could not fail). The portable mode's own variables (ATen's capability, numpy's and
OpenBLAS's kernels) are what a machine would pick by itself: under the portable mode they are the
mode's, as on a real machine where nothing else sets them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlbook import numerics

ROOT = Path(__file__).resolve().parents[1]

CHILD = r'''
import hashlib, sys
mode = sys.argv[1]
from mlbook import numerics
if mode == "portable":
    numerics.set_portable_environment()
import torch
from torch import nn
if mode == "late":          # a notebook that imported torch first, computing nothing yet
    numerics.set_portable_environment()
if mode in ("portable", "late"):
    numerics.apply_portable_backends()
torch.set_num_threads(1)
# what torch.use_deterministic_algorithms(True) switches in the kernels, without the 1 s it spends
# importing torch._inductor's config
set_deterministic = getattr(torch._C, "_set_deterministic_algorithms", None) or torch.use_deterministic_algorithms
set_deterministic(True)
torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self, classes=20):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate((32, 64, 128, 128)):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.att = nn.Conv2d(128, 1, 1)
        self.fc = nn.Linear(128, classes)
        self.cell = nn.LSTMCell(128, 64)
        self.out = nn.Linear(64, classes)

    def forward(self, x):
        f = self.body(x.contiguous(memory_format=torch.channels_last)).contiguous()
        a = torch.softmax(self.att(f).flatten(1), dim=1)
        g = (f.flatten(2) * a.unsqueeze(1)).sum(-1)
        logits = [self.fc(f.mean((2, 3)))]
        h = c = torch.zeros(x.shape[0], 64)
        for _ in range(3):
            h, c = self.cell(g, (h, c))
            logits.append(self.out(h))
        return torch.stack(logits)


gen = torch.Generator().manual_seed(1)
X = torch.randn(2, 32, 3, 48, 48, generator=gen)
Y = (torch.rand(2, 32, 20, generator=gen) < 0.3).float()
net = Net()
body = list(net.body.parameters())
head = [p for n, p in net.named_parameters() if not n.startswith("body.")]
# SGD with momentum and Adam written out: torch.optim's first use imports torch._dynamo (1 s)
momentum = [torch.zeros_like(p) for p in body]
m1, m2 = [torch.zeros_like(p) for p in head], [torch.zeros_like(p) for p in head]
loss_fn = nn.BCEWithLogitsLoss()
for step in range(1, 3):
    out = net(X[step % 2])
    loss = loss_fn(out, Y[step % 2].expand_as(out))
    net.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p, buf in zip(body, momentum):
            buf.mul_(0.9).add_(p.grad + 1e-4 * p)
            p.sub_(0.05 * buf)
        for p, a, b in zip(head, m1, m2):
            a.mul_(0.9).add_(0.1 * p.grad)
            b.mul_(0.999).addcmul_(p.grad, p.grad, value=0.001)
            p.sub_(1e-3 * (a / (1 - 0.9 ** step)) / ((b / (1 - 0.999 ** step)).sqrt() + 1e-8))
net.eval()
with torch.no_grad():
    scores = torch.sigmoid(net(X[0]))
h = hashlib.sha256()
for k, v in net.state_dict().items():
    h.update(k.encode()); h.update(v.contiguous().numpy().tobytes())
h.update(scores.numpy().tobytes())

import numpy as np
w = net.body[0].weight.detach().double().numpy().reshape(32, -1)
m = np.vstack([w] * 8)[:, :24]
n = np.concatenate([np.exp(m).ravel(), np.log1p(np.abs(m)).ravel(), (np.abs(m) ** 0.3).ravel(),
                    (m @ m.T).ravel()])
print(h.hexdigest()[:16], hashlib.sha256(n.tobytes()).hexdigest()[:16])
print(numerics.describe())
'''


def _base_env() -> dict:
    """The child's whole environment, written out: none of the variables under test leaks in."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "SYSTEMROOT") if k in os.environ}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONHASHSEED="0")
    return env


def _fake_intel(tmp_path: Path) -> str | None:
    """A library that answers MKL's 'is this an Intel CPU?' with yes, so that MKL takes its Intel
    code paths (and honours MKL_ENABLE_INSTRUCTIONS) on an AMD CPU too; None without a C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not sys.platform.startswith("linux"):
        return None
    src, lib = tmp_path / "fakeintel.c", tmp_path / "libfakeintel.so"
    src.write_text("int mkl_serv_intel_cpu_true(void) { return 1; }\nint mkl_serv_intel_cpu(void) { return 1; }\n")
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)], capture_output=True)
    return str(lib) if done.returncode == 0 else None


def _has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and "avx512f" in line.split() for line in f)
    except OSError:
        return False


def _machines(fake_intel: str | None) -> dict:
    """Forced code paths, {name: environment that forces them}: each one level below this CPU's
    (AVX2 on an AVX-512 CPU, SSE4 on an AVX2 one), so that some change the bits on any CPU."""
    if _has_avx512():
        aten, onednn, mkl = "avx2", "AVX2", "AVX2"
    else:
        aten, onednn, mkl = "default", "SSE41", "SSE4_2"
    numpy_avx2 = {"OPENBLAS_CORETYPE": "Haswell",
                  "NPY_DISABLE_CPU_FEATURES": numerics.PORTABLE_ENV["NPY_DISABLE_CPU_FEATURES"]}
    machines = {"this CPU": {},
                f"oneDNN {onednn}": {"ONEDNN_MAX_CPU_ISA": onednn},
                f"ATen {aten}": {"ATEN_CPU_CAPABILITY": aten},
                "numpy/OpenBLAS AVX2": numpy_avx2}
    if fake_intel:
        machines["Intel, MKL's own choice"] = {"LD_PRELOAD": fake_intel}
        machines[f"Intel, MKL {mkl} + oneDNN {onednn} + ATen {aten} + numpy AVX2"] = {
            "LD_PRELOAD": fake_intel, "MKL_ENABLE_INSTRUCTIONS": mkl, "ONEDNN_MAX_CPU_ISA": onednn,
            "ATEN_CPU_CAPABILITY": aten, **numpy_avx2}
    else:   # on an Intel CPU MKL_ENABLE_INSTRUCTIONS forces its paths without help
        machines[f"MKL {mkl}"] = {"MKL_ENABLE_INSTRUCTIONS": mkl}
    return machines


def _run(mode: str, forced: dict) -> tuple[str, str, str]:
    env = dict(_base_env(), **forced)
    env[numerics.SWITCH] = "0" if mode == "native" else "1"
    done = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    torch_hash, numpy_hash = lines[-2].split()
    return torch_hash, numpy_hash, lines[-1]


def _table(results: dict) -> str:
    return "\n".join(f"  {name:48s} torch {t} numpy {n}   {d}" for name, (t, n, d) in results.items())


@pytest.mark.slow
@pytest.mark.skipif(not numerics._x86_64(), reason="the portable mode is for x86-64 CPUs")
@pytest.mark.skipif(not numerics._has_avx2(), reason="the portable mode needs AVX2")
def test_portable_mode_gives_the_same_bits_on_every_code_path(tmp_path):
    machines = _machines(_fake_intel(tmp_path))
    # under the portable mode a machine's own choice of the mode's variables is the mode's
    portable = {}
    for name, forced in machines.items():
        env = {k: v for k, v in forced.items() if k not in numerics.PORTABLE_ENV}
        if env not in portable.values():
            portable[name] = env
    jobs = [("portable", name, env) for name, env in portable.items()]
    # without it: the paths one at a time (the numpy/OpenBLAS one is left out for time: ATen's,
    # oneDNN's or MKL's alone already changes the bits)
    jobs += [("native", name, env) for name, env in machines.items()
             if not name.startswith(("Intel, MKL ", "numpy"))]
    jobs.append(("late", "this CPU, set after import torch", {}))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {(mode, name): pool.submit(_run, mode, env) for mode, name, env in jobs}
    results = {key: f.result() for key, f in futures.items()}
    on = {name: r for (mode, name), r in results.items() if mode == "portable"}
    off = {name: r for (mode, name), r in results.items() if mode == "native"}
    report = f"portable:\n{_table(on)}\nnative:\n{_table(off)}"

    assert len({(t, n) for t, n, _ in on.values()}) == 1, "portable mode differs between code paths:\n" + report
    assert len({(t, n) for t, n, _ in off.values()}) > 1, "no forced code path changed the native bits:\n" + report
    assert all("numerics: portable (" in d for _, _, d in on.values()), report
    # a notebook that imported torch first: torch's part still portable (numpy was imported by torch)
    late_torch, _, late_line = results[("late", "this CPU, set after import torch")]
    assert late_torch == on["this CPU"][0], report + f"\nlate: {late_torch} {late_line}"
    assert "MKL CNR branch COMPATIBLE" in late_line and "ATen CPU capability AVX2" in late_line, late_line


def test_set_portable_environment_keeps_the_users_values():
    env = {"MKL_CBWR": "AUTO"}
    changed = numerics.set_portable_environment(env)
    if not numerics._x86_64():
        assert changed == {} and env == {"MKL_CBWR": "AUTO"}
        return
    assert env["MKL_CBWR"] == "AUTO" and "MKL_CBWR" not in changed
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and changed["ATEN_CPU_CAPABILITY"] == "avx2"
    assert set(changed) | {"MKL_CBWR"} <= set(numerics.PORTABLE_ENV)
    assert numerics.set_portable_environment(env) == {}     # a second call changes nothing


def test_portable_mode_is_the_default():
    assert numerics.portable_enabled({})
    assert numerics.portable_enabled({"MLBOOK_PORTABLE": "1"})
    assert not numerics.portable_enabled({"MLBOOK_PORTABLE": "0"})


def test_portable_env_pins_no_thread_count():
    assert not any("THREADS" in k for k in numerics.PORTABLE_ENV)
    assert numerics.PORTABLE_ENV["MKL_CBWR"] == "COMPATIBLE"
