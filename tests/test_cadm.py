"""CADM chapter (ICME 2019): Eq. 7, the L_lce loss of Eq. 12, gradients and shapes."""
import pytest
import torch

from mlbook.losses import label_correlation_embedding_loss as lce
from mlbook.models.backbones import SmallCNN
from mlbook import claims, metrics
from mlbook.experiments import cadm as cadm_exp
from mlbook.experiments.cadm import Settings, figure_indices, make_optimizer
from mlbook.experiments.shared import Evidence
from mlbook.models.cadm import CADMNet, CADMOptions, class_aware_maps, feature_map_size, make_loss, make_model


# --- Eq. 7 ------------------------------------------------------------------------

def test_cadm_matches_explicit_loop():
    g = torch.Generator().manual_seed(0)
    B, d, h, w, C = 2, 5, 3, 4, 6
    X = torch.randn(B, d, h, w, generator=g, dtype=torch.float64)
    W = torch.randn(C, d, generator=g, dtype=torch.float64)
    A = class_aware_maps(W, X)
    assert A.shape == (B, C, h, w)
    loop = torch.zeros(B, C, h, w, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            for i in range(h):
                for j in range(w):
                    loop[b, c, i, j] = sum(W[c, k] * X[b, k, i, j] for k in range(d))
    torch.testing.assert_close(A, loop)


def test_streams_follow_eqs_2_3():
    torch.manual_seed(0)
    net = CADMNet(SmallCNN(), 7, (4, 4), embedding=True, embed_hidden=16, embed_dim=8).eval()
    x = torch.randn(3, 3, 32, 32)
    out = net(x, details=True)
    maps = net.backbone(x)
    fcls = maps.amax(dim=(2, 3)) @ net.fc.weight.T + net.fc.bias                     # Eq. 2
    torch.testing.assert_close(out["fcls"], fcls, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["scls"], out["cadm"].amax(dim=(2, 3)))              # GMP of the CADMs
    torch.testing.assert_close(out["logits"], 0.5 * (out["fcls"] + out["scls"]))       # Eq. 3
    torch.testing.assert_close(net(x), out["logits"])
    # Eq. 8: the MLP on each flattened CADM, independently per class
    a3 = net.embed(out["cadm"][:, 3].flatten(1))
    torch.testing.assert_close(out["vectors"][:, 3], a3)


def test_shapes_and_variants():
    backbone = SmallCNN()
    assert feature_map_size(backbone, 48) == (6, 6)
    assert feature_map_size(backbone, 32) == (4, 4)
    x = torch.randn(2, 3, 48, 48)
    base = make_model("baseline", SmallCNN(), 5, (6, 6)).eval()
    assert base.embed is None and base(x).shape == (2, 5)
    d = base(x, details=True)
    torch.testing.assert_close(d["logits"], d["fcls"])                                 # baseline: GMP + linear
    lam0 = make_model("lambda0", SmallCNN(), 5, (6, 6))
    assert lam0.embed is None
    full = make_model("lambda0.5", SmallCNN(), 5, (6, 6), CADMOptions(embed_hidden=32, embed_dim=7)).eval()
    out = full(x, details=True)
    assert out["cadm"].shape == (2, 5, 6, 6)
    assert out["vectors"].shape == (2, 5, 7)
    assert out["logits"].shape == out["fcls"].shape == out["scls"].shape == (2, 5)


# --- Eq. 12 -----------------------------------------------------------------------

def _hand_case():
    # image 1: positives {0, 1}, a_bar = (1, 0); pull = 1 + 1 = 2;
    #          negative 2 at (0, 0.5): ||.||^2 = 1.25 >= 1, hinge inactive.
    # image 2: one positive {0}: a_bar = a_0 = (1, 1), pull = 0;
    #          negative 1 at (1.5, 1): ||.||^2 = 0.25 -> hinge active, 0.75;
    #          negative 2 at (5, 5): ||.||^2 = 32 -> inactive.
    a = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 0.5]],
                      [[1.0, 1.0], [1.5, 1.0], [5.0, 5.0]]])
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    return a, y


def test_lce_hand_worked():
    a, y = _hand_case()
    assert lce(a[:1], y[:1], reduction="sum").item() == pytest.approx(2.0)      # hinge inactive
    assert lce(a[1:], y[1:], reduction="sum").item() == pytest.approx(0.75)     # single positive, hinge active
    assert lce(a, y, reduction="sum").item() == pytest.approx((2.0 + 0.75) / 2)
    assert lce(a, y).item() == pytest.approx((2.0 / 3 + 0.75 / 3) / 2)          # per_class: / C
    # the "summed" reading: one hinge on the summed negative distances
    assert lce(a[:1], y[:1], negatives="summed", reduction="sum").item() == pytest.approx(2.0)
    assert lce(a[1:], y[1:], negatives="summed", reduction="sum").item() == pytest.approx(0.0)  # 1 - 32.25 < 0
    a2 = a.clone()
    a2[1, 2] = torch.tensor([1.0, 1.5])                                           # 0.25 + 0.25 = 0.5 < 1
    assert lce(a2[1:], y[1:], negatives="summed", reduction="sum").item() == pytest.approx(0.5)
    # margin is a parameter: with margin 2 the negative of image 1 (1.25) becomes active: 2 + 0.75
    assert lce(a[:1], y[:1], margin=2.0, reduction="sum").item() == pytest.approx(2.75)


def test_lce_ignore_and_no_positive():
    a, y = _hand_case()
    ignore = torch.tensor([[False, False, False], [False, True, False]])        # drop the active negative
    assert lce(a[1:], y[1:], ignore[1:], reduction="sum").item() == pytest.approx(0.0)
    # per_class divides by the number of scored classes (2 in image 2)
    a3 = a.clone()
    a3[1, 2] = torch.tensor([1.0, 1.0])                                           # coincides with a_bar: hinge 1
    assert lce(a3[1:], y[1:], ignore[1:]).item() == pytest.approx(1.0 / 2)
    # an image without positives contributes nothing and is not counted
    y0 = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert lce(a, y0, reduction="sum").item() == pytest.approx(2.0)
    z = lce(a[1:], y0[1:])
    assert z.item() == 0.0


def test_lce_gradient_matches_finite_differences():
    torch.manual_seed(0)
    a = (torch.randn(3, 5, 4, dtype=torch.float64) * 0.4).requires_grad_()
    y = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 0], [1, 1, 1, 0, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: lce(v, y), (a,))
    with pytest.raises(ValueError):
        lce(a, y, negatives="bogus")
    with pytest.raises(ValueError):
        lce(a[:, :4], y)


# --- training wiring ----------------------------------------------------------------

def test_gradients_reach_backbone_and_embedding():
    torch.manual_seed(0)
    net = make_model("lambda0.5", SmallCNN(), 4, (4, 4), CADMOptions(embed_hidden=16, embed_dim=8)).train()
    images = torch.randn(4, 3, 32, 32)  # float batches pass through stages.as_input unchanged
    labels = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.float32)
    ignore = torch.zeros_like(labels, dtype=torch.bool)
    terms = make_loss(0.5)(net, (images, labels, ignore))
    assert set(terms) == {"loss", "cls", "lce", "pull", "push"}
    torch.testing.assert_close(terms["loss"], terms["cls"] + 0.5 * terms["lce"])
    torch.testing.assert_close(terms["lce"], terms["pull"] + terms["push"])
    terms["loss"].backward()
    for name in ("backbone.body.0.weight", "fc.weight", "embed.0.weight", "embed.2.weight"):
        grad = dict(net.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # L_lce alone reaches the backbone through the CADMs (and theta_fcls)
    net.zero_grad()
    out = net(torch.randn(4, 3, 32, 32), details=True)
    lce(out["vectors"], labels).backward()
    assert net.backbone.body[0].weight.grad.abs().sum() > 0
    assert net.fc.weight.grad.abs().sum() > 0
    # lambda = 0: the loss is BCE on Eq. 3; the optimiser gives new layers their own lr
    net0 = make_model("lambda0", SmallCNN(), 4, (4, 4))
    make_loss(0.0)(net0, (images, labels, ignore))["loss"].backward()
    assert net0.backbone.body[0].weight.grad.abs().sum() > 0
    opt = make_optimizer(Settings(epochs=1, lr=0.01, head_lr_mult=10))(net0)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.1]
    # the other reading of Eqs. 9/11: L_lce trains f_embed only (the CADMs enter it detached)
    net.zero_grad()
    opts = CADMOptions(embed_hidden=16, embed_dim=8, lce_grad="embed")
    t = make_loss(0.5, opts)(net, (images, labels, ignore))
    t["lce"].backward()
    assert net.backbone.body[0].weight.grad is None or net.backbone.body[0].weight.grad.abs().sum() == 0
    assert net.embed[0].weight.grad.abs().sum() > 0


def test_figure_indices_prefer_images_with_several_labels():
    y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    assert figure_indices(y, 2) == [1, 3]
    assert figure_indices(y, 3) == [1, 3, 0]


# --- the weak-CADM labels are chosen on hold-out images, by the other seeds' models -------------

def fake_results(n=30, C=4, seeds=(0, 1, 2), seed=0, n_holdout=20):
    """{(dataset, variant, train seed): result} with random test and hold-out outputs, and the test labels."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, C, generator=g) < 0.5).float()
    y[:, 0] = 1.0
    held = torch.rand(n_holdout, C, generator=g) < 0.5
    results = {}
    for v in ("lambda0", "lambda0.5"):
        for s in seeds:
            out = {k: torch.randn(n, C, generator=g) for k in ("logits", "fcls", "scls", "cadm_sum")}
            results["coco", v, s] = {"test_outputs": out, "holdout_positives": held,
                                     "holdout_outputs": {"scls": torch.randn(n_holdout, C, generator=g)}}
    return results, y


def test_weak_labels_by_hand():
    positives = torch.tensor([[1, 1, 0, 0, 1, 1], [1, 0, 1, 0, 1, 1]], dtype=torch.bool)
    peaks = torch.tensor([[5.0, 1.0, 9.0, -9.0, 3.0, 7.0], [3.0, 9.0, 0.0, -9.0, 4.0, 8.0]])
    # means over positives: 4, 1, 0, (none), 3.5, 7.5 -> the lowest third of the five labels seen: 0 and 1
    assert cadm_exp.weak_labels([peaks], positives).tolist() == [False, True, True, False, False, False]
    # several models: their means averaged (label 1: (1 + 9) / 2 = 5; label 0: (4 + 0) / 2 = 2)
    second = torch.tensor([[0.0, 9.0, 0.0, 0.0, 3.0, 7.0], [0.0, 0.0, 0.0, 0.0, 4.0, 8.0]])
    assert cadm_exp.weak_labels([peaks, second], positives).tolist() == [True, False, True, False, False, False]


def test_weak_subgroup_of_each_seed_comes_from_the_other_seeds_holdout_outputs():
    results, y = fake_results()
    seeds = [0, 1, 2]
    positives = y > 0.5
    groups = cadm_exp.weak_subgroups(results, "coco", positives, seeds)
    held = results["coco", "lambda0", 0]["holdout_positives"]
    for i, s in enumerate(seeds):
        others = [results["coco", "lambda0", t]["holdout_outputs"]["scls"] for t in seeds if t != s]
        assert torch.equal(groups[i], positives & cadm_exp.weak_labels(others, held))
        assert (groups[i] <= positives).all() and groups[i].any()
    # no test output takes part: changing every test peak changes no subgroup
    for key in results:
        results[key]["test_outputs"]["scls"] = -results[key]["test_outputs"]["scls"]
    assert all(torch.equal(a, b) for a, b in zip(groups, cadm_exp.weak_subgroups(results, "coco", positives, seeds)))
    # nor does seed i's own lambda = 0 model
    results["coco", "lambda0", 0]["holdout_outputs"]["scls"] = torch.zeros_like(held, dtype=torch.float32)
    assert torch.equal(groups[0], cadm_exp.weak_subgroups(results, "coco", positives, seeds)[0])
    with pytest.raises(ValueError):
        cadm_exp.weak_subgroups(results, "coco", positives, [0])   # no other seed to choose it


def _weak_claim_setup(metric: str):
    """Fake λ results on COCO with three seeds, their evidence and a weak-CADM claim on ``metric``."""
    results, y = fake_results()
    seeds = [0, 1, 2]

    class Test:
        labels, ignore = y, None

    evidence = Evidence(results, {"coco": type("Data", (), {"test": Test})}, seeds)
    claim = claims.Claim(id="05.weak.coco", chapter="05_cadm", dataset="coco", text="weak CADMs", source="Sec. 3.4",
                         better="Ours (lambda=0.5)", worse="Ours (lambda=0)", metrics=(metric,))
    return results, y, seeds, evidence, claim


def test_weak_cadm_claim_values_use_the_holdout_subgroup():
    results, y, seeds, evidence, claim = _weak_claim_setup("peak, weak positive CADMs")
    weights = metrics.image_weights(len(y), 5, seed=3)
    better, worse = cadm_exp.claim_values(claim, evidence, weights)["peak, weak positive CADMs"]
    assert better.shape == worse.shape == (3, 6)
    masks = cadm_exp.weak_subgroups(results, "coco", y > 0.5, seeds)
    for i, s in enumerate(seeds):
        mask = masks[i]
        for v, values in (("lambda0.5", better), ("lambda0", worse)):
            peaks = results["coco", v, s]["test_outputs"]["scls"].double()
            on_test_set = peaks[mask].mean()
            assert values[i, 0].item() == pytest.approx(on_test_set.item())
            # resample r: image j counted weights[r, j] times
            w = weights[2][:, None].expand_as(peaks)[mask]
            assert values[i, 2].item() == pytest.approx(((w * peaks[mask]).sum() / w.sum()).item())


def test_weak_cadm_ap_is_the_mean_ap_of_the_holdout_chosen_labels():
    """05.weak_cadm reads "benefit the recognition" as the mean AP of the weak-CADM labels: per seed,
    the labels its hold-out subgroup holds, on each resample; a model's logit scale does not enter."""
    from mlbook.metrics import average_precision
    results, y, seeds, evidence, claim = _weak_claim_setup(cadm_exp.WEAK_AP)
    weights = metrics.image_weights(len(y), 4, seed=5)
    better, worse = cadm_exp.claim_values(claim, evidence, weights)[cadm_exp.WEAK_AP]
    masks = cadm_exp.weak_subgroups(results, "coco", y > 0.5, seeds)
    for i, s in enumerate(seeds):
        labels = masks[i].any(0)
        assert labels.any() and not labels.all()
        logits = results["coco", "lambda0", s]["test_outputs"]["logits"]
        expected = average_precision(logits, y, None, weights=weights)[:, labels].nanmean(1)
        assert torch.allclose(worse[i], expected)
        # ten times the logits (another scale): the same APs
        scaled = average_precision(10 * logits, y, None, weights=weights)[:, labels].nanmean(1)
        assert torch.allclose(worse[i], scaled)


def test_resampled_map_matches_metrics_on_explicit_resamples():
    from mlbook.metrics import average_precision, mean_average_precision

    g = torch.Generator().manual_seed(1)
    N, C = 40, 5
    targets = torch.rand(N, C, generator=g) < 0.3
    scores = torch.randn(N, C, generator=g, dtype=torch.float64) + targets
    ignore = torch.rand(N, C, generator=g) < 0.1
    draws = torch.randint(0, N, (3, N), generator=g)
    weights = torch.zeros(3, N, dtype=torch.float64).scatter_add_(1, draws, torch.ones(3, N, dtype=torch.float64))
    fast = average_precision(scores, targets, ignore, weights=weights).nanmean(1)
    for r in range(3):
        i = draws[r]
        ref = mean_average_precision(scores[i], targets[i].float(), ignore[i])   # ties="sklearn"
        assert fast[r].item() == pytest.approx(ref, abs=1e-9)
    # identity resample = the plain mAP
    ones = torch.ones(1, N, dtype=torch.float64)
    assert average_precision(scores, targets, ignore, weights=ones).nanmean(1).item() == pytest.approx(
        mean_average_precision(scores, targets.float(), ignore), abs=1e-9)


def test_grid_and_every_listed_claim_of_the_chapter():
    seeds = [0, 1, 2]
    runs = cadm_exp.grid("smoke", ["coco", "nuswide"], seeds)
    for d in ("coco", "nuswide"):
        assert {(r.row, r.train_seed) for r in runs if r.paper == "cadm" and r.dataset == d} == {
            (v, s) for v in cadm_exp.rows("smoke") for s in seeds}
    g = torch.Generator().manual_seed(5)
    n, C = 30, 4
    y = (torch.rand(n, C, generator=g) < 0.5).float()
    y[:, 0] = 1.0
    results = {(d, v, s): {"test_outputs": {k: torch.randn(n, C, generator=g) for k in ("logits", "scls", "cadm_sum")},
                           "metrics": {m: float(torch.rand(1, generator=g)) for m in cadm_exp.TABLE_METRICS},
                           "holdout_outputs": {"scls": torch.randn(n, C, generator=g)}, "holdout_positives": y > 0.5}
               for d in ("coco", "nuswide") for v in cadm_exp.rows("smoke") for s in seeds}

    class Test:
        labels, ignore = y, None

    data = type("Data", (), {"test": Test})
    evidence = Evidence(results, {"coco": data, "nuswide": data}, seeds)
    for c in claims.load("05_cadm"):
        options = cadm_exp.claim_options(c, evidence)
        row = claims.evaluate(c, lambda w, c=c: cadm_exp.claim_values(c, evidence, w), n_images=n,
                              **options)
        if row["measurements"]:        # the rule applied to the row's own numbers: each metric at its own level,
            for m in row["measurements"]:      # Holm never more decisive, the claim by its quantifier
                assert m["metric_verdict_unadjusted"] == (claims.NOT_RESOLVED if m["too_few_seeds"] else claims.verdict(
                    m["low"], m["high"], test=m["test"], margin=m["margin"], direction=m["direction"])), c.id
                assert m["metric_verdict"] in (m["metric_verdict_unadjusted"], claims.NOT_RESOLVED), c.id
            assert row["verdict"] == claims.combine([m["metric_verdict"] for m in row["measurements"]], c.quantifier)
        else:
            assert row["verdict"] == claims.NOT_TESTABLE, c.id
        if c.metrics == ("mAP",) and not c.fixed:
            assert set(options["secondary"]) == set(cadm_exp.TABLE_METRICS) - {"mAP"}    # shown, not voted
        if c.id.startswith("05.embedding."):
            assert options["published"]["mAP"] is not None


def test_face_rows_stages_and_train_overrides():
    assert cadm_exp.rows("demo") == cadm_exp.rows("full") == (
        "baseline", "lambda0", "lambda0.5", "lambda0.5_embed_only")
    assert cadm_exp.stages("demo") == cadm_exp.stages("full") == ()
    # `python -m mlbook train --lam`: the embedding weight reaches run's options, nothing else
    assert cadm_exp.train_overrides({"lam": 0.25, "method": "cadm:lambda0.5"}) == {"options": CADMOptions(lam=0.25)}
    assert cadm_exp.train_overrides({"lam": None}) == cadm_exp.train_overrides({}) == {}


# --- 05.all_cadm_peak (amended 2026-12-07): a scale-free rank over the weak-CADM labels ----------

def test_negatives_below_by_hand_and_scale_free():
    peaks = torch.tensor([[2.0, 1.0, 1.0, 0.0, 1.0], [0.5, -1.0, -2.0, 4.0, 4.0]])
    y = torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    ranks = cadm_exp.negatives_below(peaks, y)
    # image 0: negatives 1.0, 0.0, 1.0; positive label 0 (2.0) is above all three, positive label 2
    # (1.0) above 0.0 and tied with the two others: (1 + 2 / 2) / 3
    assert ranks[0, [0, 2]].tolist() == [1.0, pytest.approx(2 / 3)]
    assert ranks[1].isnan().all()                                       # no negative label: undefined
    g = torch.Generator().manual_seed(2)
    peaks, y = torch.randn(20, 6, generator=g), (torch.rand(20, 6, generator=g) < 0.4).float()
    torch.testing.assert_close(cadm_exp.negatives_below(3.0 * peaks - 7.0, y), cadm_exp.negatives_below(peaks, y))
    ignore = torch.zeros_like(y, dtype=torch.bool)
    ignore[:, 5] = True                                                 # an ignored label is no negative
    torch.testing.assert_close(cadm_exp.negatives_below(peaks, y, ignore)[:, :5],
                               cadm_exp.negatives_below(peaks[:, :5], y[:, :5]))


def test_all_cadm_peak_claim_is_the_rank_on_the_weak_labels_and_keeps_its_original():
    results, y = fake_results()
    seeds = [0, 1, 2]

    class Test:
        labels, ignore = y, None

    evidence = Evidence(results, {"coco": type("Data", (), {"test": Test})}, seeds)
    rows = {c.id: c for c in claims.load("05_cadm", paths=[claims.CLAIMS_DIR / "claims_05_cadm.csv"])}
    for d in ("coco", "nuswide"):
        claim = rows[f"05.all_cadm_peak.{d}"]
        assert claim.metrics == (cadm_exp.WEAK_RANK,) and claim.amended == "2026-12-07"
        assert claim.original().metrics == ("peak, all positive CADMs",)
        assert cadm_exp.claim_options(claim, evidence)["scale"] == 100.0              # a share, in points
    claim = rows["05.all_cadm_peak.coco"]
    weights = metrics.image_weights(len(y), 4, seed=1)
    better, worse = cadm_exp.claim_values(claim, evidence, weights)[cadm_exp.WEAK_RANK]
    masks = cadm_exp.weak_subgroups(results, "coco", y > 0.5, seeds)
    for i, s in enumerate(seeds):
        for v, values in (("lambda0.5", better), ("lambda0", worse)):
            ranks = cadm_exp.negatives_below(results["coco", v, s]["test_outputs"]["scls"], y)
            keep = masks[i] & ~ranks.isnan()
            assert values[i, 0].item() == pytest.approx(ranks[keep].double().mean().item())
    # scaling one model's CADMs (another logit scale) changes nothing
    for s in seeds:
        outputs = results["coco", "lambda0.5", s]["test_outputs"]
        outputs["scls"] = 10.0 * outputs["scls"]
    torch.testing.assert_close(cadm_exp.claim_values(claim, evidence, weights)[cadm_exp.WEAK_RANK][0], better)
    # the original test (mean peak in logits over all positive pairs) is still measured through the same face
    original = cadm_exp.claim_values(claim.original(), evidence, weights)["peak, all positive CADMs"]
    assert original[0].shape == (3, 5)
