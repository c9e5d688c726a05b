"""Portable numerics: the same bits on every x86-64 CPU with AVX2, Intel or AMD, AVX2 or AVX-512.

Pinned (``experiments.shared.pinned``: fixed threads, deterministic algorithms, seeded), the book's
numbers repeat bit for bit on one machine. Across machines, without this mode, they do not: four kernel libraries inside
torch, and numpy, choose their code by the CPU they run on, and other code adds in another order.

- MKL (fp32 matrix products: ``nn.Linear``, LSTM cells and, with oneDNN and NNPACK off, every
  convolution through im2col) dispatches on the CPU's vendor as well as its instruction set. Its
  conditional numerical reproducibility (CNR) mode ``MKL_CBWR`` fixes the code branch, but on a
  non-Intel CPU MKL honours only ``AUTO`` and ``COMPATIBLE``: asked for ``AVX2`` or ``AVX2,STRICT``
  on an AMD EPYC it runs (and ``mkl_cbwr_get`` reports) ``AUTO``, its AMD dispatch, while an Intel
  CPU runs the ``AVX2`` branch, and the two give other bits. ``COMPATIBLE`` (SSE2 without the
  approximate rcpps/rsqrtps) is the branch Intel documents as the same on every Intel or
  compatible CPU.
- ATen's own vectorised kernels (softmax, pow, ...) are chosen once per process, from
  ``ATEN_CPU_CAPABILITY`` or the CPU (default / avx2 / avx512): ``avx2`` on every machine.
- oneDNN (convolutions, ``nn.LSTM``): JIT kernels per instruction set, blocked by cache sizes.
- NNPACK (convolution forward, with or without gradients, batch >= 16, when oneDNN is off): one
  FMA3 kernel set, but it blocks input channels by the CPU's L1 cache size, and a block is summed
  before it is added, so a CPU with another L1 (32 KiB on Zen 4 and Skylake, 48 KiB on Ice Lake
  and Sapphire Rapids) adds in another order.
- numpy (metrics, claims, t-SNE through scikit-learn): its OpenBLAS (and SciPy's) picks AVX-512
  kernels (SkylakeX) on an AVX-512 CPU and AVX2 ones (Haswell) elsewhere, and numpy's own float64
  exp/log and its pow have AVX-512 loops that round otherwise than the AVX2 ones.

The portable mode, the default of the demo and smoke profiles (``MLBOOK_PORTABLE=0`` switches it
off; the full profile on a GPU keeps the fast kernels and is compared with a tolerance), fixes MKL,
ATen and numpy by environment (``PORTABLE_ENV``, set by ``import mlbook``) and switches oneDNN and
NNPACK off (``apply_portable_backends``, inside every pinned computation); convolutions then run
as ATen im2col + MKL gemm. It costs speed (MKL's SSE2 branch, no oneDNN, no NNPACK): a training
step of the demo's SmallCNN at 48 px, batch 64, one thread, takes about 2.7 times as long (AMD EPYC
Zen 4: 40 steps 16.8 s against 6.0 s), which the demo pays for with a narrower SmallCNN (16-32-64-128
channels: the same step in the portable mode about as fast as the 32-64-128-128 one natively). It
needs AVX2: on an older CPU ATen and OpenBLAS would take other kernels (so OpenBLAS is left alone
there). Thread counts stay where they are (``shared.pinned`` fixes them per computation).

When the variables are read: numpy and its OpenBLAS at ``import numpy``, which ``import torch``
(and pandas, matplotlib) does; MKL and ATen at their first computation. So set them before
``import torch`` (and numpy): every chapter imports mlbook first;
set after ``import torch`` but before any tensor is computed, MKL's and ATen's still hold, numpy's
not; set after a computation, MKL's and ATen's are ignored too. ``describe`` shows what is in force::

    from mlbook import numerics
    if numerics.portable_enabled():
        numerics.set_portable_environment()
    import torch
    if numerics.portable_enabled():
        numerics.apply_portable_backends()
    print(numerics.describe())

This module imports nothing of mlbook, and torch only inside the functions that need it.
"""
from __future__ import annotations

import os
import sys


def _numpy_avx512_features() -> str:
    """numpy's names of its AVX-512 dispatch targets (renamed in numpy 2.4), read from the installed
    version without importing numpy (which reads ``NPY_DISABLE_CPU_FEATURES`` when imported)."""
    from importlib import metadata

    try:
        major, minor = (int(part) for part in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        major, minor = 2, 4
    if (major, minor) >= (2, 4):
        return "X86_V4 AVX512_ICL AVX512_SPR"
    return "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"


#: The environment of the portable mode; ``set_portable_environment`` sets each one not set yet.
PORTABLE_ENV: dict[str, str] = {
    # MKL's CNR branch that is the same on Intel and non-Intel CPUs (SSE2, no rcpps/rsqrtps)
    "MKL_CBWR": "COMPATIBLE",
    # ATen's vectorised kernels: the AVX2 ones everywhere (the AVX-512 softmax and pow round otherwise)
    "ATEN_CPU_CAPABILITY": "avx2",
    # numpy's and SciPy's OpenBLAS: the AVX2 (Haswell) kernels, whose blocking is fixed, everywhere
    "OPENBLAS_CORETYPE": "Haswell",
    # numpy's own loops: no AVX-512 ones (float64 exp/log, pow)
    "NPY_DISABLE_CPU_FEATURES": _numpy_avx512_features(),
}

#: ``MLBOOK_PORTABLE=0`` switches the mode off (``mlbook/__init__.py`` sets the environment at import
#: otherwise, ``experiments.shared.pinned`` the backends around every cached computation of a portable profile).
SWITCH = "MLBOOK_PORTABLE"

# MKL's CNR constants (mkl_service.h)
_CBWR_ALL = ~0
_CBWR_STRICT = 0x10000
_CBWR_BRANCHES = {0: "OFF", 1: "OFF", 2: "AUTO", 3: "COMPATIBLE", 4: "SSE2", 5: "SSE3", 6: "SSSE3",
                  7: "SSE4_1", 8: "SSE4_2", 9: "AVX", 10: "AVX2", 11: "AVX512_MIC", 12: "AVX512",
                  13: "AVX512_MIC_E1", 14: "AVX512_E1"}


def portable_enabled(environ=os.environ) -> bool:
    """The portable mode is the default (the committed figures come from it); ``MLBOOK_PORTABLE=0``
    switches it off (each CPU's fastest kernels: about 2.5 times faster training, other bits)."""
    return environ.get(SWITCH, "1").strip() != "0"


#: set by ``set_portable_environment``: numpy was loaded before the variables were set (its own loops
#: and OpenBLAS had chosen their kernels already)
_numpy_before = {"value": False}


def environment_in_force(environ=os.environ) -> bool:
    """Whether this process runs with the portable environment: every variable of ``PORTABLE_ENV``
    holds the mode's value (a user's own value wins, and then the mode is not in force) and numpy
    was not loaded before they were set. Cheap (no torch call); ``in_force`` asks the libraries."""
    if not _x86_64():
        return False
    wanted = {key: value for key, value in PORTABLE_ENV.items()
              if key != "OPENBLAS_CORETYPE" or _has_avx2()}
    return all(environ.get(key) == value for key, value in wanted.items()) and not _numpy_before["value"]


def _x86_64() -> bool:
    machine = os.uname().machine if hasattr(os, "uname") else os.environ.get("PROCESSOR_ARCHITECTURE", "")
    return machine.lower() in ("x86_64", "amd64")


def _has_avx2() -> bool:
    """Whether the CPU has AVX2 and FMA (Linux: /proc/cpuinfo; elsewhere assumed)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split()
                    return "avx2" in flags and "fma" in flags
    except OSError:
        pass
    return True


def set_portable_environment(environ=os.environ) -> dict:
    """Set each variable of ``PORTABLE_ENV`` that is not set yet (a user's own value wins) and
    return those it set. Call it before ``import torch`` and ``import numpy`` (see the module's
    docstring). Only on x86-64 (the variables name x86 instruction sets), and OpenBLAS's only on
    a CPU with AVX2 (forced onto Haswell kernels, an older CPU would stop on an illegal instruction)."""
    changed = {}
    if not _x86_64():
        return changed
    if environ is os.environ and "numpy" in sys.modules and "NPY_DISABLE_CPU_FEATURES" not in environ:
        _numpy_before["value"] = True
    for key, value in PORTABLE_ENV.items():
        if key == "OPENBLAS_CORETYPE" and not _has_avx2():
            continue
        if key not in environ:
            environ[key] = value
            changed[key] = value
    return changed


def apply_portable_backends() -> tuple[bool, bool]:
    """The run-time switches of the portable mode, after ``import torch``: oneDNN and NNPACK off,
    so that convolutions (and ``nn.LSTM``) run on ATen + MKL kernels, which ``PORTABLE_ENV`` fixes.
    Returns the (oneDNN, NNPACK) flags it replaced (``restore_backends`` puts them back)."""
    import torch

    before = (torch.backends.mkldnn.enabled, torch._C._get_nnpack_enabled())
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    return before


def restore_backends(before: tuple[bool, bool]) -> None:
    import torch

    torch.backends.mkldnn.enabled = before[0]
    torch.backends.nnpack.set_flags(before[1])


def mkl_cbwr_branch() -> str | None:
    """MKL's CNR branch as MKL reports it (``mkl_cbwr_get(MKL_CBWR_ALL)``): "COMPATIBLE",
    "AUTO,STRICT", "OFF", ...; None where it cannot be asked (a torch without MKL, or one that
    does not export the function). MKL reads ``MKL_CBWR`` at its first call, this one included:
    ask after ``set_portable_environment``."""
    import ctypes

    import torch

    if not torch.backends.mkl.is_available():
        return None
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        path = os.path.join(lib_dir, name)
        if not os.path.exists(path):
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            return None
        # torch links MKL statically: mkl_cbwr_get's own name is not exported, its service
        # routine's is
        for symbol in ("mkl_cbwr_get", "MKL_CBWR_Get", "mkl_serv_cbwr_get"):
            try:
                get = getattr(lib, symbol)
            except AttributeError:
                continue
            get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
            value = get(_CBWR_ALL)
            if value < 0:
                return None
            branch = value & ~_CBWR_STRICT
            return _CBWR_BRANCHES.get(branch, str(branch)) + (",STRICT" if value & _CBWR_STRICT else "")
        return None
    return None


def numpy_state() -> tuple[bool | None, str | None]:
    """(whether numpy runs AVX-512 loops, the OpenBLAS kernel set numpy's OpenBLAS uses), each None
    where it cannot be told. Imports numpy (and threadpoolctl, if installed)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            features = None
    # the AVX-512 dispatch targets still on (NPY_DISABLE_CPU_FEATURES turns them off here, while
    # the CPU's own features, AVX512F..., stay listed as on)
    avx512 = None if features is None else any(
        features.get(name, False) for name in PORTABLE_ENV["NPY_DISABLE_CPU_FEATURES"].split())
    try:
        from threadpoolctl import threadpool_info

        cores = sorted({info.get("architecture") or "?" for info in threadpool_info()
                        if info.get("internal_api") == "openblas"})
        core = ",".join(cores) or None
    except Exception:   # threadpoolctl missing or unable to inspect this build
        core = None
    return avx512, core


def in_force() -> bool:
    """Whether the portable settings of the process hold (MKL's branch, ATen's capability, numpy
    without AVX-512 loops, OpenBLAS on Haswell kernels), whatever ``MLBOOK_PORTABLE`` says; oneDNN
    and NNPACK are switched per computation (``apply_portable_backends``, inside
    ``experiments.shared.pinned``). Like ``describe``, it fixes MKL's branch and ATen's capability
    for the process."""
    import torch

    avx512, core = numpy_state()
    return (mkl_cbwr_branch() in (None, PORTABLE_ENV["MKL_CBWR"])
            and torch.backends.cpu.get_cpu_capability().lower() == PORTABLE_ENV["ATEN_CPU_CAPABILITY"]
            and avx512 is not True and core in (None, PORTABLE_ENV["OPENBLAS_CORETYPE"]))


def describe() -> str:
    """One line saying what is in force, for a chapter to print, e.g. ``numerics: portable (MKL CNR
    branch COMPATIBLE, ATen CPU capability AVX2, oneDNN and NNPACK off in every computation, numpy
    AVX-512 off, OpenBLAS Haswell)``. Asking fixes MKL's branch and ATen's capability for the process (each
    reads its variable once): call it after ``set_portable_environment``."""
    import torch

    branch = mkl_cbwr_branch()
    capability = torch.backends.cpu.get_cpu_capability()
    onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    nnpack = torch._nnpack_available() and torch._C._get_nnpack_enabled()
    avx512, core = numpy_state()
    if portable_enabled() and not _x86_64():
        mode = "native (the portable mode is for x86-64 CPUs)"
    elif portable_enabled():
        mode = "portable" if in_force() else "portable asked but NOT in force (set after torch/numpy started?)"
    else:
        mode = f"native ({SWITCH}=0)"
    numpy_simd = {True: "on", False: "off", None: "unknown"}[avx512]
    # oneDNN and NNPACK are switched per computation (pinned), whatever holds at this moment
    kernels = ("oneDNN and NNPACK off in every computation" if mode == "portable"
               else f"oneDNN {'on' if onednn else 'off'}, NNPACK {'on' if nnpack else 'off'}")
    return (f"numerics: {mode} (MKL CNR branch {branch or 'unknown'}, ATen CPU capability {capability}, "
            f"{kernels}, "
            f"numpy AVX-512 {numpy_simd}, OpenBLAS {core or 'unknown'})")
