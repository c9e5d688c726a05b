"""The book's papers: one record each, the one list every part of the book reads.

``reproduce`` (which chapters, which data sets, which trunk's weights), ``plan`` (whose grids
and costs), ``train --method list`` (whose rows), the first page's scorecard, the weights check
and the tests all iterate ``PAPERS``. Nothing outside a paper's own files (its model file, its
experiments module, its figures module, its chapter and claims file) names a paper; they ask
this registry, and the paper's experiments module answers through one face (``FACE``).

Adding a fifth paper: ``mlbook/models/<key>.py`` (its math), ``mlbook/experiments/<key>.py``
(the face below), ``book/<chapter>.py``, ``mlbook/reference/claims_<chapter>.csv`` and one
``Paper`` line here. ``tests/test_papers.py`` holds every registered paper to the face.

This module imports nothing of the package, so every layer may read it; a paper's modules are
loaded on demand by name (``Paper.experiments``).
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
from pathlib import Path
from types import ModuleType


@dataclasses.dataclass(frozen=True)
class Paper:
    key: str                   # the module name of its files: models/<key>.py, experiments/<key>.py, ...
    chapter: str               # book/<chapter>.py; its figures go to figures/<chapter>/
    title: str                 # the short name the first page gives it
    datasets: tuple[str, ...]  # the data sets its tables use, in the chapter's order
    trunk: str                 # the ImageNet network its method rows use in the full profile
    trunk_use: str             # how the paper uses that network
    tables: tuple[str, ...]    # its published tables (mlbook/reference/<name>.csv)
    demo_seconds: int          # its chapter's cold demo run, measured (reproduce starts the longest first)
    full_roots: tuple[str, ...] = ()   # further data roots its full profile reads (reproduce's --<name>-root)
    method_label: str = ""     # its own method, as chapter 08's leaderboard names the row (``protocol_run`` trains it)
    protocol_own_trunk: bool = False   # its protocol_run reads its own trunk in the full profile, not COMPARISON_TRUNK
    published_row: str = ""    # its method's row in its own published tables

    @property
    def number(self) -> str:
        return self.chapter[:2]

    @property
    def claims_file(self) -> str:
        return f"claims_{self.chapter}.csv"

    def experiments(self) -> ModuleType:
        """Its experiments module (the face), imported on first use."""
        return importlib.import_module(f"mlbook.experiments.{self.key}")

    @property
    def benches(self) -> tuple[str, ...]:
        """The benchmarks it has (``mlbook/bench/<key>.py``'s ``bench_train``, ``bench_decode``), read
        from the file without importing it (which would import torch)."""
        spec = importlib.util.find_spec(f"mlbook.bench.{self.key}")
        if spec is None or not spec.origin:
            return ()
        tree = ast.parse(Path(spec.origin).read_text())
        return tuple(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("bench_"))

    def bench(self) -> ModuleType | None:
        """Its benchmarks module, imported on first use, if it has one."""
        return importlib.import_module(f"mlbook.bench.{self.key}") if self.benches else None


PAPERS: tuple[Paper, ...] = (
    Paper("order_free_rnn", "04_order_free_rnn", "Order-Free RNN (AAAI 2018)", ("nuswide", "coco"),
          "resnet152", "ResNet-152 conv5 maps, ImageNet weights, frozen (not fine-tuned)",
          ("order_free_rnn_table1_nuswide", "order_free_rnn_table2_coco"), 96,
          method_label="Order-Free RNN + attention", published_row="Ours"),
    Paper("cadm", "05_cadm", "CADM + LCE (ICME 2019)", ("coco", "nuswide"),
          "resnet101", "ResNet-101 conv5 maps at 448 px (14 x 14), ImageNet weights, fine-tuned",
          ("cadm_table1_coco", "cadm_table2_nuswide"), 129, method_label="CADM + LCE",
          published_row="Ours (lambda=0.5)"),
    Paper("rlsd", "06_rlsd", "RLSD (TMM 2018)", ("voc", "coco", "nuswide"),
          "vgg16", "VGG16 conv5_3 maps (stride 16); VGG's own fc6/fc7 encode the 7 x 7 regions",
          ("rlsd_table1_voc2007_ap", "rlsd_table2_voc2007_top3", "rlsd_table3_coco_top3", "rlsd_table4_nuswide_top3"),
          164, full_roots=("vg",), method_label="RLSD", protocol_own_trunk=True,
          published_row="RLSD"),
    Paper("transformation_ranking", "07_transformation_ranking", "Transformation ranking", ("nuswide",),
          "alexnet", "AlexNet, ImageNet weights, fine-tuned, fc8 replaced by the k x d transformation",
          ("ranking_table3_nuswide_top3", "ranking_table4_nuswide_top5", "ranking_table5_nuswide_voting_top3"), 150,
          method_label="Transformation ranking", published_row="Ours"),
)

#: experiments modules that are not papers: stages several papers' grids share
SHARED_EXPERIMENTS = ("features", "baselines")
#: the chapter that sets every paper's method beside the others under one protocol, and its experiments
#: module (the face's functions; its rows: the papers' ``method_label`` rows, trained by each paper's
#: ``protocol_run``, beside its own); it runs after the paper chapters and before the introduction
COMPARISON_CHAPTER, COMPARISON = "08_head_to_head", "head_to_head"
COMPARISON_TRUNK = "resnet101"   # the full profile's trunk of every row there (448 px, as most published work today)
COMPARISON_DATASETS = ("coco", "nuswide")
#: the book's other chapters: the introduction reads the paper chapters' verdicts (runs after them);
#: 01-03 prepare (the published numbers, the data and metrics, the shared backbones)
SUMMARY_CHAPTERS = ("00_introduction",)
PREPARING_CHAPTERS = ("01_published_numbers", "02_data_and_metrics", "03_shared_backbone")
BACKBONE_CHAPTER = "03_shared_backbone"

#: what every paper's experiments module provides (``tests/test_papers.py`` checks each):
#: ``TRUNK`` (= its record's trunk), ``OPTIONS`` (the run options it reads from a chapter's
#: Setting), ``Settings`` and ``settings_for(profile)``, ``rows(profile)`` (every row of its
#: tables, by the name the table prints), ``stages(profile)`` (the shared steps several rows read,
#: runs too), ``grid(profile, datasets, seeds)``, ``run(row, dataset, profile, *, root, seed,
#: train_seed, device, weights, force, ...)``, ``claim_values(claim, evidence, weights)``,
#: ``claim_options(claim, evidence)``, ``cost(run, ctx)`` (its full-profile price, ``mlbook plan``), and
#: for chapter 08 ``METHOD_ROW`` (its method's row of ``rows``), ``protocol_knobs(profile)`` (its own
#: knob grid) and ``protocol_run(dataset, profile, protocol, *, lr, knob, ...)`` (its method under the
#: one protocol, ``experiments.protocol``).
FACE = ("TRUNK", "OPTIONS", "Settings", "settings_for", "rows", "stages", "grid", "run", "claim_values",
        "claim_options", "cost", "METHOD_ROW", "protocol_knobs", "protocol_run")


def get(name: str) -> Paper:
    """The paper whose key or chapter is ``name`` (also its number, "05")."""
    for paper in PAPERS:
        if name in (paper.key, paper.chapter, paper.number):
            return paper
    raise KeyError(f"no paper {name!r}; the book's papers: {', '.join(p.key for p in PAPERS)}")


def of_chapter(chapter: str) -> Paper | None:
    """The paper a chapter reproduces, or None for the book's other chapters."""
    return next((p for p in PAPERS if p.chapter == chapter), None)


def chapter_module(chapter: str) -> ModuleType:
    """The experiments module whose claims a chapter evaluates: its paper's, or the comparison's."""
    if chapter == COMPARISON_CHAPTER:
        return experiment_module(COMPARISON)
    return get(chapter).experiments()


def chapter_trunks(chapter: str) -> tuple[str, ...]:
    """The ImageNet trunks a chapter reads in the full profile: its paper's, or for the comparison
    chapter ``COMPARISON_TRUNK`` and the trunks of the papers whose protocol run keeps their own."""
    paper = of_chapter(chapter)
    if paper:
        return (paper.trunk,)
    if chapter == COMPARISON_CHAPTER:
        return tuple(dict.fromkeys([COMPARISON_TRUNK, *(p.trunk for p in PAPERS if p.protocol_own_trunk)]))
    return ()


def chapter_roots(chapter: str) -> tuple[str, ...]:
    """The data roots a chapter reads in the full profile (its data sets and further roots, e.g. "vg")."""
    paper = of_chapter(chapter)
    if paper:
        return (*paper.datasets, *paper.full_roots)
    if chapter == COMPARISON_CHAPTER:
        return tuple(dict.fromkeys([*COMPARISON_DATASETS, *(r for p in PAPERS for r in p.full_roots)]))
    return ()


def experiment_module(name: str) -> ModuleType:
    """The experiments module of a paper (by key), of a shared stage (``SHARED_EXPERIMENTS``) or of
    the comparison chapter (``COMPARISON``)."""
    if name in SHARED_EXPERIMENTS or name == COMPARISON:
        return importlib.import_module(f"mlbook.experiments.{name}")
    return get(name).experiments()
