"""`python -m mlbook plan --profile full [--machine h200]`: what the full book costs, before renting a GPU.

The plan reads the grids the chapters compute (``grid(profile, datasets, seeds)`` of every paper's
experiments module, ``papers.PAPERS``: the same ones ``train`` and the chapters read) and prices every
run of them with the ``cost(run, ctx)`` of the experiments module that runs it (``run.paper``; the
estimator they share, and how it counts FLOPs, memory, disk and selective-search time, is
``mlbook.costs``), grouped by what it trains, on which data set; the pooled features a run reads
(``RunCost.pooled_trunk``) are one more group per trunk and data set, and each chapter's own process,
with the results it loads, one more row.

``fits`` refuses a plan in which a run would not fit a named machine (``MACHINES``): one line
per offending run group. A dry run (``--limit-images``, ``--max-steps``) is planned the same
way, with the data and steps it is limited to.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from . import cache, papers
from .costs import GIB, GPU_PEAK, MACHINES, Context, RunCost, outputs_bytes, pooled_cost
from .data import NUM_CLASSES
from .experiments import features
from .profiles import get_profile

DEFAULT_MACHINE = "h200"   # the machine this project lends


def plan_target(gpu: str | None = None, machine: str | None = None) -> tuple[str, str]:
    """(the GPU whose hours are priced, the machine the fit is checked against): ``--gpu`` prices the
    hours, ``--machine`` the fit; one alone names the other too (the machine of that GPU, the GPU of
    that machine); neither is the H200 machine."""
    if gpu is not None and gpu not in GPU_PEAK:
        raise ValueError(f"--gpu {gpu}: unknown GPU; choose one of {', '.join(sorted(GPU_PEAK))}")
    if machine is None:
        machine = next((k for k, m in MACHINES.items() if m.gpu == gpu), DEFAULT_MACHINE)
    if machine not in MACHINES:
        raise ValueError(f"--machine {machine}: unknown machine; choose one of {', '.join(sorted(MACHINES))}")
    return gpu or MACHINES[machine].gpu, machine


def checked_line(gpu: str, machine: str) -> str:
    """The line under the plan that says what was priced and which machine the fit was checked against."""
    return f"GPU hours priced on {gpu.upper()}; fit checked against --machine {machine}: {MACHINES[machine].name}"


# --- the whole book -------------------------------------------------------------------------------------

def grid_runs(profile, seeds: int = 3) -> list[tuple[str, object]]:
    """(chapter, run) of every run of every paper chapter's grid, in the chapters' order, then the
    comparison chapter's (08)."""
    comparison = papers.experiment_module(papers.COMPARISON).grid(profile, list(papers.COMPARISON_DATASETS),
                                                                   list(range(seeds)))
    return [(paper.chapter, r) for paper in papers.PAPERS
            for r in paper.experiments().grid(profile, list(paper.datasets), list(range(seeds)))] + \
        [(papers.COMPARISON_CHAPTER, r) for r in comparison]


def run_cost(chapter: str, run, ctx: Context) -> RunCost:
    """The cost of one run of ``chapter``'s grid: the ``cost`` of the experiments module that runs it
    (its model, data set and the storage of the maps it reads), priced as one of that chapter's runs."""
    cost = papers.experiment_module(run.paper).cost(run, dataclasses.replace(ctx, chapter=chapter[:2]))
    cost.rows = (run.row,)
    return cost


def full_book_runs(seeds: int = 3, profile=None, device: str = "cuda") -> list[RunCost]:
    """Every run of the chapters' grids, priced and grouped: one ``RunCost`` per (chapter, what it
    trains, data set), ``runs`` the grid runs in it and ``rows`` their row names; the pooled
    features a run reads (the baselines') are one more group per trunk and data set."""
    ctx = Context(get_profile(profile or "full"), features.map_storage, features.map_shape, device)
    groups: dict[tuple, RunCost] = {}
    pooled: set = set()
    grid = grid_runs(ctx.profile, seeds)
    for chapter, run in grid:
        priced = [run_cost(chapter, run, ctx)]
        trunk = priced[0].pooled_trunk
        if trunk and (trunk, run.dataset) not in pooled:
            pooled.add((trunk, run.dataset))
            priced.insert(0, pooled_cost(dataclasses.replace(ctx, chapter=chapter[:2]), trunk, run.dataset))
        for cost in priced:
            key = (cost.chapter, cost.run, cost.dataset)
            if key in groups:
                g = groups[key]
                g.runs += 1
                g.rows = g.rows + tuple(r for r in cost.rows if r not in g.rows)
                g.host_bytes, g.gpu_bytes = max(g.host_bytes, cost.host_bytes), max(g.gpu_bytes, cost.gpu_bytes)
                g.disk_bytes = max(g.disk_bytes, cost.disk_bytes)
                g.kept_bytes += cost.kept_bytes
                g.ss_core_seconds += cost.ss_core_seconds
                g.flops_per_image = max(g.flops_per_image, cost.flops_per_image)
                g.extra_flops = max(g.extra_flops, cost.extra_flops)
            else:
                groups[key] = cost
    loaded = results_loaded(ctx, grid)
    if ctx.device != "cpu":   # on a GPU the runs train in the chapter's process, beside its loaded results
        for (number, _, _), g in groups.items():
            g.host_bytes += loaded[number][1]
    processes = []
    for number, datasets in chapter_datasets().items():
        n, read = loaded[number]
        processes.append(RunCost(number, f"the chapter's process: {n} results loaded (memory-mapped, scores "
                                 "read), tables, figures, claims", ", ".join(datasets), 0.0, 0, 0, 1,
                                 host_bytes=ctx.base_host() + read))
    return list(groups.values()) + processes


def chapter_datasets() -> dict[str, tuple[str, ...]]:
    """{chapter number: its data sets} of every chapter with a grid: the papers', then the comparison's."""
    return {**{p.number: p.datasets for p in papers.PAPERS}, papers.COMPARISON_CHAPTER[:2]: papers.COMPARISON_DATASETS}


#: [N_test, C] float32 arrays of one loaded result that a chapter reads (its scores, and the top-k
#: predictions and per-image values the tables and the claims' bootstrap derive from them)
RESULT_ARRAYS_READ = 3


def results_loaded(ctx: Context, grid: list) -> dict[str, tuple[int, float]]:
    """{chapter number: (results, bytes)} its own process holds after its grid: every run's result
    loaded (``cache.load_result`` memory-maps the tensors, so the weights some results keep cost
    nothing until read; what is read is the test scores and what the tables, figures and claims
    derive from them). On a GPU the runs train in that same process, one after the other, so each
    run group's host peak carries them too (at most all of the chapter's)."""
    loaded = {number: (0, 0.0) for number in chapter_datasets()}
    for chapter, r in grid:
        if r.paper != "features":
            n, read = loaded[chapter[:2]]
            loaded[chapter[:2]] = (n + 1, read + outputs_bytes(ctx.split(r.dataset)[1], NUM_CLASSES[r.dataset],
                                                               RESULT_ARRAYS_READ))
    return loaded


def plan(gpu: str = "h100", utilisation: float = 0.4, seeds: int = 3, *, machine: str | None = None,
         profile=None, device: str = "cuda", rows: bool = False) -> pd.DataFrame:
    """The cost table: one row per run group (GPU hours at ``utilisation`` of the GPU's bf16 peak,
    peak host and GPU memory and disk of one run of the group, selective-search hours on the
    machine's cores) and a total. ``machine`` (a key of ``MACHINES``, default the GPU's) gives the cores.
    ``profile``: the full profile, or a dry run of it (``Profile.limited``); ``device="cpu"`` plans a
    CPU run (the device's memory is host memory); ``rows``: a last column naming the grid rows of each group."""
    if gpu not in GPU_PEAK:
        raise ValueError(f"unknown GPU {gpu!r}; choose one of {sorted(GPU_PEAK)}")
    if not 0 < utilisation <= 1:   # also refuses NaN
        raise ValueError(f"--utilisation {utilisation}: a share of the GPU's peak, more than 0 and at most 1")
    if seeds < 1:
        raise ValueError(f"--seeds {seeds}: at least 1 training seed per compared row")
    cores = MACHINES[machine or gpu].cores
    rate = GPU_PEAK[gpu] * utilisation
    runs = full_book_runs(seeds, profile, device)
    table = [{"chapter": r.chapter, "run": r.run, "data set": r.dataset,
             "GFLOPs / image": f"{r.flops_per_image / 1e9:.4g}",
             "images x epochs x runs": f"{r.images:,} x {r.epochs} x {r.runs}",
             "PFLOPs": round(r.flops / 1e15, 3), "GPU hours": round(r.flops / rate / 3600, 2),
             "host GiB": round(r.host_bytes / GIB, 2), "GPU GiB": round(r.gpu_bytes / GIB, 2),
             "disk GiB": round(r.disk_bytes / GIB, 2),
             "SS hours": round(r.ss_core_seconds / cores / 3600, 2), "rows": ", ".join(r.rows)} for r in runs]
    table.append({"chapter": "", "run": f"total ({gpu.upper()}, {utilisation:.0%} of {GPU_PEAK[gpu] / 1e12:.0f} "
                 f"TFLOP/s bf16; selective search on {cores} cores)", "data set": "", "GFLOPs / image": "",
                 "images x epochs x runs": "", "PFLOPs": round(sum(r.flops for r in runs) / 1e15, 1),
                 "GPU hours": round(sum(r.flops for r in runs) / rate / 3600, 1),
                 "host GiB": round(max(r.host_bytes for r in runs) / GIB, 2),
                 "GPU GiB": round(max(r.gpu_bytes for r in runs) / GIB, 2),
                 "disk GiB": round((sum(r.kept_bytes for r in runs) + max(r.disk_bytes for r in runs)) / GIB, 2),
                 "SS hours": round(sum(r.ss_core_seconds for r in runs) / cores / 3600, 2), "rows": ""})
    table = pd.DataFrame(table)
    return table if rows else table.drop(columns="rows")


def fits(table: pd.DataFrame, machine: str) -> list[str]:
    """One line per run group that would not fit ``machine`` (host memory, GPU memory or disk of
    one run of the group); empty when the plan fits. The total disk of every cached result of
    the book is ``disk_note``'s business (a user may clear runs/ between chapters)."""
    m = MACHINES[machine]
    problems = []
    for _, r in table.iterrows():
        if not r["chapter"]:
            continue
        where = f"{r['chapter']} {r['run']} on {r['data set']}"
        for column, limit, what in (("host GiB", m.ram_bytes, "host memory"), ("GPU GiB", m.gpu_bytes, "GPU memory"),
                                    ("disk GiB", m.disk_bytes, "disk")):
            if r[column] * GIB > limit:
                problems.append(f"{where}: {what} {r[column]:.1f} GiB > {limit / GIB:.1f} GiB ({machine})")
    return problems


def disk_note(table: pd.DataFrame, machine: str) -> str:
    """A line when every cached result of the book together (the total row) exceeds the machine's disk."""
    total = table.loc[table["chapter"] == "", "disk GiB"].iloc[0]
    limit = MACHINES[machine].disk_bytes / GIB
    if total <= limit:
        return ""
    return (f"note: every cached result of the book together takes {total:.1f} GiB, more than the {limit:.0f} GiB "
            f"disk of {machine} (and the data sets take their own): run the chapters one or a few at a time and "
            "move runs/ off the machine in between")


FIRST_PAGE = {"gpu": "h100", "utilisation": 0.4}   # the plan the first page shows (chapter 00; computed ahead by mlbook.warm)


def cached_plan(gpu: str = "h100", utilisation: float = 0.4, seeds: int = 3) -> pd.DataFrame:
    """``plan`` of the full profile as the first page shows it, cached (``runs/plan/``) by the source of
    every file of the package (the grids, costs and networks it counts): a warm book reads it back
    instead of counting every network on the meta device again."""
    files = sorted(Path(__file__).parent.rglob("*.py"))
    stored = cache.run("plan", {"gpu": gpu, "utilisation": utilisation, "seeds": seeds},
                       lambda folder: {"table": plan(gpu, utilisation, seeds).to_dict("split")},
                       code=files, verbose=False)["table"]
    return pd.DataFrame(stored["data"], index=stored["index"], columns=stored["columns"])
