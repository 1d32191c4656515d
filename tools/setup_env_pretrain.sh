#!/usr/bin/env bash
# The pre-training environment for `make demo`: torch, mmcv-lite (mmcv without
# its compiled ops: nothing is compiled), mmengine, mmpretrain, timm, ...,
# exactly as requirements/lock-pretrain.txt pins them; no mmdet, no mmseg.
#
# Prints the Python to run on stdout (its last line); progress goes to stderr.
#   * The full environment (.venv, tools/setup_env.sh) has all of this: when
#     it is current (its stamp and an import check), it is used as it is.
#   * Otherwise .venv-pretrain is built (or reused when current), apart from
#     .venv: the two never share an mmcv (mmcv-lite here, mmcv with its ops
#     there). `make test` and fine-tuning need the full environment.
# The same pip traps as tools/setup_env.sh: --isolated (no machine-wide
# find-links folder with a CPU-only torch wheel).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FULL="${NOISEMIM_VENV:-$ROOT/.venv}"
VENV="${NOISEMIM_PRETRAIN_VENV:-$ROOT/.venv-pretrain}"
PYTHON="${PYTHON:-python3}"
LOCK="$ROOT/requirements/lock-pretrain.txt"
IMPORT_CHECK="import torchvision, timm, mmcv, mmengine, mmpretrain, skimage, noisemim"

# tools/setup_env.sh's stamp of a current full environment (the same inputs).
full_stamp() {
  cat "$ROOT/requirements/lock.txt" "$ROOT/requirements/build.txt" \
    "$ROOT/tools/setup_env.sh" | sha256sum | cut -c1-16
}
if [[ -f "$FULL/.noisemim-env-$(full_stamp)" ]] \
    && "$FULL/bin/python" -c "$IMPORT_CHECK" 2>/dev/null; then
  echo "$FULL/bin/python"
  exit 0
fi

STAMP="$VENV/.noisemim-pretrain-env-$(cat "$LOCK" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [[ -f "$STAMP" ]] && "$VENV/bin/python" -c "$IMPORT_CHECK" 2>/dev/null; then
  echo "$VENV/bin/python"
  exit 0
fi

echo "[setup_env_pretrain] building the pre-training environment in $VENV" >&2
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --isolated --disable-pip-version-check)
# Wheels only (torch's CUDA libraries are the bulk of the download), then
# this package, editable, without its full requirements (mmcv, mmdet, mmseg).
"${PIP[@]}" install -q -r "$LOCK" >&2
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT" >&2

"$VENV/bin/python" -c "$IMPORT_CHECK; import torch, mmcv; print('[setup_env_pretrain] ok: torch', torch.__version__, '| mmcv', mmcv.__version__, '(lite: no compiled ops)')" >&2
rm -f "$VENV"/.noisemim-pretrain-env-*
touch "$STAMP"
echo "$VENV/bin/python"
