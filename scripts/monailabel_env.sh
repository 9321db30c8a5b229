#!/usr/bin/env bash
# A MONAI Label server in its own virtualenv, for the remote-inference tests (tests/test_remote_monailabel.py).
# It cannot share the application's virtualenv: MONAI Label 0.8.5 needs monai < 1.6 and pydicom < 3.
# What is pinned and why: ../shared/notes/monai-label.md (summary):
#   torch==2.13.0 first (CPU build); torchvision==0.28.0 so pip does not swap torch for a CUDA build;
#   monai<1.6 (1.6 breaks Spacingd under MONAI Label); pydicom<3 (pydicom-seg 0.4.1), hence pynetdicom<3 and
#   dicomweb-client<0.60.
# torchvision's wheels do not load with the CPU torch; MONAI Label imports it only for two image-grid helpers that
# inference never calls, so a two-file stub package goes first on the server's PYTHONPATH ($VENV/stub).
# The MONAI bundle app is copied out of the installed package into $VENV/apps/monaibundle (no network).
# Cached: a stamp in the virtualenv (a hash of this script and the interpreter) skips the work when it matches.
# usage: bash scripts/monailabel_env.sh        prints the virtualenv's path on its last line
# Environment:
#   MONAILABEL_VENV   where to build it (default: ${XDG_CACHE_HOME:-~/.cache}/workstation-tests/monailabel-venv)
#   PYTHON            interpreter to build it from (default: python3)
#   SETUP_FORCE=1     ignore the stamp
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd -P)"
PYTHON="${PYTHON:-python3}"
VENV="${MONAILABEL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/workstation-tests/monailabel-venv}"
STAMP="$VENV/.monailabel-env-stamp"
START=$(date +%s)
log() { printf '== [%4ss] monailabel env: %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }

key=$({ cat "$HERE/monailabel_env.sh"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-32)
if [ "${SETUP_FORCE:-}" != "1" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$key" ] \
    && [ -x "$VENV/bin/monailabel" ] && [ -d "$VENV/apps/monaibundle" ]; then
  log "up to date in $VENV (SETUP_FORCE=1 reinstalls)"
  echo "$VENV"
  exit 0
fi

rm -f "$STAMP"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
log "installing torch 2.13.0 (CPU)"
pip install "torch==2.13.0"
printf 'torch==2.13.0\ntorchvision==0.28.0\nmonai<1.6\npydicom<3\npynetdicom<3\ndicomweb-client<0.60\n' \
  >"$VENV/monailabel-pins.txt"
log "installing monailabel 0.8.5 (pinned: $VENV/monailabel-pins.txt)"
pip install -c "$VENV/monailabel-pins.txt" "monailabel==0.8.5"
pip check >&2

log "torchvision stub"
mkdir -p "$VENV/stub/torchvision"
cat >"$VENV/stub/torchvision/__init__.py" <<'EOF'
"""Stub: MONAI Label imports torchvision.utils at start-up; the index's torchvision cannot load with the CPU torch."""
EOF
cat >"$VENV/stub/torchvision/utils.py" <<'EOF'
"""Stub of the two helpers MONAI Label imports (monailabel/transform/post.py); inference never calls them."""


def make_grid(*args, **kwargs):
    raise NotImplementedError("torchvision stub (workstation tests)")


def save_image(*args, **kwargs):
    raise NotImplementedError("torchvision stub (workstation tests)")
EOF

log "copying the monaibundle app out of the package"
rm -rf "$VENV/apps"
mkdir -p "$VENV/apps"
PYTHONPATH="$VENV/stub" "$VENV/bin/python" -m monailabel.main apps --download --name monaibundle --output "$VENV/apps" >&2
test -d "$VENV/apps/monaibundle"
echo "$key" >"$STAMP"
log "ready in $VENV ($(du -sh "$VENV" | cut -f1))"
echo "$VENV"
