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


# --- the weak-positive subgroup is chosen on another seed's model --------------------------------

def fake_results(n=30, C=4, seeds=(0, 1, 2), seed=0):
    """{(dataset, variant, train seed): result} with random test outputs, and the test labels."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, C, generator=g) < 0.5).float()
    y[:, 0] = 1.0
    results = {}
    for v in ("lambda0", "lambda0.5"):
        for s in seeds:
            out = {k: torch.randn(n, C, generator=g) for k in ("logits", "fcls", "scls", "cadm_sum")}
            results["coco", v, s] = {"test_outputs": out}
    return results, y


def test_weak_subgroup_of_each_seed_comes_from_another_seeds_model():
    results, y = fake_results()
    seeds = [0, 1, 2]
    positives = y > 0.5
    groups = cadm_exp.weak_subgroups(results, "coco", positives, seeds)
    for i, s in enumerate(seeds):
        own = cadm_exp.weak_positives(results["coco", "lambda0", s]["test_outputs"]["scls"], positives)
        other = seeds[(i + 1) % len(seeds)]
        assert other != s
        assert torch.equal(groups[i], cadm_exp.weak_positives(results["coco", "lambda0", other]["test_outputs"]["scls"],
                                                               positives))
        assert not torch.equal(groups[i], own)              # random peaks: the own-seed choice differs
        assert (groups[i] <= positives).all() and groups[i].any()
    with pytest.raises(ValueError):
        cadm_exp.weak_subgroups(results, "coco", positives, [0])   # no other seed to choose it


def test_weak_cadm_claim_values_use_the_other_seeds_subgroup():
    results, y = fake_results()
    seeds = [0, 1, 2]

    class Test:
        labels, ignore = y, None

    evidence = Evidence(results, {"coco": type("Data", (), {"test": Test})}, seeds)
    claim = claims.Claim(id="05.weak.coco", chapter="05_cadm", dataset="coco", text="weak CADMs", source="Sec. 3.4",
                         better="Ours (lambda=0.5)", worse="Ours (lambda=0)", metrics=("peak, weak positive CADMs",))
    weights = metrics.image_weights(len(y), 5, seed=3)
    better, worse = cadm_exp.claim_values(claim, evidence, weights)["peak, weak positive CADMs"]
    assert better.shape == worse.shape == (3, 6)
    for i, s in enumerate(seeds):
        mask = cadm_exp.weak_positives(results["coco", "lambda0", seeds[(i + 1) % 3]]["test_outputs"]["scls"], y > 0.5)
        for v, values in (("lambda0.5", better), ("lambda0", worse)):
            peaks = results["coco", v, s]["test_outputs"]["scls"].double()
            on_test_set = peaks[mask].mean()
            assert values[i, 0].item() == pytest.approx(on_test_set.item())
            # resample r: image j counted weights[r, j] times
            w = weights[2][:, None].expand_as(peaks)[mask]
            assert values[i, 2].item() == pytest.approx(((w * peaks[mask]).sum() / w.sum()).item())


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
                           "metrics": {m: float(torch.rand(1, generator=g)) for m in cadm_exp.TABLE_METRICS}}
               for d in ("coco", "nuswide") for v in cadm_exp.rows("smoke") for s in seeds}

    class Test:
        labels, ignore = y, None

    data = type("Data", (), {"test": Test})
    evidence = Evidence(results, {"coco": data, "nuswide": data}, seeds)
    for c in claims.load("05_cadm"):
        options = cadm_exp.claim_options(c, evidence)
        row = claims.evaluate(c, lambda w, c=c: cadm_exp.claim_values(c, evidence, w), n_images=n,
                              **options)
        assert row["verdict"] == claims.combine([   # the rule applied to the row's own numbers
            claims.NOT_RESOLVED if m["too_few_seeds"] else claims.verdict(
                m["low"], m["high"], test=m["test"], margin=m["margin"], direction=m["direction"])
            for m in row["measurements"]]) if row["measurements"] else row["verdict"] == claims.NOT_TESTABLE
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
