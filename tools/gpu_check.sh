#!/usr/bin/env bash
# The GPU check (tools/gpu_check.py) as ONE command on a CUDA machine whose
# Python already has torch, torchvision, timm, numpy, opencv, scikit-image and
# psutil but no OpenMMLab packages and no network (e.g. a lent H100 image):
# the missing pure-Python wheels come from a folder carried along (.whl/, git
# ignores it), installed into a scratch folder, never into that Python.
#
#   bash tools/gpu_check.sh --download     # here, with network: fill .whl/ (~3 MB)
#   bash tools/gpu_check.sh [ARGS]         # there: install .whl/, run the check
#
# ARGS go to tools/gpu_check.py (e.g. --only environment,attention). A Python
# that already imports mmengine, mmpretrain and mmcv skips the wheels. Where
# pip works, `make gpu-check` is the same check in the pre-training
# environment. Details: docs/gpu.md, "make gpu-check".
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WHEELS="${NOISEMIM_WHEELS:-$ROOT/.whl}"
SITE="${NOISEMIM_SITE:-/tmp/noisemim-site}"
# What the pre-training install adds to such an image (requirements/pretrain.txt
# and what those need at import), at the versions of requirements/lock.txt.
CARRIED=(mmengine==0.10.7 mmpretrain==1.2.0 mmcv-lite==2.1.0 addict==2.4.0
         yapf==0.43.0 platformdirs==4.14.7 termcolor==3.3.0 mat4py==0.6.0
         modelindex==0.0.2 model-index==0.1.11 ordered-set==4.1.0
         importlib_metadata==10.2.0 lazy-importer==0.1.0)

if [[ "${1:-}" == "--download" ]]; then
  # Pure-Python wheels: any platform's pip fetches the same files.
  "$PYTHON" -m pip download --no-deps --only-binary=:all: -d "$WHEELS" "${CARRIED[@]}"
  echo "[gpu_check.sh] wheels in $WHEELS; carry that folder to the GPU machine"
  exit 0
fi

if ! "$PYTHON" -c "import mmengine, mmpretrain, mmcv" 2>/dev/null; then
  if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "[gpu_check.sh] $PYTHON lacks mmengine/mmpretrain/mmcv and $WHEELS has" \
         "no wheels: run 'bash tools/gpu_check.sh --download' where pip has" \
         "network, and carry $WHEELS along" >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$PYTHON" "$ROOT/tools/gpu_check.py" "$@"
