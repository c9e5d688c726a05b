"""Test session setup, shared by the unit tests (tests/) and the notebook tests (book/).

Every chapter runs in the smoke profile, and nothing a test writes lands in the
user's runs/, data/ or figures/: the kernels nbval starts inherit these variables.
"""
import os
import tempfile

_tmp = tempfile.mkdtemp(prefix="mlbook-test-")
os.environ["MLBOOK_PROFILE"] = "smoke"
for _var, _sub in (("MLBOOK_RUNS", "runs"), ("MLBOOK_FIGURES", "figures"), ("MLBOOK_DATA", "data")):
    os.environ[_var] = os.path.join(_tmp, _sub)
# ipykernel's harmless "running over TCP without encryption" notice
os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning")
collect_ignore_glob = ["_build/*", "book/_build/*"]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs chapters, builds the book, or trains real networks "
                                       "(make test runs them, make test-fast leaves them out)")


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if str(item.fspath).endswith(".ipynb"):   # a chapter under nbval
            item.add_marker(pytest.mark.slow)
