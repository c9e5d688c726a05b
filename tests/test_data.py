"""Loaders on generated and genuine files, the generator, caching, and bad inputs."""
from __future__ import annotations

import filecmp
import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mlbook.data as data
from mlbook.data import DataFormatError, coco, load, nuswide, synthetic, synthetic_scenes, voc
from mlbook.data import visual_genome as vgmod
from mlbook.cli import main as cli_main
from mlbook.data.summary import format_summary, summarize
from mlbook.data.transforms import image_transform, normalize_uint8, random_hflip

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")
COCO128 = SHARED / "coco128"
VOC2007 = SHARED / "voc2007"
SIZES = dict(n_train=48, n_test=24, n_classes=10, image_size=40)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    return {ds: synthetic.generate(ds, root / ds, seed=3, **SIZES) for ds in data.DATASETS}


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


# --- generated data through the real loaders -----------------------------------

def test_generated_coco(gen):
    tr, te = load("coco", gen["coco"], "train"), load("coco", gen["coco"], "test")
    assert (len(tr), len(te)) == (48, 24)
    assert tr.skipped == {"no_labels": 1} and te.skipped == {"no_labels": 1}
    names = synthetic_scenes.class_names("coco", 10)
    ids = {n: i for i, n, _ in synthetic.COCO_CATEGORIES}
    assert tr.classes == sorted(names, key=ids.get) and tr.classes[0] == "person"
    assert [ids[c] for c in tr.classes] != list(range(1, 11))  # non-contiguous ids exercised
    assert sum(b.crowd for bs in tr.boxes for b in bs) == 2
    assert all(tr.labels[i].sum() >= 1 for i in range(len(tr)))
    # labels are exactly the classes of the boxes
    for row, bs in zip(tr.labels, tr.boxes):
        assert set(row.nonzero().flatten().tolist()) == {b.label for b in bs}
    modes = [Image.open(p).mode for p in tr.image_paths]
    assert modes.count("L") == 1 and open_rgb_mode(tr.image_paths[modes.index("L")]) == "RGB"
    sides = [b.w for bs in tr.boxes + te.boxes for b in bs]
    assert min(sides) <= 4 and max(sides) >= 14  # tiny to large (40 px images)
    assert tr.image_sizes[0] == (40, 40) and tr.image_ids[0].isdigit()


def open_rgb_mode(path):
    return data.open_rgb(path).mode


def test_generated_nuswide(gen, tmp_path):
    root = gen["nuswide"]
    tr, te = load("nuswide", root, "train"), load("nuswide", root, "test")
    assert (len(tr), len(te)) == (48, 24) and tr.boxes is None
    assert tr.skipped == {"missing_image": 2, "no_labels": 2}
    assert nuswide.listed_count(tr) == 52 and nuswide.listed_count(te) == 28
    assert tr.classes == sorted(synthetic_scenes.class_names("nuswide", 10))
    assert set(tr.classes) <= set(synthetic.NUSWIDE_CONCEPTS81)
    assert b"\r\n" in (root / "ImageList" / "TrainImagelist.txt").read_bytes()
    assert "\\" in tr.image_ids[0] and tr.image_paths[0].parts[-3] == "Flickr"
    # the AllLabels/ + Imagelist.txt layout gives the same data
    alt = tmp_path / "nus"
    shutil.copytree(root, alt)
    shutil.rmtree(alt / "Groundtruth" / "TrainTestLabels")
    for split, ref in (("train", tr), ("test", te)):
        other = load("nuswide", alt, split)
        assert torch.equal(other.labels, ref.labels) and other.image_ids == ref.image_ids


def test_generated_voc(gen):
    root = gen["voc"]
    tr, te = load("voc", root, "train"), load("voc", root, "test")
    assert (len(tr), len(te)) == (48, 24)
    assert tr.classes == list(voc.VOC_CLASSES) and len(tr.classes) == 20
    assert b"\r\n" in (root / "ImageSets" / "Main" / "dog_trainval.txt").read_bytes()
    assert not set(tr.image_ids) & set(te.image_ids)
    both = [tr, te]
    n_diff = 0
    for d in both:
        for row, ign, bs in zip(d.labels, d.ignore, d.boxes):
            easy = {b.label for b in bs if not b.difficult}
            hard = {b.label for b in bs if b.difficult} - easy
            assert set(row.nonzero().flatten().tolist()) == easy | hard
            assert set(ign.nonzero().flatten().tolist()) == hard
            n_diff += len(hard)
            assert easy  # every image keeps a scored label
    assert n_diff >= 1


def test_determinism(tmp_path):
    for ds in data.DATASETS:
        a = synthetic.generate(ds, tmp_path / "a" / ds, seed=7, **SIZES)
        b = synthetic.generate(ds, tmp_path / "b" / ds, seed=7, **SIZES)
        c = synthetic.generate(ds, tmp_path / "c" / ds, seed=8, **SIZES)
        files = _files(a)
        assert files == _files(b) and len(files) > 50
        assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)
        assert not all(filecmp.cmp(a / f, c / f, shallow=False) for f in files if (c / f).exists())


def test_generate_for_profile_and_summary(tmp_path):
    root = synthetic.generate_for_profile("nuswide", "smoke", tmp_path / "n", seed=0)
    s = summarize("nuswide", root)
    json.dumps(s)
    assert s["splits"]["train"]["listed"] == 52 and s["splits"]["train"]["loaded"] == 48
    assert s["splits"]["test"]["skipped"] == {"missing_image": 2, "no_labels": 2}
    lpi = s["splits"]["train"]["labels_per_image"]
    # statistics come from the lists: the 50 labelled images, the 2 missing on disk included
    assert s["splits"]["train"]["labelled"] == 50
    assert lpi["min"] >= 1 and lpi["max"] <= 5 and sum(lpi["histogram"].values()) == 50
    text = format_summary(s)
    assert "sky" in text and "52 listed, 48 loaded" in text
    with pytest.raises(ValueError):
        synthetic.generate_for_profile("voc", "full", tmp_path / "v")


# --- COCO id mapping -----------------------------------------------------------

def _tiny_coco(root: Path, categories, anns, images=None):
    (root / "annotations").mkdir(parents=True)
    (root / "train2014").mkdir()
    images = images or [{"id": 7, "file_name": "a.jpg", "width": 8, "height": 6},
                        {"id": 3, "file_name": "b.jpg", "width": 8, "height": 6}]
    for im in images:
        Image.new("RGB", (8, 6)).save(root / "train2014" / im["file_name"])
    doc = {"images": images, "annotations": anns, "categories": categories}
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(doc))


def test_coco_id_mapping_ascending(tmp_path):
    cats = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 13, "name": "stop sign"}]
    anns = [{"id": 1, "image_id": 7, "category_id": 90, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12},
            {"id": 2, "image_id": 7, "category_id": 13, "bbox": [0, 0, 2, 2], "iscrowd": 1, "area": 4},
            {"id": 3, "image_id": 3, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 0, "area": 25}]
    _tiny_coco(tmp_path, cats, anns)
    d = coco.load(tmp_path, "train")
    assert d.classes == ["person", "stop sign", "toothbrush"]  # ids 1 < 13 < 90
    assert d.image_ids == ["3", "7"]  # ordered by image id
    assert d.labels.tolist() == [[1, 0, 0], [0, 1, 1]]
    b = {x.label: x for x in d.boxes[1]}
    assert (b[2].x, b[2].y, b[2].w, b[2].h, b[2].crowd) == (1, 2, 3, 4, False) and b[1].crowd
    assert d.image_sizes == [(8, 6), (8, 6)]


def test_coco_missing_image_counted(tmp_path):
    cats = [{"id": 2, "name": "bicycle"}]
    anns = [{"id": 1, "image_id": 7, "category_id": 2, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12}]
    _tiny_coco(tmp_path, cats, anns)
    (tmp_path / "train2014" / "a.jpg").unlink()
    d = coco.load(tmp_path, "train")
    assert len(d) == 0 and d.skipped == {"no_labels": 1, "missing_image": 1}


# --- genuine files ---------------------------------------------------------------

@pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 absent")
def test_coco128_genuine():
    d = coco.load(COCO128, "train")
    assert len(d) + sum(d.skipped.values()) == 128
    assert d.skipped == {"no_labels": 2} and len(d) == 126
    names = {p.name for p in d.image_paths}
    assert "000000000250.jpg" not in names and "000000000508.jpg" not in names
    assert d.num_classes == 80 and d.classes[:3] == ["person", "bicycle", "car"]
    assert d.classes[-1] == "toothbrush" and d.classes[11] == "stop sign"  # id 13 -> index 11
    assert int((d.labels.sum(0) > 0).sum()) == 71
    assert sum(b.crowd for bs in d.boxes for b in bs) == 10
    assert sum(len(bs) for bs in d.boxes) == 939
    gray = COCO128 / "train2017" / "000000000086.jpg"
    assert Image.open(gray).mode == "L" and data.open_rgb(gray).mode == "RGB"
    with pytest.raises(DataFormatError, match="instances_val2014.json"):
        coco.load(COCO128, "test")


@pytest.mark.skipif(not VOC2007.is_dir(), reason="../shared/data/voc2007 absent")
def test_voc2007_genuine():
    tv = voc.load(VOC2007, "train", check_images=False)
    te = voc.load(VOC2007, "test", check_images=False)
    assert (len(tv), len(te)) == (5011, 4952) and tv.labels.shape == (5011, 20)
    # difficult = label 1, ignored
    assert int(te.ignore.sum()) > 0 and bool((te.labels[te.ignore] == 1).all())
    # the genuine xml of 000002 (one "train" object), VOC 1-based corners -> x, y, w, h
    i = te.image_ids.index("000002")  # a test image in VOC 2007
    (b,) = te.boxes[i]
    assert te.classes[b.label] == "train" and (b.x, b.y, b.w, b.h) == (138, 199, 69, 102)
    assert te.image_sizes[i] == (335, 500) and te.labels[i, voc.VOC_CLASSES.index("train")] == 1
    # with images checked: the five present test images load, the rest are counted
    on_disk = voc.load(VOC2007, "test")
    assert sorted(on_disk.image_ids) == ["000342", "000542", "003123", "004101", "008591"]
    assert on_disk.skipped == {"missing_image": 4947}
    assert voc.load(VOC2007, "train").skipped == {"missing_image": 5011}
    k = on_disk.image_ids.index("004101")
    c = voc.VOC_CLASSES.index
    assert on_disk.labels[k, c("person")] == 1 and on_disk.labels[k, c("sofa")] == 1
    assert on_disk.labels[k, c("bicycle")] == 1 and on_disk.ignore[k, c("bicycle")]
    assert not on_disk.ignore[k, c("person")] and on_disk.labels[k, c("dog")] == 0
    assert all(s is not None and min(s) > 0 for s in on_disk.image_sizes)


# --- bad inputs ------------------------------------------------------------------

@pytest.mark.parametrize("ds", data.DATASETS)
def test_missing_root(tmp_path, ds):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataFormatError, match=str(missing)):
        load(ds, missing, "train")


def test_missing_coco_annotation(tmp_path):
    (tmp_path / "annotations").mkdir()
    with pytest.raises(DataFormatError, match=r"annotations/instances_train2014\.json"):
        coco.load(tmp_path, "train")
    (tmp_path / "annotations" / "instances_train2014.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="instances_train2014.json"):
        coco.load(tmp_path, "train")


def test_nuswide_bad_value_and_line_count(gen, tmp_path):
    root = tmp_path / "nus"
    shutil.copytree(gen["nuswide"], root)
    lab = root / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Train.txt"
    lines = lab.read_text().splitlines()
    good = list(lines)
    lines[4] = "2"
    lab.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"Labels_sky_Train\.txt, line 5: expected 0 or 1"):
        nuswide.load(root, "train")
    lab.write_text("\n".join(good[:-1]) + "\n")
    with pytest.raises(DataFormatError, match=r"Labels_sky_Train\.txt: 51 lines, expected 52"):
        nuswide.load(root, "train")
    lab.write_text("\r\n".join(good) + "\r\n\r\n")  # CRLF and a trailing blank line are fine
    assert len(nuswide.load(root, "train")) == 48
    (root / "ConceptsList" / "Concepts81.txt").unlink()
    with pytest.raises(DataFormatError, match="Concepts81.txt: file not found"):
        nuswide.load(root, "train")


KNOWN_DEFECT = "-1130179"   # the official release, Groundtruth/TrainTestLabels/Labels_lake_Train.txt


def _nus_copy(gen, tmp_path, concept="water", split="Train", line=None, value=KNOWN_DEFECT):
    """A copy of the generated NUS-WIDE with ``value`` on one line of Labels_<concept>_<split>.txt.

    With ``line=None`` the first line holding 0 is used, so the labels read leniently
    equal the clean copy's. Returns (root, label file, 1-based line).
    """
    root = tmp_path / "nus"
    shutil.copytree(gen["nuswide"], root)
    lab = root / "Groundtruth" / "TrainTestLabels" / f"Labels_{concept}_{split}.txt"
    lines = lab.read_bytes().split(b"\r\n" if b"\r\n" in lab.read_bytes() else b"\n")
    n = line if line is not None else next(i for i, v in enumerate(lines) if v.strip() == b"0") + 1
    lines[n - 1] = value.encode()
    lab.write_bytes(b"\r\n".join(lines))
    return root, lab, n


def test_nuswide_known_defect_read_as_zero_and_reported(gen, tmp_path):
    root, lab, n = _nus_copy(gen, tmp_path)
    clean = nuswide.load(gen["nuswide"], "train")
    d = nuswide.load(root, "train")
    assert torch.equal(d.labels, clean.labels) and d.skipped == clean.skipped and d.listed == 52
    assert nuswide.malformed_values(d) == [nuswide.MalformedValue(lab, n, KNOWN_DEFECT, 0)]
    assert nuswide.malformed_values(clean) == [] and nuswide.malformed_values(load("voc", gen["voc"], "test")) == []
    assert nuswide.malformed_values(nuswide.load(root, "test")) == []   # the test split is clean
    with pytest.raises(DataFormatError, match=rf"Labels_water_Train\.txt, line {n}: expected 0 or 1, "
                                              rf"found '{KNOWN_DEFECT}'.*known defect"):
        nuswide.load(root, "train", strict=True)
    # where the defect replaces a 1, the concept is read as absent
    ones = [i for i, v in enumerate(lab.read_text().split()) if v == "1"]
    root2, _, n2 = _nus_copy(gen, tmp_path / "b", line=ones[0] + 1)
    image = (root2 / "ImageList" / "TrainImagelist.txt").read_text().splitlines()[n2 - 1].strip()
    before = nuswide.load(gen["nuswide"], "train", check_images=False)
    after = nuswide.load(root2, "train", check_images=False)
    w = before.classes.index("water")
    assert before.labels[before.image_ids.index(image), w] == 1
    if image in after.image_ids:
        assert after.labels[after.image_ids.index(image), w] == 0
    else:  # water was its only concept
        assert after.skipped["no_labels"] == before.skipped["no_labels"] + 1
    # the AllLabels layout reads the same rule
    alt = tmp_path / "alt"
    shutil.copytree(gen["nuswide"], alt)
    shutil.rmtree(alt / "Groundtruth" / "TrainTestLabels")
    all_lab = alt / "Groundtruth" / "AllLabels" / "Labels_sky.txt"
    vals = all_lab.read_text().split()
    k = vals.index("0")
    vals[k] = "-7"
    all_lab.write_text("\n".join(vals) + "\n")
    got = {(m.file.name, m.line, m.value) for split in ("train", "test")
           for m in nuswide.malformed_values(nuswide.load(alt, split))}
    assert got == {("Labels_sky.txt", k + 1, "-7")}


@pytest.mark.parametrize("value", ["x", "0.5", "2", "", "- 1", "1e3"])
def test_nuswide_other_bad_values_still_fail(gen, tmp_path, value):
    root, lab, n = _nus_copy(gen, tmp_path, value=value)
    for strict in (False, True):
        with pytest.raises(DataFormatError, match=rf"Labels_water_Train\.txt, line {n}: expected 0 or 1"):
            nuswide.load(root, "train", strict=strict)


def test_data_summary_cli_known_defect(gen, tmp_path, capsys):
    root, lab, n = _nus_copy(gen, tmp_path)
    assert cli_main(["data", "summary", "--dataset", "nuswide", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{lab}, line {n}: '{KNOWN_DEFECT}' read as 0" in out and "malformed label values: 1" in out
    assert "test: 28 listed, 24 loaded" in out and "train: 52 listed, 48 loaded" in out
    assert cli_main(["data", "summary", "--dataset", "nuswide", "--root", str(root), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["splits"]["train"]["malformed_values"] == [
        {"file": str(lab), "line": n, "value": KNOWN_DEFECT, "read_as": 0}]
    assert "malformed_values" not in js["splits"]["test"]
    # --strict: the train split is unreadable -> non-zero, naming the file and line
    assert cli_main(["data", "summary", "--dataset", "nuswide", "--root", str(root), "--strict"]) == 1
    out = capsys.readouterr().out
    assert f"train: not readable: {lab}, line {n}" in out and "test: 28 listed" in out
    # a clean copy passes strict
    assert cli_main(["data", "summary", "--dataset", "nuswide", "--root", str(gen["nuswide"]), "--strict"]) == 0
    assert "malformed" not in capsys.readouterr().out


def test_data_summary_cli_fails_on_other_bad_value_and_on_any_unreadable_split(gen, tmp_path, capsys):
    root, lab, n = _nus_copy(gen, tmp_path, value="x")
    assert cli_main(["data", "summary", "--dataset", "nuswide", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"train: not readable: {lab}, line {n}: expected 0 or 1, found 'x'" in out
    # one split unreadable, the other fine: still a failure
    root2 = tmp_path / "one"
    shutil.copytree(gen["nuswide"], root2)
    (root2 / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt").unlink()
    assert cli_main(["data", "summary", "--dataset", "nuswide", "--root", str(root2)]) == 1
    out = capsys.readouterr().out
    assert "train: 52 listed, 48 loaded" in out and "test: not readable:" in out and "Labels_sky_Test.txt" in out


@pytest.mark.skipif(not VOC2007.is_dir(), reason="../shared/data/voc2007 absent")
def test_voc2007_summary_official_positives(capsys):
    """Positives as the official VOC 2007 statistics count them: label 1 only, from the lists."""
    s = summarize("voc", VOC2007)
    tv, te = s["splits"]["train"], s["splits"]["test"]
    assert tv["positives"]["aeroplane"] == 238 and tv["difficult"]["aeroplane"] == 2
    assert te["positives"]["aeroplane"] == 204 and tv["positives"]["person"] == 2008
    assert (tv["listed"], tv["labelled"], tv["loaded"]) == (5011, 5011, 0)   # images absent on disk here
    assert tv["skipped"] == {"missing_image": 5011} and te["loaded"] == 5
    # no trainval image on disk here: nothing to train on, so the check fails (exit 1), saying where
    assert cli_main(["data", "summary", "--dataset", "voc", "--root", str(VOC2007)]) == 1
    captured = capsys.readouterr()
    assert any(line.split() == ["aeroplane", "238", "(2)"] for line in captured.out.splitlines())
    assert f"no image loaded: none of the split's 5011 images is in {VOC2007 / 'JPEGImages'}/" in captured.out
    assert captured.err.splitlines() == [f"error: train split: no image loaded: none of the split's 5011 images is "
                                         f"in {VOC2007 / 'JPEGImages'}/ (e.g. 000005.jpg is not)"]


def test_voc_malformed_line(gen, tmp_path):
    root = tmp_path / "voc"
    shutil.copytree(gen["voc"], root)
    f = root / "ImageSets" / "Main" / "cat_test.txt"
    lines = f.read_bytes().split(b"\r\n")
    lines[2] = lines[2].split()[0] + b" 2"
    f.write_bytes(b"\r\n".join(lines))
    with pytest.raises(DataFormatError, match=r"cat_test\.txt, line 3"):
        voc.load(root, "test")
    f.write_bytes(b"\r\n".join(lines[:2] + lines[3:]))  # a line missing
    with pytest.raises(DataFormatError, match=r"cat_test\.txt"):
        voc.load(root, "test")
    (root / "ImageSets" / "Main" / "dog_trainval.txt").unlink()
    with pytest.raises(DataFormatError, match=r"dog_trainval\.txt: file not found"):
        voc.load(root, "train")


def _summary(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlbook", "data", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)


def test_data_summary_decodes_every_image_and_fails_on_a_truncated_one(gen, tmp_path, capsys):
    root = tmp_path / "coco"
    shutil.copytree(gen["coco"], root)
    # the clean copy decodes (its grayscale and CMYK JPEGs included) and passes
    assert cli_main(["data", "summary", "--dataset", "coco", "--root", str(root)]) == 0
    assert "unreadable" not in capsys.readouterr().out
    bad = load("coco", root, "test").image_paths[3]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    proc = _summary("summary", "--dataset", "coco", "--root", str(root))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "test: 25 listed, 23 loaded (skipped: 1 no_labels, 1 unreadable_image)" in proc.stdout
    assert f"unreadable images: 1:\n      {bad}: OSError: image file is truncated" in proc.stdout
    assert len(proc.stderr.splitlines()) == 1 and "image file is truncated" in proc.stderr
    assert proc.stderr.startswith(f"error: test split: 1 unreadable image(s), e.g. {bad} (OSError: ")
    assert cli_main(["data", "summary", "--dataset", "coco", "--root", str(root), "--json"]) == 1
    js = json.loads(capsys.readouterr().out)
    test, train = js["splits"]["test"], js["splits"]["train"]
    assert test["loaded"] == 23 and test["skipped"]["unreadable_image"] == 1
    assert test["unreadable_images"][0]["file"] == str(bad) and "truncated" in test["unreadable_images"][0]["error"]
    assert "unreadable_images" not in train and train["loaded"] == 48
    # a file that is no image at all
    bad.write_text("not a jpeg")
    assert cli_main(["data", "summary", "--dataset", "coco", "--root", str(root)]) == 1
    assert f"{bad}: UnidentifiedImageError" in capsys.readouterr().out


def test_data_summary_fails_when_a_split_loads_no_image_and_names_the_folder(gen, tmp_path, capsys):
    root = tmp_path / "voc"
    shutil.copytree(gen["voc"], root, ignore=shutil.ignore_patterns("Annotations", "JPEGImages"))
    proc = _summary("summary", "--dataset", "voc", "--root", str(root))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    jpeg = root / "JPEGImages"
    assert f"train: 48 listed, 0 loaded (skipped: 48 missing_image)\n    no image loaded: {jpeg}/: no such " \
           f"folder; expected the split's 48 images there" in proc.stdout
    assert f"note: {root / 'Annotations'}/: no such folder; no boxes read" in proc.stdout
    assert [line.split(":")[0] for line in proc.stderr.splitlines()] == ["error"] * 2
    assert proc.stderr.startswith(f"error: train split: no image loaded: {jpeg}/: no such folder")
    # the folder there but the split's images not in it
    jpeg.mkdir()
    assert cli_main(["data", "summary", "--dataset", "voc", "--root", str(root), "--json"]) == 1
    js = json.loads(capsys.readouterr().out)
    assert js["splits"]["test"]["no_images"].startswith(f"none of the split's 24 images is in {jpeg}/")
    # Annotations/ alone missing: a note, not a failure
    shutil.copytree(gen["voc"] / "JPEGImages", jpeg, dirs_exist_ok=True)
    assert cli_main(["data", "summary", "--dataset", "voc", "--root", str(root)]) == 0
    assert "Annotations/: no such folder" in capsys.readouterr().out
    # COCO without its image folder
    coco_root = tmp_path / "coco"
    shutil.copytree(gen["coco"], coco_root, ignore=shutil.ignore_patterns("val2014"))
    assert cli_main(["data", "summary", "--dataset", "coco", "--root", str(coco_root)]) == 1
    assert f"no image loaded: {coco_root / 'val2014'}/: no such folder" in capsys.readouterr().out


def test_data_fingerprint_covers_image_file_sizes(gen, tmp_path):
    from mlbook.experiments.shared import Splits, data_fingerprint

    root = tmp_path / "coco"
    shutil.copytree(gen["coco"], root)
    fresh = lambda r: Splits(load("coco", r, "train", check_images=False), load("coco", r, "test", check_images=False))
    before = data_fingerprint(fresh(root))
    assert data_fingerprint(fresh(root)) == before == data_fingerprint(fresh(gen["coco"]))   # same bytes, same print
    victim = load("coco", root, "train").image_paths[7]
    victim.write_bytes(victim.read_bytes()[:-10])
    truncated = data_fingerprint(fresh(root))
    assert truncated != before
    victim.unlink()   # not on disk (a root with lists only): size -1, still a fingerprint, another one
    assert data_fingerprint(fresh(root)) not in (before, truncated)


@pytest.mark.skipif(not COCO128.is_dir(), reason="../shared/data/coco128 absent")
def test_data_split_makes_a_coco2014_root_from_coco128(tmp_path, capsys):
    new = tmp_path / "coco2014"
    proc = _summary("split", "--dataset", "coco", "--root", str(COCO128), "--out", str(new),
                    "--test-fraction", "0.2", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {new}: train2014 102 images, val2014 (the test split) 26 images")
    record = json.loads((new / "SPLIT.json").read_text())
    assert record["seed"] == 0 and record["images"] == {"train2014": 102, "val2014": 26}
    proc = _summary("summary", "--dataset", "coco", "--root", str(new), "--json")
    assert proc.returncode == 0, proc.stderr
    js = json.loads(proc.stdout)["splits"]
    assert js["train"]["listed"] + js["test"]["listed"] == 128 and js["test"]["listed"] == 26
    assert js["train"]["loaded"] + js["test"]["loaded"] == 126                     # the two unlabelled dropped
    assert js["train"]["boxes"] + js["test"]["boxes"] == 939
    tr, te = coco.load(new, "train"), coco.load(new, "test")
    assert not set(tr.image_ids) & set(te.image_ids) and tr.classes == coco.load(COCO128, "train").classes
    # seeded: the same seed the same split, another seed another one
    again = coco.split_root(COCO128, tmp_path / "again", 0.2, seed=0, copy=True)
    assert again["val2014"] == 26 and not (tmp_path / "again" / "val2014" / te.image_paths[0].name).is_symlink()
    assert coco.load(tmp_path / "again", "test").image_ids == te.image_ids
    coco.split_root(COCO128, tmp_path / "other", 0.2, seed=1)
    assert coco.load(tmp_path / "other", "test").image_ids != te.image_ids
    # bad input: one line, exit 2, naming the flag or the file
    cases = [(["--test-fraction", "1.5"], "--test-fraction must lie strictly between 0 and 1, not 1.5"),
             (["--test-fraction", "0.001"], "leaves a split empty"),
             (["--out", str(new)], f"--out {new}: already exists and is not empty"),
             (["--root", str(new)], "holds instances_train2014.json and instances_val2014.json, a split already"),
             (["--root", str(tmp_path / "nowhere")], f"{tmp_path / 'nowhere'}: no such folder")]
    for extra, message in cases:
        argv = ["data", "split", "--dataset", "coco", "--root", str(COCO128), "--out", str(tmp_path / "x"), *extra]
        assert cli_main(argv) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


# --- prepare, caches, transforms --------------------------------------------------

def test_prepare_and_load_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    root = data.prepare("voc", "smoke", seed=1)
    assert root == tmp_path / "data" / "generated" / "smoke-s1" / "voc"
    assert (root / data.COMPLETE_MARKER).exists()
    stamp = (root / "generated.json").stat().st_mtime_ns
    tr, te = data.load_splits("voc", "smoke", seed=1)
    assert (len(tr), len(te)) == (48, 24)
    assert (root / "generated.json").stat().st_mtime_ns == stamp  # not regenerated
    assert [p.name for p in root.parent.iterdir()] == ["voc"]  # no temp folder left behind
    assert data.prepare("voc", "smoke", root=root) == root
    with pytest.raises(DataFormatError, match="nowhere"):
        data.prepare("voc", "smoke", root=tmp_path / "nowhere")
    with pytest.raises(DataFormatError, match="real data"):
        data.prepare("voc", "full")


def test_image_tensor_cache(gen, tmp_path, monkeypatch):
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    d = load("coco", gen["coco"], "test")
    x = data.image_tensor_cache(d, 32)
    assert x.dtype == torch.uint8 and x.shape == (24, 3, 32, 32)
    # the in-memory path gives the tensors of the file path (Resize + ToTensor + Normalize)
    ref = image_transform(32, train=False)(data.open_rgb(d.image_paths[5]))
    assert torch.allclose(normalize_uint8(x[5:6])[0], ref, atol=1e-5)
    assert len(list((tmp_path / "runs" / "image_cache").glob("*.pt"))) == 1

    def boom(path):
        raise AssertionError("decoded twice")

    monkeypatch.setattr(data, "open_rgb", boom)
    assert torch.equal(data.image_tensor_cache(d, 32), x)
    # full size equals a plain decode
    monkeypatch.undo()
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path / "runs"))
    full = data.image_tensor_cache(d.subset([0]), 40)
    ref = torch.from_numpy(np.array(data.open_rgb(d.image_paths[0]))).permute(2, 0, 1)
    assert torch.equal(full[0], ref)


def test_transforms_match(gen):
    path = load("voc", gen["voc"], "test").image_paths[0]
    img = data.open_rgb(path)
    a = image_transform(40, train=False)(img)
    u8 = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None]
    assert torch.allclose(normalize_uint8(u8)[0], a, atol=1e-5)
    assert torch.equal(random_hflip(u8, p=1.0), u8.flip(-1))
    assert torch.equal(random_hflip(u8, p=0.0), u8)
    assert image_transform(32, train=True)(img).shape == (3, 32, 32)


def test_nuswide_windows_paths():
    assert nuswide.image_relpath("actor\\0001_2124494179.jpg") == Path("Flickr/actor/0001_2124494179.jpg")
    assert nuswide.image_relpath("C:\\ImageData\\Flickr\\sky\\0002_1.jpg ") == Path("Flickr/sky/0002_1.jpg")


def test_prepare_regenerates_stale_generated_data(tmp_path, monkeypatch):
    """A generated folder written by another generator version (or other sizes) is written again."""
    monkeypatch.setenv("MLBOOK_DATA", str(tmp_path / "data"))
    root = data.prepare("nuswide", "smoke", seed=2)
    meta = json.loads((root / "generated.json").read_text())
    assert meta["args"] == synthetic.generation_args("smoke", 2)
    meta["args"]["generator_version"] -= 1
    (root / "generated.json").write_text(json.dumps(meta))
    (root / "Flickr" / "stale.txt").write_text("from an older generator")
    assert data.prepare("nuswide", "smoke", seed=2) == root
    assert not (root / "Flickr" / "stale.txt").exists()
    assert json.loads((root / "generated.json").read_text())["args"]["generator_version"] == synthetic.GENERATOR_VERSION


def test_generated_coco_cmyk_test_image(gen):
    """The generated COCO test split carries one CMYK JPEG, as circulating COCO copies do."""
    te = load("coco", gen["coco"], "test")
    modes = [Image.open(p).mode for p in te.image_paths]
    assert modes.count("CMYK") == 1
    cmyk = te.image_paths[modes.index("CMYK")]
    assert data.open_rgb(cmyk).mode == "RGB" and data.open_rgb(cmyk).size == (40, 40)


# --- object sizes by class (generator version 5) ------------------------------------

def _median_sides(data) -> dict[str, float]:
    """Median relative side sqrt(box area / image area) of each class's non-crowd boxes."""
    sides: dict[str, list[float]] = {}
    for bs, (w, h) in zip(data.boxes, data.image_sizes):
        for b in bs:
            if not b.crowd:
                sides.setdefault(data.classes[b.label], []).append((b.w * b.h / (w * h)) ** 0.5)
    return {c: float(np.median(v)) for c, v in sides.items() if len(v) >= 10}


def test_every_generated_class_has_a_typical_size():
    generated = {c for rows in synthetic_scenes.CLASS_SCENES.values() for c, _ in rows}
    assert set(synthetic_scenes.TYPICAL_SIDE) == generated   # no class left out, no unused entry
    assert all(0.05 <= v <= 0.45 for v in synthetic_scenes.TYPICAL_SIDE.values())
    side = synthetic_scenes.TYPICAL_SIDE
    assert max(side[c] for c in ("bottle", "cup", "traffic light", "bird", "kite")) < side["person"]
    assert min(side[c] for c in ("bus", "train", "dining table", "couch", "airplane")) > side["dog"]
    for c in ("bottle", "tvmonitor", "chair", "pottedplant"):   # RLSD Table I's small VOC classes
        assert side[c] < min(side[x] for x in ("person", "dog", "cat", "sofa", "bus"))
    assert min(side[c] for c in ("sky", "sunset", "clouds", "lake")) == max(side.values())   # scenes


@pytest.mark.parametrize("ds", ["coco", "voc"])
def test_generated_sizes_depend_on_class(tmp_path, ds):
    root = synthetic.generate(ds, tmp_path / ds, seed=5, n_train=300, n_test=10, n_classes=24, image_size=64)
    tr = load(ds, root, "train")
    med = _median_sides(tr)
    small, large = (("bottle", "cup", "traffic light"), ("bus", "dining table", "couch")) if ds == "coco" else \
        (("bottle", "tvmonitor", "chair", "pottedplant"), ("bus", "train", "sofa", "diningtable"))
    have_small, have_large = [c for c in small if c in med], [c for c in large if c in med]
    assert len(have_small) >= 2 and len(have_large) >= 2
    assert max(med[c] for c in have_small) < min(med[c] for c in have_large)
    # the measured medians follow the table: rank correlation over the classes with enough boxes
    names = sorted(med)
    rank = lambda v: np.argsort(np.argsort(v))   # noqa: E731
    rho = np.corrcoef(rank([med[c] for c in names]), rank([synthetic_scenes.TYPICAL_SIDE[c] for c in names]))[0, 1]
    assert rho > 0.8
    # sizes overlap across classes and run from a few pixels to about half the image
    sides = [b.w for bs in tr.boxes for b in bs if not b.crowd]
    assert min(sides) <= 3 and max(sides) >= 0.45 * 64
    widths = {c: [b.w for bs in tr.boxes for b in bs if tr.classes[b.label] == c and not b.crowd] for c in med}
    by_median = sorted(med, key=med.get)
    assert all(max(widths[a]) > min(widths[b]) for a, b in zip(by_median, by_median[1:]))  # neighbours overlap


# --- the Visual Genome stand-in ------------------------------------------------------

def test_generated_regions_mostly_hold_several_objects(tmp_path):
    """VG regions 'normally contain several object and visual concepts' (RLSD Sec. III-D-a):
    the stand-in's docstring states 60-75% of regions with two or more object centres."""
    for seed in (0, 1):
        root = vgmod.write_generated_regions(tmp_path / f"vg{seed}", n_images=200, image_size=64, seed=seed,
                                             n_classes=24)
        counts = np.array(vgmod.region_object_counts(root))
        assert 0.60 <= np.mean(counts >= 2) <= 0.75
        assert 0.05 <= np.mean(counts == 0) <= 0.2 and 0.1 <= np.mean(counts == 1) <= 0.35


def test_generated_regions_phrases_match_their_objects(tmp_path):
    root = vgmod.write_generated_regions(tmp_path / "vg", n_images=40, image_size=64, seed=2, n_classes=24)
    regions, objects = vgmod.read_regions(root), vgmod.read_objects(root)
    stuff = set(vgmod.BACKGROUND_PHRASES.values())
    kinds = set()
    for im in regions:
        objs = objects[im.image_id]
        counts = vgmod.centres_inside(im.boxes, objs)
        for phrase, n in zip(im.phrases, counts.tolist()):
            if phrase in stuff:
                kind, ok = "stuff", n == 0
            elif " and " in phrase or phrase.split()[0] in ("two", "three", "four", "five"):
                kind, ok = "multi", n >= 2
            else:
                kind, ok = "single", n >= 1 and phrase.split()[0] in synthetic_scenes.COLOUR_NAMES
            assert ok, (im.image_id, phrase, n)
            kinds.add(kind)
        # every object lies inside some region (each is described, alone or with others)
        inside_any = [bool(vgmod.centres_inside(im.boxes, o[None]).sum()) for o in objs]
        assert all(inside_any)
    assert kinds == {"stuff", "multi", "single"}


def test_generated_regions_are_not_the_clustering_rule():
    """Pairs come from nearest neighbours by box edge distance, not from clustering the centres
    (the ft-RPN targets): a large box touching a small one is one region here, two clusters
    there; two small boxes whose centres are close but edges apart are the other way round."""
    from mlbook.models.rlsd_localization import cluster_box_centres, merge_clusters

    def multi_regions(boxes, names):
        got = vgmod.describe_regions(boxes, names, ["red"] * len(boxes), "sky", 64, np.random.default_rng(0))
        return [box for box, _ in got if int(vgmod.centres_inside(box, boxes).sum()) >= 2]

    def clusters(boxes):
        merged = merge_clusters(boxes, cluster_box_centres(boxes, image_size=64))
        return [b for b in merged.tolist() if int(vgmod.centres_inside(b, boxes).sum()) >= 2]

    touching = [[0, 0, 30, 30], [31, 31, 3, 3]]     # centres 24.7 px apart > 0.25 x diagonal (22.6)
    assert multi_regions(touching, ["bus", "bottle"]) and not clusters(touching)
    apart = [[10, 10, 4, 4], [28, 10, 4, 4]]         # centres 18 px apart, edges 14 px > 0.15 x 64
    assert clusters(apart) and not multi_regions(apart, ["cup", "cup"])
    source = inspect.getsource(vgmod)
    assert "cluster_box_centres" not in source and "merge_clusters" not in source


def test_generated_regions_deterministic(tmp_path):
    args = dict(n_images=12, image_size=48, n_classes=10)
    a = vgmod.write_generated_regions(tmp_path / "a", seed=4, **args)
    b = vgmod.write_generated_regions(tmp_path / "b", seed=4, **args)
    c = vgmod.write_generated_regions(tmp_path / "c", seed=5, **args)
    files = _files(a)
    assert files == _files(b) and len(files) == 12 + 3
    assert all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)
    assert (a / "region_descriptions.json").read_bytes() != (c / "region_descriptions.json").read_bytes()


def test_region_helpers_hand_worked(tmp_path):
    gaps = vgmod.edge_distances([[0, 0, 10, 10], [13, 14, 2, 2], [5, 5, 10, 10]])
    assert gaps[0, 1] == pytest.approx(5.0) and gaps[1, 0] == pytest.approx(5.0)   # 3-4-5 between edges
    assert gaps[0, 2] == 0 and gaps[1, 2] == 0 and (np.diag(gaps) == 0).all()     # overlapping / touching
    counts = vgmod.centres_inside([[0, 0, 10, 10], [20, 20, 5, 5]], [[0, 0, 2, 2], [8, 8, 4, 4], [30, 30, 2, 2]])
    assert counts.tolist() == [2, 0]   # the centre (10, 10) on the edge counts
    assert vgmod._phrase(["cup", "bowl", "cup"]) == "two cups and bowl"
    assert vgmod._phrase(["person", "person", "bus", "chair"]) == "two people, bus and chair"
    assert set(vgmod.BACKGROUND_PHRASES) >= {k for sc in synthetic_scenes.SCENES.values() for k, _ in sc.values()}
    # objects.json: read and checked like the other files
    (tmp_path / "objects.json").write_text(json.dumps(
        [{"image_id": 3, "objects": [{"object_id": 1, "x": 1, "y": 2, "w": 3, "h": 4.5, "names": ["cup"]}]}]))
    assert vgmod.read_objects(tmp_path)[3].tolist() == [[1, 2, 3, 4.5]]
    (tmp_path / "objects.json").write_text(json.dumps([{"image_id": 3, "objects": [{"x": 1, "y": 2, "w": 3}]}]))
    with pytest.raises(DataFormatError, match=r"objects\.json.*image_id 3.*object #0.*'h'"):
        vgmod.read_objects(tmp_path)
