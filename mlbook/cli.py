"""`python -m mlbook ...`: reproduce, verify, plan, data, weights, evaluate, train, bench.

Every subcommand is a thin wrapper over a package function, so a notebook, the
CLI and a torchrun launch all run the same code.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from . import papers
from .profiles import PROFILES

DATASETS = ("coco", "nuswide", "voc")
#: the further data roots the papers' full profile reads (reproduce's --<name>-root): Visual Genome
REGION_SETS = tuple(dict.fromkeys(r for p in papers.PAPERS for r in p.full_roots))


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors as every other error of the CLI: one line on stderr, exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def _at_least_one(text: str) -> int:
    """A dry run's count: an integer of at least 1 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes an integer of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default="demo", help="run size (default: demo)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)


def _add_roots(p: argparse.ArgumentParser) -> None:
    for name in DATASETS:
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
    p.add_argument("--limit-images", type=_at_least_one, default=None, metavar="N",
                   help="dry run: the first N training and N test images of every split (every table says 'dry run')")
    p.add_argument("--max-steps", type=_at_least_one, default=None, metavar="N",
                   help="dry run: at most N optimizer steps per training run, over all its epochs")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mlbook", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (default: one line)")
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
    q.add_argument("--dataset", choices=(*DATASETS, *REGION_SETS), required=True,
                   help="vg: a Visual Genome root (--vg-root): its images and region descriptions")
    q.add_argument("--root", required=True, metavar="PATH")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.add_argument("--strict", action="store_true", help="reject every label value outside the format "
                   "(by default NUS-WIDE's known defect, a negative integer, is read as 0 and reported)")
    q = dsub.add_parser("generate", help="write the generated default data sets in their real formats")
    q.add_argument("--dataset", choices=(*DATASETS, *REGION_SETS), default=None,
                   help="one data set, written to --out (default: every data set the full profile reads, each "
                        f"to --out/<name>: {', '.join((*DATASETS, *REGION_SETS))}; vg: a Visual Genome stand-in)")
    q.add_argument("--profile", choices=("smoke", "demo"), default="demo",
                   help="the sizes of that profile's generated data (default demo; smoke: seconds)")
    q.add_argument("--out", required=True, metavar="PATH")
    q.add_argument("--seed", type=int, default=0)
    q = dsub.add_parser("split", help="a COCO 2014 layout (train2014 / val2014) from a COCO root with one annotation "
                        "file (coco128), with a seeded hold-out as the test split")
    q.add_argument("--dataset", choices=("coco",), required=True,
                   help="coco only (VOC 2007 and NUS-WIDE ship with their official splits)")
    q.add_argument("--root", required=True, metavar="PATH", help="holds annotations/ with one instances_*.json")
    q.add_argument("--out", required=True, metavar="NEW_ROOT", help="a new (or empty) folder")
    q.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                   help="share of the images held out as val2014, the test split (default 0.2)")
    q.add_argument("--seed", type=int, default=0, help="the permutation's seed (default 0): the images sorted by "
                   "id, permuted by numpy.random.default_rng(SEED).permutation; the first round(F x N) are the test "
                   "split, the rest train2014")
    q.add_argument("--copy", action="store_true", help="copy the images (default: symlinks to the source files)")

    p = sub.add_parser("weights", help="weights files of the full profile's trunks")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    trunks = ", ".join(dict.fromkeys(paper.trunk for paper in papers.PAPERS))
    q = wsub.add_parser("random", help="random stand-ins for the ImageNet files (their keys and shapes), for a "
                        "dry run of the full profile without them: its numbers mean nothing")
    q.add_argument("--out", required=True, metavar="DIR", help="writes DIR/<network>-random-init.pth")
    q.add_argument("--networks", default=None, metavar="NAME[,NAME...]",
                   help=f"default: every paper's trunk ({trunks})")
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
    p.add_argument("--dataset", choices=DATASETS, default="coco")
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
    p.add_argument("--machine", choices=("h200", "h100", "a100", "l4"), default=None,
                   help="the machine the plan must fit: its GPU, 128 GiB RAM, 64 GiB disk, 16 cores "
                        "(default: the machine of --gpu, else h200)")
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
    q = bsub.add_parser("decode", help="batched beam search vs a per-image loop (the sequence model's own steps)")
    q.add_argument("--device", default="auto")
    q.add_argument("--merge-sets", action="store_true", help="beam search with set-merged paths")
    q = bsub.add_parser("train", help="training throughput (img/s) on synthetic tensors")
    benched = [p.key for p in papers.PAPERS if "bench_train" in p.benches]   # read without importing torch
    q.add_argument("--model", default=benched[0], metavar="PAPER",
                   help=f"the paper whose model trains: {', '.join(benched)} (default {benched[0]})")
    q.add_argument("--rows", default=None, metavar="ROW[,ROW...]",
                   help="the paper's rows to time, where its bench times several (e.g. baseline,lambda0.5)")
    q.add_argument("--profile", choices=PROFILES, default="demo")
    q.add_argument("--image-size", type=int, default=None)
    q.add_argument("--batch-size", type=int, default=None)
    q.add_argument("--steps", type=int, default=10)
    q.add_argument("--device", default="auto")
    q.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None)
    q.add_argument("--channels-last", action="store_true")
    q = bsub.add_parser("head-to-head", help="train and inference img/s of chapter 08's own rows on random maps "
                        "of the protocol's shape, relative to the BCE network")
    q.add_argument("--profile", choices=PROFILES, default="demo")
    q.add_argument("--device", default="cpu")
    q.add_argument("--steps", type=_at_least_one, default=20, help="timed steps per row and phase (default 20)")
    q.add_argument("--threads", type=_at_least_one, default=1, help="torch's CPU threads (default 1)")
    q.add_argument("--rows", default=None, metavar="ROW[,ROW...]",
                   help="the rows to time (default all with a network; the BCE network is always timed)")
    q.add_argument("--out", default=None, metavar="PATH", help="also write the table to this CSV file")
    return parser


def _methods(profile) -> dict:
    """Every trainable row of the registry's papers and of the shared stages: "module:row" -> (module, row)."""
    out = {}
    for name in (*papers.SHARED_EXPERIMENTS, *(p.key for p in papers.PAPERS)):
        module = papers.experiment_module(name)
        for row in (*module.rows(profile), *module.stages(profile)):
            out[f"{name}:{row}"] = (name, row)
    return out


def _slug(name: str) -> str:
    import re

    paper, _, row = name.partition(":")
    return f"{paper}:{re.sub(r'[^a-z0-9]+', '-', row.lower()).strip('-')}"


def _train(args) -> int:
    """``python -m mlbook train``: one row, one or several training seeds, every knob a flag.
    Whether each result was loaded or computed is a line on stderr (stdout is the JSON results)."""
    from . import cache
    from .experiments import shared
    from .profiles import get_profile
    from .reproduce import note_unread_weights, require_device, weights_parameter

    cache.log_to(sys.stderr)

    try:
        train_seeds = [int(t) for t in args.train_seeds.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--train-seeds takes comma-separated integers (e.g. 0,1,2), not {args.train_seeds!r}") from None
    if not train_seeds:
        raise ValueError(f"--train-seeds names no seed (comma-separated integers, e.g. 0,1,2): {args.train_seeds!r}")
    require_device(args.device)
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
    note_unread_weights(args)
    module = papers.experiment_module(paper)
    _require_weights(prof, [module], weights, args.download_weights)
    setting = shared.Setting(prof, {args.dataset: args.root}, args.seed, args.device, weights,
                             {k: v for k, v in options.items() if v is not None})
    for train_seed in train_seeds:
        kw = {"settings": settings} if settings else {}
        if hasattr(module, "train_overrides"):   # a paper's own flags (CADM's --lam)
            kw.update(module.train_overrides(vars(args)))
        extra = {k: v for k, v in setting.options.items() if k in getattr(module, "OPTIONS", ())}
        result = module.run(row, args.dataset, prof, root=args.root, seed=args.seed, train_seed=train_seed,
                            device=args.device, weights=weights, force=args.force, **extra, **kw)
        numbers = {k: v for k, v in result.get("metrics", {}).items() if isinstance(v, (int, float))}
        print(json.dumps({"method": f"{paper}:{row}", "dataset": args.dataset, "train_seed": train_seed,
                          **numbers}, indent=2))
    return 0


def _plan(args) -> int:
    """``python -m mlbook plan``: the table, then one line per run group that does not fit the machine (exit 1)."""
    from .plan import checked_line, disk_note, fits, plan, plan_target
    from .profiles import get_profile

    profile = get_profile(args.profile).limited(args.limit_images, args.max_steps)
    gpu, machine = plan_target(args.gpu, args.machine)   # --gpu prices the hours, --machine the fit
    table = plan(gpu, args.utilisation, args.seeds, machine=machine, profile=profile, device=args.device,
                 rows=args.rows)
    print(table.to_markdown(index=False))
    print(checked_line(gpu, machine))
    note = disk_note(table, machine)
    if note:
        print(note)
    problems = fits(table, machine)
    for line in problems:
        print(f"does not fit: {line}", file=sys.stderr)
    return 1 if problems else 0


def _require_weights(profile, modules, weights, download: bool) -> None:
    """Fail before any work, in one message, when a full-profile trunk's weights are missing."""
    if profile.backbone == "small_cnn":
        return
    from .weights import require_weights

    trunks = sorted({getattr(m, "TRUNK", profile.backbone) for m in modules})
    require_weights(trunks, weights, download=download)


def _generate(args) -> int:
    """``python -m mlbook data generate``: one data set at --out, or every one the full profile reads
    under it, each in its real format, and the flags that hand them to ``reproduce``."""
    from .data import synthetic, visual_genome

    names = [args.dataset] if args.dataset else [*DATASETS, *REGION_SETS]
    roots = {name: Path(args.out) if args.dataset else Path(args.out) / name for name in names}
    for name, root in roots.items():
        if name in REGION_SETS:
            visual_genome.generate_for_profile(args.profile, root, args.seed)
        else:
            synthetic.generate_for_profile(name, args.profile, root, args.seed)
        print(f"wrote the generated {name} data set ({args.profile}) to {root}")
    print("reproduce reads them with: " + " ".join(f"--{name}-root {root}" for name, root in roots.items()))
    return 0


def _random_weights(args) -> int:
    """``python -m mlbook weights random``: a random weights file per network, and the flags that name them."""
    from .weights import WEIGHTS, write_random_weights

    given = args.networks if args.networks is not None else ",".join(paper.trunk for paper in papers.PAPERS)
    names = list(dict.fromkeys(n.strip() for n in given.split(",") if n.strip()))
    unknown = [n for n in names if n not in WEIGHTS]
    if unknown or not names:
        raise ValueError(f"--networks {args.networks!r}: " + (f"no ImageNet weights known for {', '.join(unknown)}; "
                         if unknown else "names no network; ") + f"networks with weights: {', '.join(WEIGHTS)}")
    files = {name: write_random_weights(name, args.out, args.seed) for name in names}
    for name, path in files.items():
        print(f"wrote random {name} weights (not ImageNet's: a dry run's numbers mean nothing) to {path}")
    print("reproduce reads them with: " + " ".join(f"--weights {name}={path}" for name, path in files.items()))
    return 0


def _bench(args) -> int:
    """``python -m mlbook bench``: the metrics here; decoding and training from the papers' bench modules."""
    if args.bench_command in ("decode", "train", "head-to-head"):
        import torch  # noqa: F401  (loaded now, the device check asks it in this process, not in a child)

        from .reproduce import require_device

        require_device(args.device)
    if args.bench_command == "metrics":
        from .bench.metrics import bench_metrics

        bench_metrics(n=args.n, c=args.c)
        return 0
    if args.bench_command == "head-to-head":
        from .bench.head_to_head import bench_head_to_head, parse_rows

        bench_head_to_head(parse_rows(args.rows), profile=args.profile, device=args.device, steps=args.steps,
                           threads=args.threads, out=args.out)
        return 0
    if args.bench_command == "decode":
        for paper in papers.PAPERS:
            if "bench_decode" in paper.benches:
                paper.bench().bench_decode(device=args.device, merge_sets=args.merge_sets)
        return 0
    module = papers.get(args.model).bench() if args.model in {p.key for p in papers.PAPERS} else None
    if module is None or not hasattr(module, "bench_train"):
        raise ValueError(f"--model {args.model!r}: no training bench; choose a paper key (python -m mlbook bench train -h)")
    kw = dict(profile=args.profile, image_size=args.image_size, batch_size=args.batch_size, steps=args.steps,
              device=args.device, dtype=args.dtype, channels_last=args.channels_last)
    if args.rows:
        kw["rows"] = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    accepted = inspect.signature(module.bench_train).parameters
    unused = [k for k, v in kw.items() if k not in accepted and v not in (None, False)]
    if unused:
        raise ValueError(f"--model {args.model}: its bench takes no {', '.join('--' + k.replace('_', '-') for k in unused)}")
    module.bench_train(**{k: v for k, v in kw.items() if k in accepted})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run a command; bad input (a missing or malformed file, a wrong value, weights whose numbers are
    not finite) is one line on stderr and exit 2, the traceback only with ``--debug``."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError, KeyError,
            FloatingPointError) as err:
        if args.debug:
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.command == "reproduce":
        from .reproduce import main as reproduce

        return reproduce(args)

    if args.command == "data":
        if args.data_command == "summary":
            from .data.summary import failed_splits, format_summary, summarize, summarize_regions

            result = summarize_regions(args.root) if args.dataset in REGION_SETS else \
                summarize(args.dataset, args.root, strict=args.strict)
            print(json.dumps(result, indent=2) if args.json else format_summary(result))
            failed = failed_splits(result)
            for split, why in failed.items():   # a Visual Genome root has one part, "regions", not a split
                print(f"error: {split}{' split' if split in ('train', 'test') else ''}: {why}", file=sys.stderr)
            if failed:
                return 1   # unreadable, an image that does not decode, or nothing loaded: a check must fail
        elif args.data_command == "split":
            from .data.coco import split_root

            r = split_root(args.root, args.out, args.test_fraction, args.seed, copy=args.copy)
            print(f"wrote {r['out']}: train2014 {r['train2014']} images, val2014 (the test split) {r['val2014']} "
                  f"images from {r['source']}, seed {args.seed}; images {'copied' if args.copy else 'linked'}")
        else:
            return _generate(args)
        return 0

    if args.command == "weights":
        return _random_weights(args)

    if args.command == "evaluate":
        from .evaluate import evaluate_files, format_report

        result = evaluate_files(args.scores, args.targets, args.ignore)
        print(json.dumps(result, indent=2) if args.json else format_report(result))
        return 0

    if args.command == "train":
        return _train(args)

    if args.command == "verify":
        from .verify import verify

        return verify(args.profile, args.chapters, cold=not args.cache, rtol=args.rtol, scratch=args.scratch,
                      reference=args.reference, against=args.against)

    if args.command == "plan":
        return _plan(args)

    if args.command == "bench":
        return _bench(args)
    return 2
