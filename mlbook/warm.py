"""Which paper chapters (and the comparison chapter, 08) would train nothing: every run of their grid
stored and current.

``python -m mlbook.warm PARAMETERS_JSON`` prints the warm chapters as one JSON list; ``reproduce``
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
from .profiles import get_profile


def warm_chapters(parameters: dict) -> list[str]:
    """The paper chapters whose grids (``grid(profile, datasets, seeds)``, the chapter's own call with
    these reproduce parameters) would compute no run: ``cache.would_compute`` loads nothing."""
    profile = get_profile(parameters.get("profile", "demo"))
    roots = {d: parameters.get(f"{d}_root") for d in ("coco", "nuswide", "voc")}
    options = {k: parameters[k] for k in ("vg_root", "proposals_root", "word_vectors") if parameters.get(k)}
    setting = shared.Setting(profile, roots, parameters.get("seed", 0), parameters.get("device", "auto"),
                             parameters.get("weights"), options)
    seeds = list(range(profile.train_seeds))
    generated = {d for paper in papers.PAPERS for d in paper.datasets if not roots.get(d)}
    if profile.gen_train > 0 and not all(generated_ready(d, profile, setting.seed) for d in generated):
        return []      # the preparing chapters are still writing the data: every chapter is cold, and the
    warm = []          # probe must not generate the data beside them
    grids = {p.chapter: p.experiments().grid(profile, list(p.datasets), seeds) for p in papers.PAPERS}
    comparison = papers.experiment_module(papers.COMPARISON)
    grids[papers.COMPARISON_CHAPTER] = comparison.grid(profile, list(papers.COMPARISON_DATASETS), seeds)
    for chapter, grid in grids.items():
        if not any(cache.would_compute(shared.call, run, setting) for run in grid):
            warm.append(chapter)
    return warm


if __name__ == "__main__":
    print(json.dumps(warm_chapters(json.loads(sys.argv[1]))))
