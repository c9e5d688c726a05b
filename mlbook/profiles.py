"""Run profiles: one code path, three sizes (DESIGN.md, "Profiles").

A chapter reads ``profile`` from its parameters cell and asks ``get_profile``
for the sizes; nothing else in a chapter branches on the profile name.

- smoke: seconds per chapter, tiny generated data; used by tests and nbval.
- demo:  the default; generated data; the whole book in minutes on a 2-core CPU.
- full:  the papers' settings on real data on a GPU.

A **dry run** is any profile limited in images and optimizer steps (``Profile.limited``;
``reproduce``/``train`` ``--limit-images N --max-steps N``): the first N training and N test
images of every split, at most N optimizer steps per training run. It exercises the code path
of a real run at the real sizes of the networks, and every table it writes says "dry run"
(``report``). ``reproduce`` hands the limits to the chapters' kernels through ``LIMIT_ENV`` and
``STEPS_ENV``, which ``get_profile`` applies to the profile a chapter names.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

PROFILES = ("smoke", "demo", "full")
LIMIT_ENV, STEPS_ENV = "MLBOOK_LIMIT_IMAGES", "MLBOOK_MAX_STEPS"   # a dry run's limits, for the chapters' kernels


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    # generated data (ignored by the full profile, which reads real data)
    gen_train: int          # generated training images per data set
    gen_test: int           # generated test images per data set
    gen_classes: int        # classes per generated data set (real names, a subset)
    gen_image_size: int     # side of the generated JPEGs, pixels
    # training
    image_size: int         # network input side, pixels
    backbone: str           # "small_cnn" or a torchvision ResNet name
    backbone_epochs: int    # shared demo backbone: epochs from scratch
    head_epochs: int        # heads trained on frozen / fine-tuned features
    finetune_epochs: int    # end-to-end fine-tuning (CADM)
    batch_size: int
    num_workers: int
    in_memory: bool         # decode all images once into a uint8 tensor cache
    train_seeds: int = 3    # training seeds of every row a claim compares (data and backbone held fixed)
    patience: int = 3       # early stopping: epochs without a lower hold-out loss
    holdout: float = 0.1    # part of the training set held out for early stopping and choices
    max_train: int | None = None  # cap on real training images (None = all)
    max_test: int | None = None   # cap on real test images (None = all; a dry run's limit)
    max_steps: int | None = None  # cap on optimizer steps per training run, all epochs (a dry run's limit)
    trunk_sizes: tuple = ()       # ((trunk, input side), ...): a trunk read at another side than image_size
    threads: int | None = 1       # CPU threads of every computation (None: torch's default); fixed,
                                  # so the numbers do not depend on the machine's core count
    portable: bool = True         # portable numerics (mlbook.numerics): the same bits on any x86-64 CPU;
                                  # the full profile keeps the fast kernels and compares with a tolerance

    def replace(self, **changes) -> "Profile":
        return dataclasses.replace(self, **changes)

    def limited(self, images: int | None = None, steps: int | None = None) -> "Profile":
        """This profile as a dry run: the first ``images`` training and test images of every split,
        at most ``steps`` optimizer steps per training run (None leaves a limit as it is)."""
        changes = {"max_train": images, "max_test": images} if images is not None else {}
        if steps is not None:
            changes["max_steps"] = steps
        for name, value in changes.items():
            if value < 1:
                raise ValueError(f"a dry run's {name} must be at least 1, not {value}")
        return self.replace(**changes)

    @property
    def dry_run(self) -> bool:
        """Limited in images or optimizer steps: its numbers are no result of the paper's setting."""
        return any(v is not None for v in (self.max_train, self.max_test, self.max_steps))

    def size_for(self, trunk: str) -> int:
        """The input side at which ``trunk`` reads images (AlexNet: 224 px in the full profile)."""
        return dict(self.trunk_sizes).get(trunk, self.image_size)


_PROFILES = {
    "smoke": Profile(
        name="smoke", gen_train=48, gen_test=24, gen_classes=10, gen_image_size=40,
        image_size=32, backbone="small_cnn", backbone_epochs=1, head_epochs=1,
        finetune_epochs=2, batch_size=16, num_workers=0, in_memory=True, train_seeds=2, patience=1,
    ),
    # 600 generated training images per data set: with 1,000 the cold book needed about 2,100 CPU seconds,
    # 18 min 53 s on a slower day of the 2-core reference machine (2026-12-07), with 750 1,720 s and
    # 15 min 41 s, both over its 15-minute budget
    "demo": Profile(
        name="demo", gen_train=600, gen_test=600, gen_classes=24, gen_image_size=64,
        image_size=48, backbone="small_cnn", backbone_epochs=12, head_epochs=30,
        finetune_epochs=20, batch_size=64, num_workers=0, in_memory=True, train_seeds=3, patience=3,
    ),
    "full": Profile(
        name="full", gen_train=0, gen_test=0, gen_classes=0, gen_image_size=0,
        image_size=448, backbone="resnet101", backbone_epochs=0, head_epochs=30,
        finetune_epochs=60, batch_size=32, num_workers=8, in_memory=False, threads=None, portable=False,
        trunk_sizes=(("alexnet", 224),),   # the ranking paper's AlexNet is a 224/227 px network
    ),
}


def get_profile(name: "str | Profile") -> Profile:
    """The profile of that name (a Profile passes through: one coercion for the package), limited
    as a dry run when ``LIMIT_ENV`` / ``STEPS_ENV`` are set (``reproduce --limit-images/--max-steps``
    sets them for the chapters it runs)."""
    if isinstance(name, Profile):
        return name
    if name not in _PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    images, steps = env_limits()
    profile = _PROFILES[name]
    return profile.limited(images, steps) if images is not None or steps is not None else profile


def env_limits() -> tuple[int | None, int | None]:
    """(images, steps) of a dry run from ``LIMIT_ENV`` and ``STEPS_ENV`` (None where unset)."""
    def read(var: str) -> int | None:
        text = os.environ.get(var, "").strip()
        if not text:
            return None
        if not text.isdigit() or int(text) < 1:
            raise ValueError(f"{var} must be a positive integer, not {text!r}")
        return int(text)
    return read(LIMIT_ENV), read(STEPS_ENV)


def dry_run_note(profile: Profile) -> str:
    """What a caption says of a dry run (empty for a real run)."""
    if not profile.dry_run:
        return ""
    parts = []
    if profile.max_train is not None or profile.max_test is not None:
        parts.append(f"the first {profile.max_train or 'all'} training and {profile.max_test or 'all'} test images")
    if profile.max_steps is not None:
        parts.append(f"at most {profile.max_steps} optimizer steps per run")
    return f"DRY RUN ({', '.join(parts)}): a test of the code path, not a result"


def project_root() -> Path:
    """The repository root (where runs/, data/ and figures/ live).

    ``MLBOOK_HOME`` overrides it; otherwise the folder that holds ``mlbook/``.
    """
    env = os.environ.get("MLBOOK_HOME")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


BACKBONE_SEED_ENV = "MLBOOK_BACKBONE_SEED"


def backbone_seed(seed: int) -> int:
    """The seed the demo's small CNN backbone trains with: the data seed, unless ``MLBOOK_BACKBONE_SEED``
    names another (a measurement of how much the backbone adds to a claim's variance: the rows above
    it do not name the backbone in their keys, so ``runs_dir`` then insists on a runs folder of its own)."""
    text = os.environ.get(BACKBONE_SEED_ENV, "").strip()
    if not text:
        return seed
    if not text.isdigit():
        raise ValueError(f"{BACKBONE_SEED_ENV} must be a non-negative integer, not {text!r}")
    return int(text)


def runs_dir() -> Path:
    if os.environ.get(BACKBONE_SEED_ENV, "").strip() and not os.environ.get("MLBOOK_RUNS"):
        # runs above another backbone would be stored under the keys of the book's own
        raise ValueError("MLBOOK_BACKBONE_SEED is set: set MLBOOK_RUNS to a runs folder of its own")
    return Path(os.environ.get("MLBOOK_RUNS", project_root() / "runs"))


def data_dir() -> Path:
    """Where generated data sets are written (ignored by git)."""
    return Path(os.environ.get("MLBOOK_DATA", project_root() / "data"))


#: image resamples of a claim's interval per profile (``claims.N_RESAMPLES`` where not named): the smoke
#: profile's two training seeds give no verdict, so its intervals are only shown and 100 resamples do
CLAIM_RESAMPLES = {"smoke": 100}


def claim_resamples(profile: Profile) -> int | None:
    """The image resamples a chapter's claims are measured on in this profile (None: the standard's)."""
    return CLAIM_RESAMPLES.get(profile.name)


#: the run log in a chapter's figures folder: the one results-folder file `mlbook verify` never compares
TIMINGS_FILE = "timings.csv"


def figures_dir() -> Path:
    return Path(os.environ.get("MLBOOK_FIGURES", project_root() / "figures"))


def pick_device(device: str = "auto") -> str:
    """'auto' -> cuda if available, else cpu; anything else is passed through."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
