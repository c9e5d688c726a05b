"""The papers' conventions and the prediction protocols: PAPER_CONVENTIONS, PROTOCOLS, and
:func:`evaluate_all` / :func:`summary`, which evaluate scores under them."""
from __future__ import annotations

from typing import Any

import torch

from ._inputs import _check
from .ranking import average_precision, map_at_k, mean_average_precision
from .sets import (CF1_OPTIONS, EMPTY_PRECISION_OPTIONS, _prf_from_counts, confusion_counts,
                   predict_labels, prf)


# ---------------------------------------------------------------------------
# protocols and the papers' conventions
# ---------------------------------------------------------------------------

#: the prediction rules evaluated by :func:`evaluate_all` (keyword args of prf)
PROTOCOLS: dict[str, dict[str, Any]] = {
    "top3": {"k": 3},
    "top3+floor0.5": {"k": 3, "floor": 0.5},
    "top5": {"k": 5},
    "top5+floor0.5": {"k": 5, "floor": 0.5},
    "thr0.5": {"threshold": 0.5},
    "thr>0.5": {"threshold": 0.5, "strict": True},
}
_PROTOCOL_ALIASES = {"all": "thr0.5", "threshold": "thr0.5", "top-3": "top3", "top-5": "top5"}

#: per paper: the protocols of its tables and the options it uses; "source"
#: quotes the paper, or says what is unstated and assumed.  Scores are assumed
#: to be probabilities (a 0.5 threshold/floor on logits would be 0).
PAPER_CONVENTIONS: dict[str, dict[str, Any]] = {
    "order_free_rnn": {
        "protocols": ["thr0.5"],
        "prediction": "beam search over label sequences, stopped by a probability "
                      "threshold chosen by cross-validation (variable label count); "
                      "for a score matrix we assume threshold 0.5",
        "cf1": "harmonic", "empty_precision": "zero", "map": None, "difficult": None,
        "source": "'the prediction process via beam search would terminate [when] the "
                  "probability output of a particular prediction path is below a threshold "
                  "(which is determined by cross-validation)'; CF1 unstated, but Table 2 "
                  "'Ours' CP 71.6, CR 54.8 -> harmonic 62.1 = reported C-F1; Table 1 caption "
                  "'Macro/Micro P/R/F1 scores are abbreviated as O/C-P/R/F1' has macro/micro "
                  "swapped (C = per-class = macro); empty precision unstated (assumed zero)",
    },
    "rlsd": {
        "protocols": ["top3", "top3+floor0.5"],     # the primary first; the floor is a variant
        "k": 3, "floor": None, "variant_floor": 0.5,
        "cf1": "harmonic", "empty_precision": "zero",
        "map": "mAP (VOC: per-class AP, Table I) and mAP@10 (COCO, Table III)",
        "map_at_k": {"k": 10, "per": "class", "normalize": "min"},
        "difficult": "unstated; VOC protocol assumed (ignored)",
        "source": "'For each test image, we predict k highest ranked labels' (Sec. IV-B; k = 3, "
                  "Tables II-IV): top 3, every row at 3 labels, is the book's primary protocol. The "
                  "paper states a floor once, for its own model on MS-COCO: 'our model may predict "
                  "less than k labels for an image (a threshold t = 0.5 is set on the prediction "
                  "score ...)' (Sec. IV-E); kept as the variant top3+floor0.5. It cannot have "
                  "produced the paper's own Table III: Eq. 14 trains a true label of an image with n "
                  "labels towards 1/n, below 0.5 for n >= 3, so with the floor most COCO labels would "
                  "never be predicted, while RLSD reports CR 56.4, OR 59.9. cp = 1/c sum Nc/Np "
                  "(Eq. 16); F1 formula unstated but 67.7/56.4 -> 61.5 (harmonic); empty precision "
                  "unstated (assumed zero); mAP@10 formula unstated ('mAP@10 measures are "
                  "additionally computed'; Fig. 8 gives a per-class 'average precision @ 10', hence "
                  "per='class')",
    },
    "transformation_ranking": {
        "protocols": ["top3", "top5"],
        "k": [3, 5], "floor": None,
        "cf1": "harmonic", "empty_precision": "zero", "map": None, "difficult": None,
        "source": "'For each image, the top-k ranked labels are compared to the ground "
                  "truth labels' (Tables 3, 4: 3 and 5 labels); text says F1 is 'the "
                  "geometrical average of the precision and the recall' but the tables are "
                  "harmonic (O: 51.8/63.8 -> 57.2 reported; geometric would be 57.5; "
                  "top-5 C: 27.5/58.5 -> 37.4 reported, geometric 40.1); no floor stated; "
                  "empty precision unstated (assumed zero)",
    },
    "cadm": {
        "protocols": ["thr>0.5", "top3"],
        "threshold": 0.5, "strict": True, "k": 3,
        "cf1": "harmonic", "empty_precision": "zero", "map": "mAP", "difficult": None,
        "source": "'we assign labels with confidence greater than 0.5 as positive' ('All' "
                  "columns) and 'we also report the results of top-3 labels with highest "
                  "confidences' (no floor stated; follows SRN [12] whose code may floor); "
                  "CF1 unstated but COCO 82.5/72.2 -> 77.0 (harmonic); note Table 2 "
                  "lambda=0.5 top-3 row (64.3/57.7 -> 60.8, printed 56.3) is inconsistent; "
                  "empty precision unstated (assumed zero)",
    },
    "cnn_rnn": {
        "protocols": ["top3"],
        "k": 3, "floor": None,
        "cf1": "harmonic", "empty_precision": "zero",
        "map": "mAP@10 (COCO 61.2 as quoted by RLSD Table III)",
        "map_at_k": {"k": 10, "per": "class", "normalize": "min"},
        "difficult": None,
        "source": "not among the four papers; known through RLSD, which 'refer[s] to the "
                  "evaluation metrics used in [8], [6]' (WARP, CNN-RNN) and quotes CNN-RNN "
                  "at k = 3 with mAP@10; the formula of mAP@10 is unstated (per-class "
                  "reading assumed, per-image is map_at_k(per='image'))",
    },
}


def _protocol_kwargs(protocol: str) -> tuple[str, dict, dict]:
    """Resolve a protocol name, alias or paper key -> (name, prf kwargs, variant kwargs)."""
    variant: dict[str, Any] = {}
    name = _PROTOCOL_ALIASES.get(protocol, protocol)
    if name in PAPER_CONVENTIONS:
        conv = PAPER_CONVENTIONS[name]
        variant = {"cf1": conv["cf1"], "empty_precision": conv["empty_precision"]}
        name = conv["protocols"][0]
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; use one of {sorted(PROTOCOLS)}, "
                         f"{sorted(_PROTOCOL_ALIASES)} or a paper key {sorted(PAPER_CONVENTIONS)}")
    return name, dict(PROTOCOLS[name]), variant


def variant_key(cf1: str, empty_precision: str) -> str:
    """Key of one convention variant in :func:`evaluate_all`'s ``"prf"`` dict."""
    return f"cf1={cf1},empty_precision={empty_precision}"


def evaluate_all(scores, targets, ignore=None) -> dict:
    """Every metric under every convention.

    Returns::

      {"n_images", "n_classes",
       "mAP", "mAP(stable ties)", "mAP(difficult=negative)" (only with ignore),
       "AP": [per-class floats, NaN = no positive],
       "mAP@10": {"per=class,normalize=min", "per=class,normalize=retrieved",
                  "per=image,normalize=min", "per=image,normalize=retrieved"},
       "prf": {protocol: {variant_key(cf1, empty_precision): {CP, CR, CF1, OP, OR, OF1}}},
       "conventions": {paper: [(protocol, variant_key), ...]}}

    protocols = :data:`PROTOCOLS` keys; every cf1 x empty_precision variant.
    All values are fractions in [0, 1].
    """
    scores, targets, valid = _check(scores, targets, ignore)
    ign = None if valid is None else ~valid
    ap = average_precision(scores, targets, ign)
    ok = ~torch.isnan(ap)
    out: dict[str, Any] = {
        "n_images": int(scores.shape[0]),
        "n_classes": int(scores.shape[1]),
        "mAP": float(ap[ok].mean()) if bool(ok.any()) else float("nan"),
        "mAP(stable ties)": mean_average_precision(scores, targets, ign, ties="stable"),
    }
    if ign is not None:
        out["mAP(difficult=negative)"] = mean_average_precision(
            scores, targets, ign, difficult="negative")
    out["AP"] = [float(x) for x in ap.cpu()]
    out["mAP@10"] = {
        f"per={per},normalize={norm}": map_at_k(scores, targets, 10, ign, per=per, normalize=norm)
        for per in ("class", "image") for norm in ("min", "retrieved")}
    prf_out: dict[str, dict] = {}
    for name, kw in PROTOCOLS.items():
        counts = confusion_counts(predict_labels(scores, valid=valid, **kw), targets, valid)
        prf_out[name] = {variant_key(c, e): _prf_from_counts(*counts, c, e)
                         for c in CF1_OPTIONS for e in EMPTY_PRECISION_OPTIONS}
    out["prf"] = prf_out
    out["conventions"] = {
        paper: [(p, variant_key(conv["cf1"], conv["empty_precision"])) for p in conv["protocols"]]
        for paper, conv in PAPER_CONVENTIONS.items()}
    return out


def summary(scores, targets, ignore=None, protocol: str = "top3",
            cf1: str | None = None, empty_precision: str | None = None) -> dict:
    """The six numbers + mAP in one convention, for a table row.

    ``protocol``: a :data:`PROTOCOLS` key (``"top3"``, ``"top3+floor0.5"``,
    ``"top5"``, ``"top5+floor0.5"``, ``"thr0.5"``, ``"thr>0.5"``), an alias
    (``"all"`` = ``"thr0.5"``) or a paper key of :data:`PAPER_CONVENTIONS`
    (its first protocol and its cf1/empty_precision).  Explicit ``cf1`` and
    ``empty_precision`` override; defaults are ``"harmonic"`` and ``"zero"``.
    Returns ``{"mAP", "CP", "CR", "CF1", "OP", "OR", "OF1"}`` (fractions).
    """
    _, kw, variant = _protocol_kwargs(protocol)
    kw["cf1"] = cf1 or variant.get("cf1", "harmonic")
    kw["empty_precision"] = empty_precision or variant.get("empty_precision", "zero")
    out = {"mAP": mean_average_precision(scores, targets, ignore)}
    out.update(prf(scores, targets, ignore, **kw))
    return out

