#!/usr/bin/env bash
# One script for a fresh machine.
#   bash scripts/setup.sh run    install everything, then open the demo study (headless: print its summary)
#   bash scripts/setup.sh test   install what the tests need (system tools too), then lint, type-check and test
#   bash scripts/setup.sh install   only install
# Environment:
#   PYTHON            interpreter to build the virtualenv from (default: python3, needs >= 3.11)
#   VENV              virtualenv folder (default: .venv in the repository)
#   TORCH_VERSION     torch release to install first (default: 2.13.0)
#   TORCH_INDEX_URL   a PyTorch wheel index to take torch from (e.g. the CUDA 12.x index on a GPU workstation);
#                     unset: pip's configured indexes (the CPU wheel where one is provided locally)
#   WORKSTATION_BUILD_BUNDLE=1   'test' builds the PyInstaller bundle (packaging/build.sh) first, so
#                     tests/test_frozen.py runs its self-test; CI=true does the same, =0 turns it off
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-run}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"

log() { printf '\n== %s\n' "$*"; }

install_system_packages() {
  # Tools the tests use as independent references and a virtual display for screenshots.
  local pkgs=(dcm2niix dicom3tools xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0
              libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-shape0 libegl1 libgl1
              libfontconfig1 libdbus-1-3 libglib2.0-0)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then return; fi
  if ! command -v apt-get >/dev/null; then
    echo "warning: apt-get not found; please install: ${missing[*]}" >&2; return
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pip_quiet() {
  # pip's output goes to a log, shown only when pip fails.
  local logfile
  logfile=$(mktemp)
  if ! "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" >"$logfile" 2>&1; then
    cat "$logfile" >&2; rm -f "$logfile"; return 1
  fi
  rm -f "$logfile"
}

install_python() {
  local extras="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local pip=(pip_quiet)
  # torch first, explicitly: an unpinned 'torch' requirement would otherwise pull a multi-GB CUDA build.
  if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
    log "installing torch $TORCH_VERSION"
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      "${pip[@]}" install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
    else
      "${pip[@]}" install "torch==$TORCH_VERSION"
    fi
  fi
  log "installing the workstation${extras:+ with [$extras]}"
  "${pip[@]}" install -e ".${extras:+[$extras]}"
  "$VENV/bin/python" -c "import workstation, inference, pydicom, PySide6, torch" >/dev/null
}

build_bundle() {
  # The frozen one-folder bundle (packaging/): built in CI so that tests/test_frozen.py runs its self-test
  # (about 5 minutes on 2 cores); WORKSTATION_REQUIRE_BUNDLE makes that test fail, not skip, without it.
  if [ "${WORKSTATION_BUILD_BUNDLE:-}" = "1" ] || { [ "${CI:-}" = "true" ] && [ "${WORKSTATION_BUILD_BUNDLE:-}" != "0" ]; }; then
    log "building the PyInstaller bundle"
    VENV="$VENV" bash packaging/build.sh
    export WORKSTATION_REQUIRE_BUNDLE=1
  fi
}

run_tests() {
  export QT_QPA_PLATFORM=offscreen
  log "ruff"
  "$VENV/bin/ruff" check workstation inference tests benchmarks
  log "mypy"
  "$VENV/bin/mypy"
  log "import contracts"
  "$VENV/bin/lint-imports"
  log "pytest"
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
}

case "$MODE" in
  install)
    install_python "" ;;
  run)
    install_python ""
    if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
      exec "$VENV/bin/workstation" demo
    else
      echo "(no display: running the demo study headless: built-in analysis, template report, exports)"
      exec "$VENV/bin/workstation" demo --no-gui
    fi ;;
  test)
    install_system_packages
    bash scripts/install_pacs_tools.sh
    install_python "test"
    build_bundle
    shift || true
    run_tests "$@" ;;
  *)
    echo "usage: $0 run|test|install" >&2; exit 2 ;;
esac
