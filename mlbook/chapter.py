"""What every paper chapter does the same way: its claims section.

``claims_section`` is the one tail of a paper chapter: every claim of its claims file measured
through the paper's face (``claim_values``, ``claim_options``) and ``claims.evaluate``; the claims
table and measurements saved (``report.save_claims``, the table with each verdict's chance of
surviving an independent rerun), the power table saved, the verdict counts, the multiplicity
sentence and the verdicts a rerun is expected to change glued for the prose. One way for every
chapter: the multiplicity counts the claims the data could test and their intervals. (Package source is shown one way
too: ``report.show_source``.)
"""
from __future__ import annotations

import dataclasses
import functools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from . import cache, claims, papers, report
from .experiments.shared import Evidence, workers
from .profiles import claim_resamples

#: glue names of the verdict counts: n_supported, n_contradicted, n_not_resolved, n_not_testable
COUNT_NAMES = {word: f"n_{word.replace(' ', '_')}" for word in claims.VERDICTS}
POWER_CAPTION = ("The smallest effect each claim could detect with 80% power at 3, 5 and 10 training seeds "
                 "(points, unless the claim's metric has another unit), and the training seeds per row that "
                 "would detect the paper's own Δ with 80% power")


@dataclasses.dataclass
class ClaimsSection:
    rows: list[dict]           # claims.evaluate rows, in the claims file's order
    table: pd.DataFrame        # the claims table as saved (one row per claim)
    counts: dict[str, int]     # {verdict: claims}
    multiplicity: dict         # claims.multiplicity of the tested claims and their intervals
    power: pd.DataFrame        # claims.power_table
    rerun_changes: float = 0.0  # Σ (1 − claims.p_same): verdicts an independent rerun is expected to change

    def by_id(self) -> dict[str, dict]:
        """{short id (the part between chapter and data set): row}, for the prose's numbers."""
        return {r["id"].split(".")[1] if r["id"].count(".") >= 2 else r["id"]: r for r in self.rows}


def evaluate_claims(catalogue, evidence: Evidence, module, seed: int = 0, profile=None) -> list[dict]:
    """``claims.evaluate`` of every claim through a paper's face, on the test images of its data set
    (on ``profiles.claim_resamples(profile)`` image resamples where the profile names a number), in the
    catalogue's order. The claims are independent: on a CPU with several cores ``shared.workers()``
    forked processes share them, each claim on one thread (as in one process: its numbers depend on
    neither the workers nor the cores)."""
    global _job
    jobs = list(catalogue)
    n = min(workers(), len(jobs))
    if n <= 1:
        return [_evaluate_one(c, evidence, module, seed, profile) for c in jobs]
    _job = (evidence, module, seed, profile)     # the forked workers inherit it: nothing large is pickled
    try:
        with ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_evaluate_in_worker, jobs))
    finally:
        _job = None


_job = None       # run-time state: what the forked workers of ``evaluate_claims`` read


def _evaluate_in_worker(claim) -> dict:
    return _evaluate_one(claim, *_job)


def _evaluate_one(c, evidence: Evidence, module, seed: int, profile) -> dict:
    """One claim, on one thread (the number of threads changes no bit; one keeps the cores for the workers)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resamples = claim_resamples(profile) if profile is not None else None
        before = c.original()          # an amended claim's original test, measured through the same face
        original = {}
        if before is not None:
            options = module.claim_options(before, evidence)
            original = {"original_values": functools.partial(module.claim_values, before, evidence),
                        "original_published": options.get("published"), "original_scale": options.get("scale")}
        return claims.evaluate(c, functools.partial(module.claim_values, c, evidence),
                               n_images=len(evidence.data[c.dataset].test), seed=seed,
                               resamples=resamples, **module.claim_options(c, evidence), **original)
    finally:
        torch.set_num_threads(threads)


def cached_claim_rows(chapter: str, catalogue, evidence: Evidence, module, seed: int, profile=None) -> list[dict]:
    """``evaluate_claims``, cached (``runs/claims/``) by the stored entries of every result the
    evidence holds (``cache.entry_of``: a retrained run is another entry), the claims as registered,
    the seed and the code that measures them (the paper's experiments module and the claims and
    metrics packages, whole): a warm rerun of a chapter reads its thousands of image resamples'
    verdicts instead of recomputing them. Evidence with a result this process did not load (built
    by hand, in a test) is evaluated afresh."""
    entries = {f"{dataset}|{row}|{train_seed}": cache.entry_of(result)
               for (dataset, row, train_seed), result in evidence.results.items()}
    if None in entries.values():
        return evaluate_claims(catalogue, evidence, module, seed, profile)
    config = {"chapter": chapter, "seed": seed, "claims": list(catalogue), "results": entries,
              "resamples": claim_resamples(profile) if profile is not None else None,
              "seeds": list(evidence.seeds), "trained": {k: sorted(v) for k, v in evidence.trained.items()},
              "test_images": {k: len(v.test) for k, v in evidence.data.items()}}
    here = Path(__file__).parent
    files = sorted([*(here / "claims").glob("*.py"), *(here / "metrics").glob("*.py"),
                    *Path(module.__file__).parent.glob(Path(module.__file__).stem + "*.py")])
    code = [evaluate_claims, module.claim_values, module.claim_options, *files]
    return cache.run("claims", config, lambda folder: {"rows": evaluate_claims(catalogue, evidence, module, seed, profile)},
                     code=code, verbose=False)["rows"]


def claims_section(chapter: str, evidence: Evidence, *, seed: int = 0, glue=None, profile=None) -> ClaimsSection:
    """A paper chapter's claims, evaluated, saved and counted; ``glue`` (myst_nb's) receives the
    counts (``COUNT_NAMES``), ``n_claims``, ``multiplicity`` (its sentence) and ``rerun_changes``
    (one decimal). ``profile``: the chapter's, for the image resamples it names (``profiles.claim_resamples``)."""
    module = papers.chapter_module(chapter)
    rows = cached_claim_rows(chapter, claims.load(chapter), evidence, module, seed, profile)
    table = report.save_claims(rows, chapter)
    counts = {word: int((table["verdict"] == word).sum()) for word in claims.VERDICTS}
    tested = [r for r in rows if r["verdict"] != claims.NOT_TESTABLE]
    multiplicity = claims.multiplicity(len(tested), sum(len(r["measurements"]) for r in tested))
    power = claims.power_table(rows)
    rerun_changes = sum(1 - claims.p_same(r["measurements"], r["verdict"]) for r in rows)
    report.save_table(power.set_index("id"), chapter, "power", POWER_CAPTION)
    if glue is not None:
        for word, name in COUNT_NAMES.items():
            glue(name, counts[word], display=False)
        glue("n_claims", len(rows), display=False)
        glue("multiplicity", multiplicity["text"], display=False)
        glue("rerun_changes", f"{rerun_changes:.1f}", display=False)
    return ClaimsSection(rows, table, counts, multiplicity, power, rerun_changes)

