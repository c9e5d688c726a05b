"""`python -m mlbook reproduce`: run every chapter headless with papermill, then build the book.

The chapter's jupytext .py is the source: it is read with jupytext, executed
by papermill (parameters injected after the cell tagged ``parameters``), and
the executed notebook is written back as the chapter's .ipynb with the
injected cell removed again (the parameters stay recorded in the notebook's
papermill metadata), so the pair stays in sync. Only the default run (demo
profile, generated data, no other parameter) writes the published notebooks
(``book/``) and figures (``figures/``); any other run writes both under
``_build/<profile>/`` (``-custom`` when data roots or other parameters are
given), so it never overwrites another profile's notebooks, tables or figures.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from . import papers
from .profiles import LIMIT_ENV, STEPS_ENV, get_profile, project_root

DEFAULTS = {"profile": "demo", "coco_root": None, "nuswide_root": None, "voc_root": None,
            "device": "auto", "seed": 0, "weights": None, "proposals_root": None, "vg_root": None}
DRY_RUN_FLAGS = {"limit_images": LIMIT_ENV, "max_steps": STEPS_ENV}   # handed to the kernels as environment


def weights_parameter(pairs: list[str] | None) -> dict | None:
    """``["resnet101=/w/r101.pth", ...]`` -> {"resnet101": "/w/r101.pth"}; a malformed pair or a missing
    file is a ValueError naming the flag (the CLI's one line, exit 2)."""
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--weights takes NAME=FILE (e.g. resnet101=/w/resnet101.pth), not {pair!r}")
        if not Path(path).is_file():
            raise ValueError(f"--weights {name}: no such file {path}")
        out[name] = str(Path(path).resolve())
    return out


def chapters(root: Path | None = None) -> list[Path]:
    root = root or project_root()
    return sorted(p for p in (root / "book").glob("[0-9][0-9]_*.py"))


def execution_order(todo: list[Path]) -> list[Path]:
    """Book order, except that the introduction (whose scorecard counts the paper chapters'
    verdicts of this run) runs after them."""
    last = papers.SUMMARY_CHAPTERS
    return [p for p in todo if p.stem not in last] + [p for p in todo if p.stem in last]


def stages(todo: list[Path]) -> list[list[Path]]:
    """The chapters in stages whose chapters may run side by side: those that prepare (the data,
    the shared backbones of chapter 03), then the paper chapters (which read 03's backbones),
    longest first, then the introduction (which reads their verdicts)."""
    seconds = {p.chapter: p.demo_seconds for p in papers.PAPERS}
    first = [p for p in todo if p.stem in papers.PREPARING_CHAPTERS]
    last = [p for p in todo if p.stem in papers.SUMMARY_CHAPTERS]
    middle = sorted((p for p in todo if p not in first and p not in last), key=lambda p: (-seconds.get(p.stem, 0), p.stem))
    first.sort(key=lambda p: p.stem != papers.BACKBONE_CHAPTER)   # the longest of its stage starts first
    return [s for s in (first, middle, last) if s]


def stage_workers(stage: list[Path], lanes: int) -> int:
    """run_all workers of each chapter in a stage: every core when the chapters of the stage run one
    at a time, or in the stage of chapter 03 (which trains six backbones while 01 and 02 take a
    minute), else the cores shared among the lanes."""
    cores = os.cpu_count() or 1
    preparing = any(p.stem == papers.BACKBONE_CHAPTER for p in stage)
    return cores if preparing or lanes <= 1 else max(1, cores // lanes)


def stage_lanes(stage: list[Path], profile: str, lanes: int | None = None) -> int:
    """Chapters of a stage side by side (``--lanes`` overrides; the numbers depend on neither it nor
    the workers, every computation is pinned to one thread): two on a CPU of two or more cores in
    the preparing stage (01 and 02 beside chapter 03), else one, each chapter with every core.
    Measured on the demo, 2 cores, cold: the paper chapters one at a time took 403 s, the slowest
    chapter 146 s; two side by side, one worker each, 430 s, and chapter 06 alone 318 s. The full
    profile runs one chapter at a time: its chapters share one accelerator."""
    if lanes:
        return lanes
    if get_profile(profile).threads is None:
        return 1
    preparing = any(p.stem in papers.PREPARING_CHAPTERS for p in stage)
    return min(2, os.cpu_count() or 1) if preparing else 1


def start_warm_probe(todo: list[Path], args, parameters: dict):
    """``mlbook.warm`` started beside the preparing stage (so that it costs no wait), where its answer
    could change the lanes: a CPU profile, no ``--lanes``, two or more paper chapters, two or more cores."""
    chapters = {p.chapter for p in papers.PAPERS}
    if (args.lanes or get_profile(args.profile).threads is None or (os.cpu_count() or 1) < 2
            or sum(p.stem in chapters for p in todo) < 2 or not any(p.stem in papers.PREPARING_CHAPTERS for p in todo)):
        return None
    return subprocess.Popen([sys.executable, "-m", "mlbook.warm", json.dumps({"profile": args.profile, **parameters})],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def start_prefetch(stage: list[Path], todo: list[Path], args, parameters: dict):
    """``python -m mlbook.warm --prefetch`` at the lowest CPU priority, started with the paper chapters
    when the comparison chapter (08) runs after them: it computes 08's runs on the cores the paper
    chapters leave idle (measured: 1.7 of 2 cores busy on average over a cold book). A CPU profile
    with pinned threads on two or more cores; never with ``--lanes``. Its output is discarded: what it
    did not finish, chapter 08 computes itself."""
    paper_chapters = {q.chapter for q in papers.PAPERS}
    if (args.lanes or get_profile(args.profile).threads is None or (os.cpu_count() or 1) < 2
            or not any(p.stem in paper_chapters for p in stage)
            or papers.COMPARISON_CHAPTER not in {p.stem for p in todo}):
        return None
    return subprocess.Popen([sys.executable, "-m", "mlbook.warm", "--prefetch", json.dumps({"profile": args.profile, **parameters})],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=lowest_priority)


def lowest_priority() -> None:
    """Nice 19 for this process and, where Linux groups the CPU by session (autogroup: the chapters'
    kernels each run in a session of their own), for its session's group too: else the group would
    share the cores equally with a chapter's, whatever the niceness inside it (measured: chapter 06
    took 328 s beside a merely niced prefetch, against 165 s alone)."""
    os.nice(19)
    try:
        with open("/proc/self/autogroup", "w") as group:
            group.write("19")
    except OSError:   # no autogroup (another OS, or switched off): the niceness alone then works
        pass


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's ended children: the chapters' kernels with their
    workers, the prefetch. A cold book's minutes are its CPU seconds over its cores, whatever runs where.
    A process stopped before it reaped its workers (the prefetch, ended early) leaves their seconds out."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def stop(process) -> None:
    """End a helper process (the prefetch) and its workers if it still runs: a run it was computing is not stored."""
    if process is not None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def lane_plan(staged: list[list[Path]], profile: str, lanes: int | None, probe):
    """(stage, lanes), one at a time as the stages run: ``stage_lanes`` of each stage, except that the
    paper chapters the probe found warm (``mlbook.warm``) run after the cold ones, two side by side.
    The probe is read when the paper stage starts (chapter 03's backbones are stored by then); a
    probe that failed changes nothing."""
    paper_chapters = {q.chapter for q in papers.PAPERS}
    for stage in staged:
        warm: set = set()
        if probe is not None and any(p.stem in paper_chapters for p in stage):
            try:
                out, _ = probe.communicate(timeout=600)
                warm = set(json.loads(out)) if probe.returncode == 0 else set()
            except (subprocess.TimeoutExpired, ValueError):
                probe.kill()
            probe = None
        cold, hot = [p for p in stage if p.stem not in warm], [p for p in stage if p.stem in warm]
        if cold:
            yield cold, stage_lanes(cold, profile, lanes)
        if hot:
            print(f"warm (every run stored): {', '.join(p.stem[:2] for p in hot)}: side by side, one core each")
            yield hot, min(2, os.cpu_count() or 1)


def require_chapter_weights(todo: list[Path], profile: str, weights: dict | None, download: bool) -> None:
    """Before any work: every ImageNet trunk the chosen chapters need in this profile has a file
    (given with --weights NAME=FILE, or in the torch hub cache), checked, or one message lists
    every one that is missing (``WeightsError``, a ValueError: the CLI's error, exit 2)."""
    if get_profile(profile).backbone == "small_cnn":
        return
    from .weights import require_weights      # imports torch: only where a trunk needs a file

    needed = sorted({trunk for p in todo for trunk in papers.chapter_trunks(p.stem)})
    if needed:
        require_weights(needed, weights, download=download)


def require_chapter_data(todo: list[Path], profile: str, args) -> None:
    """Before any work: in a profile that generates no data (full), every data root the chosen
    chapters read is given, or one message lists every missing flag."""
    if get_profile(profile).gen_train > 0:
        return
    missing = []
    for py in todo:
        missing += [f"--{d}-root" for d in papers.chapter_roots(py.stem) if not getattr(args, f"{d}_root", None)]
    if missing:
        flags = ", ".join(dict.fromkeys(missing))
        raise ValueError(f"the {profile} profile reads real data only; the chosen chapters need {flags} "
                         "(see README: data roots)")


def select(all_chapters: list[Path], wanted: str | None) -> list[Path]:
    """``wanted``: comma-separated chapter numbers or name fragments ('00,order_free')."""
    if not wanted:
        return all_chapters
    picked = []
    for token in [t.strip() for t in wanted.split(",") if t.strip()]:
        hits = [c for c in all_chapters if c.stem.startswith(token) or token in c.stem]
        if not hits:
            names = ", ".join(c.stem for c in all_chapters)
            raise ValueError(f"--chapters: no chapter matches {token!r}; chapters are: {names}")
        picked += [h for h in hits if h not in picked]
    if not picked:
        raise ValueError(f"--chapters {wanted!r} names no chapter (comma-separated numbers or names, e.g. 04,cadm)")
    return sorted(picked)


def note_unread_weights(args) -> None:
    """One line on stderr (not an error) when --weights or --download-weights is given to a profile that
    reads no ImageNet weights (smoke and demo train the small CNN from scratch)."""
    given = [f for f, v in (("--weights", args.weights), ("--download-weights", args.download_weights)) if v]
    if given and get_profile(args.profile).backbone == "small_cnn":
        print(f"note: {' and '.join(given)} not read: the {args.profile} profile trains the small CNN from scratch "
              "(only the full profile starts from ImageNet weights)", file=sys.stderr)


def device_facts(device: str) -> dict:
    """What torch says of ``device``: {"error": why} when it is no device string, else its type and
    index, whether CUDA and MPS are available and how many CUDA devices there are (imports torch)."""
    import torch

    try:
        d = torch.device(device)
    except RuntimeError as err:
        return {"error": (str(err).strip().splitlines() or ["invalid"])[0]}
    return {"type": d.type, "index": d.index, "cuda": torch.cuda.is_available(), "count": torch.cuda.device_count(),
            "mps": torch.backends.mps.is_available()}


_DEVICE_PROBE = ("import json, sys; from mlbook.reproduce import device_facts; "
                 "print(json.dumps(device_facts(sys.argv[1])))")


def require_device(device: str | None) -> None:
    """Before any work: ``--device`` names a device of this machine ('auto' and 'cpu' always do), else
    a ValueError naming it. torch answers in this process when it is loaded already (``train``), else
    in a child process (the parent of a book run never imports torch; the check then costs its import)."""
    if device in (None, "", "auto", "cpu"):
        return
    if "torch" in sys.modules:
        facts = device_facts(device)
    else:
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p))
        proc = subprocess.run([sys.executable, "-c", _DEVICE_PROBE, device], capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not proc.stdout.strip():
            last = (proc.stderr.strip().splitlines() or ["no answer"])[-1]
            raise ValueError(f"--device {device}: torch could not be asked about it ({last})")
        facts = json.loads(proc.stdout.strip().splitlines()[-1])
    if "error" in facts:
        raise ValueError(f"--device {device}: not a device ({facts['error']}); use auto, cpu, cuda or cuda:N")
    if facts["type"] == "cuda" and not facts["cuda"]:
        raise ValueError(f"--device {device}: no CUDA device on this machine (torch.cuda.is_available() is False)")
    if facts["type"] == "cuda" and facts["index"] is not None and facts["index"] >= facts["count"]:
        raise ValueError(f"--device {device}: this machine has {facts['count']} CUDA device(s), "
                         f"cuda:0 to cuda:{facts['count'] - 1}")
    if facts["type"] == "mps" and not facts["mps"]:
        raise ValueError(f"--device {device}: no MPS device on this machine (torch.backends.mps.is_available() "
                         "is False)")


def strip_injected(nb) -> int:
    """Remove papermill's injected-parameters cells and its per-cell run metadata (timings,
    status), which would otherwise travel into the .py on the next ``jupytext --sync`` and
    change the committed notebook on every run; return how many cells were removed."""
    before = len(nb.cells)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for c in nb.cells:
        c.get("metadata", {}).pop("papermill", None)
        c.get("metadata", {}).pop("execution", None)
    return before - len(nb.cells)


def declared_parameters(nb) -> set[str]:
    """The names a chapter's ``parameters`` cell assigns (what papermill may inject into it)."""
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    return {m.group(1) for c in cells for m in re.finditer(r"^([A-Za-z_]\w*)\s*=", c.source, re.M)}


def execute_chapter(py: Path, out: Path, parameters: dict, log_output: bool = False) -> float:
    """Execute one chapter; write the executed notebook to ``out``; return seconds."""
    import jupytext
    import nbformat
    import papermill as pm

    nb = jupytext.read(py)
    for i, cell in enumerate(nb.cells):   # jupytext draws random ids: fixed ones keep reruns diff-free
        cell.id = f"cell-{i:03d}"
    if "kernelspec" not in nb.metadata:
        raise SystemExit(f"{py}: no kernelspec in the jupytext header (run: jupytext --set-kernel python3 {py})")
    parameters = {k: v for k, v in parameters.items() if k in declared_parameters(nb)}   # e.g. vg_root: 06 only
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / py.with_suffix(".ipynb").name
        nbformat.write(nb, src)
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(src), str(src), parameters=parameters or None, cwd=str(py.parent),
                                progress_bar=False, log_output=log_output, kernel_name="python3",
                                # silences ipykernel's harmless "running over TCP" notice
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
        finally:
            seconds = time.perf_counter() - start
            executed = nbformat.read(src, as_version=4)
            strip_injected(executed)
            meta = executed.metadata.get("papermill", {})
            meta.update(input_path=py.name, output_path=out.name)   # not the temporary folder
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(executed, out)
    return seconds


def failing_cell(nb_path: Path) -> tuple[int, str, str] | None:
    """(cell number, first source line, error) of the first cell with an error output."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code_cells, 1):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                return i, first, f"{o.get('ename')}: {o.get('evalue')}"
    return None


def report_failure(py: Path, out: Path, err: Exception) -> None:
    where = failing_cell(out) if out.exists() else None
    msg = f"\nchapter {py.stem} failed"
    if where:
        msg += f" in code cell {where[0]} ({where[1]!r}):\n  {where[2]}"
    else:
        msg += f": {type(err).__name__}: {err}"
    print(msg + f"\nthe partly executed notebook is {out}", file=sys.stderr)


def build_book(root: Path) -> float:
    """Jupyter Book 1, offline, notebooks not re-executed; warnings are errors."""
    start = time.perf_counter()
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(root), "--all", "-W", "--keep-going"]
    print("building the book:", " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise SystemExit(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    print(f"book built: {root / '_build' / 'html' / 'index.html'}")
    return time.perf_counter() - start


def set_dry_run(args) -> dict:
    """``--limit-images`` / ``--max-steps`` -> the environment the chapters' kernels inherit (their
    ``get_profile`` applies it, and every table they save says "dry run"); returns the limits given."""
    limits = {flag: getattr(args, flag, None) for flag in DRY_RUN_FLAGS}
    for flag, value in limits.items():
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, not {value}")
        if value is not None:
            os.environ[DRY_RUN_FLAGS[flag]] = str(value)
        else:
            os.environ.pop(DRY_RUN_FLAGS[flag], None)
    return {k: v for k, v in limits.items() if v is not None}


def output_dir(root: Path, profile: str, parameters: dict) -> Path:
    """book/ for the default run only; else _build/<profile>[-custom]/."""
    if profile == "demo" and not parameters:
        return root / "book"
    custom = any(k != "profile" for k in parameters)
    return root / "_build" / (profile + ("-custom" if custom else ""))


def main(args) -> int:
    from tqdm import tqdm

    root = project_root()
    todo = execution_order(select(chapters(root), args.chapters))
    args.weights = weights_parameter(getattr(args, "weights", None))
    note_unread_weights(args)
    require_device(args.device)
    if getattr(args, "download_weights", False):
        os.environ["MLBOOK_DOWNLOAD_WEIGHTS"] = "1"   # the chapters' kernels inherit it
    require_chapter_weights(todo, args.profile, args.weights, getattr(args, "download_weights", False))
    require_chapter_data(todo, args.profile, args)
    dry_run = set_dry_run(args)
    parameters = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k, DEFAULTS[k]) != DEFAULTS[k]}
    out_dir = Path(args.output_dir) if args.output_dir else output_dir(root, args.profile, {**parameters, **dry_run})
    if out_dir.resolve() != (root / "book").resolve():   # figures and tables go where the notebooks go
        os.environ["MLBOOK_FIGURES"] = str(out_dir / "figures")
    os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:jupyter_client")
    print(f"profile {args.profile}: {len(todo)} chapter(s) -> {out_dir}"
          + (f" with parameters {parameters}" if parameters else "")
          + (f"; DRY RUN {dry_run}" if dry_run else ""))
    user_workers = os.environ.get("MLBOOK_WORKERS")
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}   # CPU seconds by stage ("01, 02, 03"), and the prefetch's
    bar = tqdm(total=len(todo), desc="chapters", unit="ch")
    started = time.perf_counter()
    probe, prefetching = start_warm_probe(todo, args, parameters), None
    try:
        for stage, lanes in lane_plan(stages(todo), args.profile, args.lanes, probe):
            if not user_workers:   # the kernels of a stage inherit it
                os.environ["MLBOOK_WORKERS"] = str(stage_workers(stage, lanes))
            prefetching = prefetching or start_prefetch(stage, todo, args, parameters)   # inherits the workers
            before = children_cpu()
            with ThreadPoolExecutor(max_workers=min(lanes, len(stage))) as pool:   # each chapter: its own kernel
                running = {pool.submit(execute_chapter, py, out_dir / f"{py.stem}.ipynb", parameters, args.verbose): py
                           for py in stage}
                for done in as_completed(running):
                    py = running[done]
                    try:
                        times[py.stem] = done.result()
                    except Exception as err:  # papermill's PapermillExecutionError and kernel deaths
                        bar.close()
                        for other in running:
                            other.cancel()
                        report_failure(py, out_dir / f"{py.stem}.ipynb", err)
                        return 1
                    bar.update()
                    tqdm.write(f"  {py.stem}: {times[py.stem]:.1f} s")
            cpu[", ".join(p.stem[:2] for p in stage)] = children_cpu() - before
    finally:
        before = children_cpu()
        stop(prefetching)
        if prefetching is not None:
            cpu["the prefetch"] = children_cpu() - before
    bar.close()
    wall = time.perf_counter() - started
    total = sum(times.values())
    print("\nchapter wall times")
    for name, s in times.items():
        print(f"  {name:<32} {s:7.1f} s")
    print(f"  {'total':<32} {total:7.1f} s  ({wall:.1f} s wall)")
    print("CPU seconds (user + system) by stage: " + "; ".join(f"{k}: {v:.0f} s" for k, v in cpu.items())
          + f"; {sum(cpu.values()) / max(wall, 1e-9):.2f} of {os.cpu_count()} cores busy on average")
    if not args.no_build:
        if out_dir.resolve() != (root / "book").resolve():
            print(f"(book not built: executed notebooks went to {out_dir}, the book renders book/)")
        else:
            times["build"] = build_book(root)
            print(f"book build: {times['build']:.1f} s")
    return 0
