"""Today's yardsticks: the asymmetric loss (ASL, Ben-Baruch, Ridnik et al., ICCV 2021) and a
Query2Label decoder (Liu et al. 2021): hand-worked values, limits, gradients, shapes, the order-free
attention and a short training run."""
import math

import pytest
import torch
import torch.nn.functional as F

from mlbook.losses import AsymmetricLoss, asymmetric_loss
from mlbook.models.backbones import SmallCNN
from mlbook.models.query2label import (Query2Label, Query2LabelConfig, Query2LabelHead,
                                       sine_positions)


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny: one thread is faster, and steady on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- ASL -----------------------------------------------------------------------------------------

def test_asl_on_a_hand_computed_two_label_example():
    """logits (2, -1), targets (1, 0), gamma+ = 0, gamma- = 4, m = 0.05, worked by hand:
    label 1 (positive): p = 1 / (1 + e^-2) = 1 / 1.1353352832 = 0.8807970780
        term = (1 - p)^0 log p = log 0.8807970780 = -0.1269280110
    label 2 (negative): p = 1 / (1 + e^1) = 1 / 3.7182818285 = 0.2689414214
        p_m = max(p - 0.05, 0) = 0.2189414214
        p_m^2 = 0.0479353460, p_m^4 = 0.0022977974
        log(1 - p_m) = log 0.7810585786 = -0.2471051273
        term = p_m^4 log(1 - p_m) = 0.0022977974 x -0.2471051273 = -0.0005677975
    L = -(term1 + term2) = 0.1269280110 + 0.0005677975 = 0.1274958085 (one image: mean = sum)."""
    logits = torch.tensor([[2.0, -1.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    p = torch.sigmoid(logits)
    assert p[0, 0].item() == pytest.approx(0.8807970780, abs=1e-9)
    assert p[0, 1].item() == pytest.approx(0.2689414214, abs=1e-9)
    terms = asymmetric_loss(logits, targets, gamma_pos=0.0, gamma_neg=4.0, clip=0.05, reduction="none")
    assert terms[0, 0].item() == pytest.approx(0.1269280110, abs=1e-9)
    assert terms[0, 1].item() == pytest.approx(0.0005677975, abs=1e-9)
    loss = AsymmetricLoss(gamma_pos=0.0, gamma_neg=4.0, clip=0.05)(logits, targets)
    assert loss.item() == pytest.approx(0.1274958085, abs=1e-6)
    assert AsymmetricLoss()(logits, targets).item() == pytest.approx(0.1274958085, abs=1e-6)  # the defaults
    # without the shift the negative term is p^4 log(1 - p) = 0.0052316 x -0.3132617 = -0.0016388
    unshifted = asymmetric_loss(logits, targets, clip=0.0, reduction="none")
    assert unshifted[0, 1].item() == pytest.approx(0.0016388457, abs=1e-9)


def test_asl_without_focusing_or_shift_is_bce():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(5, 7, generator=g, dtype=torch.float64)
    targets = (torch.rand(5, 7, generator=g) < 0.4).double()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    asl = asymmetric_loss(logits, targets, gamma_pos=0.0, gamma_neg=0.0, clip=0.0, reduction="none")
    torch.testing.assert_close(asl, bce)
    plain = AsymmetricLoss(gamma_pos=0.0, gamma_neg=0.0, clip=0.0)
    torch.testing.assert_close(plain(logits, targets), bce.sum(1).mean())        # labels summed, images averaged
    summed = asymmetric_loss(logits, targets, gamma_neg=0.0, clip=0.0, reduction="sum")
    torch.testing.assert_close(summed, bce.sum())                                 # the authors' reduction


def test_asl_reductions_ignore_and_bad_input():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(4, 3, generator=g), (torch.rand(4, 3, generator=g) < 0.5).float()
    per_entry = asymmetric_loss(logits, targets, reduction="none")
    assert per_entry.shape == (4, 3) and bool((per_entry >= 0).all())
    torch.testing.assert_close(asymmetric_loss(logits, targets, reduction="sum"),
                               4 * asymmetric_loss(logits, targets))
    ignore = torch.zeros(4, 3, dtype=torch.bool)
    ignore[0, 1] = ignore[2, 2] = True
    kept = asymmetric_loss(logits, targets, ignore, reduction="none")
    assert kept[0, 1] == 0 and kept[2, 2] == 0
    torch.testing.assert_close(kept[~ignore], per_entry[~ignore])
    with pytest.raises(ValueError, match="reduction"):
        AsymmetricLoss(reduction="avg")
    with pytest.raises(ValueError, match="shape"):
        asymmetric_loss(logits, targets[:, :2])


def test_asl_shift_discards_easy_negatives():
    """A negative with p < m has p_m = 0: no loss and no gradient (probability shifting)."""
    logits = torch.tensor([[-4.0, -1.0]], requires_grad=True)       # p = 0.018 < 0.05, p = 0.269 > 0.05
    loss = asymmetric_loss(logits, torch.zeros(1, 2), reduction="none")
    assert loss[0, 0].item() == 0.0 and loss[0, 1].item() > 0
    loss.sum().backward()
    assert logits.grad[0, 0].item() == 0.0 and logits.grad[0, 1].item() > 0


def test_asl_detached_focusing_keeps_the_value_and_drops_the_weights_gradient():
    logits = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    targets = torch.zeros(1, 1, dtype=torch.float64)
    full = asymmetric_loss(logits, targets)
    (grad_full,) = torch.autograd.grad(full, logits)
    detached = asymmetric_loss(logits, targets, detach_focusing=True)
    (grad_detached,) = torch.autograd.grad(detached, logits)
    assert detached.item() == pytest.approx(full.item(), rel=1e-12)
    # weight constant: d/dx [-w log(1 - p_m)] = w p (1 - p) / (1 - p_m), w = p_m^4
    p = 1 / (1 + math.exp(-0.5))
    p_m = p - 0.05
    assert grad_detached.item() == pytest.approx(p_m ** 4 * p * (1 - p) / (1 - p_m), rel=1e-10)
    # the full gradient adds d w / dx (-log(1 - p_m)) = 4 p_m^3 p (1 - p) (-log(1 - p_m)) > 0
    extra = 4 * p_m ** 3 * p * (1 - p) * -math.log(1 - p_m)
    assert grad_full.item() == pytest.approx(grad_detached.item() + extra, rel=1e-10)


@pytest.mark.parametrize("options", [
    {}, {"gamma_neg": 0.0, "clip": 0.0}, {"gamma_pos": 1.0}, {"gamma_pos": 0.5, "gamma_neg": 2.0},
    {"detach_focusing": True}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_asl_gradient_is_finite_for_extreme_logits(options, dtype):
    logits = torch.tensor([[-100.0, 100.0, -30.0, 30.0, 0.0, 1e4, -1e4]] * 2, dtype=dtype, requires_grad=True)
    targets = torch.tensor([[1.0, 0, 1, 0, 1, 0, 1], [0.0, 1, 0, 1, 0, 1, 0]])
    loss = asymmetric_loss(logits, targets, **options)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(logits.grad).all())
    # the eps clamp bounds each term by -log(1e-8) = 18.4 (times a weight <= 1)
    assert loss.item() <= 7 * 18.43


# --- Query2Label ---------------------------------------------------------------------------------

def small_head(num_classes=5, in_channels=16, **options):
    options = {"d_model": 32, "heads": 4, "ffn": 64, "dropout": 0.0, **options}
    return Query2LabelHead(Query2LabelConfig(num_classes, in_channels, **options))


def test_sine_positions():
    pos = sine_positions(3, 5, 16)
    assert pos.shape == (15, 16) and bool((pos.abs() <= 1).all())
    assert torch.unique(pos, dim=0).shape[0] == 15                       # every position its own code
    # the first half encodes the row only, the second the column only
    torch.testing.assert_close(pos[0, :8], pos[4, :8])
    torch.testing.assert_close(pos[0, 8:], pos[5, 8:])
    with pytest.raises(ValueError, match="divisible by 4"):
        sine_positions(2, 2, 10)


def test_decoder_output_shape_and_gradients_through_a_backbone():
    torch.manual_seed(0)
    model = Query2Label(SmallCNN(), 7, d_model=32, heads=4, ffn=64, layers=2)
    x = torch.randn(2, 3, 48, 48)
    out = model(x, details=True)
    assert out["logits"].shape == (2, 7)
    assert out["attention"].shape == (2, 7, 36) and out["map_hw"] == (6, 6)   # SmallCNN at 48 px: 6 x 6
    assert out["attention_heads"].shape == (2, 4, 7, 36)
    torch.testing.assert_close(model.eval()(x), model(x, details=True)["logits"])
    model.train()
    model(x).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    head = model.head
    assert head.label_embed.grad.abs().sum() > 0 and head.group_weight.grad.abs().sum() > 0


def test_cross_attention_weights_sum_to_one_over_positions():
    torch.manual_seed(0)
    head = small_head(layers=2).eval()
    out = head(torch.randn(3, 16, 4, 6), details=True)
    attention = out["attention"]
    assert attention.shape == (3, 5, 24) and bool((attention >= 0).all())
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, 5))
    torch.testing.assert_close(out["attention_heads"].sum(-1), torch.ones(3, 4, 5))


def test_group_fc_is_one_classifier_per_label():
    torch.manual_seed(0)
    head = small_head().eval()
    out = head(torch.randn(2, 16, 3, 3), details=True)
    k = 3
    logit_k = out["queries"][:, k] @ head.group_weight[k] + head.group_bias[k]
    torch.testing.assert_close(out["logits"][:, k], logit_k)


def test_permuting_positions_with_their_encoding_leaves_the_outputs_unchanged():
    torch.manual_seed(0)
    head = small_head(layers=2).eval()
    memory, pos = head.memory(torch.randn(2, 16, 4, 5))
    perm = torch.randperm(20)
    out = head.decode(memory, pos, details=True)
    shuffled = head.decode(memory[:, perm], pos[perm], details=True)
    torch.testing.assert_close(shuffled["logits"], out["logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shuffled["attention"], out["attention"][:, :, perm], rtol=1e-5, atol=1e-6)
    # without its encoding the permuted map is a different input: positions do matter
    moved = head.decode(memory[:, perm], pos, details=True)
    assert not torch.allclose(moved["logits"], out["logits"], atol=1e-4)


def test_deterministic_under_a_fixed_seed():
    maps = torch.randn(2, 16, 3, 4, generator=torch.Generator().manual_seed(5))
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        head = small_head(dropout=0.1)                                    # train mode: dropout draws too
        outs.append(head(maps, details=True))
    torch.testing.assert_close(outs[0]["logits"], outs[1]["logits"], rtol=0, atol=0)
    torch.testing.assert_close(outs[0]["attention"], outs[1]["attention"], rtol=0, atol=0)


def separable_maps(generator, n=64, labels=3, channels=6, size=4):
    """Label k present: a bright spot (+3) in channel k at a random position; noise elsewhere."""
    y = (torch.rand(n, labels, generator=generator) < 0.5).float()
    maps = 0.1 * torch.randn(n, channels, size, size, generator=generator)
    where = torch.randint(0, size * size, (n, labels), generator=generator)
    flat = maps.view(n, channels, size * size)
    for k in range(labels):
        flat[torch.arange(n), k, where[:, k]] += 3.0 * y[:, k]
    return maps, y


def test_thirty_steps_fit_a_separable_problem():
    maps, y = separable_maps(torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    head = Query2LabelHead(Query2LabelConfig(3, 6, d_model=32, heads=4, ffn=64, dropout=0.0))
    loss_fn = AsymmetricLoss()
    # SGD with momentum written out: torch.optim imports torch._dynamo on first use (2-6 s here)
    params = list(head.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    first = None
    for _ in range(30):
        loss = loss_fn(head(maps), y)
        first = loss.item() if first is None else first
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g, v in zip(params, grads, velocity):
                p.sub_(0.1 * v.mul_(0.9).add_(g))
    with torch.no_grad():
        logits = head(maps)
    final = loss_fn(logits, y).item()
    assert final < 0.05 and final < first / 10, (first, final)
    assert bool(((logits > 0) == (y > 0.5)).all())                       # every label of every image right
