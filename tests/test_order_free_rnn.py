"""Order-Free RNN chapter: models, decoding, losses and the threshold protocol."""
from __future__ import annotations

import math

import pytest
import torch

from mlbook import claims, decoding, metrics
from mlbook.bench.decoding import beam_search_reference
from mlbook.bench.order_free_rnn import bench_decode
from mlbook.experiments import baselines as baseline_exp
from mlbook.experiments import order_free_rnn as ofr_exp
from mlbook.experiments import features, shared
from mlbook.losses import softmax_normalised_loss, warp_loss, warp_rank_weight
from mlbook.models import baselines, order_free_rnn as ofr
from mlbook.profiles import get_profile

C, D = 4, 8


def tiny_model(order="learned", attention=True, seed=0, classes=C):
    torch.manual_seed(seed)
    return ofr.OrderFreeRNN(ofr.OrderFreeConfig(classes, D, hidden=16, att_dim=8, pred_hidden=16,
                                                attention=attention, order=order)).eval()


def batch(n=6, classes=C, seed=1):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(n, D, 3, 3, generator=g)
    y = (torch.rand(n, classes, generator=g) < 0.5).float()
    y[:, 0] = 1.0
    return maps, y


# --- shapes and gradients -----------------------------------------------------------------

@pytest.mark.parametrize("order", ofr.ORDERS)
@pytest.mark.parametrize("attention", [True, False])
def test_order_free_rnn_shapes_and_gradients(order, attention):
    model = tiny_model(order, attention).train()
    maps, y = batch()
    seq = baselines.fixed_order_sequences(y, baselines.label_rank(y, "frequency" if order == "learned" else order))
    context, state, prob_logits = model.begin(maps)
    assert prob_logits.shape == (6, C) and context[0].shape == (6, 9, D)
    p, state, alpha = model.step(context, state, torch.zeros(6, C, dtype=torch.bool))
    assert p.shape == (6, C) and state[0].shape == (6, 16)
    assert (alpha is None) == (not attention)
    if attention:
        assert alpha.shape == (6, 9) and torch.allclose(alpha.sum(1), torch.ones(6))
    loss = model.loss(maps, y, seq)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert (model.matt is None) == (not attention)


@pytest.mark.parametrize("order", ofr.ORDERS)
def test_classes_without_a_positive_leave_the_loss_finite(order):
    """A dry run's few images leave most of NUS-WIDE's 81 classes without a positive (and a loader may
    pass an image without a label): a class of frequency 0 is ranked, ties broken by class index, never
    divided by, and the loss and every gradient stay finite."""
    classes = 81
    model = tiny_model(order, classes=classes).train()
    maps, _ = batch(n=5, classes=classes)
    y = torch.zeros(5, classes)
    for image, labels in enumerate(([3, 40], [40], [7], [3, 7, 80])):   # 77 classes without a positive, image 4 none
        y[image, labels] = 1.0
    rank = baselines.label_rank(y, "rare" if order == "rare" else "frequency")
    assert sorted(rank.tolist()) == list(range(classes))
    if order == "rare":
        assert rank[[0, 1, 2, 79, 80, 3, 7, 40]].tolist() == [0, 1, 2, 76, 77, 78, 79, 80]
    else:
        assert rank[[3, 7, 40, 80, 0, 1]].tolist() == [0, 1, 2, 3, 4, 5]
    seq = baselines.fixed_order_sequences(y, rank)
    assert seq[4].tolist() == [-1, -1, -1]
    loss = model.loss(maps, y, None if order == "learned" else seq)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_baseline_shapes_and_gradients():
    maps, y = batch()
    head = baselines.LinearHead(D, C)
    for loss in baselines.HEAD_LOSSES.values():
        head.zero_grad()
        scores = head(maps)
        assert scores.shape == (6, C)
        loss(scores, y).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    torch.manual_seed(0)
    rnn = baselines.CNNRNN(D, C, embed=8, hidden=16)
    seq = baselines.fixed_order_sequences(y, baselines.label_rank(y, "frequency"))
    rnn.loss(maps, seq).backward()
    for name, param in rnn.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    out = rnn.eval().decode(maps, beam=2, max_len=3)
    assert out.shape == (6, 3)
    scores = baselines.knn_scores(torch.randn(10, D), (torch.rand(10, C) < 0.5).float(), torch.randn(3, D), k=4)
    assert scores.shape == (3, C) and scores.max() <= 4.01


# --- candidate pool ---------------------------------------------------------------------------

def _no_repeats(seqs):
    for row in seqs.tolist():
        labels = [l for l in row if l >= 0]
        assert len(labels) == len(set(labels)), row
        assert row == labels + [-1] * (len(row) - len(labels)), row   # padding only at the end


def test_candidate_pool_never_repeats_a_label():
    model = tiny_model(classes=6)
    with torch.no_grad():                     # make label 2 overwhelmingly likely at every step
        model.mpred.f_pred[-1].bias[2] = 20.0
    maps, _ = batch(classes=6)
    for beam in (1, 3, 8):
        seqs = model.decode(maps, beam=beam, max_len=6, threshold=0.0)
        _no_repeats(seqs)
        assert (seqs >= 0).all()              # threshold 0: every label once, none twice
    rnn = baselines.CNNRNN(D, 6, embed=8, hidden=16).eval()
    _no_repeats(rnn.decode(maps, beam=3, max_len=6))


# --- beam search against brute force -----------------------------------------------------------

def exhaustive(step_fn, context, state, num_labels, max_len, threshold=0.0, end_index=None):
    """Every label sequence of one image (batch of 1), scored by Eq. 11."""
    log_tau = math.log(threshold) if threshold > 0 else -math.inf
    paths = []

    def walk(labels, score, st):
        emitted = torch.zeros(1, num_labels, dtype=torch.bool)
        emitted[0, labels] = True
        prev = torch.tensor([labels[-1] if labels else -1])
        if len(labels) == max_len:
            paths.append((labels, score))
            return
        logp, new_st = step_fn(context, st, emitted, prev)
        logp = logp[0].tolist()
        if end_index is not None:
            paths.append((labels, score + logp[end_index]))
        else:
            paths.append((labels, score))
        for c in range(num_labels):
            if c not in labels and score + logp[c] >= log_tau:
                walk(labels + [c], score + logp[c], new_st)

    walk([], 0.0, state)
    if end_index is None:      # the longest length reached, then the most probable path of that length
        longest = max(len(p[0]) for p in paths)
        paths = [p for p in paths if len(p[0]) == longest]
    return max(paths, key=lambda p: p[1])


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.2, 0.6])
@pytest.mark.parametrize("order", ["learned", "rare"])
def test_beam_search_equals_exhaustive_search(threshold, order):
    model = tiny_model(order, seed=3)
    maps, _ = batch(n=5, seed=4)
    context, state = model.decode_inputs(maps)
    wide = C * (C - 1) * (C - 2)               # beam wide enough to keep every path of length 3
    seqs, scores = decoding.beam_search(model.step_fn, context, state, C, beam=wide, max_len=3,
                                        threshold=threshold)
    for b in range(5):
        ctx = tuple(c[b:b + 1] for c in context)
        st = tuple(s[b:b + 1] for s in state)
        labels, score = exhaustive(model.step_fn, ctx, st, C, 3, threshold)
        assert [l for l in seqs[b].tolist() if l >= 0] == labels
        assert scores[b].item() == pytest.approx(score, abs=1e-5)


def test_end_token_beam_search_equals_exhaustive_search():
    torch.manual_seed(5)
    rnn = baselines.CNNRNN(D, C, embed=8, hidden=16).eval()
    with torch.no_grad():
        rnn.labels.weight.mul_(3.0)           # sharper distributions: some paths end early
    maps, _ = batch(n=6, seed=6)
    context, state = rnn.begin(maps)
    seqs, scores = decoding.beam_search(rnn.step_fn, context, state, C, beam=24, max_len=3, end_index=C)
    for b in range(6):
        ctx = tuple(c[b:b + 1] for c in context)
        st = tuple(s[b:b + 1] for s in state)
        labels, score = exhaustive(rnn.step_fn, ctx, st, C, 3, end_index=C)
        assert [l for l in seqs[b].tolist() if l >= 0] == labels
        assert scores[b].item() == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.3])
def test_greedy_equals_beam_width_one(threshold):
    model = tiny_model(seed=7, classes=6)
    maps, _ = batch(n=12, classes=6, seed=8)
    context, state = model.decode_inputs(maps)
    g, gs = decoding.greedy_decode(model.step_fn, context, state, 6, max_len=4, threshold=threshold)
    b, bs = decoding.beam_search(model.step_fn, context, state, 6, beam=1, max_len=4, threshold=threshold)
    assert torch.equal(g, b)
    assert torch.allclose(gs, bs, atol=1e-6)
    assert torch.equal(model.decode(maps, beam=1, max_len=4, threshold=threshold), g)


@pytest.mark.parametrize("end", [False, True])
def test_batched_beam_search_equals_per_image_reference(end):
    if end:
        torch.manual_seed(9)
        model = baselines.CNNRNN(D, 6, embed=8, hidden=16).eval()
        context, state = model.begin(batch(n=7, classes=6)[0])
        kw = dict(end_index=6)
    else:
        model = tiny_model(seed=9, classes=6)
        context, state = model.decode_inputs(batch(n=7, classes=6)[0])
        kw = dict(threshold=0.02)
    a, sa = decoding.beam_search(model.step_fn, context, state, 6, beam=3, max_len=4, **kw)
    r, sr = beam_search_reference(model.step_fn, context, state, 6, beam=3, max_len=4, **kw)
    assert torch.equal(a, r)
    assert torch.allclose(sa, sr, atol=1e-5)


def test_sequences_to_sets_keeps_emission_order():
    seqs = torch.tensor([[2, 0, 3, -1], [-1, -1, -1, -1]])
    s = decoding.sequences_to_sets(seqs, 4)
    assert s[0, 2] > s[0, 0] > s[0, 3] > 0 and s[0, 1] == 0 and (s[1] == 0).all()
    assert (decoding.sequences_to_sets(seqs, 4, k=2)[0] > 0).tolist() == [True, False, True, False]


def test_set_metrics_by_hand():
    y = torch.tensor([[1., 1, 0, 0], [0, 0, 1, 0]])
    seqs = torch.tensor([[0, 2, 1, -1], [2, -1, -1, -1]])
    m = metrics.prf_of_predictions(ofr_exp.emitted(seqs, 4, 2), y)     # predicted {0, 2}, {2}
    assert m["OP"] == pytest.approx(2 / 3) and m["OR"] == pytest.approx(2 / 3)
    m = metrics.prf_of_predictions(ofr_exp.emitted(seqs, 4), y)        # predicted {0, 1, 2}, {2}
    assert m["OP"] == pytest.approx(3 / 4) and m["OR"] == pytest.approx(1.0)


# --- fixed orders --------------------------------------------------------------------------------

def test_fixed_orders():
    y = torch.tensor([[1., 1, 0, 1], [0, 1, 0, 0], [0, 1, 1, 0]])   # frequencies 1, 3, 1, 1
    rank = baselines.label_rank(y, "frequency")
    assert rank[1] == 0
    assert baselines.fixed_order_sequences(y, rank).tolist() == [[1, 0, 3], [1, -1, -1], [1, 2, -1]]
    rare = baselines.label_rank(y, "rare")
    assert baselines.fixed_order_sequences(y, rare)[0, -1] == 1
    # CNN-RNN's fixed order, the one the Order-Free model file's fixed-order ablations read
    assert ofr.fixed_order_sequences is baselines.fixed_order_sequences and ofr.label_rank is baselines.label_rank


def test_the_shared_baselines_name_no_paper():
    """The baselines several papers quote sit below the papers: their model and experiments
    modules import no paper's file."""
    import inspect

    for module in (baselines, baseline_exp):
        source = inspect.getsource(module)
        imports = [line for line in source.splitlines() if line.startswith(("from ", "import "))]
        assert not [line for line in imports for name in ("order_free_rnn", "cadm", "rlsd", "transformation_ranking")
                    if name in line], module.__name__


# --- runs on stand-in features: the threshold never sees the test split; top-k is exactly k ----

class FakeSplit:
    def __init__(self, labels):
        self.labels, self.num_classes, self.ignore = labels, labels.shape[1], None


def fake_data(monkeypatch, tmp_path, n_train=40, n_test=12, classes=5, test_maps=None):
    """Patch the shared stages so a run reads random stand-in features (cached under tmp_path)."""
    torch.manual_seed(0)
    feats = {"train": torch.randn(n_train, D, 3, 3).half(),
             "test": torch.randn(n_test, D, 3, 3).half() if test_maps is None else test_maps}
    labels = (torch.rand(n_train, classes) < 0.4).float()
    labels[:, 0] = 1
    test_labels = (torch.rand(n_test, classes) < 0.4).float()
    data = shared.Splits(FakeSplit(labels), FakeSplit(test_labels))
    monkeypatch.setattr(features, "backbone_features", lambda *a, **k: feats)
    monkeypatch.setattr(shared, "context", lambda d, p, root=None, seed=0: shared.RunContext.over(data, d, p, root, seed,
                                                                                                    fingerprint="test"))
    monkeypatch.setenv("MLBOOK_RUNS", str(tmp_path))
    return feats, labels


def test_threshold_chosen_on_training_holdout_only(monkeypatch, tmp_path):
    """The stopping threshold is chosen from decodes of the held-out training rows and their labels
    only; the test maps (all NaN here) are decoded once, after the choice."""
    n_test = 12
    feats, labels = fake_data(monkeypatch, tmp_path, n_test=n_test,
                              test_maps=torch.full((n_test, D, 3, 3), float("nan")).half())
    decoded_maps, chosen_on = [], []
    real_apply, real_select = features.map_apply, ofr_exp.select_threshold

    def spy_apply(fn, maps, *columns, **kw):
        decoded_maps.append(maps.float().clone())
        return real_apply(fn, maps, *columns, **kw)

    def spy_select(decode_fn, val_maps, val_labels, *args, **kw):
        chosen_on.append((len(decoded_maps), val_labels.clone()))
        return real_select(decode_fn, val_maps, val_labels, *args, **kw)

    monkeypatch.setattr(features, "map_apply", spy_apply)
    monkeypatch.setattr(ofr_exp, "select_threshold", spy_select)
    result = ofr_exp.run("Ours", "nuswide", get_profile("smoke"), device="cpu")

    _, val_idx = shared.holdout_split(len(labels), ofr_exp.settings_for(get_profile("smoke")).holdout, 0)
    (n_decoded, val_labels), = chosen_on
    assert n_decoded == 1                                               # only the hold-out decode came before
    assert torch.equal(decoded_maps[0], feats["train"][val_idx].float())  # exactly the held-out training rows
    assert torch.equal(val_labels, labels[val_idx])
    assert not torch.isnan(decoded_maps[0]).any()                       # the NaN test maps never reached it
    assert torch.isnan(decoded_maps[1]).all() and len(decoded_maps) == 2
    assert math.isfinite(result["threshold"]) and result["threshold"] > 0
    assert result["sequences"].shape[0] == n_test


@pytest.mark.parametrize("order", ofr.ORDERS)
def test_order_free_topk_holds_exactly_k_labels(order):
    """Top-k never stops early: even where every label is improbable (the paper's threshold rule
    emits nothing), each image gets exactly k distinct labels."""
    model = tiny_model(order, seed=11, classes=6)
    with torch.no_grad():
        model.mpred.f_pred[-1].bias.fill_(-30.0)            # sigma(p) ~ 1e-13 for every label
    maps, _ = batch(n=9, classes=6, seed=12)
    assert (model.decode(maps, beam=3, max_len=4, threshold=0.5) < 0).all()   # the paper's rule: no label
    for k in (1, 3, 6):
        seqs = ofr_exp.topk_sequences(model, maps, k, beam=3)
        assert seqs.shape == (9, k) and (seqs >= 0).all()
        _no_repeats(seqs)
        assert (ofr_exp.emitted(seqs, 6, k).sum(1) == k).all()


def test_cnn_rnn_topk_holds_exactly_k_labels():
    """END is no candidate in top-k: even where END is by far the most probable first token
    (its own rule emits nothing), each image gets exactly k distinct labels."""
    torch.manual_seed(13)
    rnn = baselines.CNNRNN(D, 6, embed=8, hidden=16).eval()
    with torch.no_grad():                                      # x_t = ReLU(1) = 1 at every step, so
        for layer in (rnn.proj_i, rnn.proj_o):                 # END's score (80) dominates every label's
            layer.weight.zero_()
            layer.bias.fill_(0.5)
        rnn.labels.weight[6] = 10.0
    maps, _ = batch(n=7, classes=6, seed=14)
    assert (rnn.decode(maps, beam=3, max_len=4) < 0).all()     # its own rule: END first, no label
    for k in (1, 3, 6):
        seqs = baseline_exp.cnn_rnn_topk(rnn, maps, k, beam=3)
        assert seqs.shape == (7, k) and (seqs >= 0).all()
        _no_repeats(seqs)


@pytest.mark.parametrize("row", ["Ours", "Frequency-first (w/ atten)", "CNN-RNN", "Resnet-baseline"])
def test_every_row_scores_exactly_three_labels(monkeypatch, tmp_path, row):
    """The tables' top-3 protocol treats every row alike: a run's "pred" holds exactly 3 labels
    per test image, sequence model or not; the variable-length rule is a separate key."""
    fake_data(monkeypatch, tmp_path)
    paper, exp = (ofr_exp, "pred_paper") if row in ofr_exp.rows("smoke") else (baseline_exp, "pred_until_end")
    result = paper.run(row, "nuswide", get_profile("smoke"), device="cpu")
    assert result["pred"].dtype == torch.bool and (result["pred"].sum(1) == 3).all()
    if "sequences" in result:
        assert exp in result
        first3 = ofr_exp.predictions_under(result, "first 3 of the variable length", 5)
        assert (first3 <= result[exp]).all() and (first3.sum(1) <= 3).all()


# --- losses by hand ------------------------------------------------------------------------------

def test_softmax_normalised_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0), 0.0]])      # softmax = (0.2, 0.6, 0.2)
    y = torch.tensor([[1.0, 1.0, 0.0]])                     # normalised: (0.5, 0.5, 0)
    expected = -(0.5 * math.log(0.2) + 0.5 * math.log(0.6))
    assert softmax_normalised_loss(logits, y).item() == pytest.approx(expected, rel=1e-6)
    # an image without labels contributes nothing
    both = softmax_normalised_loss(torch.cat([logits, logits]), torch.cat([y, torch.zeros(1, 3)]))
    assert both.item() == pytest.approx(expected, rel=1e-6)


def test_warp_loss_by_hand():
    assert warp_rank_weight(torch.tensor([0, 1, 2, 3])).tolist() == pytest.approx([0, 1, 1.5, 1 + 1 / 2 + 1 / 3])
    s = torch.tensor([[2.0, 0.5, 1.0, -1.0]])
    y = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    # positive 0 (2.0): margins 1-2+1=0, 1-2-1<0 -> rank 0, nothing.
    # positive 1 (0.5): vs 1.0 -> 1.5, vs -1.0 -> -0.5 -> rank 1, L(1) = 1 -> 1.5
    assert warp_loss(s, y).item() == pytest.approx(1.5)
    s2 = torch.tensor([[0.0, 0.5, 1.0, 0.2]])               # positive 0 beaten by all three negatives
    y2 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # violations 1.5, 2.0, 1.2 (sum 4.7), rank 3, L(3) = 11/6
    assert warp_loss(s2, y2).item() == pytest.approx(11 / 6 * 4.7)
    assert warp_loss(torch.cat([s, s2]), torch.cat([y, y2])).item() == pytest.approx((1.5 + 11 / 6 * 4.7) / 2)
    # sampled rank: the first violator is found at the first draw -> r = floor(3 / 1) = 3
    g = torch.Generator().manual_seed(0)
    assert warp_loss(s2, y2, rank="sampled", generator=g).item() == pytest.approx(11 / 6 * 4.7)


def test_bench_decode_runs_and_agrees():
    for merge in (False, True):
        r = bench_decode(n_images=8, num_labels=6, feat_dim=8, grid=3, hidden=16, print_result=False,
                               merge_sets=merge)
        assert r["same_sequences"] == 1.0 and r["max_abs_score_diff"] < 1e-4


def test_set_merged_beams_hold_distinct_sets():
    """With merge_sets the K beams of an image never hold one label set in two orders."""
    torch.manual_seed(0)
    model = ofr.OrderFreeRNN(ofr.OrderFreeConfig(num_classes=5, feat_dim=D, hidden=16, att_dim=8,
                                                 pred_hidden=16)).eval()
    context, state = model.decode_inputs(torch.randn(6, D, 3, 3))
    from mlbook.decoding import drop_repeated_sets
    cand = torch.tensor([[0.0, -0.1, -0.2, -0.3]])
    codes = torch.tensor([[7, 7, 9, 7]])          # candidates 0, 1 and 3 hold the same set
    kept = drop_repeated_sets(cand, codes, keep=2)
    assert torch.isfinite(kept).tolist() == [[True, False, True, False]]
    a, _ = decoding.beam_search(model.step_fn, context, state, 5, beam=3, max_len=3, merge_sets=True)
    r, _ = beam_search_reference(model.step_fn, context, state, 5, beam=3, max_len=3, merge_sets=True)
    assert torch.equal(a, r)


# --- the chapter's grid and claims ------------------------------------------------------------------

def test_grid_trains_every_table_row_with_every_seed():
    runs = ofr_exp.grid("smoke", ["nuswide", "coco"], [0, 1, 2])
    for d in ("nuswide", "coco"):
        rows = {r.row for r in runs if r.dataset == d and r.paper != "features"}
        assert rows == set(ofr_exp.table_rows(d))                       # baselines included
        for row in rows:
            assert sorted(r.train_seed for r in runs if r.dataset == d and r.row == row) == [0, 1, 2]
    assert "KNN" in ofr_exp.table_rows("nuswide") and "KNN" not in ofr_exp.table_rows("coco")
    trunks = {dict(r.options).get("trunk") for r in runs if r.paper == "baselines"}
    assert trunks == {ofr_exp.TRUNK}                                     # baselines on the paper's trunk
    assert min(r.wave for r in runs) == -1 and all(r.paper == "features" for r in runs if r.wave == -1)


def test_rows_and_stages_are_the_grids():
    """The face: ``rows`` are the rows ``run`` trains (the grid's Order-Free runs), the baselines'
    ``rows`` the rest of the tables; neither has a stage."""
    runs = ofr_exp.grid("smoke", ["nuswide", "coco"], [0])
    assert ofr_exp.rows("smoke") == tuple(ofr_exp.ROW_OPTIONS) == ofr_exp.rows("full")
    assert {r.row for r in runs if r.paper == "order_free_rnn"} == set(ofr_exp.rows("smoke"))
    assert {r.row for r in runs if r.paper == "baselines"} == set(ofr_exp.BASELINE_ROWS)
    assert baseline_exp.rows("smoke") == tuple(baseline_exp.ROW_SPECS) and set(ofr_exp.BASELINE_ROWS) <= set(
        baseline_exp.rows("smoke"))
    assert ofr_exp.stages("smoke") == () == baseline_exp.stages("smoke")


def fake_chapter_results(seeds, n=40, C=6, seed=0):
    """Random predictions of every row of chapter 04 and test data with object boxes (COCO)."""
    from mlbook.data.base import Box

    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, C, generator=g) < 0.4).float()
    side = lambda: float(torch.randint(2, 30, (1,), generator=g))  # noqa: E731
    boxes = [[Box(0, 0, side(), 10.0, c) for c in row.nonzero().flatten().tolist()] for row in y]
    test = type("Test", (), {"labels": y, "ignore": None, "boxes": boxes, "image_sizes": [(32, 32)] * n})
    results = {}
    for d in ("nuswide", "coco"):
        for row in ofr_exp.table_rows(d):
            for s in seeds:
                pred = lambda: torch.rand(n, C, generator=g) < 0.4  # noqa: E731
                results[d, row, s] = {"pred": pred(), "pred_paper": pred(), "pred_paper_greedy": pred(),
                                      "pred_paper_merged": pred()}
    return results, type("Data", (), {"test": test})


def test_every_listed_claim_of_the_chapter_evaluates():
    seeds = [0, 1, 2]
    results, data = fake_chapter_results(seeds)
    evidence = shared.Evidence(results, {"nuswide": data, "coco": data}, seeds)
    catalogue = claims.load("04_order_free_rnn")
    assert {c.dataset for c in catalogue} == {"nuswide", "coco"}
    for c in catalogue:
        options = ofr_exp.claim_options(c, evidence)
        row = claims.evaluate(c, lambda w, c=c: ofr_exp.claim_values(c, evidence, w),
                              n_images=len(data.test.labels), **options)
        assert row["id"] == c.id and len(row["measurements"]) == len(c.metrics)
        for m in row["measurements"]:          # each metric read by the rule, the claim by its quantifier
            assert m["metric_verdict_unadjusted"] == claims.verdict(m["low"], m["high"], test=c.test,
                                                                    margin=c.margin, direction=c.direction)
        assert row["verdict"] == claims.combine([m["metric_verdict"] for m in row["measurements"]], c.quantifier)
        assert set(options["published"]) == set(c.metrics)
        if c.better == "Ours" and c.worse in ofr_exp.table_rows(c.dataset) and c.metrics == ("CF1", "OF1"):
            assert all(v is not None for v in options["published"].values())   # the paper's own Δ is shown


def test_a_size_claim_needs_boxes():
    """``claim_options`` holds the testability: the object-size claim is not testable on a data set
    whose format has no boxes (NUS-WIDE), and is on one with boxes."""
    results, data = fake_chapter_results([0, 1, 2])
    no_boxes = type("Data", (), {"test": type("Test", (), {"labels": data.test.labels, "boxes": []})})
    evidence = shared.Evidence(results, {"nuswide": no_boxes, "coco": data}, [0, 1, 2])
    sized = [c for c in claims.load("04_order_free_rnn") if "recall gain small − large" in c.metrics]
    assert {c.dataset for c in sized} == {"nuswide", "coco"}
    for c in sized:
        options = ofr_exp.claim_options(c, evidence)
        assert options["testable"] == (c.dataset == "coco")
        assert bool(options["why_not"]) == (c.dataset != "coco")
