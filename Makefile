# memeguard — `make demo` and `make test` are the whole set-up on a fresh machine.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
APT_PKGS := fonts-wqy-microhei libgl1 libglib2.0-0
# the console's end-to-end tests drive Debian's Chromium (Playwright cannot download a browser here); the
# alert rules are checked and unit-tested with promtool (Debian's prometheus package)
TEST_APT_PKGS := chromium prometheus
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The lent GPU machines run transformers 5.17 (see the device tool's README): the VLM tests run on that release
# too, from a side directory put in front of the venv's own transformers (and the huggingface_hub it needs).
GPU_TRANSFORMERS ?= 5.17.0
GPU_HF_HUB       ?= 1.33.0
COMPAT  := $(VENV)/compat/transformers-$(GPU_TRANSFORMERS)
LEXICON := .memeguard/lexicons/zh_common_DUTIR.yaml

.PHONY: demo test lint fmt typecheck unit suite vlm-compat system-deps clean bench model lock

system-deps:
	@missing=""; for p in $(APT_PKGS) $(EXTRA_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing apt packages:$$missing"; \
	  $(SUDO) apt-get update -q && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi

$(STAMP): pyproject.toml | system-deps
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[cpu,dev,vlm,s3]'
	touch $(STAMP)

demo: system-deps $(STAMP)
	$(VENV)/bin/memeguard demo

# The classifier as shipped (README, "How good it is"): ToxiCN MM + ToxiCN text for harm, CLUEmotion for the
# emotion reader with the DUTIR emotion lexicon (fetched below), C-HarmKB and ToxiCN's lexicon where present
# under MEMEGUARD_DATASETS_DIR (../shared/datasets), into .memeguard/models/current.joblib, which workers and
# `memeguard analyze` load by default. About 15-20 minutes on 2 cores (the sentence encoder reads every text).
model: $(STAMP) $(LEXICON)
	$(VENV)/bin/memeguard train --shipped

# DUTIR, the emotion lexicon the emotion reader learns from (README, "Emotion and intent"): its data file only,
# from the cntext wheel on PyPI, pinned by hash (tools/fetch_lexicon.py)
$(LEXICON): | $(STAMP)
	$(PY) tools/fetch_lexicon.py $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# format the tree (the pre-commit hooks in .pre-commit-config.yaml do the same on each commit)
fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# the fast tests (about 2 minutes on 2 cores): no fleets, sentinels, namespaces or browser (`integration`) and no
# whole-dataset runs (`slow`); `make test` runs everything
unit: $(STAMP)
	$(VENV)/bin/pytest -q -m "not integration and not slow"

# every test
suite: $(STAMP)
	$(VENV)/bin/pytest -q

vlm-compat: $(STAMP)
	@[ -d $(COMPAT) ] || $(PY) -m pip install -q --no-deps --target $(COMPAT) \
	  transformers==$(GPU_TRANSFORMERS) huggingface_hub==$(GPU_HF_HUB)
	PYTHONPATH=$(COMPAT) $(VENV)/bin/pytest -q -p no:cacheprovider tests/worker/vlm

test: EXTRA_APT_PKGS = $(TEST_APT_PKGS)
test: system-deps $(STAMP) lint typecheck suite vlm-compat

# the Docker image's lock files (requirements/cpu.lock, gpu.lock), after a dependency changes in pyproject.toml
lock: $(STAMP)
	$(PY) tools/lock.py

bench: $(STAMP)
	$(PY) bench/pipeline.py

clean:
	rm -rf $(VENV) .memeguard .pytest_cache .mypy_cache .ruff_cache
