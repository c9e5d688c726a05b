"""Every `python -m mlbook ...` command the README shows is accepted by the CLI as typed, and the ones
that need no real data set or GPU run through it (`python -m mlbook`, a subprocess, as a user types them)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlbook.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    """The README's `python -m mlbook` commands, continuation lines joined, comments dropped."""
    text = ROOT.joinpath("README.md").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        m = re.search(r"python -m mlbook (.*)", line)
        if m and not line.lstrip().startswith(("`", "#")) and "`" not in m.group(1):
            words = shlex.split(m.group(1).split("  #")[0].split(" #")[0])
            if words and words[0] in {"reproduce", "verify", "plan", "data", "evaluate", "train", "bench"}:
                out.append(words)
    return out


def _expand(words: list[str]) -> list[list[str]]:
    """`bench metrics|decode|train` stands for three commands."""
    return [[*words[:i], w, *words[i + 1:]] for i, x in enumerate(words) if "|" in x for w in x.split("|")] or [words]


def test_the_readme_shows_commands():
    assert len(readme_commands()) >= 12


@pytest.mark.parametrize("words", [w for c in readme_commands() for w in _expand(c)], ids=" ".join)
def test_every_readme_command_parses(words, capsys):
    if "--help" in words:
        with pytest.raises(SystemExit) as stop:
            build_parser().parse_args(words)
        assert stop.value.code == 0 and "usage" in capsys.readouterr().out
        return
    args = build_parser().parse_args(words)
    assert args.command == words[0]


def _mlbook(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlbook", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def test_readme_train_list_runs():
    """(`plan` runs through the CLI in tests/test_plan.py, `data split` and `data summary` on coco128 in
    tests/test_data.py, `bench train` in tests/test_bench.py, the bad inputs in tests/test_cli.py.)"""
    r = _mlbook("train", "--method", "list")
    assert r.returncode == 0 and "cadm:lambda0.5" in r.stdout, r.stderr


def test_readme_evaluate_runs(tmp_path):
    rng = np.random.default_rng(0)
    targets = (rng.random((40, 5)) < 0.3).astype(np.float32)
    targets[0] = 1
    np.save(tmp_path / "scores.npy", rng.random((40, 5)).astype(np.float32))
    np.save(tmp_path / "targets.npy", targets)
    r = _mlbook("evaluate", "scores.npy", "targets.npy", cwd=tmp_path)
    assert r.returncode == 0 and "mAP" in r.stdout, r.stderr
