"""`python -m mlbook ...`: reproduce, data, evaluate, train, bench.

Every subcommand is a thin wrapper over a package function, so a notebook, the
CLI and a torchrun launch all run the same code.
"""
from __future__ import annotations

import argparse
import json
import sys

from .profiles import PROFILES


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default="demo", help="run size (default: demo)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)


def _add_roots(p: argparse.ArgumentParser) -> None:
    for name in ("coco", "nuswide", "voc"):
        p.add_argument(f"--{name}-root", dest=f"{name}_root", default=None, metavar="PATH",
                       help=f"real {name} data (default: the generated data set)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mlbook", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("reproduce", help="execute the chapters with papermill and build the book")
    _add_common(p)
    _add_roots(p)
    p.add_argument("--chapters", default=None, help="comma-separated numbers or names (default: all)")
    p.add_argument("--output-dir", default=None, help="where executed notebooks go "
                   "(default: book/, or _build/smoke for the smoke profile)")
    p.add_argument("--no-build", action="store_true", help="skip the Jupyter Book build")
    p.add_argument("--weights", action="append", default=None, metavar="NAME=FILE",
                   help="ImageNet weights of a full-profile backbone, e.g. resnet101=/w/resnet101.pth (repeatable)")
    p.add_argument("--download-weights", action="store_true",
                   help="allow torchvision to download ImageNet weights (needs network; off by default)")
    p.add_argument("--verbose", action="store_true", help="stream the notebooks' output")

    p = sub.add_parser("data", help="inspect or generate data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("summary", help="what a loader reads from a data set root")
    q.add_argument("--dataset", choices=("coco", "nuswide", "voc"), required=True)
    q.add_argument("--root", required=True, metavar="PATH")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.add_argument("--strict", action="store_true", help="reject every label value outside the format "
                   "(by default NUS-WIDE's known defect, a negative integer, is read as 0 and reported)")
    q = dsub.add_parser("generate", help="write the generated default data set in a real format")
    q.add_argument("--dataset", choices=("coco", "nuswide", "voc"), required=True)
    q.add_argument("--profile", choices=("smoke", "demo"), default="demo")
    q.add_argument("--out", required=True, metavar="PATH")
    q.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("evaluate", help="score a model's outputs under every paper's convention")
    p.add_argument("scores", help="scores [N, C] as .npy or .csv")
    p.add_argument("targets", help="0/1 targets [N, C] as .npy or .csv")
    p.add_argument("--ignore", default=None, help="optional 0/1 ignore mask [N, C] (VOC difficult)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("train", help="train one method ahead of time (torchrun-able); "
                       "the chapters pick the cached result up")
    p.add_argument("--method", required=True, help="a method name; --method list shows them")
    p.add_argument("--dataset", choices=("coco", "nuswide", "voc"), default="coco")
    p.add_argument("--root", default=None, metavar="PATH", help="real data root (default: generated)")
    _add_common(p)
    p.add_argument("--train-seeds", default="0", metavar="S[,S...]",
                   help="training seeds, comma-separated (data and backbone stay fixed by --seed)")
    p.add_argument("--epochs", type=int, default=None, help="epoch budget (early stopping may end sooner; "
                   "default: the profile's head_epochs / finetune_epochs)")
    p.add_argument("--patience", type=int, default=None,
                   help="epochs without a lower hold-out loss before stopping (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the profile's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    p.add_argument("--lam", type=float, default=None, help="CADM: weight of L_lce in Eq. 5 (default 0.5)")
    p.add_argument("--weights", default=None, metavar="FILE",
                   help="ImageNet weights of the full profile's backbone (a torchvision state dict)")
    p.add_argument("--download-weights", action="store_true",
                   help="allow torchvision to download ImageNet weights (needs network; off by default)")
    p.add_argument("--force", action="store_true", help="recompute even if a cached result exists")

    p = sub.add_parser("plan", help="GPU hours of the full profile's training runs, FLOPs counted on the meta device")
    p.add_argument("--profile", choices=("full",), default="full")
    p.add_argument("--gpu", choices=("h100", "h200", "a100", "l4"), default="h100")
    p.add_argument("--utilisation", type=float, default=0.4, help="share of the GPU's bf16 peak reached (default 0.4)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per compared row (default 3)")

    p = sub.add_parser("bench", help="speed ratios measured in one run")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    q = bsub.add_parser("metrics", help="vectorised metrics vs a per-class scikit-learn loop")
    q.add_argument("--n", type=int, default=40504)
    q.add_argument("--c", type=int, default=80)
    q = bsub.add_parser("decode", help="batched beam search vs a per-image loop")
    q.add_argument("--device", default="auto")
    q.add_argument("--merge-sets", action="store_true", help="beam search with set-merged paths")
    q = bsub.add_parser("train", help="training throughput (img/s) on synthetic tensors")
    q.add_argument("--model", default="cadm", help="cadm (baseline and lambda=0.5), baseline, lambda0, lambda0.5, "
                   "rlsd (RLSD, scaling with the regions M) or ranking (the transformation ranking model)")
    q.add_argument("--profile", choices=PROFILES, default="demo")
    q.add_argument("--image-size", type=int, default=None)
    q.add_argument("--batch-size", type=int, default=None)
    q.add_argument("--steps", type=int, default=10)
    q.add_argument("--device", default="auto")
    q.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    q.add_argument("--channels-last", action="store_true")
    return parser


def _methods() -> dict:
    """Every trainable method: name -> (runner, row or variant)."""
    from .experiments import baselines, cadm, order_free_rnn

    return {
        "knn": (baselines.run_baseline, "KNN"), "softmax": (baselines.run_baseline, "Softmax"),
        "warp": (baselines.run_baseline, "WARP"), "resnet_baseline": (baselines.run_baseline, "Resnet-baseline"),
        "cnn_rnn": (baselines.run_baseline, "CNN-RNN"),
        "order_free_rnn": (order_free_rnn.run_row, "Ours"),
        "order_free_rnn_no_attention": (order_free_rnn.run_row, "Ours (w/o atten)"),
        "order_free_rnn_frequency_first": (order_free_rnn.run_row, "Frequency-first (w/ atten)"),
        "order_free_rnn_rare_first": (order_free_rnn.run_row, "Rare-first (w/ atten)"),
        "cadm_baseline": (cadm.run_variant, "baseline"), "cadm_lambda0": (cadm.run_variant, "lambda0"),
        "cadm": (cadm.run_variant, "lambda0.5"), "cadm_embed_only": (cadm.run_variant, "lambda0.5_embed_only"),
    }


def _train(args) -> int:
    """``python -m mlbook train``: one method, one or several training seeds, every knob a flag."""
    import dataclasses

    from .profiles import get_profile

    methods = _methods()
    if args.method == "list" or args.method not in methods:
        if args.method != "list":
            print(f"unknown method {args.method!r}", file=sys.stderr)
        print("methods: " + ", ".join(sorted(methods)))
        return 0 if args.method == "list" else 2
    prof = get_profile(args.profile)
    changes = {k: v for k, v in (("patience", args.patience), ("batch_size", args.batch_size)) if v is not None}
    if args.epochs is not None:
        changes.update(head_epochs=args.epochs, finetune_epochs=args.epochs)
    prof = prof.replace(**changes)
    runner, row = methods[args.method]
    kw = {"force": args.force}
    if args.method.startswith("cadm"):
        from .experiments.cadm import recipe_for
        from .models.cadm import CADMOptions

        recipe = recipe_for(prof)
        kw["recipe"] = dataclasses.replace(recipe, lr=args.lr) if args.lr is not None else recipe
        kw["weights"] = args.weights
        if args.lam is not None:
            kw["options"] = CADMOptions(lam=args.lam)
    else:
        kw["weights"] = args.weights
        if args.lr is not None:
            kw["settings"] = {"lr": args.lr}
    if args.weights or args.download_weights:
        from .models.backbones import build_backbone

        if prof.backbone != "small_cnn":   # fail early, with the message, if the weights are not there
            name = prof.backbone if args.method.startswith("cadm") else "resnet152"   # frozen-feature rows: ResNet-152
            build_backbone(name, weights=args.weights, download=args.download_weights)
    for train_seed in [int(t) for t in args.train_seeds.split(",") if t.strip()]:
        result = runner(row, args.dataset, prof, args.root, args.seed, args.device, train_seed=train_seed, **kw)
        metrics = result.get("metrics", {})
        print(json.dumps({"method": args.method, "train_seed": train_seed, "wall_s": result.get("wall_s"),
                          **{k: v for k, v in metrics.items() if isinstance(v, (int, float))}}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "reproduce":
        from .reproduce import main as reproduce

        return reproduce(args)

    if args.command == "data":
        if args.data_command == "summary":
            from .data.summary import format_summary, summarize, unreadable_splits

            result = summarize(args.dataset, args.root, strict=args.strict)
            print(json.dumps(result, indent=2) if args.json else format_summary(result))
            if unreadable_splits(result):
                return 1   # any split unreadable: a script checking a copy must see the failure
        else:
            from .data.synthetic import generate_for_profile

            generate_for_profile(args.dataset, args.profile, args.out, args.seed)
            print(f"wrote the generated {args.dataset} data set ({args.profile}) to {args.out}")
        return 0

    if args.command == "evaluate":
        from .evaluate import evaluate_files, format_report

        result = evaluate_files(args.scores, args.targets, args.ignore)
        print(json.dumps(result, indent=2) if args.json else format_report(result))
        return 0

    if args.command == "train":
        try:
            return _train(args)
        except FileNotFoundError as err:   # missing weights or data: the message, no traceback
            print(f"error: {err}", file=sys.stderr)
            return 2

    if args.command == "plan":
        from .plan import plan

        print(plan(args.gpu, args.utilisation, args.seeds).to_markdown(index=False))
        return 0

    if args.command == "bench":
        from . import bench

        if args.bench_command == "metrics":
            bench.bench_metrics(n=args.n, c=args.c)
        elif args.bench_command == "decode":
            bench.bench_decode(device=args.device, merge_sets=args.merge_sets)
        elif args.model == "rlsd":
            from .experiments.rlsd import bench_rlsd

            bench_rlsd(profile=args.profile, steps=args.steps, device=args.device, dtype=args.dtype,
                       channels_last=args.channels_last)
        elif args.model == "ranking":
            bench.bench_ranking(profile=args.profile, batch_size=args.batch_size, steps=args.steps,
                                device=args.device, dtype=args.dtype, channels_last=args.channels_last)
        else:
            bench.bench_train(model=args.model, profile=args.profile, image_size=args.image_size,
                        batch_size=args.batch_size, steps=args.steps, device=args.device,
                        dtype=args.dtype, channels_last=args.channels_last)
        return 0
    return 2
