"""Bad input on the CLI's commands (all but `data`): one line on stderr naming the flag or the file,
a non-zero exit, no traceback. Every input here fails before any chapter or training run starts;
most go through ``mlbook.cli.main`` in this process, a few the way a user types them."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlbook import cache, cli, papers, plan, reproduce
from mlbook.costs import GIB, MACHINES

ROOT = Path(__file__).resolve().parents[1]
PAPER = papers.PAPERS[0]            # a paper chapter and the ImageNet trunk its full profile reads


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cli.main`` as ``python -m mlbook`` runs it: a SystemExit message goes to stderr with exit 1."""
    try:
        code = cli.main(argv)
    except SystemExit as err:
        code = err.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            code = 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code not in (0, None) and len(lines) == 1 and "Traceback" not in err, (code, err)
    return lines[0]


def shell(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlbook", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def quiet_cache_log(monkeypatch):
    """``train`` shows the cache's lines on the stderr of the moment (capsys's): restore the handlers."""
    monkeypatch.setattr(cache.log, "handlers", list(cache.log.handlers))


# --- evaluate ----------------------------------------------------------------------------------------

@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "scores.npy", rng.random((10, 5)))
    np.save(tmp_path / "targets.npy", (rng.random((10, 5)) > 0.5).astype(float))
    np.save(tmp_path / "targets4.npy", np.zeros((10, 4)))
    nan = rng.random((10, 5))
    nan[1, 2] = nan[3, 0] = nan[7, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    two = np.zeros((10, 5))
    two[4, 1] = 2
    np.save(tmp_path / "targets2.npy", two)
    np.save(tmp_path / "empty.npy", np.zeros((0, 5)))
    (tmp_path / "text.npy").write_text("0.1,0.9\n0.3,0.2\n")
    np.savez(tmp_path / "archive.npz", a=np.zeros(3))
    (tmp_path / "archive.npz").rename(tmp_path / "zipped.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)))
    return tmp_path


@pytest.mark.parametrize("scores, targets, expected", [
    ("scores.npy", "targets4.npy", "scores.npy has shape (10, 5) but {d}/targets4.npy has shape (10, 4)"),
    ("missing.npy", "targets.npy", "missing.npy: no such file"),
    ("nan.npy", "targets.npy", "nan.npy: 3 NaN values"),
    ("scores.npy", "targets2.npy", "targets2.npy: values other than 0 and 1 (each must be 0 or 1; e.g. 2.0"),
    ("empty.npy", "targets.npy", "empty.npy: empty array (shape (0, 5))"),
    ("text.npy", "targets.npy", "text.npy: not a NumPy .npy file (a text file renamed?"),
    ("zipped.npy", "targets.npy", "zipped.npy: not a NumPy .npy file (a zip archive: an .npz file renamed?"),
    ("objects.npy", "targets.npy", "objects.npy: holds an array of Python objects"),
    ("binary.csv", "targets.npy", "binary.csv: not a text .csv file"),
    (".", "targets.npy", ": a folder, not a file"),
])
def test_evaluate_bad_files_are_one_line(arrays, capsys, scores, targets, expected):
    code, out, err = run(["evaluate", str(arrays / scores), str(arrays / targets)], capsys)
    line = one_error_line(code, err)
    assert code == 2 and line.startswith("error: ") and expected.format(d=arrays) in line, line
    assert "pickled" not in line and out == ""


def test_evaluate_a_renamed_text_file_as_typed(arrays):
    proc = shell("evaluate", str(arrays / "text.npy"), str(arrays / "targets.npy"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == f"error: {arrays / 'text.npy'}: not a NumPy .npy file (a text file renamed? " \
                                  "a .csv file is read by its .csv name)"


def test_evaluate_good_files_still_report(arrays, capsys):
    code, out, err = run(["evaluate", str(arrays / "scores.npy"), str(arrays / "targets.npy")], capsys)
    assert code == 0 and "10 images x 5 classes" in out


# --- weights -----------------------------------------------------------------------------------------

def test_random_bytes_are_not_a_pytorch_weights_file(tmp_path, capsys):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    code, _, err = run(["reproduce", "--profile", "full", "--chapters", PAPER.number, "--no-build",
                        "--weights", f"{PAPER.trunk}={junk}"], capsys)
    line = one_error_line(code, err)
    assert f"--weights {PAPER.trunk}={junk}: not a PyTorch weights file" in line
    assert "Python objects" not in line


def test_weights_are_not_read_by_the_small_profiles_and_say_so(tmp_path, capsys):
    weights = tmp_path / "w.pth"
    torch.save({"w": torch.zeros(1)}, weights)
    # a device this machine lacks fails after the note and before any work
    code, _, err = run(["reproduce", "--profile", "smoke", "--weights", f"{PAPER.trunk}={weights}",
                        "--device", "gpu"], capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 2 and "Traceback" not in err, err
    assert lines[0] == ("note: --weights not read: the smoke profile trains the small CNN from scratch "
                        "(only the full profile starts from ImageNet weights)")
    assert lines[1].startswith("error: --device gpu: not a device")


def test_random_weights_files_name_a_bad_network_in_one_line(tmp_path, capsys):
    code, out, err = run(["weights", "random", "--out", str(tmp_path / "w"), "--networks", "alexnet,resnet9"], capsys)
    assert one_error_line(code, err).startswith("error: --networks 'alexnet,resnet9': no ImageNet weights known for "
                                                "resnet9; networks with weights: ")
    assert code == 2 and out == "" and not (tmp_path / "w").exists()     # checked before any file is written


# --- device ------------------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("command", [["reproduce", "--chapters", PAPER.number], ["train", "--method", "list"]])
def test_cuda_without_a_gpu_is_refused_before_any_work(capsys, quiet_cache_log, command):
    code, out, err = run([*command, "--device", "cuda"], capsys)
    assert one_error_line(code, err) == ("error: --device cuda: no CUDA device on this machine "
                                         "(torch.cuda.is_available() is False)")
    assert code == 2 and out == ""


@pytest.mark.parametrize("device, expected", [("cuda:99", "--device cuda:99: "), ("gpu", "--device gpu: not a device")])
def test_a_device_this_machine_lacks_is_refused(capsys, quiet_cache_log, device, expected):
    code, out, err = run(["train", "--method", "list", "--device", device], capsys)
    assert one_error_line(code, err).startswith(f"error: {expected}") and code == 2 and out == ""


@pytest.mark.parametrize("command", [["bench", "decode"], ["bench", "train", "--steps", "1"]])
@pytest.mark.parametrize("device, expected", [
    ("nonsense", "error: --device nonsense: not a device"),
    ("cuda", "error: --device cuda: no CUDA device on this machine (torch.cuda.is_available() is False)")])
def test_bench_checks_its_device_before_any_work(capsys, command, device, expected):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code, out, err = run([*command, "--device", device], capsys)
    assert one_error_line(code, err).startswith(expected) and code == 2 and out == ""


def test_bench_device_as_typed():
    proc = shell("bench", "decode", "--device", "nonsense")
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --device nonsense: not a device (") and len(proc.stderr.splitlines()) == 1


def test_the_device_probe_of_a_process_without_torch(monkeypatch):
    """The parent of a book run never imports torch: a child process answers."""
    monkeypatch.delitem(sys.modules, "torch")
    with pytest.raises(ValueError, match="--device cuda:99: "):
        reproduce.require_device("cuda:99")
    reproduce.require_device("cpu")      # answered without asking torch


# --- train -------------------------------------------------------------------------------------------

def test_train_seeds_that_are_no_integers_as_typed():
    proc = shell("train", "--method", "x", "--train-seeds", "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: --train-seeds takes comma-separated integers (e.g. 0,1,2), not 'x'"


def test_train_seeds_that_name_no_seed(capsys, quiet_cache_log):
    code, _, err = run(["train", "--method", "x", "--train-seeds", ","], capsys)
    assert one_error_line(code, err).startswith("error: --train-seeds names no seed")


# --- plan --------------------------------------------------------------------------------------------

def test_plan_target_gpu_prices_the_hours_and_machine_the_fit():
    assert plan.plan_target() == ("h200", "h200")
    assert plan.plan_target(gpu="h100") == ("h100", "h100")            # the machine of that GPU
    assert plan.plan_target(machine="l4") == ("l4", "l4")               # the GPU of that machine
    assert plan.plan_target(gpu="h100", machine="h200") == ("h100", "h200")


@pytest.fixture
def fake_plan(monkeypatch):
    """A plan of one run group that needs 100 GiB of GPU memory: fits an H200, not an H100."""
    calls = []

    def fake(gpu, utilisation, seeds, *, machine, profile, device, rows):
        calls.append((gpu, machine))
        return pd.DataFrame([{"chapter": "05", "run": "a run", "data set": "coco", "GPU hours": 1.0,
                              "host GiB": 10.0, "GPU GiB": 100.0, "disk GiB": 1.0},
                             {"chapter": "", "run": "total", "data set": "", "GPU hours": 1.0,
                              "host GiB": 10.0, "GPU GiB": 100.0, "disk GiB": 1.0}])
    monkeypatch.setattr(plan, "plan", fake)
    assert 100 * GIB > MACHINES["h100"].gpu_bytes and 100 * GIB < MACHINES["h200"].gpu_bytes
    return calls


def test_plan_gpu_alone_checks_the_machine_of_that_gpu(fake_plan, capsys):
    code, out, err = run(["plan", "--gpu", "h100"], capsys)
    assert fake_plan == [("h100", "h100")] and code == 1
    assert "GPU hours priced on H100; fit checked against --machine h100: 1 x H100 80 GB" in out
    assert err.splitlines() == ["does not fit: 05 a run on coco: GPU memory 100.0 GiB > 74.5 GiB (h100)"]
    code, out, err = run(["plan", "--gpu", "h100", "--machine", "h200"], capsys)
    assert fake_plan[-1] == ("h100", "h200") and code == 0 and err == ""
    assert "GPU hours priced on H100; fit checked against --machine h200: 1 x H200 141 GB" in out


@pytest.mark.parametrize("flags, expected", [(["--utilisation", "0"], "error: --utilisation 0.0: a share"),
                                             (["--utilisation", "nan"], "error: --utilisation nan: a share"),
                                             (["--seeds", "0"], "error: --seeds 0: at least 1")])
def test_plan_bad_numbers_are_one_line(capsys, flags, expected):
    code, out, err = run(["plan", *flags], capsys)
    assert one_error_line(code, err).startswith(expected) and code == 2 and out == ""


# --- help --------------------------------------------------------------------------------------------

def test_the_top_level_help_lists_every_command_with_its_help(capsys):
    code, out, _ = run(["--help"], capsys)
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert code == 0 and {"reproduce", "verify", "plan", "data", "evaluate", "train", "bench"} <= set(helps)
    usage = out.split("\n\n")[0]
    flat = " ".join(out.split())
    for name, text in helps.items():
        assert name in usage and " ".join(text.split()) in flat, name


# --- verify ------------------------------------------------------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    """A project root with the book's chapter names and a figures tree (``MLBOOK_HOME``)."""
    root = tmp_path / "home"
    (root / "book").mkdir(parents=True)
    for py in reproduce.chapters(ROOT):
        (root / "book" / py.name).write_text("")
    (root / "figures" / f"{PAPER.chapter}").mkdir(parents=True)
    monkeypatch.setenv("MLBOOK_HOME", str(root))
    return root


def test_verify_unknown_chapters_leave_no_folder(home, capsys):
    code, _, err = run(["verify", "--chapters", "99"], capsys)
    assert one_error_line(code, err).startswith("error: --chapters: no chapter matches '99'; chapters are: 00_")
    assert code == 2 and not (home / "_build").exists()
    code, _, err = run(["verify", "--chapters", "99", "--against", str(home / "figures")], capsys)
    assert one_error_line(code, err).startswith("error: --chapters: no chapter folder of ")


def test_verify_removes_the_empty_scratch_folder_of_a_failed_run(home, capsys, monkeypatch, tmp_path):
    from mlbook import verify

    def failed_run(profile, chapters, scratch, cold):   # makes its folders, fails before writing a file
        (scratch / "figures").mkdir(parents=True, exist_ok=True)
        return 1

    monkeypatch.setattr(verify, "run_chapters", failed_run)
    assert run(["verify", "--chapters", PAPER.number], capsys)[0] == 1
    assert list((home / "_build" / "verify").iterdir()) == []
    assert run(["verify", "--chapters", PAPER.number, "--scratch", str(tmp_path / "new")], capsys)[0] == 1
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()                                      # the user's own folder stays
    assert run(["verify", "--chapters", PAPER.number, "--scratch", str(tmp_path / "mine")], capsys)[0] == 1
    assert (tmp_path / "mine").is_dir()


# --- reproduce: what already answered well -----------------------------------------------------------

@pytest.mark.parametrize("flags, expected", [
    (["--chapters", "99"], "error: --chapters: no chapter matches '99'; chapters are: 00_"),
    (["--chapters", ","], "error: --chapters ',' names no chapter"),
    (["--weights", "x"], "error: --weights takes NAME=FILE (e.g. resnet101=/w/resnet101.pth), not 'x'"),
    (["--weights", "resnet101=/missing"], "error: --weights resnet101: no such file /missing"),
    (["--profile", "huge"], "error: argument --profile: invalid choice: 'huge'"),
])
def test_reproduce_bad_flags_are_one_line(capsys, flags, expected):
    got, out, err = run(["reproduce", *flags], capsys)
    assert got == 2 and one_error_line(got, err).startswith(expected) and out == ""


def test_reproduce_bad_weights_pair_as_typed():
    proc = shell("reproduce", "--weights", "x")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: --weights takes NAME=FILE (e.g. resnet101=/w/resnet101.pth), not 'x'"


def test_a_full_profile_chapter_without_its_data_roots_is_one_line(tmp_path, capsys):
    import torchvision

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in getattr(torchvision.models, PAPER.trunk)(weights=None).state_dict().items()}
    weights = tmp_path / f"{PAPER.trunk}.pth"   # the trunk's keys and shapes (the check passes) in 0.3 MB: one zero
    torch.save({k: torch.zeros(()).expand(shape) for k, shape in shapes.items()}, weights)
    code, out, err = run(["reproduce", "--profile", "full", "--chapters", PAPER.number, "--no-build",
                          "--output-dir", str(tmp_path / "out"), "--weights", f"{PAPER.trunk}={weights}"], capsys)
    line = one_error_line(code, err)
    assert code == 2 and line.startswith("error: the full profile reads real data only; the chosen chapters need ")
    assert all(f"--{d}-root" in line for d in PAPER.datasets) and not (tmp_path / "out").exists()


# --- dry-run limits: named, before any work ----------------------------------------------------------

@pytest.mark.parametrize("command", [["reproduce"], ["train", "--method", "list"], ["plan"]])
@pytest.mark.parametrize("flag, value", [("--limit-images", "0"), ("--limit-images", "-4"), ("--max-steps", "0"),
                                         ("--limit-images", "four")])
def test_a_dry_run_limit_below_one_names_its_flag(capsys, quiet_cache_log, command, flag, value):
    code, out, err = run([*command, flag, value], capsys)
    line = one_error_line(code, err)
    assert code == 2 and out == "" and line.startswith(f"error: argument {flag}: "), line
    assert (f"must be at least 1, not {value}" if value.lstrip("-").isdigit() else
            f"takes an integer of at least 1, not '{value}'") in line


def test_a_dry_run_limit_as_typed():
    proc = shell("reproduce", "--profile", "full", "--limit-images", "0", "--max-steps", "1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("error: argument --limit-images: must be at least 1, not 0 "
                                   "(see: python -m mlbook reproduce --help)")
