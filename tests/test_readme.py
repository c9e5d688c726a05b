"""Every `python -m mlbook ...` command the README shows is accepted by the CLI as typed, and the ones
that need no real data set or GPU run through it (`python -m mlbook`, a subprocess, as a user types them)."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlbook import papers
from mlbook.cli import build_parser
from mlbook.reproduce import chapters, select

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    """The README's `python -m mlbook` commands, continuation lines joined, comments dropped."""
    text = ROOT.joinpath("README.md").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        m = re.search(r"python -m mlbook (.*)", line)
        if m and not line.lstrip().startswith(("`", "#")) and "`" not in m.group(1):
            words = shlex.split(m.group(1).split("  #")[0].split(" #")[0])
            if words and words[0] in {"reproduce", "verify", "plan", "data", "weights", "evaluate", "train", "bench"}:
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


def _readme_command(*first: str) -> list[str]:
    """The README's command that starts with ``first`` (e.g. "data", "generate")."""
    return next(w for w in readme_commands() if tuple(w[:len(first)]) == first)


def test_readme_help_runs():
    r = _mlbook(*_readme_command("reproduce", "--help"))
    assert r.returncode == 0 and "--limit-images" in r.stdout and "--vg-root" in r.stdout, r.stderr


def test_readme_train_list_runs():
    """(`plan` runs through the CLI in tests/test_plan.py, `data split` and `data summary` on coco128 in
    tests/test_data.py, `bench train` in tests/test_bench.py, the bad inputs in tests/test_cli.py; the
    `verify` commands and the full profile's runs take minutes to hours: tests/test_verify.py runs
    `verify` on figures trees, ``make test-full`` the dry run.)"""
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


def test_readme_bench_metrics_runs():
    """On a small score matrix (the default, COCO's test split, takes a minute; `bench decode` 13 s: its
    function runs in tests/test_order_free_rnn.py, its device check through the CLI in tests/test_cli.py)."""
    r = _mlbook("bench", "metrics", "--n", "300", "--c", "6")
    assert r.returncode == 0 and "AP, ties=sklearn" in r.stdout, r.stderr


# --- the full profile's dry run from generated inputs alone ------------------------------------------

def _at(words: list[str], folder: Path) -> list[str]:
    """The README's command with its /tmp/... paths moved under ``folder``."""
    return [re.sub(r"^(\w+=)?/tmp/", lambda m: f"{m.group(1) or ''}{folder}/", w) for w in words]


def test_readme_dry_run_reads_only_what_the_two_commands_before_it_write(tmp_path):
    """The dry run names a root for every data set its chapters read and a file for every trunk, each
    where `data generate` and `weights random` write it (the run itself takes minutes: make test-full)."""
    generate, weights = _readme_command("data", "generate"), _readme_command("weights", "random")
    dry = build_parser().parse_args(next(w for w in readme_commands() if "--limit-images" in w))
    out = Path(generate[generate.index("--out") + 1])
    chosen = [c.stem for c in select(chapters(ROOT), dry.chapters)]
    for chapter in chosen:
        for name in papers.chapter_roots(chapter):
            assert getattr(dry, f"{name}_root") == str(out / name), name
    folder = Path(weights[weights.index("--out") + 1])
    trunks = {t for c in chosen for t in papers.chapter_trunks(c)}
    assert sorted(dry.weights) == sorted(f"{t}={folder}/{t}-random-init.pth" for t in trunks)
    assert (dry.profile, dry.limit_images, dry.max_steps) == ("full", 4, 1)


def test_readme_data_generate_writes_every_root_including_visual_genome(tmp_path):
    r = _mlbook(*_at(_readme_command("data", "generate"), tmp_path))
    assert r.returncode == 0, r.stderr
    flags = r.stdout.splitlines()[-1].split(": ", 1)[1].split()
    args = build_parser().parse_args(["reproduce", "--profile", "full", *flags])
    for name in {d for p in papers.PAPERS for d in (*p.datasets, *p.full_roots)}:
        assert getattr(args, f"{name}_root") == str(tmp_path / "gen" / name) and (tmp_path / "gen" / name).is_dir()
    summary = _mlbook("data", "summary", "--dataset", "vg", "--root", str(tmp_path / "gen" / "vg"), "--json")
    assert summary.returncode == 0, summary.stderr
    regions = json.loads(summary.stdout)["splits"]["regions"]
    assert regions["loaded"] == regions["listed"] > 0 and regions["regions"] > regions["listed"]
    assert not regions["skipped"] and (tmp_path / "gen" / "vg" / "region_descriptions.json").is_file()


def test_readme_random_weights_are_accepted_and_keep_the_maps_finite(tmp_path):
    """A random ResNet-152 with torchvision's default init has conv5 maps near 7e8, past float16, where the
    frozen maps are kept: `weights random` writes one whose maps a dry run can store."""
    from mlbook.models.backbones import build_backbone

    r = _mlbook(*_at(_readme_command("weights", "random"), tmp_path), "--networks", "resnet152")
    assert r.returncode == 0, r.stderr
    path = tmp_path / "w" / "resnet152-random-init.pth"
    assert r.stdout.splitlines()[-1] == f"reproduce reads them with: --weights resnet152={path}"
    trunk = build_backbone("resnet152", weights=str(path)).eval()     # checked: keys and shapes
    with torch.no_grad():
        maps = trunk(torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    assert bool(torch.isfinite(maps.half()).all())
