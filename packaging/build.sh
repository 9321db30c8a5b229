#!/usr/bin/env bash
# Build the one-folder bundle dist/workstation with PyInstaller, then report its size and a start-up time.
#   bash packaging/build.sh            (from anywhere; uses the repository's .venv, see scripts/setup.sh)
# Environment:
#   VENV                          virtualenv to build from (default: .venv in the repository); torch in it is what
#                                 gets bundled: install the CUDA build there first for GPU workstations
#   PYINSTALLER_VERSION           requirement installed when PyInstaller is missing (default: pyinstaller>=6.10,<7)
#   WORKSTATION_BUNDLE_LLM_ARCHS  transformers model types to bundle (comma separated, or "all"; see hooks)
#   DIST, WORK                    output and work folders (default: dist, build in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
DIST="${DIST:-dist}"
WORK="${WORK:-build}"
PY="$VENV/bin/python"

log() { printf '\n== %s\n' "$*"; }

if [ ! -x "$PY" ]; then
  echo "error: no virtualenv at $VENV; run 'bash scripts/setup.sh install' first" >&2
  exit 2
fi
if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  log "installing PyInstaller into $VENV"
  "$PY" -m pip --disable-pip-version-check -q install "${PYINSTALLER_VERSION:-pyinstaller>=6.10,<7}"
fi
"$PY" -c "import torch, PySide6, monai, transformers, workstation" \
  || { echo "error: the application is not installed in $VENV" >&2; exit 2; }

log "building $DIST/workstation (PyInstaller $("$PY" -c 'import PyInstaller; print(PyInstaller.__version__)'), torch $("$PY" -c 'import torch; print(torch.__version__)'))"
start=$(date +%s)
# the analysis imports every torch module in subprocesses: their deprecation warnings are noise here
PYTHONWARNINGS="ignore::DeprecationWarning,ignore::FutureWarning" \
  "$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath "$DIST" --workpath "$WORK" \
  packaging/workstation.spec
echo "built in $(( $(date +%s) - start )) s"

APP="$DIST/workstation/workstation"
[ -x "$APP" ] || { echo "error: $APP was not built" >&2; exit 1; }
log "size"
du -sh "$DIST/workstation" | awk '{print "bundle: " $1}'
du -sh "$DIST/workstation/_internal"/* 2>/dev/null | sort -rh | awk 'NR <= 8 { print "  " $1 "  " $2 }'  # awk reads all: no SIGPIPE

log "start-up (launch to window shown, then quit)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
t0=$(date +%s.%N)
if WORKSTATION_DATA_DIR="$tmp/data" WORKSTATION_CONFIG_DIR="$tmp/config" WORKSTATION_QUIT_AFTER=0 \
     timeout 120 "$APP" gui >"$tmp/log" 2>&1; then
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "launch to window shown and closed: %.2f s\n", b - a }'
else
  echo "error: the bundle did not start:" >&2
  cat "$tmp/log" >&2
  exit 1
fi
echo "run '$APP --self-test' (QT_QPA_PLATFORM=offscreen on a machine without a display) for the full check"
