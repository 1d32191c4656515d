# The two commands of the README: `make demo` and `make test`.
# Each first builds the project environment (.venv) when it is missing or stale.
VENV ?= .venv
PY := $(VENV)/bin/python
export NOISEMIM_VENV := $(abspath $(VENV))
# The tools (and tools/dist_train.sh's `python`) run in the project environment.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: env demo test benchmark gpu-check lint clean

env:
	@bash tools/setup_env.sh

# One thread: on the shared 2-core CPU (load average ~4) the demo took 8 min 56 s
# with torch's default threads and 55 s with one, with the same losses.
demo: env
	OMP_NUM_THREADS=1 $(PY) tools/train.py configs/pretrain/noisemim_vit-tiny_demo.py --work-dir work_dirs/demo

# Two test processes, one thread each: the CPU is not oversubscribed.
test: env
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 tests

# NoiseMIM vs SimMIM-style vs MAE training steps, ViT-B/16, side by side.
benchmark: env
	$(PY) tools/benchmark.py --batch-size 8 --warmup 2 --repeats 5

# On a CUDA GPU, in about five minutes: bf16 training steps of the ViT-B config,
# a checkpoint and a resume from it, the benchmark and the largest batch that
# fits (tools/gpu_check.py). Without a GPU it says so and fails.
gpu-check: env
	$(PY) tools/gpu_check.py

lint: env
	$(PY) -m flake8 noisemim tools tests configs

clean:
	rm -rf work_dirs .pytest_cache
