#!/usr/bin/env bash
# Create (or reuse) the project environment in .venv from the project's own files.
#
# Idempotent: when the environment matches requirements/lock.txt and imports, it
# returns in seconds. The traps it avoids are those of the design notes:
#   * pip runs with --isolated, so a machine-wide `find-links` folder holding a
#     CPU-only torch wheel (which breaks the registry's torchvision) is ignored;
#   * mmcv 2.1.0 is built from source against the installed torch, without build
#     isolation, with setuptools < 81 (its setup.py imports pkg_resources);
#     pip caches the built wheel, so later environments reuse it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NOISEMIM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
LOCK="$ROOT/requirements/lock.txt"
IMPORT_CHECK="import torchvision, timm, mmcv.ops, mmdet, mmseg, mmpretrain, noisemim"

stamp_of() {
  cat "$LOCK" "$ROOT/requirements/build.txt" "$ROOT/tools/setup_env.sh" | sha256sum | cut -c1-16
}
STAMP="$VENV/.noisemim-env-$(stamp_of)"

if [[ -f "$STAMP" ]] && "$VENV/bin/python" -c "$IMPORT_CHECK" 2>/dev/null; then
  exit 0
fi

echo "[setup_env] building the project environment in $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --isolated --disable-pip-version-check)
pin() { grep -E "^$1==" "$LOCK"; }

# 1. Build tools, then the torch/torchvision pair (before mmcv, which compiles against it).
"${PIP[@]}" install -q -r "$ROOT/requirements/build.txt"
"${PIP[@]}" install -q "$(pin torch)" "$(pin torchvision)"
# 2. mmcv with its compiled ops, built against that torch (cached as a wheel by pip).
MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" install -q --no-build-isolation "$(pin mmcv)"
# 3. Everything else, exactly as locked, then this package (editable).
"${PIP[@]}" install -q --no-build-isolation -r "$LOCK"
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT"

"$VENV/bin/python" -c "$IMPORT_CHECK; import torch; print('[setup_env] ok: torch', torch.__version__)"
rm -f "$VENV"/.noisemim-env-*
touch "$STAMP"
