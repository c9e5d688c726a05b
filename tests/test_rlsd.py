"""RLSD chapter (TMM 2018): anchors and Eqs. 1-2, region selection, bilinear sampling, the
latent-label LSTM (Eq. 12), Eqs. 13-14, the RLSD+ft-RPN targets, the model's modes,
the Visual Genome reader/writer and the selective search substitute for MCG."""
import dataclasses
import json
import math

import pytest
import torch

from mlbook.data.base import DataFormatError
from mlbook.data.visual_genome import GENERATED_ID_OFFSET, read_objects, read_regions, write_generated_regions
from mlbook.models.rlsd import (RLSD, RegionalLSTM, RLSDConfig, bilinear_region_features, fuse_regions, pretraining_loss,
                                rlsd_loss)
from mlbook.models.rlsd_localization import (ANCHOR_RATIOS, ANCHOR_SCALES, LocalizationLayer, apply_deltas, clip_boxes,
                                             cluster_box_centres, cxcywh_to_xyxy, encode_deltas, localization_loss,
                                             make_anchors, merge_clusters, rpn_targets, sample_anchor_minibatch,
                                             sample_training_regions, select_test_regions, xyxy_to_cxcywh)


# --- Eqs. 1-2 and anchors ------------------------------------------------------------------

def test_deltas_hand_case_and_round_trip():
    a = torch.tensor([[10.0, 10.0, 4.0, 8.0]])
    d = torch.tensor([[0.5, -0.25, math.log(2.0), 0.0]])
    torch.testing.assert_close(apply_deltas(a, d), torch.tensor([[12.0, 8.0, 8.0, 8.0]]))   # Eqs. 1-2
    g = torch.Generator().manual_seed(0)
    anchors = torch.cat([torch.rand(50, 2, generator=g) * 100, torch.rand(50, 2, generator=g) * 40 + 1], 1)
    boxes = torch.cat([torch.rand(50, 2, generator=g) * 100, torch.rand(50, 2, generator=g) * 40 + 1], 1)
    torch.testing.assert_close(apply_deltas(anchors, encode_deltas(anchors, boxes)), boxes, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(xyxy_to_cxcywh(cxcywh_to_xyxy(boxes)), boxes, rtol=1e-5, atol=1e-4)
    huge = apply_deltas(a, torch.tensor([[0.0, 0.0, 1e4, 1e4]]))                           # clamped exp
    assert torch.isfinite(huge).all()
    assert clip_boxes(torch.tensor([-3.0, 2.0, 60.0, 70.0]), (40, 50)).tolist() == [0.0, 2.0, 50.0, 40.0]


def test_anchors_count_centres_sizes():
    h, w, stride = 3, 5, 8
    anc = make_anchors(h, w, stride)
    k = len(ANCHOR_SCALES) * len(ANCHOR_RATIOS)
    assert k == 12 and anc.shape == (h * w * k, 4)
    cell = anc.reshape(h, w, k, 4)
    for i in range(h):
        for j in range(w):
            assert torch.all(cell[i, j, :, 0] == (j + 0.5) * stride)     # cell projected back as centre
            assert torch.all(cell[i, j, :, 1] == (i + 0.5) * stride)
    side = math.sqrt(h * stride * w * stride)
    sz = cell[0, 0].reshape(len(ANCHOR_SCALES), len(ANCHOR_RATIOS), 4)
    torch.testing.assert_close((sz[..., 2] * sz[..., 3]).sqrt() / side,
                               torch.tensor(ANCHOR_SCALES)[:, None].expand(-1, len(ANCHOR_RATIOS)))
    ratios = torch.tensor(ANCHOR_RATIOS)[None].expand(len(ANCHOR_SCALES), -1)
    torch.testing.assert_close(sz[..., 3] / sz[..., 2], ratios)
    # relative scales: the same anchors, in image fractions, at 48 px and at 448 px
    small, big = make_anchors(6, 6, 8), make_anchors(28, 28, 16)
    assert small[:12, 2:].div(48).allclose(big[:12, 2:].div(448))


def test_localization_layer_shapes_and_anchor_start():
    loc = LocalizationLayer(16, k=12, hidden=8)
    torch.nn.init.zeros_(loc.out.weight)
    maps = torch.randn(2, 16, 6, 6)
    boxes, scores = loc(maps, 48)
    assert boxes.shape == (2, 6 * 6 * 12, 4) and scores.shape == (2, 6 * 6 * 12)
    anchors = clip_boxes(cxcywh_to_xyxy(make_anchors(6, 6, 8)), 48)
    torch.testing.assert_close(boxes[1], anchors)                     # zero deltas: the anchors themselves
    assert boxes.min() >= 0 and boxes.max() <= 48
    with pytest.raises(ValueError):
        LocalizationLayer(16, k=9)


# --- region selection (Sec. III-A-2b) -----------------------------------------------------------

def test_nms_test_regions_hand_case():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30], [21, 21, 30, 30], [0, 0, 5, 5]],
                         dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    whole = torch.tensor([0.0, 0.0, 40.0, 32.0])                          # image (H, W) = (32, 40)
    out = select_test_regions(boxes, scores, M=10, image_size=(32, 40))
    torch.testing.assert_close(out, torch.stack([boxes[0], boxes[2], boxes[4], whole]))   # IoU 0.91, 0.81 gone
    out2 = select_test_regions(boxes, scores, M=2, image_size=(32, 40))
    torch.testing.assert_close(out2, torch.stack([boxes[0], boxes[2], whole]))


def test_training_regions_top_and_bottom_plus_whole_image():
    boxes = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 4).requires_grad_()
    scores = torch.tensor([5.0, 9, 1, 7, 3, 8, 0, 2, 6, 4])
    out = sample_training_regions(boxes, scores, M=4, image_size=48)
    assert out[:, 0].tolist() == [1, 5, 2, 6, 0]                          # top 2, lowest 2 (best first), whole image
    torch.testing.assert_close(out[-1], torch.tensor([0.0, 0, 48, 48]))
    out.sum().backward()
    assert boxes.grad[[1, 5, 6, 2]].eq(1).all() and boxes.grad[[0, 3, 4, 7, 8, 9]].eq(0).all()
    few = sample_training_regions(boxes[:3].detach(), scores[:3], M=8, image_size=48)   # fewer than M
    assert few[:, 0].tolist() == [1, 0, 2, 0]
    batched = sample_training_regions(boxes.detach().expand(3, -1, -1), scores.expand(3, -1), M=4, image_size=48)
    assert batched.shape == (3, 5, 4)


# --- bilinear sampling ---------------------------------------------------------------------------

def _ramp_maps(h=4, w=6):
    rows = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float64)[None, :].expand(h, w)
    return torch.stack([cols, rows])[None]                                # [1, 2, h, w]


def test_bilinear_sampling_on_a_linear_ramp():
    # image 32 x 48 (H x W), maps 4 x 6: 8 px cells; cell centres at 8 b + 4, so the
    # ramp's value at pixel x is x / 8 - 0.5 (channel 0) and y / 8 - 0.5 (channel 1).
    maps = _ramp_maps()
    box = torch.tensor([[[12.0, 10.0, 30.0, 22.0]]], dtype=torch.float64)
    out = bilinear_region_features(maps, box, (32, 48), X=3, Y=4)
    assert out.shape == (1, 1, 2, 3, 4)
    xs = 12 + (torch.arange(4, dtype=torch.float64) + 0.5) * 18 / 4
    ys = 10 + (torch.arange(3, dtype=torch.float64) + 0.5) * 12 / 3
    torch.testing.assert_close(out[0, 0, 0], (xs / 8 - 0.5)[None].expand(3, 4))
    torch.testing.assert_close(out[0, 0, 1], (ys / 8 - 0.5)[:, None].expand(3, 4))
    # list input: padded rows are zero
    lst = bilinear_region_features(torch.cat([maps, maps]), [box[0], torch.cat([box[0], box[0]])], (32, 48),
                                   X=3, Y=4)
    assert lst.shape == (2, 2, 2, 3, 4) and lst[0, 1].abs().sum() == 0
    torch.testing.assert_close(lst[1, 1], out[0, 0])


def test_bilinear_sampling_gradient_reaches_the_box():
    maps = _ramp_maps()
    box = torch.tensor([[[12.0, 10.0, 30.0, 22.0]]], dtype=torch.float64, requires_grad=True)
    out = bilinear_region_features(maps, box, (32, 48), X=3, Y=4)
    out[0, 0, 0].sum().backward()
    # value = (x1 + f_q (x2 - x1)) / 8 - 0.5, f_q = (q + 0.5) / 4, summed over 3 x 4 bins
    f = (torch.arange(4, dtype=torch.float64) + 0.5) / 4
    expected = torch.tensor([3 * (1 - f).sum() / 8, 0.0, 3 * f.sum() / 8, 0.0], dtype=torch.float64)
    torch.testing.assert_close(box.grad[0, 0], expected)
    assert box.grad.abs().sum() > 0
    g = torch.Generator().manual_seed(0)
    rmaps = torch.randn(1, 3, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rbox = torch.tensor([[[7.3, 5.1, 33.7, 21.9], [2.2, 3.3, 20.1, 29.4]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, b: bilinear_region_features(m, b, (32, 48), X=2, Y=3),
                                    (rmaps, rbox), eps=1e-6, atol=1e-5)


# --- the regional LSTM (Eq. 12) ------------------------------------------------------------------------

def _lstm(L=5, T=4, end_bias=0.0):
    torch.manual_seed(0)
    net = RegionalLSTM(feat_dim=12, num_labels=L, embed=6, hidden=10, max_steps=T)
    with torch.no_grad():
        net.out.weight.mul_(8.0)                                # sharp, varied argmaxes
        net.out.bias[net.end] = end_bias
    return net


def test_latent_label_is_the_argmax_of_the_previous_step():
    net = _lstm(end_bias=-0.1)
    fed = []
    net.w_es.register_forward_hook(lambda mod, inp, out: fed.append(inp[0].clone()))
    v = torch.randn(40, 12, generator=torch.Generator().manual_seed(1))
    out = net(v, details=True)
    full, latent, p = out["full"], out["latent"], out["probs"]
    assert p.shape == (40, 4, 5) and full.shape == (40, 4, 6)
    assert len(fed) == 3                                        # W_es S_t for t = 1..T-1
    for t in range(1, 4):
        assert torch.equal(fed[t - 1], full[:, t - 1].argmax(-1))   # S_t = one-hot argmax p_{t-1}
        assert torch.equal(latent[:, t], fed[t - 1])
    # END stops a region: steps after its first END are zero, the others are p_t without END
    ends = full.argmax(-1) == net.end
    first = torch.where(ends.any(1), ends.float().argmax(1), torch.full((40,), 99))
    assert {0, 1, 2, 99} <= set(first.tolist())                 # END at steps 0, 1, 2 and never all occur
    for r in range(40):
        for t in range(4):
            if t > first[r]:
                assert p[r, t].abs().sum() == 0
            else:
                torch.testing.assert_close(p[r, t], full[r, t, :5])


def test_end_first_pads_everything_after():
    net = _lstm(end_bias=100.0)
    p = net(torch.randn(3, 12))
    assert (p[:, 0].sum(-1) > 0).all() and p[:, 1:].abs().sum() == 0
    never = _lstm(end_bias=-100.0)(torch.randn(3, 12))
    assert (never.sum(-1) > 0.99).all()                         # softmax over L + 1, END ~ 0


# --- Eqs. 13-14 ------------------------------------------------------------------------------------

def test_fusion_is_an_explicit_max():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(2, 3, 4, 5, generator=g)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    fused = fuse_regions(p, mask)
    for b in range(2):
        for j in range(5):
            vals = [p[b, m, t, j] for m in range(3) for t in range(4) if mask[b, m]]
            assert fused[b, j] == max(vals)
    torch.testing.assert_close(fuse_regions(p), p.flatten(1, 2).max(1).values)


def test_eq14_loss_hand_value():
    p = torch.tensor([[0.6, 0.2, 0.1], [0.5, 0.0, 0.0], [0.9, 0.9, 0.9]])
    y = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    # image 1: target (.5, .5, 0): .01 + .09 + .01 = .11; image 2: .25 + 0 + 1 = 1.25; image 3: no positive
    assert rlsd_loss(p, y).item() == pytest.approx((0.11 + 1.25) / 2)
    ign = torch.tensor([[False, True, False], [False, False, False], [False, False, False]])
    # image 1 with label 1 ignored: target (1, -, 0): .16 + .01 = .17
    assert rlsd_loss(p, y, ign).item() == pytest.approx((0.17 + 1.25) / 2)
    steps = torch.stack([p, p], 1)
    assert pretraining_loss(steps, y).item() == pytest.approx(rlsd_loss(p, y).item())


# --- RLSD+ft-RPN ---------------------------------------------------------------------------------------

def test_cluster_two_groups_and_merge():
    boxes = torch.tensor([[5, 5, 10, 10], [12, 8, 6, 6], [70, 75, 10, 10], [8, 14, 4, 4], [80, 70, 12, 8]],
                         dtype=torch.float32)                         # xywh, in a 100 x 100 image
    ids = cluster_box_centres(boxes, cut=0.25, image_size=100)
    assert ids.tolist() == [0, 0, 1, 0, 1]
    merged = merge_clusters(boxes, ids)
    torch.testing.assert_close(merged, torch.tensor([[5.0, 5, 13, 13], [70, 70, 22, 15]]))
    assert cluster_box_centres(boxes, cut=0.01, image_size=100).unique().numel() == 5
    assert cluster_box_centres(boxes, cut=2.0, image_size=100).unique().numel() == 1
    assert cluster_box_centres(boxes[:1]).tolist() == [0]


def test_rpn_targets_hand_case():
    anchors = torch.tensor([[5, 5, 10, 10], [50, 50, 10, 10], [6, 5, 10, 10], [7.5, 5, 10, 10],
                            [10, 5, 10, 10], [11, 5, 10, 10]], dtype=torch.float32)
    gt = torch.tensor([[0.0, 0, 10, 10]])
    # IoU: 1, 0, 90/110, 75/125, 50/150, 40/160
    labels, targets = rpn_targets(anchors, gt)
    assert labels.tolist() == [1, 0, 1, -1, -1, 0]
    torch.testing.assert_close(targets[2], torch.tensor([-0.1, 0.0, 0.0, 0.0]))
    far = torch.tensor([[0.0, 0, 10, 10], [43, 43, 57, 57]])       # best IoU 100/196 with anchor 1
    assert rpn_targets(anchors, far)[0][1] == -1
    assert rpn_targets(anchors, far, match_best=True)[0][1] == 1
    assert rpn_targets(anchors, torch.zeros(0, 4))[0].eq(0).all()


def test_anchor_minibatch_and_localization_loss():
    labels = torch.cat([torch.ones(10), torch.zeros(100)]).long()
    s = sample_anchor_minibatch(labels, M=8, generator=torch.Generator().manual_seed(0))
    assert (s == 1).sum() == 4 and (s == 0).sum() == 4
    deltas = torch.tensor([[0.5, 2.0, 0.0, 0.0], [9.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0]])
    logits = torch.tensor([0.0, 0.0, 50.0])
    lab = torch.tensor([1, 0, -1])
    # Eq. 4: 0.5 * 0.5^2 + (2 - 0.5) = 1.625 on the positive; BCE log 2 on both sampled anchors
    loss = localization_loss(deltas, logits, lab, torch.zeros(3, 4))
    assert loss.item() == pytest.approx(math.log(2) + 1.625)


# --- the whole model ------------------------------------------------------------------------------------

CFG = RLSDConfig(in_channels=16, num_labels=6, loc_hidden=8, train_regions=10, test_regions=8,
                 grid=3, fc_dim=32, embed=8, hidden=16, max_steps=3)


def test_rlsd_training_and_test_forward():
    torch.manual_seed(0)
    net = RLSD(CFG).train()
    maps = torch.randn(2, 16, 6, 6, requires_grad=True)
    out = net(maps, 48, details=True)
    assert out["p"].shape == (2, 6) and out["region_probs"].shape == (2, 11, 3, 6)
    assert out["regions"].shape == (2, 11, 4) and out["mask"].all()
    torch.testing.assert_close(out["regions"][:, -1], torch.tensor([[0.0, 0, 48, 48]] * 2))
    y = torch.tensor([[1.0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0]])
    rlsd_loss(out["p"], y).backward()
    assert maps.grad.abs().sum() > 0
    assert net.loc.out.weight.grad.abs().sum() > 0              # through the box coordinates
    assert net.lstm.cell.weight_ih.grad.abs().sum() > 0
    net.eval()
    with torch.no_grad():
        ev = net(maps, 48, details=True)
    assert ev["p"].shape == (2, 6)
    assert (ev["mask"].sum(1) <= 9).all() and ev["region_probs"].shape[1] == ev["mask"].shape[1]


def test_external_boxes_global_mode_and_lstm_initialisation():
    torch.manual_seed(0)
    maps = torch.randn(2, 16, 6, 6)
    net = RLSD(CFG).eval()
    boxes = [torch.tensor([[0.0, 0, 10, 10], [5, 5, 30, 40]]), torch.rand(20, 2).mul(20).repeat(1, 2) +
             torch.tensor([0.0, 0, 10, 10])]
    out = net(maps, 48, boxes=boxes, details=True)
    assert out["mask"].sum(1).tolist() == [3, 9]                 # 2 + whole image; first M = 8 + whole image
    torch.testing.assert_close(out["regions"][0, :2], boxes[0])
    glob = RLSD(dataclasses.replace(CFG, mode="global")).eval()
    assert glob.loc is None
    g = glob(maps, 48, details=True)
    assert g["regions"].shape == (2, 1, 4) and g["p"].shape == (2, 6)
    copied = net.init_from_global(glob.state_dict())
    assert copied and all(n.startswith(("encoder.", "lstm.")) for n in copied)
    for n, t in glob.state_dict().items():
        torch.testing.assert_close(net.state_dict()[n], t)
    # with no proposal but the whole image the initialised RLSD is the global model
    only_whole = net(maps, 48, boxes=[torch.zeros(0, 4), torch.zeros(0, 4)])
    torch.testing.assert_close(only_whole, g["p"])
    with pytest.raises(ValueError):
        RLSD(dataclasses.replace(CFG, fc_dim=64)).init_from_global(glob)


# --- Visual Genome -----------------------------------------------------------------------------------------

def _vg(tmp_path, regions=None):
    images = [{"image_id": 1, "width": 800, "height": 600, "url": "https://example.org/VG_100K/1.jpg"},
              {"image_id": 7, "width": 500, "height": 333, "url": "https://example.org/VG_100K_2/7.jpg"}]
    regions = regions or [
        {"id": 1, "regions": [
            {"region_id": 11, "image_id": 1, "phrase": "man holding a cup", "x": 10, "y": 20,
             "width": 100, "height": 50},
            {"region_id": 12, "image_id": 1, "phrase": "empty", "x": 10, "y": 20, "width": 0, "height": 50}]},
        {"id": 7, "regions": [
            {"region_id": 71, "image_id": 7, "phrase": "a red bus", "x": 1.5, "y": 2, "width": 30, "height": 40}]}]
    (tmp_path / "image_data.json").write_text(json.dumps(images))
    (tmp_path / "region_descriptions.json").write_text(json.dumps(regions))
    (tmp_path / "VG_100K_2").mkdir(exist_ok=True)
    (tmp_path / "VG_100K_2" / "7.jpg").write_bytes(b"")
    return tmp_path


def test_visual_genome_reader(tmp_path):
    data = read_regions(_vg(tmp_path))
    assert [im.image_id for im in data] == [1, 7]
    a, b = data.images
    assert (a.width, a.height) == (800, 600) and a.path == tmp_path / "VG_100K" / "1.jpg"
    assert b.path == tmp_path / "VG_100K_2" / "7.jpg"
    assert a.boxes.tolist() == [[10, 20, 100, 50]] and a.phrases == ["man holding a cup"] and a.region_ids == [11]
    assert b.boxes.tolist() == [[1.5, 2, 30, 40]]
    assert data.skipped == {"empty_region": 1}
    with pytest.raises(DataFormatError, match="1.jpg"):
        read_regions(tmp_path, check_images=True)


def test_visual_genome_reader_errors(tmp_path):
    bad = [{"id": 1, "regions": [{"region_id": 11, "image_id": 1, "phrase": "x", "x": 0, "y": 0,
                                  "width": "wide", "height": 5}]}]
    with pytest.raises(DataFormatError, match=r"region_descriptions\.json.*region_id 11.*'width'"):
        read_regions(_vg(tmp_path, bad))
    missing = [{"id": 7, "regions": [{"region_id": 3, "image_id": 7, "x": 0, "y": 0, "width": 5, "height": 5}]}]
    with pytest.raises(DataFormatError, match=r"region_descriptions\.json.*image id 7.*'phrase'"):
        read_regions(_vg(tmp_path, missing))
    (tmp_path / "image_data.json").write_text(json.dumps([{"image_id": 1, "width": 8}]))
    with pytest.raises(DataFormatError, match=r"image_data\.json.*image_id 1.*'height'"):
        read_regions(tmp_path)
    (tmp_path / "region_descriptions.json").unlink()
    with pytest.raises(DataFormatError, match="region_descriptions.json: file not found"):
        read_regions(tmp_path)


def test_generated_regions_round_trip(tmp_path):
    root = write_generated_regions(tmp_path / "vg", n_images=5, image_size=48, seed=3, n_classes=8)
    data = read_regions(root, check_images=True)
    assert len(data) == 5 and not data.skipped
    assert all(im.image_id > GENERATED_ID_OFFSET and (im.width, im.height) == (48, 48) for im in data)
    assert all(len(im.phrases) >= 1 and im.boxes.shape == (len(im.phrases), 4) for im in data)
    assert all((im.boxes[:, :2] >= 0).all() and (im.boxes[:, :2] + im.boxes[:, 2:] <= 48).all() for im in data)
    multi = [p for im in data for p in im.phrases if " and " in p]
    singles = [p for im in data for p in im.phrases if " and " not in p]
    assert singles and multi
    objects = read_objects(root)   # the stand-in writes the release's objects.json too
    assert sorted(objects) == [im.image_id for im in data]
    for im in data:   # every region naming several objects holds two or more whole object boxes
        for box, phrase in zip(im.boxes, im.phrases):
            if " and " in phrase:
                obs = objects[im.image_id]
                inside = (obs[:, :2] >= box[:2]).all(1) & (obs[:, :2] + obs[:, 2:] <= box[:2] + box[2:]).all(1)
                assert int(inside.sum()) >= 2
    again = write_generated_regions(tmp_path / "vg2", n_images=5, image_size=48, seed=3, n_classes=8)
    for name in ("image_data.json", "region_descriptions.json"):
        assert (root / name).read_bytes() == (again / name).read_bytes()


# --- selective search (the MCG substitute) ----------------------------------------------------------------

def test_selective_search_small_image():
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "ximgproc"):
        pytest.skip("OpenCV without the contrib modules")
    import numpy as np
    from torchvision.ops import box_iou

    from mlbook.data.proposals import selective_search_boxes

    img = np.full((48, 48, 3), 90, np.uint8)
    img[5:20, 5:20] = (230, 40, 40)
    img[30:44, 25:45] = (40, 80, 240)
    boxes = selective_search_boxes(img, top=30)
    assert boxes.dtype == torch.float32 and boxes.shape[1] == 4 and 1 <= len(boxes) <= 30
    assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 48
    objects = torch.tensor([[5.0, 5, 20, 20], [25, 30, 45, 44]])
    assert (box_iou(objects, boxes).max(1).values > 0.7).all()
    assert len(selective_search_boxes(img, top=3)) == 3


def test_selective_search_names_the_package_when_opencv_is_missing(monkeypatch):
    import sys

    from mlbook.data.proposals import selective_search_boxes

    monkeypatch.setitem(sys.modules, "cv2", None)            # "import cv2" now raises ImportError
    with pytest.raises(ImportError, match="opencv-contrib-python-headless"):
        selective_search_boxes(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy())
