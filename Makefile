# Two commands for a fresh machine: `make demo` (the main job) and `make test` (the test suite).
# Both create .venv on first use; nothing but the package registries is needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
export FASTREID_DATASETS ?= $(CURDIR)/datasets
export OMP_NUM_THREADS ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: venv demo demo-fdgan demo-spgan test bench gpu-wheels gpu-check clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# a working torch/torchvision pair already importable is kept; else the tested pair is installed
	$(PY) -c "import torch, torchvision.ops" 2>/dev/null || \
		$(PY) -m pip install -q "torch==$(TORCH_VERSION)" "torchvision==$(TORCHVISION_VERSION)"
	# fastreid 1.4.0 pins torch 1.13: --no-deps, its real needs are in pyproject.toml, fastreid_gan.compat adapts it
	$(PY) -m pip install -q --no-deps "fastreid==1.4.0"
	$(PY) -m pip install -q -e ".[test,export]"
	touch $@

demo: venv
	$(PY) tools/demo.py --output-dir logs/demo

# FD-GAN's three stages on the synthetic data (projects/FDGAN/configs/synthetic.yml)
demo-fdgan: venv
	$(PY) projects/FDGAN/tools/demo.py --output-dir logs/demo_fdgan

# SPGAN / eSPGAN "learning via translation", SyntheticDuke -> SyntheticMarket: direct transfer, SPGAN + IDE+, eSPGAN
demo-spgan: venv
	$(PY) projects/SPGAN/tools/demo.py --output-dir logs/demo_spgan

# the core's tests (tests/) and every project's (projects/<Method>/tests/): pyproject.toml's testpaths, on
# pytest-xdist workers: one per CPU this process may use, at most TEST_MAX_WORKERS (TEST_WORKERS=N: N of them,
# TEST_WORKERS=0: all in this process); worksteal hands an idle worker half of the other's queue (the tests take
# 0.1 s to minutes). One thread per worker (OMP_NUM_THREADS=1 unless one is passed in; conftest.py's cpu_share
# for the full-size tests): two workers on two cores use them without oversubscribing.
TEST_WORKERS ?= logical
TEST_MAX_WORKERS ?= 4
test: venv
	$(if $(filter file,$(origin OMP_NUM_THREADS)),OMP_NUM_THREADS=1) $(PY) -m pytest -q -p no:cacheprovider \
		--timeout=900 -n $(TEST_WORKERS) --maxprocesses=$(TEST_MAX_WORKERS) --dist worksteal

bench: venv
	$(PY) benchmarks/eval_bench.py
	$(PY) benchmarks/full_ranking.py
	$(PY) benchmarks/train_step.py

# wheels the GPU machine (device tool, no network) lacks, for its CPython 3.12; carry .gpu-wheels there
gpu-wheels:
	bash benchmarks/gpu_wheels.sh

# the prepared GPU check; needs no .venv (uses .venv/bin/python when there, else python3); without CUDA every
# part skips with one line (GPU_CHECK_ARGS=--cpu-smoke: toy sizes on the CPU). The OMP_NUM_THREADS=2 this
# Makefile sets is dropped (one passed in is kept), so the CPU side of the GPU comparisons gets every core.
gpu-check:
	$(if $(filter file,$(origin OMP_NUM_THREADS)),env -u OMP_NUM_THREADS) bash benchmarks/gpu_check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf logs build *.egg-info
