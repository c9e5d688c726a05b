"""Test session setup, shared by the unit tests (tests/) and the notebook tests (book/).

The chapters run under nbval in one of two ways:

- **smoke** (`make test`, plain `pytest`: pyproject's addopts hold `--nbval-lax`): every chapter in the
  smoke profile, each cell checked for exceptions only; nothing a test writes lands in the user's runs/,
  data/ or figures/ (the kernels nbval starts inherit the variables set below).
- **strict** (`pytest --nbval book/`, `make nbval`): every chapter re-executed on the profile its committed
  outputs came from (demo; only `mlbook reproduce --profile demo` writes book/*.ipynb) and every text
  output compared with the committed one, cell by cell, through tests/nbval_sanitize.cfg (wall times,
  progress bars, memory addresses, timestamps, run-log lines). Its kernels read the user's runs/ and
  data/ (or MLBOOK_RUNS / MLBOOK_DATA as the user set them), so a warm cache is reused, and write their
  figures to a scratch copy of figures/, so the committed figures are never overwritten and chapter 00
  counts the committed claims even when it runs first. Only the kernels get this environment: unit tests
  collected in the same session keep the smoke one.
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mlbook.papers import SUMMARY_CHAPTERS

ROOT = Path(__file__).resolve().parent
SANITIZER = ROOT / "tests" / "nbval_sanitize.cfg"
STRICT_PROFILE = "demo"
CACHE_VARS = ("MLBOOK_RUNS", "MLBOOK_DATA")

_tmp = tempfile.mkdtemp(prefix="mlbook-test-")
_user_cache = {var: os.environ.get(var) for var in CACHE_VARS}   # read before the overrides below
os.environ["MLBOOK_PROFILE"] = "smoke"
for _var, _sub in (("MLBOOK_RUNS", "runs"), ("MLBOOK_FIGURES", "figures"), ("MLBOOK_DATA", "data")):
    os.environ[_var] = os.path.join(_tmp, _sub)
# ipykernel's harmless "running over TCP without encryption" notice
os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")
collect_ignore_glob = ["_build/*", "book/_build/*"]


def strict(config) -> bool:
    """`--nbval` asked for on the command line: pyproject's addopts always add `--nbval-lax`, which would
    otherwise make nbval compare no output at all (both flags typed by hand: lax, as typed)."""
    return bool(getattr(config.option, "nbval", False)) and "--nbval-lax" not in config.invocation_params.args


def is_notebook(item) -> bool:
    return str(item.fspath).endswith(".ipynb")


def strict_environment() -> dict[str, str | None]:
    """What a strict run's kernels see (None: unset, so the project's own folder is used)."""
    figures = Path(_tmp) / "strict-figures"
    if not figures.exists():
        shutil.copytree(ROOT / "figures", figures)
    return {"MLBOOK_PROFILE": STRICT_PROFILE, "MLBOOK_FIGURES": str(figures), **_user_cache}


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs chapters, builds the book, or trains real networks "
                                       "(make test runs them, make test-fast leaves them out)")
    if strict(config):
        config.option.nbval_lax = False
        if not config.option.nbval_sanitize_with:
            config.option.nbval_sanitize_with = str(SANITIZER)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_notebook(item):   # a chapter under nbval
            item.add_marker(pytest.mark.slow)
    if strict(config):   # the introduction last, as `mlbook reproduce` runs it: it counts this run's verdicts
        items.sort(key=lambda item: is_notebook(item) and Path(str(item.fspath)).stem in SUMMARY_CHAPTERS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    """A notebook's kernel starts while its first cell is set up: in a strict run, with the strict
    environment (restored afterwards, for the unit tests)."""
    if not (is_notebook(item) and strict(item.config)):
        return (yield)
    saved = {var: os.environ.get(var) for var in ("MLBOOK_PROFILE", "MLBOOK_FIGURES", *CACHE_VARS)}
    try:
        for var, value in strict_environment().items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        return (yield)
    finally:
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
