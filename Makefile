# The README's commands live here, so the README, CI and your shell run the same thing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build used in CI; for a smaller download elsewhere:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
SEED ?= 2
DATA ?= ../shared/data/mnist-9k

.PHONY: install test lint serve model bench e2e-deps clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[train,serve,dev]'
	touch $@

install: $(BIN)/.installed  ## a virtual environment with everything (CPU torch, onnxruntime, test tools)

test: $(BIN)/.installed  ## the whole test suite
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .

serve: $(BIN)/.installed  ## the API on http://127.0.0.1:8000 with the embedded model (no Docker)
	$(BIN)/python -m service

model: $(BIN)/.installed  ## retrain and re-export the embedded default model (models/mnist)
	$(BIN)/python -m training --preset mnist --data-dir $(DATA) --out runs/mnist-seed$(SEED) --seed $(SEED)
	$(BIN)/python -m export runs/mnist-seed$(SEED) --out models/mnist --name infogan-mnist --precision fp16
	$(BIN)/python -m export.align models/mnist --data-dir $(DATA)

bench: $(BIN)/.installed  ## the benchmarks whose output docs/PERFORMANCE.md records
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/infer_speed.py
	$(BIN)/python bench/serve_load.py
	$(BIN)/python bench/serve_load.py --replay-inference
	$(BIN)/python bench/serve_load.py --goals
	$(BIN)/python bench/overload.py --soak-seconds 600

e2e-deps:  ## Debian's Chromium for the playground's browser test (needs root)
	apt-get install -y --no-install-recommends chromium

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
