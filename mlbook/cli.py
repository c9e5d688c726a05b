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


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", action="append", default=None, metavar="NAME=FILE",
                   help="ImageNet weights of a full-profile trunk, checked against the network it names "
                        "(repeatable): resnet152=/w/resnet152-394f9c45.pth (04), resnet101=/w/resnet101-63fe2227.pth "
                        "(05), vgg16=/w/vgg16-397923af.pth (06), alexnet=/w/alexnet-owt-7be5be79.pth (07)")
    p.add_argument("--download-weights", action="store_true",
                   help="allow torchvision to download ImageNet weights (needs network; off by default)")


def _add_dry_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit-images", type=int, default=None, metavar="N",
                   help="dry run: the first N training and N test images of every split (every table says 'dry run')")
    p.add_argument("--max-steps", type=int, default=None, metavar="N",
                   help="dry run: at most N optimizer steps per training run, over all its epochs")


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
    _add_weights(p)
    _add_dry_run(p)
    p.add_argument("--vg-root", default=None, metavar="PATH",
                   help="RLSD: genuine Visual Genome (image_data.json, region_descriptions.json, images); "
                        "needed by the full profile (default in demo/smoke: a generated stand-in)")
    p.add_argument("--proposals-root", default=None, metavar="PATH",
                   help="RLSD: your own proposals, <PATH>/<image stem>.txt with 'x1 y1 x2 y2' per line, "
                        "ranked (e.g. MCG boxes), instead of selective search")
    p.add_argument("--lanes", type=int, default=None, metavar="N",
                   help="chapters run side by side within a stage (default: 01-03 two side by side on a CPU "
                        "with 2+ cores, every other chapter alone with every core); the numbers do not "
                        "depend on it")
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

    p = sub.add_parser("train", help="train rows of the four papers' tables ahead of time (torchrun-able); "
                       "the chapters pick the cached results up")
    p.add_argument("--method", required=True, metavar="PAPER:ROW",
                   help="a row of a paper's table, e.g. rlsd:RLSD or 'order_free_rnn:Ours (w/o atten)' "
                        "(a slug such as rlsd:rlsd-ft-rpn works too); --method list shows every row")
    p.add_argument("--dataset", choices=("coco", "nuswide", "voc"), default="coco")
    p.add_argument("--root", default=None, metavar="PATH", help="real data root (default: generated)")
    _add_common(p)
    p.add_argument("--train-seeds", default="0", metavar="S[,S...]",
                   help="training seeds, comma-separated (data and backbone stay fixed by --seed)")
    p.add_argument("--epochs", type=int, default=None, help="epoch budget (early stopping may end sooner; "
                   "default: the row's settings for the profile)")
    p.add_argument("--patience", type=int, default=None,
                   help="epochs without a lower hold-out loss before stopping (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: the row's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the row's)")
    p.add_argument("--lam", type=float, default=None, help="CADM: weight of L_lce in Eq. 5 (default 0.5)")
    p.add_argument("--vg-root", default=None, metavar="PATH", help="RLSD: genuine Visual Genome (default: generated)")
    p.add_argument("--word-vectors", default=None, metavar="FILE",
                   help="transformation ranking: a word2vec/GloVe text file (default: MiniLM, offline)")
    p.add_argument("--proposals-root", default=None, metavar="PATH",
                   help="RLSD: your own proposals (<PATH>/<image stem>.txt, 'x1 y1 x2 y2' per line) "
                        "instead of selective search")
    _add_weights(p)
    _add_dry_run(p)
    p.add_argument("--force", action="store_true", help="recompute even if a cached result exists")

    p = sub.add_parser("verify", help="re-run chapters into a scratch folder and compare every number and "
                       "verdict of their results tables with the committed figures/ (exit 1 on a difference)")
    p.add_argument("--profile", choices=PROFILES, default="demo",
                   help="run size (default: demo, the profile the committed figures/ come from)")
    p.add_argument("--chapters", default=None, help="comma-separated numbers or names (default: all)")
    p.add_argument("--cache", action="store_true", help="reuse the project's runs/ and data/ "
                   "(default: a cold run, the experiment cache and generated data under the scratch folder)")
    p.add_argument("--rtol", type=float, default=0.0, metavar="X",
                   help="relative tolerance on numbers, for GPU runs and real data: |a-b| <= "
                        "max(X*max(|a|,|b|), X*1e-3) (default 0: exact, the rule on CPU)")
    p.add_argument("--scratch", default=None, metavar="DIR",
                   help="where the run writes notebooks, figures/ (and runs/, data/ when cold); "
                        "must hold no figures yet (default: a new folder under _build/verify/)")
    p.add_argument("--reference", default=None, metavar="DIR",
                   help="the figures tree to compare with (default: the committed figures/)")
    p.add_argument("--against", default=None, metavar="DIR",
                   help="compare this existing figures tree with the reference, run nothing")

    p = sub.add_parser("plan", help="GPU hours, peak host/GPU memory and disk of every run of the full profile's "
                       "grids (FLOPs and sizes from the shapes, on the meta device); exit 1 if a run does not fit")
    p.add_argument("--profile", choices=("full",), default="full")
    p.add_argument("--machine", choices=("h200", "h100", "a100", "l4"), default="h200",
                   help="the machine the plan must fit: its GPU, 128 GiB RAM, 64 GiB disk, 16 cores (default h200)")
    p.add_argument("--gpu", choices=("h100", "h200", "a100", "l4"), default=None,
                   help="price the GPU hours on this GPU (default: the machine's)")
    p.add_argument("--utilisation", type=float, default=0.4, help="share of the GPU's bf16 peak reached (default 0.4)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per compared row (default 3)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="where the runs train (cpu: the device's memory is host memory, as in a CPU dry run)")
    p.add_argument("--rows", action="store_true", help="a last column naming the grid rows of each run group")
    _add_dry_run(p)

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


def _methods(profile) -> dict:
    """Every trainable row of the four papers and the baselines: "paper:row" -> (paper, row)."""
    from .experiments import shared

    out = {}
    for paper in shared.PAPERS:
        module = shared.paper_module(paper)
        rows = module.rows(profile) if hasattr(module, "rows") else module.ROWS
        for row in [*rows, *getattr(module, "STAGES", ())]:
            out[f"{paper}:{row}"] = (paper, row)
    return out


def _slug(name: str) -> str:
    import re

    paper, _, row = name.partition(":")
    return f"{paper}:{re.sub(r'[^a-z0-9]+', '-', row.lower()).strip('-')}"


def _train(args) -> int:
    """``python -m mlbook train``: one row, one or several training seeds, every knob a flag."""
    from .experiments import shared
    from .profiles import get_profile
    from .reproduce import weights_parameter

    prof = get_profile(args.profile).limited(args.limit_images, args.max_steps)
    if args.patience is not None:
        prof = prof.replace(patience=args.patience)
    methods = _methods(prof)
    wanted = methods.get(args.method) or {_slug(k): v for k, v in methods.items()}.get(_slug(args.method))
    if args.method == "list" or wanted is None:
        if args.method != "list":
            print(f"unknown method {args.method!r}", file=sys.stderr)
        print("rows (python -m mlbook train --method PAPER:ROW):")
        for name in methods:
            print(f"  {name:<60} {_slug(name)}")
        return 0 if args.method == "list" else 2
    paper, row = wanted
    settings = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size),
                                  ("patience", args.patience)) if v is not None}
    options = {"vg_root": args.vg_root, "word_vectors": args.word_vectors, "proposals_root": args.proposals_root}
    weights = weights_parameter(args.weights)
    _require_weights(prof, [shared.paper_module(paper)], weights, args.download_weights)
    setting = shared.Setting(prof, {args.dataset: args.root}, args.seed, args.device, weights,
                             {k: v for k, v in options.items() if v is not None})
    module = shared.paper_module(paper)
    for train_seed in [int(t) for t in args.train_seeds.split(",") if t.strip()]:
        kw = {"settings": settings} if settings else {}
        if paper == "cadm" and args.lam is not None:
            from .models.cadm import CADMOptions

            kw["options"] = CADMOptions(lam=args.lam)
        extra = {k: v for k, v in setting.options.items() if k in getattr(module, "OPTIONS", ())}
        result = module.run(row, args.dataset, prof, root=args.root, seed=args.seed, train_seed=train_seed,
                            device=args.device, weights=weights, force=args.force, **extra, **kw)
        numbers = {k: v for k, v in result.get("metrics", {}).items() if isinstance(v, (int, float))}
        print(json.dumps({"method": f"{paper}:{row}", "dataset": args.dataset, "train_seed": train_seed,
                          **numbers}, indent=2))
    return 0


def _plan(args) -> int:
    """``python -m mlbook plan``: the table, then one line per run group that does not fit the machine (exit 1)."""
    from .plan import disk_note, fits, plan
    from .profiles import get_profile

    profile = get_profile(args.profile).limited(args.limit_images, args.max_steps)
    from .plan import MACHINES

    table = plan(args.gpu or MACHINES[args.machine].gpu, args.utilisation, args.seeds, machine=args.machine, profile=profile,
                 device=args.device, rows=args.rows)
    print(table.to_markdown(index=False))
    note = disk_note(table, args.machine)
    if note:
        print(note)
    problems = fits(table, args.machine)
    for line in problems:
        print(f"does not fit: {line}", file=sys.stderr)
    return 1 if problems else 0


def _require_weights(profile, modules, weights, download: bool) -> None:
    """Fail before any work, in one message, when a full-profile trunk's weights are missing."""
    if profile.backbone == "small_cnn":
        return
    from .models.backbones import require_weights

    trunks = sorted({getattr(m, "TRUNK", profile.backbone) for m in modules})
    require_weights(trunks, weights, download=download)


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
        except (FileNotFoundError, ValueError) as err:   # missing or wrong weights or data: the message only
            print(f"error: {err}", file=sys.stderr)
            return 2

    if args.command == "verify":
        from .verify import verify

        return verify(args.profile, args.chapters, cold=not args.cache, rtol=args.rtol, scratch=args.scratch,
                      reference=args.reference, against=args.against)

    if args.command == "plan":
        return _plan(args)

    if args.command == "bench":
        from . import bench

        if args.bench_command == "metrics":
            bench.bench_metrics(n=args.n, c=args.c)
        elif args.bench_command == "decode":
            bench.bench_decode(device=args.device, merge_sets=args.merge_sets)
        elif args.model == "rlsd":
            bench.bench_rlsd(profile=args.profile, steps=args.steps, device=args.device, dtype=args.dtype,
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
