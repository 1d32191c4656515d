# The two commands of the README: `make demo` and `make test`.
# `make test` (and the other targets) first build the full project environment
# (.venv, tools/setup_env.sh) when it is missing or stale; `make demo` needs only
# the pre-training one (tools/setup_env_pretrain.sh: .venv-pretrain with
# mmcv-lite, nothing compiled; or .venv itself when that is current).
VENV ?= .venv
PY := $(VENV)/bin/python
export NOISEMIM_VENV := $(abspath $(VENV))
# The tools (and tools/dist_train.sh's `python`) run in the project environment.
export PATH := $(abspath $(VENV))/bin:$(PATH)

DEMO_DIR := work_dirs/demo

.PHONY: env env-pretrain demo test benchmark gpu-check lint clean

env:
	@bash tools/setup_env.sh

env-pretrain:
	@bash tools/setup_env_pretrain.sh >/dev/null

# One thread: on the shared 2-core CPU (load average ~4) the demo took 8 min 56 s
# with torch's default threads and 55 s with one, with the same losses.
demo:
	@py=$$(bash tools/setup_env_pretrain.sh) && \
	echo "OMP_NUM_THREADS=1 $$py tools/train.py configs/pretrain/noisemim_vit-tiny_demo.py --work-dir $(DEMO_DIR)" && \
	OMP_NUM_THREADS=1 $$py tools/train.py configs/pretrain/noisemim_vit-tiny_demo.py --work-dir $(DEMO_DIR) && \
	echo && echo "Next steps:" && \
	echo "  plot the curves:      $$py tools/analysis/plot_curves.py $(DEMO_DIR) --out $(DEMO_DIR)/curves.png" && \
	echo "  export the backbone:  $$py tools/model_converters/publish_checkpoint.py $(DEMO_DIR)/iter_200.pth $(DEMO_DIR)/backbone.pth" && \
	echo "  ... with timm's keys: $$py tools/model_converters/noisemim_to_timm.py $(DEMO_DIR)/iter_200.pth $(DEMO_DIR)/timm.pth" && \
	echo "  smoke-run the real configs of every task on tiny data (docs/smoke.md), e.g. the ViT-B pre-training:" && \
	echo "                        $$py tools/misc/make_tiny_data.py imagenet" && \
	echo "                        $$py tools/train.py configs/smoke/pretrain_in1k.py" && \
	echo "  fine-tune (the full .venv: make env): . .venv/bin/activate; see docs/smoke.md and docs/transfer.md"

# Two test processes, one thread each: the CPU is not oversubscribed.
test: env
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 tests

# NoiseMIM vs SimMIM-style vs MAE training steps, ViT-B/16, side by side.
benchmark: env
	$(PY) tools/benchmark.py --batch-size 8 --warmup 2 --repeats 5

# On a CUDA GPU, in about 8 minutes (tools/gpu_check.py, docs/gpu.md): SDPA
# backends, NoiseMIM vs SimMIM-style vs MAE in bf16 with MFU, profiled training
# and a resume, the loader. In the pre-training environment (mmcv-lite):
# nothing is compiled, so no nvcc is needed. Without a GPU it says so and fails.
gpu-check:
	@py=$$(bash tools/setup_env_pretrain.sh) && $$py tools/gpu_check.py

lint: env
	$(PY) -m flake8 noisemim tools tests configs

clean:
	rm -rf work_dirs .pytest_cache
