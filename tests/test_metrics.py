"""Metrics against independent implementations (scikit-learn, torchmetrics,
brute force) and hand-worked cases.  Fast (a few seconds)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (average_precision_score, precision_recall_curve,
                             precision_recall_fscore_support)

import mlbook.metrics as M
from mlbook.metrics import _inputs, ranking

DTYPES = [torch.float32, torch.float64]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_problem(n, c, seed, p=0.1, decimals=None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, c, generator=g) < p
    t[0] = True  # every class has a positive
    s = torch.sigmoid(torch.randn(n, c, generator=g, dtype=torch.float64) + 1.5 * t)
    if decimals is not None:  # ties
        s = torch.round(s * 10 ** decimals) / 10 ** decimals
    return s.to(dtype), t


def sk_ap(s, t):
    s, t = np.asarray(s), np.asarray(t).astype(int)
    return np.array([average_precision_score(t[:, j], s[:, j]) for j in range(s.shape[1])])


# ---------------------------------------------------------------- AP / mAP


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,decimals", [(0, None), (1, 2), (2, 1), (3, 3)])
def test_ap_matches_sklearn_random(dtype, seed, decimals):
    s, t = random_problem(500, 7, seed, decimals=decimals, dtype=dtype)
    ap = M.average_precision(s, t)
    assert ap.shape == (7,) and ap.dtype == torch.float64
    np.testing.assert_allclose(ap.numpy(), sk_ap(s.double(), t), rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_ap_on_device_matches_cpu(device):
    s, t = random_problem(300, 5, 9, decimals=2, dtype=torch.float32)
    ap_dev = M.average_precision(s.to(device), t.to(device))
    assert ap_dev.device.type == device
    np.testing.assert_allclose(ap_dev.cpu().numpy(), sk_ap(s, t), atol=1e-12)


def test_ap_all_scores_tied_equals_prevalence():
    # one threshold only: P = #pos/N at R = 1 -> AP = prevalence
    s = torch.full((8, 2), 0.5)
    t = torch.tensor([[1, 1], [0, 1], [0, 0], [1, 0], [0, 0], [0, 0], [0, 0], [0, 0]])
    np.testing.assert_allclose(M.average_precision(s, t).numpy(), [2 / 8, 2 / 8])
    np.testing.assert_allclose(M.average_precision(s, t).numpy(), sk_ap(s, t))


def test_ap_ties_sklearn_vs_stable_hand_worked():
    s = torch.tensor([[0.9, 0.9], [0.5, 0.5], [0.5, 0.5], [0.1, 0.1]])
    t = torch.tensor([[1, 1], [1, 0], [0, 1], [0, 0]])
    # sklearn: thresholds 0.9 (P=1, R=1/2) and 0.5 (TP=2, FP=1: P=2/3, R=1)
    #   AP = 1/2 * 1 + 1/2 * 2/3 = 5/6 for both columns
    np.testing.assert_allclose(M.average_precision(s, t).numpy(), [5 / 6, 5 / 6])
    np.testing.assert_allclose(sk_ap(s, t), [5 / 6, 5 / 6])
    # stable: rows in index order inside the tie.
    #   col 0: pos (row 1) before neg (row 2): P = 1, 1        -> AP = 1
    #   col 1: neg (row 1) before pos (row 2): P = 1, 2/3      -> AP = 5/6
    np.testing.assert_allclose(M.average_precision(s, t, ties="stable").numpy(), [1.0, 5 / 6])


def test_ap_stable_without_ties_equals_sklearn():
    s, t = random_problem(400, 6, 4)  # continuous scores: no ties
    np.testing.assert_allclose(M.average_precision(s, t, ties="stable").numpy(),
                               sk_ap(s, t), atol=1e-12)


def test_all_positive_class_and_no_positive_class():
    s, t = random_problem(50, 4, 5)
    t[:, 1] = True   # all positive -> AP = 1
    t[:, 2] = False  # no positive -> NaN, left out of mAP
    ap = M.average_precision(s, t)
    assert ap[1] == pytest.approx(1.0)
    assert math.isnan(float(ap[2]))
    ref = sk_ap(s[:, [0, 1, 3]], t[:, [0, 1, 3]])
    np.testing.assert_allclose(ap[[0, 1, 3]].numpy(), ref, atol=1e-12)
    assert M.mean_average_precision(s, t) == pytest.approx(ref.mean(), abs=1e-12)
    assert not math.isnan(M.mean_average_precision(s, t))


def test_single_image():
    s = torch.tensor([[0.3, 0.9, 0.1]])
    t = torch.tensor([[1, 0, 0]])
    ap = M.average_precision(s, t)
    assert ap[0] == 1.0 and math.isnan(float(ap[1])) and math.isnan(float(ap[2]))
    assert M.mean_average_precision(s, t) == 1.0
    assert math.isnan(M.mean_average_precision(s, torch.zeros_like(t)))


@pytest.mark.parametrize("seed", [0, 1])
def test_map_matches_torchmetrics(seed):
    from torchmetrics.classification import MultilabelAveragePrecision

    s, t = random_problem(600, 9, seed, decimals=2, dtype=torch.float32)
    tm = MultilabelAveragePrecision(num_labels=9, average="macro", thresholds=None)
    ref = float(tm(s, t.long()))
    assert M.mean_average_precision(s, t) == pytest.approx(ref, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ignore_equals_deleting_entries(seed):
    s, t = random_problem(300, 5, seed, decimals=2)
    g = torch.Generator().manual_seed(100 + seed)
    ign = torch.rand(s.shape, generator=g) < 0.2
    ign[0] = False
    ap = M.average_precision(s, t, ignore=ign)
    for j in range(5):
        keep = ~ign[:, j]
        ref = average_precision_score(t[keep, j].int().numpy(), s[keep, j].numpy())
        assert float(ap[j]) == pytest.approx(ref, abs=1e-12)
    # difficult="negative": those entries become negatives
    apn = M.average_precision(s, t, ignore=ign, difficult="negative")
    np.testing.assert_allclose(apn.numpy(), sk_ap(s, t & ~ign), atol=1e-12)
    assert not torch.allclose(ap, apn)
    assert M.mean_average_precision(s, t, ign) == pytest.approx(float(ap.mean()))


def test_ignored_positive_class_becomes_nan():
    s = torch.tensor([[0.9, 0.2], [0.1, 0.8]])
    t = torch.tensor([[1, 0], [0, 1]])
    ign = torch.tensor([[True, False], [False, False]])
    ap = M.average_precision(s, t, ignore=ign)
    assert math.isnan(float(ap[0])) and ap[1] == 1.0


# ---------------------------------------------------------------- mAP@k


def brute_apk(s, t, k, normalize):
    out = []
    for j in range(s.shape[1]):
        order = sorted(range(s.shape[0]), key=lambda i: (-float(s[i, j]), i))[:k]
        hits, acc = 0, 0.0
        for r, i in enumerate(order, 1):
            if t[i, j]:
                hits += 1
                acc += hits / r
        g = int(t[:, j].sum())
        if g == 0:
            continue
        den = min(k, g) if normalize == "min" else hits
        out.append(acc / den if den else 0.0)
    return float(np.mean(out))


def test_map_at_k_hand_worked():
    s = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    t = torch.tensor([[0], [1], [1], [0]])
    # top-2 = rows 0 (neg), 1 (pos): P@2 = 1/2 -> sum = 1/2
    # normalize="min": / min(2, G=2) = 1/4 ; "retrieved": / 1 hit = 1/2
    assert M.map_at_k(s, t, k=2) == pytest.approx(0.25)
    assert M.map_at_k(s, t, k=2, normalize="retrieved") == pytest.approx(0.5)
    # k = 3: P@2 = 1/2, P@3 = 2/3 -> (1/2 + 2/3)/2 = 7/12
    assert M.map_at_k(s, t, k=3) == pytest.approx(7 / 12)
    # per image: the single "image" of s.T has labels ranked 0,1,2,3
    assert M.map_at_k(s.T, t.T, k=3, per="image") == pytest.approx(7 / 12)


@pytest.mark.parametrize("normalize", ["min", "retrieved"])
@pytest.mark.parametrize("k", [1, 10, 1000])
def test_map_at_k_vs_brute_force(normalize, k):
    s, t = random_problem(120, 6, 7, decimals=1)  # many ties: index order matters
    assert M.map_at_k(s, t, k, normalize=normalize) == pytest.approx(
        brute_apk(s, t, k, normalize), abs=1e-12)
    assert M.map_at_k(s, t, k, per="image", normalize=normalize) == pytest.approx(
        brute_apk(s.T, t.T, k, normalize), abs=1e-12)


def test_map_at_k_ignore_removes_entries():
    s, t = random_problem(60, 3, 8)
    ign = torch.zeros_like(t)
    ign[:5] = True
    got = M.map_at_k(s, t, 10, ignore=ign)
    assert got == pytest.approx(brute_apk(s[5:], t[5:], 10, "min"), abs=1e-12)


# ---------------------------------------------------------------- P / R / F1

# hand-worked example: 3 images x 4 classes
HS = torch.tensor([[0.9, 0.8, 0.3, 0.1],
                   [0.2, 0.7, 0.6, 0.4],
                   [0.6, 0.1, 0.2, 0.95]])
HT = torch.tensor([[1, 0, 1, 0],
                   [0, 1, 0, 0],
                   [1, 0, 0, 1]])


def test_prf_top2_hand_worked_and_cf1_variants():
    # top-2: img0 {0,1}, img1 {1,2}, img2 {3,0}
    #   c0: Np=2 Nc=2 Ng=2 -> P=1,   R=1
    #   c1: Np=2 Nc=1 Ng=1 -> P=1/2, R=1
    #   c2: Np=1 Nc=0 Ng=1 -> P=0,   R=0
    #   c3: Np=1 Nc=1 Ng=1 -> P=1,   R=1
    # CP = 2.5/4 = 0.625, CR = 3/4; CF1 harmonic = 2*.625*.75/1.375 = 15/22
    # mean_f1 = mean(1, 2*1/(2+1), 0, 1) = (8/3)/4 = 2/3  (differs from 15/22)
    # OP = 4/6, OR = 4/5, OF1 = 2*(2/3)(4/5)/(2/3+4/5) = 8/11
    r = M.prf(HS, HT, k=2)
    assert r["CP"] == pytest.approx(0.625)
    assert r["CR"] == pytest.approx(0.75)
    assert r["CF1"] == pytest.approx(15 / 22)
    assert r["OP"] == pytest.approx(2 / 3)
    assert r["OR"] == pytest.approx(0.8)
    assert r["OF1"] == pytest.approx(8 / 11)
    rm = M.prf(HS, HT, k=2, cf1="mean_f1")
    assert rm["CF1"] == pytest.approx(2 / 3)
    assert abs(rm["CF1"] - r["CF1"]) > 0.01
    assert M.prf(HS, HT, k=2, cf1="geometric")["CF1"] == pytest.approx(math.sqrt(0.625 * 0.75))
    # same six numbers except CF1
    assert {k: v for k, v in rm.items() if k != "CF1"} == {k: v for k, v in r.items() if k != "CF1"}


def test_prf_top3_with_and_without_floor():
    # top-3: img0 {0,1,2}, img1 {1,2,3}, img2 {3,0,2}
    #   P: c0 2/2, c1 1/2, c2 1/3, c3 1/2 -> CP = (1+.5+1/3+.5)/4 = 7/12 ; every R = 1
    #   OP = 5/9, OR = 5/5
    r = M.prf(HS, HT, k=3)
    assert r["CP"] == pytest.approx(7 / 12)
    assert r["CR"] == pytest.approx(1.0) and r["OR"] == pytest.approx(1.0)
    assert r["OP"] == pytest.approx(5 / 9)
    # floor 0.5 drops 0.3, 0.4 and 0.2 -> the top-2 sets above = threshold 0.5
    rf = M.prf(HS, HT, k=3, floor=0.5)
    assert rf == M.prf(HS, HT, k=2) == M.prf(HS, HT, threshold=0.5)
    assert rf["OP"] == pytest.approx(2 / 3)


def test_prf_empty_precision_options():
    # threshold 0.75: img0 {0 (.9), 1 (.8)}, img1 {}, img2 {3 (.95)}
    #   c0: Np=1 Nc=1 Ng=2 -> P=1 R=1/2
    #   c1: Np=1 Nc=0 Ng=1 -> P=0 R=0
    #   c2: Np=0      Ng=1 -> P=empty, R=0
    #   c3: Np=1 Nc=1 Ng=1 -> P=1 R=1
    # CP: zero (1+0+0+1)/4 = .5 ; one (1+0+1+1)/4 = .75 ; skip (1+0+1)/3 = 2/3
    # CR = (.5+0+0+1)/4 = .375 ; OP = 2/3 ; OR = 2/5
    got = {e: M.prf(HS, HT, threshold=0.75, empty_precision=e) for e in ("zero", "one", "skip")}
    assert got["zero"]["CP"] == pytest.approx(0.5)
    assert got["one"]["CP"] == pytest.approx(0.75)
    assert got["skip"]["CP"] == pytest.approx(2 / 3)
    for e in got:
        assert got[e]["CR"] == pytest.approx(0.375)
        assert got[e]["OP"] == pytest.approx(2 / 3) and got[e]["OR"] == pytest.approx(0.4)
        assert got[e]["CF1"] == pytest.approx(2 * got[e]["CP"] * 0.375 / (got[e]["CP"] + 0.375))


def test_prf_no_prediction_at_all():
    for e, cp, op in (("zero", 0.0, 0.0), ("one", 1.0, 1.0)):
        r = M.prf(HS, HT, threshold=2.0, empty_precision=e)
        assert r["CP"] == cp and r["OP"] == op and r["CR"] == 0.0 and r["OR"] == 0.0
        assert r["OF1"] == 0.0 and r["CF1"] == 0.0
    r = M.prf(HS, HT, threshold=2.0, empty_precision="skip")
    assert math.isnan(r["CP"]) and math.isnan(r["OP"]) and math.isnan(r["CF1"])


def test_k_larger_than_c_predicts_everything():
    for k in (4, 5, 100):
        r = M.prf(HS, HT, k=k)
        # every label predicted: recall 1, OP = positives / entries = 5/12
        assert r["CR"] == 1.0 and r["OR"] == 1.0
        assert r["OP"] == pytest.approx(5 / 12)
        assert r["CP"] == pytest.approx(np.mean([2 / 3, 1 / 3, 1 / 3, 1 / 3]))


@pytest.mark.parametrize("k", [2, 9])  # argmax path and sort path
def test_topk_ties_go_to_lower_class_index(k):
    s = torch.full((2, 12), 0.5)
    s[1, 7] = 0.9
    pred = M.predict_labels(s, k=k)
    assert pred[0].nonzero().flatten().tolist() == list(range(k))
    others = [i for i in range(12) if i != 7][:k - 1]  # 7 first, then lowest indices
    assert pred[1].nonzero().flatten().tolist() == sorted([7] + others)


def test_threshold_strict():
    s = torch.tensor([[0.5, 0.49, 0.51]])
    assert M.predict_labels(s, threshold=0.5).tolist() == [[True, False, True]]
    assert M.predict_labels(s, threshold=0.5, strict=True).tolist() == [[False, False, True]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("rule", [{"k": 3}, {"k": 5}, {"k": 3, "floor": 0.5}, {"threshold": 0.5}])
def test_prf_vs_sklearn_on_binarised_predictions(dtype, seed, rule):
    s, t = random_problem(200, 8, seed, p=0.2, decimals=1, dtype=dtype)
    s_np = s.double().numpy()
    # independent binarisation (numpy stable argsort on -s: ties -> lower index)
    if "k" in rule:
        idx = np.argsort(-s_np, axis=1, kind="stable")[:, :rule["k"]]
        pred = np.zeros(s.shape, dtype=int)
        np.put_along_axis(pred, idx, 1, axis=1)
        if "floor" in rule:
            pred &= (s_np >= rule["floor"])
    else:
        pred = (s_np >= rule["threshold"]).astype(int)
    y = t.numpy().astype(int)
    assert (M.predict_labels(s, **rule).numpy() == pred.astype(bool)).all()
    p0, r0, f0, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    p1, _, _, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=1)
    pm, rm, fm, _ = precision_recall_fscore_support(y, pred, average="micro", zero_division=0)
    r = M.prf(s, t, **rule)
    assert r["CP"] == pytest.approx(p0, abs=1e-12)
    assert r["CR"] == pytest.approx(r0, abs=1e-12)
    assert r["CF1"] == pytest.approx(2 * p0 * r0 / (p0 + r0), abs=1e-12)
    assert M.prf(s, t, **rule, cf1="mean_f1")["CF1"] == pytest.approx(f0, abs=1e-12)
    assert M.prf(s, t, **rule, empty_precision="one")["CP"] == pytest.approx(p1, abs=1e-12)
    assert (r["OP"], r["OR"], r["OF1"]) == pytest.approx((pm, rm, fm), abs=1e-12)


def test_prf_ignore_entries_are_not_predicted_nor_counted():
    ign = torch.zeros_like(HT, dtype=torch.bool)
    ign[0, 0] = True  # img0's best label (a positive) is ignored
    # top-2 without (img0, c0): img0 {1, 2}, img1 {1, 2}, img2 {3, 0}
    #   c0: Np=1 Nc=1 Ng=1 (img0 ignored) -> P=1 R=1
    #   c1: Np=2 Nc=1 Ng=1 -> P=1/2 R=1
    #   c2: Np=2 Nc=1 Ng=1 -> P=1/2 R=1
    #   c3: Np=1 Nc=1 Ng=1 -> P=1 R=1
    r = M.prf(HS, HT, ign, k=2)
    assert r["CP"] == pytest.approx(0.75) and r["CR"] == pytest.approx(1.0)
    assert r["OP"] == pytest.approx(4 / 6) and r["OR"] == pytest.approx(1.0)
    # difficult="negative": (img0, c0) is a scored negative -> top-2 of img0 = {0, 1}
    rn = M.prf(HS, HT, ign, k=2, difficult="negative")
    #   c0: Np=2 Nc=1 Ng=1 ; c1: 2,1,1 ; c2: 1,0,1 ; c3: 1,1,1
    assert rn["CP"] == pytest.approx((0.5 + 0.5 + 0 + 1) / 4)
    assert rn["OP"] == pytest.approx(3 / 6) and rn["OR"] == pytest.approx(3 / 4)


def test_prf_float32_equals_float64():
    s, t = random_problem(300, 10, 11, p=0.2)
    for rule in ({"k": 3}, {"threshold": 0.5}):
        a = M.prf(s, t, **rule)
        b = M.prf(s.float(), t, **rule)
        assert a == pytest.approx(b, abs=1e-9)


# ---------------------------------------------------------------- PR curve


def test_pr_curve_matches_sklearn():
    s, t = random_problem(200, 3, 12, decimals=2)
    curves = M.pr_curve(s, t)
    for j in range(3):
        p, r, thr = precision_recall_curve(t[:, j].int().numpy(), s[:, j].numpy())
        # sklearn: increasing thresholds + final (P=1, R=0); ours: decreasing, no extra point
        c = M.pr_curve(s, t, cls=j)
        np.testing.assert_allclose(c["thresholds"].numpy(), thr[::-1])
        np.testing.assert_allclose(c["precision"].numpy(), p[:-1][::-1], atol=1e-12)
        np.testing.assert_allclose(c["recall"].numpy(), r[:-1][::-1], atol=1e-12)
        np.testing.assert_allclose(curves[j]["precision"].numpy(), c["precision"].numpy())


# ---------------------------------------------------------------- bundles


def test_evaluate_all_and_summary_are_consistent():
    s, t = random_problem(150, 6, 13, p=0.2, decimals=2)
    d = M.evaluate_all(s, t)
    assert set(d["prf"]) == set(M.PROTOCOLS)
    assert len(d["prf"]["top3"]) == len(M.CF1_OPTIONS) * len(M.EMPTY_PRECISION_OPTIONS)
    v = M.variant_key("mean_f1", "skip")
    assert d["prf"]["top5+floor0.5"][v] == M.prf(s, t, k=5, floor=0.5, cf1="mean_f1",
                                                 empty_precision="skip")
    assert d["mAP"] == pytest.approx(float(np.mean(sk_ap(s, t))), abs=1e-12)
    assert d["mAP@10"]["per=class,normalize=min"] == M.map_at_k(s, t, 10)
    assert set(d["conventions"]) == set(M.PAPER_CONVENTIONS)
    # RLSD: top-3 is the primary protocol, the 0.5 floor a variant (PAPER_CONVENTIONS["rlsd"])
    assert M.summary(s, t, protocol="rlsd") == {"mAP": d["mAP"], **M.prf(s, t, k=3)}
    assert M.summary(s, t, protocol="top3+floor0.5") == {"mAP": d["mAP"], **M.prf(s, t, k=3, floor=0.5)}
    assert M.summary(s, t, protocol="all") == {"mAP": d["mAP"], **M.prf(s, t, threshold=0.5)}
    with pytest.raises(ValueError, match="unknown protocol"):
        M.summary(s, t, protocol="top4")


def test_paper_conventions_are_complete():
    for key in ("order_free_rnn", "rlsd", "transformation_ranking", "cadm", "cnn_rnn"):
        conv = M.PAPER_CONVENTIONS[key]
        assert conv["cf1"] in M.CF1_OPTIONS
        assert conv["empty_precision"] in M.EMPTY_PRECISION_OPTIONS
        assert all(p in M.PROTOCOLS for p in conv["protocols"])
        assert len(conv["source"]) > 40


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_raise():
    s = torch.rand(4, 3)
    with pytest.raises(ValueError, match="shape"):
        M.average_precision(s, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="0 and 1"):
        M.prf(s, torch.full((4, 3), 2), k=1)
    bad = s.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        M.average_precision(bad, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="exactly one"):
        M.prf(s, torch.zeros(4, 3), k=1, threshold=0.5)
    with pytest.raises(ValueError, match="ties"):
        M.average_precision(s, torch.zeros(4, 3), ties="mean")
    with pytest.raises(ValueError, match="empty_precision"):
        M.prf(s, torch.zeros(4, 3), k=1, empty_precision="nan")


# ---------------------------------------------------------------- evaluate.py (files)


def test_evaluate_files_npy_and_csv(tmp_path):
    from mlbook.evaluate import evaluate_files, format_report, load_matrix

    s, t = random_problem(40, 5, 14, p=0.3, decimals=2)
    np.save(tmp_path / "s.npy", s.numpy())
    np.savetxt(tmp_path / "t.csv", t.numpy().astype(int), fmt="%d", delimiter=",",
               header="a,b,c,d,e", comments="")
    ign = np.zeros(s.shape, dtype=bool)
    ign[3, 2] = True
    np.save(tmp_path / "i.npy", ign)
    assert torch.equal(load_matrix(tmp_path / "t.csv"), t.double())
    d = evaluate_files(tmp_path / "s.npy", tmp_path / "t.csv", tmp_path / "i.npy")
    assert d["mAP"] == pytest.approx(M.mean_average_precision(s, t, torch.from_numpy(ign)))
    assert d["prf"]["top3"][M.variant_key("harmonic", "zero")] == M.prf(
        s, t, torch.from_numpy(ign), k=3)
    text = format_report(d)
    for word in ("mAP@10", "top3+floor0.5", "rlsd", "cadm", "transformation_ranking", "s.npy"):
        assert word in text


def test_evaluate_files_errors_name_the_file(tmp_path):
    from mlbook.evaluate import evaluate_files, load_matrix

    s = np.random.default_rng(0).random((6, 3))
    np.save(tmp_path / "s.npy", s)
    np.save(tmp_path / "t_shape.npy", np.zeros((6, 4)))
    tv = np.zeros((6, 3))
    tv[2, 1] = -1
    np.save(tmp_path / "t_voc.npy", tv)
    np.save(tmp_path / "t_ok.npy", np.ones((6, 3)))
    bad = s.copy()
    bad[4, 2] = np.inf
    np.save(tmp_path / "s_inf.npy", bad)
    (tmp_path / "ragged.csv").write_text("1,0,1\n0,1\n")
    (tmp_path / "text.csv").write_text("1,0,1\n0,x,1\n")
    with pytest.raises(ValueError, match="t_shape.npy.*shape"):
        evaluate_files(tmp_path / "s.npy", tmp_path / "t_shape.npy")
    with pytest.raises(ValueError, match=r"t_voc.npy.*0 or 1.*row 2, column 1"):
        evaluate_files(tmp_path / "s.npy", tmp_path / "t_voc.npy")
    with pytest.raises(ValueError, match=r"s_inf.npy.*finite.*row 4, column 2"):
        evaluate_files(tmp_path / "s_inf.npy", tmp_path / "t_ok.npy")
    with pytest.raises(ValueError, match=r"ragged.csv: line 2"):
        load_matrix(tmp_path / "ragged.csv")
    with pytest.raises(ValueError, match=r"text.csv: line 2"):
        load_matrix(tmp_path / "text.csv")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_matrix(tmp_path / "missing.npy")


# ---------------------------------------------------------------- AP: the one-sort ranking


def stable_rank_scores(s):
    """Scores made distinct by the "stable" order (score desc, then lower row first): sklearn's AP
    on them is the stable-ties AP of ``s``."""
    s = np.asarray(s, dtype=np.float64)
    order = np.argsort(-s, axis=0, kind="stable")
    out = np.empty(s.shape)
    np.put_along_axis(out, order, -np.arange(len(s), dtype=np.float64)[:, None], axis=0)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_ap_stable_ties_match_sklearn_on_the_stable_order(dtype, decimals):
    s, t = random_problem(400, 6, 20, decimals=decimals, dtype=dtype)
    ign = torch.rand(s.shape, generator=torch.Generator().manual_seed(21)) < 0.15
    ap = M.average_precision(s, t, ties="stable")
    np.testing.assert_allclose(ap.numpy(), sk_ap(stable_rank_scores(s), t), rtol=0, atol=1e-12)
    api = M.average_precision(s, t, ign, ties="stable")
    for j in range(6):   # ignoring = deleting: the stable order of the kept entries
        keep = ~ign[:, j].numpy()
        ref = average_precision_score(t[keep, j].int().numpy(), stable_rank_scores(s[keep, j:j + 1])[:, 0])
        assert float(api[j]) == pytest.approx(ref, abs=1e-12)


def test_ap_key_order_negative_scores_signed_zeros_and_extremes():
    # both score paths: float32 packing, and float64 values float32 would round (ranked by argsort)
    values = [-3e38, -1.5, -1e-40, -0.0, 0.0, 1e-45, 0.25, 0.25, 7.0, 3e38]
    for s in (torch.tensor(values, dtype=torch.float32), torch.tensor(values, dtype=torch.float64) + 1e-300):
        key = ranking._descending_key(s.float() if s.dtype == torch.float32 else s)
        ref = torch.argsort(-s.double(), stable=True)
        assert torch.equal(torch.argsort(key, stable=True), ref)
    key = ranking._descending_key(torch.tensor([-0.0, 0.0]))
    assert key[0] == key[1]                                         # -0.0 and 0.0 tie, as in sklearn
    s = torch.tensor([[0.0], [-0.0], [0.0], [-1.0]])
    t = torch.tensor([[0], [1], [0], [1]])
    np.testing.assert_allclose(M.average_precision(s, t).numpy(), sk_ap(s, t), atol=1e-15)


@pytest.mark.parametrize("exact", [True, False])
def test_torch_sort_path_equals_numpy_path(exact):
    # the branch a CUDA tensor takes (torch.sort), run on CPU, against numpy's
    s, t = random_problem(300, 5, 22, decimals=2, dtype=torch.float64)
    if exact:
        s = s.float().double()                                     # float32 holds it: packed keys
    ign = torch.rand(s.shape, generator=torch.Generator().manual_seed(23)) < 0.1
    sc, tg, valid = _inputs._check(s, t, ign)
    a = ranking._sorted_keys(sc, tg, valid, use_numpy=True)
    b = ranking._sorted_keys(sc, tg, valid, use_numpy=False)
    assert torch.equal(a, b)
    assert bool((a[:, 1:] > a[:, :-1]).all())                      # every row strictly ascending
    assert torch.equal(ranking._key_images(a).sort(1).values, torch.arange(300).expand(5, 300))


def test_ap_integer_scores_and_float64_that_float32_holds():
    s, t = random_problem(200, 4, 24, decimals=1)
    ints = (s * 10).round().long()                                 # integer scores (ties)
    np.testing.assert_allclose(M.average_precision(ints, t).numpy(), sk_ap(ints, t), atol=1e-12)
    s32 = s.float().double()                                       # float64 through the 32-bit keys
    np.testing.assert_allclose(M.average_precision(s32, t).numpy(), sk_ap(s32, t), atol=1e-12)


def test_ap_empty_cases():
    s = torch.rand(5, 3)
    assert M.average_precision(s, torch.zeros(5, 3)).isnan().all()
    w = torch.ones(2, 5)
    assert M.average_precision(s, torch.zeros(5, 3), weights=w).shape == (2, 3)
    assert M.average_precision(s, torch.ones(5, 3), weights=torch.zeros(0, 5)).shape == (0, 3)
    # every entry of class 1 ignored, class 2 without positive: NaN; class 0 as usual
    t = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    ign = torch.zeros(5, 3, dtype=torch.bool)
    ign[:, 1] = True
    ap = M.average_precision(s, t, ign)
    assert ap[1].isnan() and ap[2].isnan()
    assert float(ap[0]) == pytest.approx(float(sk_ap(s[:, :1], t[:, :1])[0]), abs=1e-12)


# ---------------------------------------------------------------- AP on bootstrap resamples


def explicit_resample(weights_row, *arrays):
    idx = np.repeat(np.arange(len(weights_row)), np.asarray(weights_row, dtype=np.int64))
    return [np.asarray(a)[idx] for a in arrays]


@pytest.mark.parametrize("ties", ["sklearn", "stable"])
@pytest.mark.parametrize("decimals", [None, 1])
def test_weighted_ap_equals_sklearn_on_explicit_resamples(ties, decimals):
    s, t = random_problem(120, 5, 25, p=0.2, decimals=decimals)
    ign = torch.rand(s.shape, generator=torch.Generator().manual_seed(26)) < 0.1
    weights = M.bootstrap_weights(40, 120, seed=3)
    ap = M.average_precision(s, t, ign, ties=ties, weights=weights)
    assert ap.shape == (40, 5) and ap.dtype == torch.float64
    # an image drawn k times is k tied copies: with "stable" ties the copies share one threshold,
    # so the reference ranks the images once (stable order) and resamples those ranks
    ranked = stable_rank_scores(s) if ties == "stable" else s.numpy()
    for r in (0, 1, 17, 39):
        rs, rt, ri = explicit_resample(weights[r], ranked, t.numpy(), ign.numpy())
        for j in range(5):
            keep = ~ri[:, j]
            if rt[keep, j].sum() == 0:
                assert math.isnan(float(ap[r, j]))
                continue
            ref = average_precision_score(rt[keep, j].astype(int), rs[keep, j])
            assert float(ap[r, j]) == pytest.approx(ref, abs=1e-12)


def test_weighted_ap_row_of_ones_is_the_plain_ap():
    s, t = random_problem(500, 8, 27, decimals=2, dtype=torch.float32)
    ign = torch.rand(s.shape, generator=torch.Generator().manual_seed(28)) < 0.05
    for ties in ("sklearn", "stable"):
        plain = M.average_precision(s, t, ign, ties=ties)
        weighted = M.average_precision(s, t, ign, ties=ties, weights=torch.ones(3, 500, dtype=torch.float64))
        np.testing.assert_allclose(weighted.numpy(), plain[None].expand(3, -1).numpy(), rtol=0, atol=1e-15)


def test_weighted_ap_any_weights_chunks_and_exactness_paths():
    s, t = random_problem(150, 4, 29, decimals=1)
    w = M.bootstrap_weights(75, 150, seed=4)                       # > one chunk of 32 and of 8 rows
    ap = M.average_precision(s, t, weights=w)
    one_by_one = torch.cat([M.average_precision(s, t, weights=w[r:r + 1]) for r in range(75)])
    np.testing.assert_allclose(ap.numpy(), one_by_one.numpy(), rtol=0, atol=1e-15)
    # AP does not change when every weight of a row is scaled: non-integer weights take the
    # float64 path, huge integer row sums (>= 2**24) the float64 running sums; both stay exact
    np.testing.assert_allclose(M.average_precision(s, t, weights=w / 3).numpy(), ap.numpy(), atol=1e-13)
    np.testing.assert_allclose(M.average_precision(s, t, weights=w * 2 ** 20).numpy(), ap.numpy(), atol=1e-13)
    for typed in (w.float(), w.long()):                             # float32 or integer counts
        np.testing.assert_allclose(M.average_precision(s, t, weights=typed).numpy(), ap.numpy(), atol=1e-15)


def test_weighted_ap_bad_weights():
    s, t = random_problem(20, 2, 30)
    for bad in (torch.ones(2, 19), -torch.ones(1, 20), torch.full((1, 20), float("nan"))):
        with pytest.raises(ValueError, match="weights"):
            M.average_precision(s, t, weights=bad)


def test_weighted_ap_empty_resample_rows_are_nan():
    s, t = random_problem(30, 3, 31)
    w = torch.zeros(2, 30)
    w[1, 0] = 1.0                       # only image 0 drawn: every class has a positive there
    ap = M.average_precision(s, t, weights=w)
    assert ap[0].isnan().all()
    assert torch.equal(ap[1], torch.ones(3, dtype=torch.float64))


def test_pr_curve_with_ignore_matches_sklearn_on_kept_entries():
    s, t = random_problem(150, 3, 32, decimals=2)
    ign = torch.rand(s.shape, generator=torch.Generator().manual_seed(33)) < 0.2
    for j, c in enumerate(M.pr_curve(s, t, ignore=ign)):
        keep = ~ign[:, j]
        p, r, thr = precision_recall_curve(t[keep, j].int().numpy(), s[keep, j].numpy())
        np.testing.assert_allclose(c["thresholds"].numpy(), thr[::-1])
        np.testing.assert_allclose(c["precision"].numpy(), p[:-1][::-1], atol=1e-12)
        np.testing.assert_allclose(c["recall"].numpy(), r[:-1][::-1], atol=1e-12)


# ---------------------------------------------------------------- AP of a random ranking


def brute_random_ap(n, m):
    """Mean AP over every permutation of n items, m of them positive (the first m)."""
    import itertools

    total, count = 0.0, 0
    for perm in itertools.permutations(range(n)):
        hits, acc = 0, 0.0
        for rank, item in enumerate(perm, 1):
            if item < m:
                hits += 1
                acc += hits / rank
        total += acc / m
        count += 1
    return total / count


def test_random_ranking_ap_equals_enumeration_of_all_permutations():
    for n in range(1, 7):
        t = torch.zeros(n, n + 1)
        for m in range(n + 1):
            t[:m, m] = 1                                           # column m has m positives
        got = M.random_ranking_ap(t)
        assert math.isnan(float(got[0]))                           # m = 0: no positive
        for m in range(1, n + 1):
            assert float(got[m]) == pytest.approx(brute_random_ap(n, m), abs=1e-12)
    h = sum(1 / p for p in range(1, 11))
    t = torch.zeros(10, 2)
    t[0, 0] = 1
    t[:, 1] = 1
    assert M.random_ranking_ap(t).tolist() == pytest.approx([h / 10, 1.0], abs=1e-13)   # m = 1, m = n


def test_random_ranking_ap_monte_carlo_at_600_images_exceeds_prevalence():
    n, m, k = 600, 26, 3000
    t = torch.zeros(n, 1, dtype=torch.bool)
    t[:m] = True
    exact = float(M.random_ranking_ap(t)[0])
    g = torch.Generator().manual_seed(34)
    scores = torch.argsort(torch.rand(n, k, generator=g), dim=0).double()   # k random rankings
    ap = M.average_precision(scores, t.expand(n, k))
    se = float(ap.std()) / math.sqrt(k)
    assert abs(float(ap.mean()) - exact) < 4 * se
    assert exact - m / n > 10 * se                                 # the prevalence is too low
    assert exact == pytest.approx((m - 1) / (n - 1) + sum(1 / p for p in range(1, n + 1)) * (n - m) / (n * (n - 1)))


def test_random_ranking_ap_weights_and_ignore():
    g = torch.Generator().manual_seed(35)
    t = torch.rand(12, 3, generator=g) < 0.4
    t[0] = True
    ign = torch.zeros(12, 3, dtype=torch.bool)
    ign[1:4, 2] = True
    w = torch.tensor([[2.0, 0, 1, 3, 0, 1, 1, 0, 2, 1, 1, 0]])
    got = M.random_ranking_ap(t, ign, weights=torch.cat([torch.ones(1, 12), w]))
    assert got.shape == (2, 3)
    assert torch.equal(got[0], M.random_ranking_ap(t, ign))
    idx = torch.repeat_interleave(torch.arange(12), w[0].long())   # the resample as a list of items
    np.testing.assert_allclose(got[1].numpy(), M.random_ranking_ap(t[idx], ign[idx]).numpy(), atol=1e-13)
    keep = ~ign[:, 2]
    assert float(got[0, 2]) == pytest.approx(float(M.random_ranking_ap(t[keep, 2:3])[0]), abs=1e-13)


# ---------------------------------------------------------------- evidence helpers


def boxes_case():
    from mlbook.data.base import Box

    # image 0: 100 x 100; image 1: 200 x 50 (area 10,000 each)
    boxes = [[Box(0, 0, 10, 10, label=0), Box(5, 5, 50, 50, label=0), Box(0, 0, 20, 5, label=2)],
             [Box(0, 0, 100, 25, label=1), Box(1, 1, 0, 7, label=2)]]
    return boxes, [(100, 100), (200, 50)]


def test_relative_sizes_and_object_size_hits():
    boxes, sizes = boxes_case()
    rel = M.relative_sizes(boxes, sizes)
    assert rel == {0: pytest.approx([0.1, 0.5]), 2: pytest.approx([0.1, 0.0]), 1: pytest.approx([0.5])}
    pred = torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    images, size, hits = M.object_size_hits(pred, boxes, sizes)
    # one entry per (image, label): its largest box
    assert images.tolist() == [0, 0, 1, 1]
    assert size.tolist() == pytest.approx([0.5, 0.1, 0.5, 0.0])
    assert hits.tolist() == [True, False, False, True]
    assert images.dtype == torch.long and hits.dtype == torch.bool


def test_size_buckets_and_bucket_recall():
    sizes = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    bucket, edges = M.size_buckets(sizes, n=3)
    # quantiles 1/3 and 2/3 of six sizes, linearly interpolated: positions 5/3 and 10/3
    assert edges == pytest.approx([0.2 + 0.1 * 2 / 3, 0.4 + 0.1 / 3], abs=1e-7)
    assert bucket.tolist() == [0, 0, 1, 1, 2, 2]
    hits = torch.tensor([True, False, True, True, False, False])
    images = torch.tensor([0, 1, 1, 2, 2, 0])
    w = torch.tensor([[1.0, 1, 1], [3, 0, 1], [0, 0, 0]])
    # bucket 0 = objects 0 (image 0, hit) and 1 (image 1, miss)
    assert M.bucket_recall(hits, images, bucket, 0, w).tolist() == pytest.approx([0.5, 1.0, 0.0])
    # bucket 1 = objects 2 (image 1, hit) and 3 (image 2, hit)
    assert M.bucket_recall(hits, images, bucket, 1, w).tolist() == pytest.approx([1.0, 1.0, 0.0])


def test_recall_by_area():
    boxes, sizes = boxes_case()
    pred = torch.tensor([[1, 0, 0], [0, 0, 1]], dtype=torch.bool)
    # areas: (0, label 0) 0.25 hit, (0, 2) 0.01 miss, (1, 1) 0.25 miss, (1, 2) 0.0 hit
    recall, counts = M.recall_by_area(pred, boxes, sizes, [0.0, 0.005, 0.25, 1.0])
    assert counts == [1, 3, 0]                       # an area equal to an edge goes to the lower bin
    assert recall[0] == 1.0 and recall[1] == pytest.approx(1 / 3) and math.isnan(recall[2])


def test_weighted_mean_pair_mean_positive_wins():
    w = torch.tensor([[1.0, 1, 1], [2, 0, 1]])
    images, values = torch.tensor([0, 0, 2]), torch.tensor([1.0, 3.0, 5.0])
    assert M.weighted_mean(images, values, w).tolist() == pytest.approx([3.0, (2 + 6 + 5) / 5])
    v = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    mask = torch.tensor([[1, 0], [1, 1], [0, 1]], dtype=torch.bool)
    assert M.pair_mean(v, mask, w).tolist() == pytest.approx([(1 + 3 + 4 + 6) / 4, (2 * 1 + 6) / 3])
    total = torch.tensor([[9.0, 1.0, 2.0], [1.0, 3.0, 4.0], [5.0, 5.0, 0.0]])
    y = torch.tensor([[1, 0, 0], [1, 0, 1], [1, 1, 0]])
    # image 0: 9 > 1, 9 > 2 -> 2 of 2; image 1: 1 < 3, 4 > 3 -> 1 of 2; image 2: 5 > 0 twice -> 2 of 2
    assert M.positive_wins(total, y, w).tolist() == pytest.approx([5 / 6, (2 * 2 + 2) / (2 * 2 + 2)])


def test_unseen_recall_at():
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.7], [0.2, 0.3, 0.4, 0.1]])
    labels = torch.tensor([[1, 0, 1, 1], [0, 1, 0, 1]])
    unseen = torch.tensor([2, 3])
    # top-1 among labels 2, 3: image 0 -> 2 (hit of 2 positives), image 1 -> 2 (miss of 1)
    assert M.unseen_recall_at(scores, labels, unseen, 1).tolist() == pytest.approx([1 / 3])
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert M.unseen_recall_at(scores, labels, unseen, 1, w).tolist() == pytest.approx([0.5, 0.0])
    mask = torch.tensor([False, False, True, True])
    assert M.unseen_recall_at(scores, labels, mask, 2).tolist() == pytest.approx([1.0])


def test_all_lists_the_public_names():
    import inspect

    from mlbook.metrics import conventions, resampling, sets

    assert all(hasattr(M, name) for name in M.__all__)
    for module in (ranking, sets, conventions, resampling):
        public = [n for n, obj in vars(module).items() if not n.startswith("_")
                  and inspect.isfunction(obj) and obj.__module__ == module.__name__]
        assert public and sorted(set(public) - set(M.__all__)) == [], module.__name__
        assert all(getattr(M, n) is getattr(module, n) for n in public)


def test_metrics_never_import_claims():
    # metrics is the lower layer: claims imports it, never the reverse; inside it ranking and sets
    # are the bottom (they import only the shared input checks)
    import ast
    from pathlib import Path

    for path in Path(M.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("mlbook") for a in node.names), path.name
            elif isinstance(node, ast.ImportFrom):
                assert node.level <= 1 and not (node.module or "").startswith("mlbook"), path.name
                if node.level == 1 and path.stem in ("ranking", "sets", "_inputs"):
                    assert node.module == "_inputs", (path.name, node.module)


def test_prf_of_thresholds_is_prf_of_predictions_at_every_threshold():
    """The threshold sweep (chapter 08's one threshold rule reads it) gives, for each t, exactly the set
    metrics of the predictions "score >= t", an ignore mask and ties included."""
    g = torch.Generator().manual_seed(5)
    scores = (torch.rand(40, 6, generator=g) * 8).round() / 8          # ties on purpose
    targets = (torch.rand(40, 6, generator=g) < 0.3).float()
    ignore = torch.rand(40, 6, generator=g) < 0.1
    thresholds = torch.unique(scores)
    swept = M.prf_of_thresholds(scores, targets, thresholds, ignore)
    for i, t in enumerate(thresholds.tolist()):
        one = M.prf_of_predictions(scores >= t, targets, ignore)
        for k, v in one.items():
            assert math.isclose(float(swept[k][i]), v, rel_tol=0, abs_tol=1e-15) or (math.isnan(v) and math.isnan(float(swept[k][i]))), (k, t)
