# Two entry points on a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install everything, with torch pinned for this CPU through constraints-cpu.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml constraints-cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints-cpu.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

PROFILE ?= device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1

demo: $(STAMP)
	$(VENV)/bin/latbench backends
	$(VENV)/bin/latbench measure --model resnet56 --backend onnxruntime --layers 5 --json results/demo_measure.json
	$(VENV)/bin/latbench predict --profile $(PROFILE) --model resnet56 --keep 0.5 --measure

test: $(STAMP)
	$(VENV)/bin/ruff check latbench pruners tests benchmarks analysis
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/measurement_stability.py
	$(PY) benchmarks/arch_candidates.py
	$(PY) benchmarks/predictor_accuracy.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
