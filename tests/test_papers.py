"""The paper registry (mlbook/papers.py), the one face of every paper, and the package's structure:
no import cycle, no paper named outside its own files, no file over 500 lines."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from mlbook import papers
from mlbook.experiments import shared
from mlbook.profiles import PROFILES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mlbook"


def test_registry_records_are_complete_and_match_the_files():
    keys = [p.key for p in papers.PAPERS]
    assert len(set(keys)) == len(keys) and len({p.chapter for p in papers.PAPERS}) == len(keys)
    for p in papers.PAPERS:
        assert (ROOT / "book" / f"{p.chapter}.py").is_file(), p.chapter
        assert (PACKAGE / "models" / f"{p.key}.py").is_file(), p.key
        assert (PACKAGE / "reference" / p.claims_file).is_file(), p.claims_file
        assert all((PACKAGE / "reference" / f"{t}.csv").is_file() for t in p.tables), p.tables
        assert p.datasets and set(p.datasets) <= {"coco", "nuswide", "voc"}
        assert p.title and p.trunk_use and p.demo_seconds > 0 and p.method_label and p.published_row
        assert papers.get(p.key) is p and papers.get(p.chapter) is p and papers.get(p.number) is p
    with pytest.raises(KeyError, match="no paper"):
        papers.get("nonsense")
    # every chapter of the book is a paper's or one of the book's own
    own = {*papers.SUMMARY_CHAPTERS, *papers.PREPARING_CHAPTERS, papers.COMPARISON_CHAPTER}
    for py in (ROOT / "book").glob("[0-9][0-9]_*.py"):
        assert py.stem in own or papers.of_chapter(py.stem), py.stem


def test_the_weights_check_reads_the_registry():
    from mlbook.weights import WEIGHTS

    assert {p.trunk for p in papers.PAPERS} <= set(WEIGHTS)


@pytest.mark.parametrize("paper", papers.PAPERS, ids=lambda p: p.key)
def test_every_paper_module_has_the_face(paper):
    module = paper.experiments()
    missing = [name for name in papers.FACE if not hasattr(module, name)]
    assert not missing, f"{paper.key} misses {missing}"
    assert module.TRUNK == paper.trunk
    assert isinstance(module.OPTIONS, tuple)
    signatures = {
        "claim_values": ["claim", "evidence", "weights"],
        "claim_options": ["claim", "evidence"],
        "cost": ["run", "ctx"],
        "grid": ["profile", "datasets", "seeds"],
        "rows": ["profile"],
        "stages": ["profile"],
        "settings_for": ["profile"],
        "protocol_knobs": ["profile"],
        "protocol_run": ["dataset", "profile", "protocol"],
    }
    for name, params in signatures.items():
        got = list(inspect.signature(getattr(module, name)).parameters)[:len(params)]
        assert got == params, f"{paper.key}.{name}{tuple(got)}"
    run_params = inspect.signature(module.run).parameters
    assert list(run_params)[:3] == ["row", "dataset", "profile"]
    assert {"root", "seed", "train_seed", "device", "weights", "force"} <= set(run_params)
    protocol_params = set(inspect.signature(module.protocol_run).parameters)
    assert {"lr", "knob", "root", "seed", "train_seed", "device", "weights", "force"} <= protocol_params
    assert protocol_params - {"dataset", "profile", "protocol", "lr", "knob", "root", "seed", "train_seed", "device",
                              "weights", "force"} <= set(module.OPTIONS)   # its further arguments are its run options
    for profile in PROFILES:
        rows, stages = module.rows(profile), module.stages(profile)
        assert isinstance(rows, tuple) and rows and all(isinstance(r, str) for r in rows)
        assert isinstance(stages, tuple) and all(isinstance(s, str) for s in stages)
    grid = module.grid("smoke", list(paper.datasets), [0, 1])
    assert grid and all(isinstance(r, shared.Run) for r in grid)
    names = set(module.rows("smoke")) | set(module.stages("smoke"))
    for r in grid:
        if r.paper == paper.key:
            assert r.row in names, r


@pytest.mark.parametrize("name", papers.SHARED_EXPERIMENTS)
def test_shared_stage_modules_list_their_rows(name):
    module = papers.experiment_module(name)
    assert isinstance(module.rows("smoke"), tuple) and isinstance(module.stages("smoke"), tuple)
    assert hasattr(module, "run") and hasattr(module, "cost")


def test_train_method_list_reads_the_registry(capsys):
    from mlbook.cli import main

    assert main(["train", "--method", "list", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    for p in papers.PAPERS:
        assert any(line.strip().startswith(f"{p.key}:") for line in out.splitlines()), p.key


# --- the structure of the package -------------------------------------------------------------------

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every mlbook module a file imports, at the top or inside a function (a dependency either way)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("mlbook")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("mlbook"):
                continue
            for a in node.names:   # `from . import x` imports the module x when it is one
                sub = f"{target}.{a.name}"
                out.add(sub if _file_of(sub) else target)
    return {m for m in out if _file_of(m)}


def _file_of(module: str) -> Path | None:
    path = ROOT / Path(*module.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        graph[name] = {m for m in _imports(path) if m != name and not name.startswith(m + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _folder(module: str) -> str:
    """mlbook.experiments.cadm -> mlbook.experiments; a top-level module stays itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (len(parts) == 2 and _file_of(module).name == "__init__.py") \
        else module


def test_the_import_graph_has_no_cycle_between_files_or_folders():
    """No module imports, directly or through others, a module that imports it; and the folders
    (data/, models/, experiments/, figures/, metrics/) form no cycle with each other or with the
    top-level modules either: every arrow points down the layers."""
    graph = import_graph()
    assert len(graph) > 30
    assert _cycles(graph) == []
    folders: dict[str, set[str]] = {}
    for v, ws in graph.items():
        folders.setdefault(_folder(v), set()).update(_folder(w) for w in ws if _folder(w) != _folder(v))
    assert _cycles(folders) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_end_of_file_reexports():
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if "noqa: E402" in p.read_text()]
    assert not offenders


def _own_files(paper: papers.Paper) -> set[Path]:
    return {p for folder in ("models", "experiments", "figures", "bench") for p in (PACKAGE / folder).glob(f"{paper.key}*.py")}


def test_papers_are_named_only_in_the_registry_and_their_own_files():
    """A paper's key or chapter, as a string or a module path, appears in mlbook/ only in the
    registry and in the paper's own model, experiments and figures files."""
    registry = PACKAGE / "papers.py"
    # the metrics package's table of each paper's evaluation convention, keyed by the registry's keys
    # (test_every_paper_has_an_evaluation_convention)
    conventions = PACKAGE / "metrics" / "conventions.py"
    offenders = []
    for paper in papers.PAPERS:
        pattern = re.compile(rf"""["']({re.escape(paper.key)}|{re.escape(paper.chapter)})["']"""
                             rf"|(experiments|models|figures)\.{re.escape(paper.key)}\b"
                             rf"|(experiments|models|figures) import ({re.escape(paper.key)})\b")
        for path in PACKAGE.rglob("*.py"):
            if path in (registry, conventions) or path in _own_files(paper):
                continue
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_every_paper_has_an_evaluation_convention():
    from mlbook.metrics import PAPER_CONVENTIONS

    assert {p.key for p in papers.PAPERS} <= set(PAPER_CONVENTIONS)


def test_no_file_of_the_package_over_500_lines():
    long_files = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
                  if (n := len(p.read_text().splitlines())) > 500}
    assert not long_files


def test_no_single_letter_module_aliases():
    """``M``, ``B``, ``X`` meant different modules in different files: the package and the chapters
    import the book's modules by their names (or a descriptive alias)."""
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "book").glob("[0-9][0-9]_*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            ours = (isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("mlbook"))) \
                or (isinstance(node, ast.Import) and any(a.name.startswith("mlbook") for a in node.names))
            if ours:
                offenders += [f"{path.relative_to(ROOT)}: {a.name} as {a.asname}" for a in node.names
                              if a.asname and len(a.asname) == 1]
    assert not offenders, "\n".join(offenders)
