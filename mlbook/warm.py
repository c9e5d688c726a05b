"""Which paper chapters (and the comparison chapter, 08) would train nothing: every run of their grid
stored and current.

``python -m mlbook.warm PARAMETERS_JSON`` prints the warm chapters as one JSON list
(``python -m mlbook.warm --prefetch PARAMETERS_JSON`` computes chapter 08's runs ahead, ``prefetch``); ``reproduce``
starts it beside its first stage (its parent process never imports torch) and runs the paper
chapters it names side by side: a warm chapter loads, evaluates and draws on one core, so two of
them share the machine's two cores instead of waiting for each other. A cold chapter keeps every
core for its ``run_all`` workers. The answer changes only the wall time, never a number (every
computation is pinned); a wrong answer costs time, nothing else.
"""
from __future__ import annotations

import json
import sys

from . import cache, papers
from .data import generated_ready
from .experiments import shared
from .plan import FIRST_PAGE, cached_plan
from .profiles import get_profile


def setting_of(parameters: dict) -> shared.Setting:
    """The chapters' ``Setting`` under these reproduce parameters (the papermill parameters they get)."""
    profile = get_profile(parameters.get("profile", "demo"))
    roots = {d: parameters.get(f"{d}_root") for d in ("coco", "nuswide", "voc")}
    options = {k: parameters[k] for k in ("vg_root", "proposals_root", "word_vectors") if parameters.get(k)}
    return shared.Setting(profile, roots, parameters.get("seed", 0), parameters.get("device", "auto"),
                          parameters.get("weights"), options)


def comparison_grid(setting: shared.Setting) -> list[shared.Run]:
    """Chapter 08's grid, as the chapter itself calls it."""
    comparison = papers.experiment_module(papers.COMPARISON)
    return comparison.grid(setting.profile, list(papers.COMPARISON_DATASETS), list(range(setting.profile.train_seeds)))


def prefetch(parameters: dict) -> None:
    """Compute chapter 08's runs ahead of the chapter (``reproduce`` starts this at the lowest CPU
    priority when the paper chapters start, so that it takes only the cores they leave idle: their
    kernels' start, their single-core evaluation and drawing, the tail of their workers); before
    them, chapter 00's ``plan`` (``cached_plan`` with the first page's arguments). The chapter
    then loads what is stored and computes the rest; a run being computed here is locked
    (``cache.run``), and every run is pinned, so the numbers are the same whoever computes them."""
    try:                         # first chapter 00's plan (a few seconds of one core), then chapter 08's runs
        cached_plan(**FIRST_PAGE)
    except Exception:            # noqa: BLE001 - chapter 00 computes it itself, and shows any error there
        pass
    setting = setting_of(parameters)
    shared.run_all(comparison_grid(setting), setting)


def warm_chapters(parameters: dict) -> list[str]:
    """The paper chapters whose grids (``grid(profile, datasets, seeds)``, the chapter's own call with
    these reproduce parameters) would compute no run: ``cache.would_compute`` loads nothing."""
    setting = setting_of(parameters)
    profile = setting.profile
    roots = setting.roots
    seeds = list(range(profile.train_seeds))
    generated = {d for paper in papers.PAPERS for d in paper.datasets if not roots.get(d)}
    if profile.gen_train > 0 and not all(generated_ready(d, profile, setting.seed) for d in generated):
        return []      # the preparing chapters are still writing the data: every chapter is cold, and the
    warm = []          # probe must not generate the data beside them
    grids = {p.chapter: p.experiments().grid(profile, list(p.datasets), seeds) for p in papers.PAPERS}
    grids[papers.COMPARISON_CHAPTER] = comparison_grid(setting)
    for chapter, grid in grids.items():
        if not any(cache.would_compute(shared.call, run, setting) for run in grid):
            warm.append(chapter)
    return warm


if __name__ == "__main__":
    if sys.argv[1] == "--prefetch":
        prefetch(json.loads(sys.argv[2]))
    else:
        print(json.dumps(warm_chapters(json.loads(sys.argv[1]))))
