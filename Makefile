# The two commands of the README. Each installs what it needs on first use
# into a project-local virtual environment (.venv).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: reproduce verify nbval test test-fast test-full install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch pinned (an unpinned install would pull several GB); uv (from PyPI) installs the same
	# versions as pip about four times faster (37 s against 130 s measured), pip where uv fails;
	# --compile-bytecode writes the .pyc files pip writes: without them, where PYTHONDONTWRITEBYTECODE is
	# set, every process compiles torch again (importing the package took 15.6 s instead of 4.3 s)
	$(PY) -m pip install --quiet uv && $(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) \
		torch==2.14.1 torchvision==0.29.1 -e '.[test]' \
		|| $(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1 -e '.[test]'
	# the kernel the chapters run on is this environment's python
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (mlbook)"
	touch $(STAMP)

## the main job: every chapter on the embedded default (demo profile), figures, HTML book
reproduce: $(STAMP)
	$(PY) -m mlbook reproduce --profile demo

## the book reproduces itself: re-run every chapter cold into _build/verify/ and compare every number
## and verdict of its results tables with the committed figures/ (exit 1 on any difference)
verify: $(STAMP)
	$(PY) -m mlbook verify

## the committed notebooks re-executed and compared: every chapter under strict nbval on the demo profile (the
## one its committed outputs came from), every text output cell by cell, tests/nbval_sanitize.cfg masking what
## legitimately changes (wall times, progress bars, addresses, timestamps, run-log lines); it reuses runs/ and
## data/ (warm after `make reproduce`; MLBOOK_RUNS=<empty dir> for a cold run) and writes figures to a scratch copy
nbval: $(STAMP)
	$(PY) -m pytest --nbval book/ --nbval-cell-timeout=1800

## the whole test suite: unit tests, every chapter under nbval (smoke), the book build; one pytest
## worker per core, a test file's tests (a notebook's cells) on one worker
test: $(STAMP)
	$(PY) -m pytest -n auto --dist loadfile

## the unit tests only (no chapter runs, book builds, real-data or JupyterLab tests): seconds, for development
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

## the full profile as a GPU user runs it: `reproduce --profile full --chapters 04,05,06,07,08 --limit-images 4
## --max-steps 1` through the CLI on genuine photos, random weights for every trunk at the papers' sizes, its peak
## RSS checked against `plan` (tests/test_full_profile.py; too slow for `make test`, which skips it)
test-full: $(STAMP)
	MLBOOK_TEST_FULL=1 $(PY) -m pytest tests/test_full_profile.py tests/test_plan.py -p no:randomly -s

clean:
	rm -rf _build runs data .pytest_cache
