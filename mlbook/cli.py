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
    p.add_argument("--verbose", action="store_true", help="stream the notebooks' output")

    p = sub.add_parser("data", help="inspect or generate data sets")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("summary", help="what a loader reads from a data set root")
    q.add_argument("--dataset", choices=("coco", "nuswide", "voc"), required=True)
    q.add_argument("--root", required=True, metavar="PATH")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
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

    p = sub.add_parser("bench", help="speed ratios measured in one run")
    bsub = p.add_subparsers(dest="bench_command", required=True)
    q = bsub.add_parser("metrics", help="vectorised metrics vs a per-class scikit-learn loop")
    q.add_argument("--n", type=int, default=40504)
    q.add_argument("--c", type=int, default=80)
    q = bsub.add_parser("decode", help="batched beam search vs a per-image loop")
    q.add_argument("--device", default="auto")
    q = bsub.add_parser("train", help="training throughput (img/s) on synthetic tensors")
    q.add_argument("--model", default="cadm")
    q.add_argument("--profile", choices=PROFILES, default="demo")
    q.add_argument("--image-size", type=int, default=None)
    q.add_argument("--batch-size", type=int, default=None)
    q.add_argument("--steps", type=int, default=10)
    q.add_argument("--device", default="auto")
    q.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    q.add_argument("--channels-last", action="store_true")
    return parser


def _methods() -> dict:
    """Every trainable method, by name, from the model files."""
    from .models import baselines, cadm, order_free_rnn

    methods = {}
    for module in (baselines, order_free_rnn, cadm):
        methods.update(getattr(module, "METHODS", {}))
    return methods


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    if args.command == "reproduce":
        from .reproduce import main as reproduce

        return reproduce(args)

    if args.command == "data":
        if args.data_command == "summary":
            from .data.summary import format_summary, summarize

            result = summarize(args.dataset, args.root)
            print(json.dumps(result, indent=2) if args.json else format_summary(result))
            if all("error" in s for s in result["splits"].values()):
                return 1   # nothing readable: a script checking a copy must see the failure
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
        from .profiles import get_profile

        methods = _methods()
        if args.method == "list" or args.method not in methods:
            if args.method != "list":
                print(f"unknown method {args.method!r}", file=sys.stderr)
            print("methods: " + ", ".join(sorted(methods)))
            return 0 if args.method == "list" else 2
        result = methods[args.method](dataset=args.dataset, profile=get_profile(args.profile),
                                      root=args.root, seed=args.seed, device=args.device)
        metrics = {k: v for k, v in result.items() if isinstance(v, (int, float, str))}
        print(json.dumps(metrics, indent=2, default=str))
        return 0

    if args.command == "bench":
        if args.bench_command == "metrics":
            from .metrics import bench

            bench(n=args.n, c=args.c)
        elif args.bench_command == "decode":
            from .decoding import bench_decode

            bench_decode(device=args.device)
        else:
            from .models.cadm import bench_train

            bench_train(model=args.model, profile=args.profile, image_size=args.image_size,
                        batch_size=args.batch_size, steps=args.steps, device=args.device,
                        dtype=args.dtype, channels_last=args.channels_last)
        return 0
    return 2
