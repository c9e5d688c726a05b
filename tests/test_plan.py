"""`mlbook plan`: the grids the chapters compute, priced from the shapes, and checked against a machine."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlbook import costs, papers, plan
from mlbook.data import NUM_CLASSES, SPLIT_SIZES
from mlbook.experiments import features
from mlbook.profiles import get_profile

ROOT = Path(__file__).resolve().parents[1]
VGG16_CONVS = [(3, 64, 448), (64, 64, 448), (64, 128, 224), (128, 128, 224), (128, 256, 112), (256, 256, 112),
               (256, 256, 112), (256, 512, 56), (512, 512, 56), (512, 512, 56), (512, 512, 28), (512, 512, 28),
               (512, 512, 28)]   # (in, out, side) of VGG16's 13 3x3 convolutions at 448 px, conv5_3 without pool5


@pytest.fixture(scope="module")
def full_plan():
    return plan.plan("h200", machine="h200", rows=True)


def _group(table, chapter: str, run: str, dataset: str):
    hits = table[(table["chapter"] == chapter) & (table["run"].str.startswith(run)) & (table["data set"] == dataset)]
    assert len(hits) == 1, (chapter, run, dataset, list(table["run"]))
    return hits.iloc[0]


def test_one_run_by_hand_from_the_shapes(full_plan):
    """RLSD's VGG16 conv5_3 maps of VOC 2007, written once to disk (8 GB: they fit the disk budget)."""
    row = _group(full_plan, "06", "vgg16 maps at 448 px", "voc")
    n = 5011 + 4952
    assert row["disk GiB"] == round(n * 512 * 28 * 28 * 2 / 2 ** 30, 2)             # float16 [N, 512, 28, 28]
    flops = sum(2 * 9 * c_in * c_out * side * side for c_in, c_out, side in VGG16_CONVS)   # a multiply-add is 2
    assert float(row["GFLOPs / image"]) == float(f"{flops / 1e9:.4g}")
    assert row["images x epochs x runs"] == f"{n:,} x 1 x 1"
    weights = sum(c_in * c_out * 9 + c_out for c_in, c_out, _ in VGG16_CONVS)
    batch = 2 * get_profile("full").batch_size
    widest = 64 * 448 * 448 * 4                                                     # conv1's output, float32
    assert row["GPU GiB"] == round((4 * weights + batch * 2 * widest) / 2 ** 30, 2)   # forward only: 2 x widest
    workers = get_profile("full").num_workers
    loader = (workers * costs.PREFETCH + 1) * batch * 3 * 448 * 448 * 4
    host = (costs.PROCESS_GIB + costs.CUDA_HOST_GIB) * 2 ** 30 + 2 * 4 * weights + loader    # the file + the network
    # on a GPU the runs train in the chapter's process, beside every result it has loaded: each one's test
    # scores and two arrays derived from them, [N_test, C] float32, 125 runs (features excluded)
    runs = [r for c, r in plan.grid_runs(get_profile("full")) if c == "06_rlsd" and r.paper != "features"]
    assert len(runs) == 125
    results = sum(SPLIT_SIZES[r.dataset][1] * NUM_CLASSES[r.dataset] * 4 * 3 for r in runs)
    assert row["host GiB"] == round((host + results) / 2 ** 30, 2)
    chapter = _group(full_plan, "06", "the chapter's process: 125 results loaded", "voc, coco, nuswide")
    assert chapter["host GiB"] == round((costs.PROCESS_GIB + costs.CUDA_HOST_GIB + results / 2 ** 30), 2)
    gpu_hours = n * flops / (costs.GPU_PEAK["h200"] * 0.4) / 3600
    assert row["GPU hours"] == round(gpu_hours, 2)


def test_sizes_and_counts_of_the_paper_runs(full_plan):
    of = _group(full_plan, "04", "Order-Free RNN on frozen resnet152 maps (stream)", "nuswide")
    n_fit = 125449 - round(125449 * 0.1)
    assert of["images x epochs x runs"] == f"{n_fit:,} x 30 x 12"                    # 4 rows x 3 seeds
    assert float(of["GFLOPs / image"]) > costs.trunk_net("resnet152", 448).flops / 1e9   # the streamed trunk's forward
    cadm = _group(full_plan, "05", "CADM fine-tuning resnet101 at 448 px", "coco")
    assert cadm["images x epochs x runs"].endswith("x 60 x 12")                       # 4 variants x 3 seeds, 60 epochs
    rlsd = _group(full_plan, "06", "RLSD (regions) on frozen vgg16 maps (stream), fc6/fc7 4096 (vgg16 ImageNet), "
                                   "M = 256", "coco")
    assert rlsd["GPU GiB"] > 4 * 25088 * 4096 * 3 / 2 ** 30                            # fc6: weights, grads, Adam
    assert costs.weights_file_bytes("vgg16") == 4 * 138_357_544                           # the file its fc6/fc7 come from
    ranking = _group(full_plan, "07", "head on frozen alexnet maps (disk): 9216 -> 4096 -> 4096 -> 38400 (k x d), "
                                      "fc6/fc7 from alexnet (rows, k = 100)", "nuswide")
    fc = (9216 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 100 * 384                # fc6, fc7, fc8 (k x d, d = 384)
    assert ranking["GPU GiB"] >= round(4 * fc * 4 / 2 ** 30, 2)                        # weights, grads, Adam
    assert ranking["images x epochs x runs"] == f"{125449 - round(125449 * 0.1):,} x 30 x 24"   # 8 rows x 3 seeds
    ss = _group(full_plan, "06", "selective search", "coco")
    assert ss["SS hours"] == round(sum(SPLIT_SIZES["coco"]) * costs.ss_seconds(None) / 16 / 3600, 2)


def test_the_plan_lists_every_row_of_every_grid(full_plan):
    listed = {(r["chapter"], r["data set"], row) for _, r in full_plan.iterrows() if r["rows"]
              for row in r["rows"].split(", ")}
    runs = plan.grid_runs(get_profile("full"), 3)
    assert {(c[:2], r.dataset, r.row) for c, r in runs} <= listed
    assert len(runs) > 100 and {c for c, _ in runs} == {p.chapter for p in papers.PAPERS} | {papers.COMPARISON_CHAPTER}


def test_each_module_prices_its_own_runs_and_names_the_pooled_features_it_reads(full_plan):
    """``plan`` asks the experiments module that runs a row for its cost (``cost(run, ctx)``) and
    for the pooled features the row reads (``RunCost.pooled_trunk``), priced once per trunk and data set."""
    ctx = costs.Context(get_profile("full"), features.map_storage, features.map_shape)
    runs = {(r.paper, r.row, r.dataset): (c, r) for c, r in plan.grid_runs(get_profile("full"), 1)}
    chapter, eq14 = runs[("rlsd", "Multi-CNN (Eq. 14)", "voc")]   # Multi-CNN's linear head, RLSD's loss
    cost = plan.run_cost(chapter, eq14, ctx)
    assert (cost.chapter, cost.run) == ("06", "linear heads on pooled vgg16 features")
    assert cost.rows == ("Multi-CNN (Eq. 14)",) and cost.pooled_trunk == "vgg16"
    chapter, ours = runs[("order_free_rnn", "Ours", "coco")]
    assert plan.run_cost(chapter, ours, ctx).pooled_trunk == ""
    pooled = full_plan[full_plan["run"].str.startswith("pooled ")]
    assert len(pooled) == len(set(zip(pooled["run"].str.split(" features").str[0], pooled["data set"]))) > 0
    assert _group(full_plan, "06", "pooled vgg16 features (disk maps), once", "voc")["rows"] == ""


def test_no_run_exceeds_the_h200_machine_and_nuswide_fits(full_plan):
    assert plan.fits(full_plan, "h200") == []
    nus = full_plan[full_plan["data set"] == "nuswide"]
    assert (nus["host GiB"] <= 128).all() and (nus["disk GiB"] <= 64).all()
    # the 168 GB of ResNet-152 maps of NUS-WIDE are streamed, never stored or held
    assert features.map_bytes("resnet152", 448, sum(SPLIT_SIZES["nuswide"])) > 150e9
    assert _group(full_plan, "04", "resnet152 maps: streamed", "nuswide")["disk GiB"] == 0


def test_an_over_size_plan_is_refused_one_line_per_run(full_plan, monkeypatch):
    small = costs.Machine("a small box", "l4", 24e9, 8 * 2 ** 30, 4 * 2 ** 30, 4)
    monkeypatch.setitem(costs.MACHINES, "small", small)
    problems = plan.fits(full_plan, "small")
    over = full_plan[(full_plan["chapter"] != "") & ((full_plan["host GiB"] > 8) | (full_plan["disk GiB"] > 4)
                                                     | (full_plan["GPU GiB"] * 2 ** 30 > 24e9))]
    assert len(problems) == sum(int(r["host GiB"] > 8) + int(r["disk GiB"] > 4) + int(r["GPU GiB"] * 2 ** 30 > 24e9)
                                for _, r in over.iterrows()) > 0
    assert any("CADM" in p and "GPU memory" in p for p in problems)


def test_the_cli_refuses_a_machine_the_plan_does_not_fit():
    proc = subprocess.run([sys.executable, "-m", "mlbook", "plan", "--machine", "l4"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and "GPU hours" in proc.stdout and "host GiB" in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("does not fit:")]
    assert lines and all("(l4)" in ln for ln in lines) and any("CADM fine-tuning" in ln for ln in lines)


def test_a_dry_run_is_planned_with_its_limits():
    dry = plan.plan("h200", profile=get_profile("full").limited(16, 2), device="cpu")
    cadm = _group(dry, "05", "CADM fine-tuning resnet101 at 448 px", "coco")
    assert cadm["images x epochs x runs"] == "14 x 2 x 12"          # 16 - 2 held out; 2 steps of one batch
    assert cadm["GPU GiB"] == 0 and cadm["host GiB"] > costs.PROCESS_GIB  # on a CPU the model lives in host memory


def test_meta_measurements_count_what_trains():
    lin = costs.measure(lambda: torch.nn.Linear(10, 4), ((2, 10),), train=True)
    assert (lin.params, lin.trainable) == (44, 44) and lin.flops == 2 * (2 * 10 * 4)   # forward + weight gradient
    assert lin.activations == 10 * 4                     # the saved input, per image; the weight is not an activation
    frozen = costs.measure(lambda: torch.nn.Sequential(torch.nn.Linear(10, 4), torch.nn.Linear(4, 2)), ((1, 10),),
                       train=True, frozen=("0",))
    assert frozen.trainable == 10 and frozen.params == 54
