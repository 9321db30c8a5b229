#!/usr/bin/env bash
# One script for a fresh machine.
#   bash scripts/setup.sh run    install everything the window needs, then open the demo study (headless: run it
#                                without a window and print the report)
#   bash scripts/setup.sh test   install what the tests need (system tools too), then lint, type-check and test
#   bash scripts/setup.sh install   only install the Python side
# Work already done is skipped: system packages are checked with dpkg first, and pip runs only when the stamp
# in the virtualenv (a hash of pyproject.toml, the extras, the torch version and index, the interpreter and this
# folder) does not match. Every step prints a line with the elapsed time; pip's output is shown (its progress
# bars on a terminal, its main lines and a heartbeat otherwise).
# Environment:
#   PYTHON            interpreter to build the virtualenv from (default: python3, needs >= 3.11)
#   VENV              virtualenv folder (default: .venv in the repository)
#   TORCH_VERSION     torch release to install first (default: 2.13.0)
#   TORCH_INDEX_URL   a PyTorch wheel index to take torch from (e.g. the CUDA 12.x index on a GPU workstation);
#                     unset: pip's configured indexes (the CPU wheel where one is provided locally)
#   SETUP_FORCE=1     ignore the stamp and run pip again
#   WORKSTATION_BUILD_BUNDLE=1   'test' builds the PyInstaller bundle (packaging/build.sh) first, so
#                     tests/test_frozen.py runs its self-test; CI=true does the same, =0 turns it off
#   WORKSTATION_MONAILABEL=1     'test' installs the MONAI Label server's own virtualenv (scripts/monailabel_env.sh,
#                     ~3 min and 3.7 GB the first time, cached by a stamp) so tests/test_remote_monailabel.py runs
#                     against a real server; CI=true does the same, =0 turns it off
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-run}"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
START=$(date +%s)
STAMP="$VENV/.workstation-setup-stamp"

# What Qt's X11 (xcb) platform loads to open the window; kept in step with workstation/displaycheck.py.
WINDOW_PACKAGES=(libxcb1 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
                 libxcb-randr0 libxcb-shape0 libxcb-util1 libxcb-xkb1 libxcb-xinerama0 libxkbcommon0
                 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3 libglib2.0-0)
# What only the tests need: independent reference tools and a virtual display for the real-window tests.
TEST_PACKAGES=(dcm2niix dicom3tools xvfb xauth)

elapsed() { echo $(( $(date +%s) - START )); }
log() { printf '\n== [%4ss] %s\n' "$(elapsed)" "$*"; }

have_display() { [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; }

missing_packages() {
  # Debian/Ubuntu packages of "$@" that are not installed (a t64-renamed package counts as installed).
  local p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "${p}t64" >/dev/null 2>&1 || echo "$p"
  done
}

install_system_packages() {
  # usage: install_system_packages WHAT PACKAGE...   (installs the missing ones with apt-get)
  local what="$1"; shift
  if ! command -v dpkg >/dev/null; then
    log "not a Debian/Ubuntu system: make sure the equivalents of these are installed ($what): $*"
    return
  fi
  local missing
  mapfile -t missing < <(missing_packages "$@")
  if [ ${#missing[@]} -eq 0 ]; then
    log "system packages for $what: all $# installed"
    return
  fi
  if ! command -v apt-get >/dev/null; then
    echo "warning: apt-get not found; please install: ${missing[*]}" >&2; return
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing system packages for $what: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "system packages installed"
}

pip_run() {
  # pip with its output visible: on a terminal as pip prints it (progress bars included); otherwise (CI logs)
  # its main lines as they come plus a heartbeat every 30 s, so a long download never looks like a hang.
  # The full output is kept in $VENV/.setup-pip.log and printed when pip fails.
  local logfile="$VENV/.setup-pip.log"
  if [ -t 1 ]; then
    "$VENV/bin/python" -m pip --disable-pip-version-check "$@" --progress-bar on
    return
  fi
  # (sleep's output goes nowhere, so a killed heartbeat leaves nothing holding our stdout open)
  ( while sleep 30 >/dev/null 2>&1; do printf '   ... pip still working [%ss]\n' "$(elapsed)"; done ) &
  local beat=$! rc=0
  PYTHONUNBUFFERED=1 "$VENV/bin/python" -m pip --disable-pip-version-check "$@" --progress-bar off 2>&1 | tee "$logfile" \
    | { grep --line-buffered -E '^(Collecting|Downloading|Installing collected|Successfully installed|ERROR)' \
        | cut -c1-200 | sed -u 's/^/   /' || true; } || rc=$?
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    echo "pip failed (exit $rc); its full output:" >&2
    cat "$logfile" >&2
    return "$rc"
  fi
}

stamp_key() {
  # What the installed Python side depends on: the dependency list, the torch pin and index, the interpreter
  # and this folder (the editable install points here).
  { cat pyproject.toml
    echo "torch=$TORCH_VERSION index=${TORCH_INDEX_URL:-} repo=$(pwd -P)"
    "$VENV/bin/python" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -c1-32
}

stamp_covers() {
  # The stamp has this key and the extras asked for ("" = none).
  local key="$1" extras="$2"
  [ -f "$STAMP" ] && [ -x "$VENV/bin/workstation" ] || return 1
  [ "$(sed -n 's/^key=//p' "$STAMP")" = "$key" ] || return 1
  [ -z "$extras" ] || grep -qx "extra=$extras" "$STAMP"
}

write_stamp() {
  local key="$1" extras="$2" old=()
  if [ -f "$STAMP" ] && [ "$(sed -n 's/^key=//p' "$STAMP")" = "$key" ]; then
    mapfile -t old < <(sed -n 's/^extra=//p' "$STAMP")
  fi
  { echo "key=$key"
    printf '%s\n' "${old[@]}" "$extras" | sed '/^$/d' | sort -u | sed 's/^/extra=/'
  } >"$STAMP"
}

installed_torch() {
  # torch's version from its metadata (no import: importing torch takes seconds)
  "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('torch').split('+')[0])" 2>/dev/null || true
}

install_python() {
  local extras="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local key
  key=$(stamp_key)
  if [ "${SETUP_FORCE:-}" != "1" ] && stamp_covers "$key" "$extras"; then
    log "Python packages up to date${extras:+ (with [$extras])}: nothing to install (SETUP_FORCE=1 reinstalls)"
    return
  fi
  # torch first, explicitly: an unpinned 'torch' requirement would otherwise pull a multi-GB CUDA build.
  if [ "$(installed_torch)" != "$TORCH_VERSION" ]; then
    log "installing torch $TORCH_VERSION (the largest download: several hundred MB)"
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
      pip_run install "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX_URL"
    else
      pip_run install "torch==$TORCH_VERSION"
    fi
  fi
  log "installing the workstation${extras:+ with [$extras]} and its dependencies"
  pip_run install -e ".${extras:+[$extras]}"
  log "checking the installation"
  "$VENV/bin/python" -c "import workstation, inference, pydicom, PySide6, torch" >/dev/null
  write_stamp "$key" "$extras"
  log "Python packages installed"
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

monailabel_env() {
  # The MONAI Label server for the remote-inference tests, in its own cached virtualenv (it pins older MONAI and
  # pydicom than ours); without it those tests fail under CI=true.
  if [ "${WORKSTATION_MONAILABEL:-}" = "1" ] || { [ "${CI:-}" = "true" ] && [ "${WORKSTATION_MONAILABEL:-}" != "0" ]; }; then
    log "MONAI Label test server (scripts/monailabel_env.sh)"
    PYTHON="$PYTHON" bash scripts/monailabel_env.sh >/dev/null
    log "MONAI Label test server ready"
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
    if have_display; then
      install_system_packages "the window" "${WINDOW_PACKAGES[@]}"
    fi
    install_python ""
    if have_display; then
      log "ready: opening the demo study (the window checks its display libraries and says what is missing)"
      exec "$VENV/bin/workstation" demo
    else
      log "ready; no display: running the demo study headless (built-in analysis, template report, exports)"
      exec "$VENV/bin/workstation" demo --no-gui
    fi ;;
  test)
    install_system_packages "the window and the tests" "${WINDOW_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    log "PACS test tools"
    bash scripts/install_pacs_tools.sh
    install_python "test"
    monailabel_env
    build_bundle
    shift || true
    run_tests "$@" ;;
  *)
    echo "usage: $0 run|test|install" >&2; exit 2 ;;
esac
