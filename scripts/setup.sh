#!/usr/bin/env bash
# Set up musiclm on a fresh Debian machine: system packages (when root), a virtual environment in .venv,
# the pinned CPU build of PyTorch, then this package and its dependencies.
#   bash scripts/setup.sh          # for using musiclm
#   bash scripts/setup.sh --dev    # also the test and lint tools
# Re-running is cheap: every step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="[dev]" ;;
    *) echo "setup.sh: unknown option $arg (use --dev)" >&2; exit 2 ;;
  esac
done

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${MUSICLM_TORCH_VERSION:-2.13.0}
APT_PACKAGES=(libfluidsynth3 fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont ffmpeg)
# --dev: headless Chromium and its WebDriver for the studio's end-to-end browser test
if [ -n "$extras" ]; then APT_PACKAGES+=(chromium chromium-driver); fi
log() { echo "setup: $*" >&2; }

# 1. System packages: FluidSynth and General MIDI soundfonts (corpus rendering), ffmpeg (Opus baselines);
#    with --dev also chromium + chromium-driver (browser test).
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >/tmp/musiclm-apt.log 2>&1; then
      log "apt-get failed (see /tmp/musiclm-apt.log); missing: ${missing[*]} (corpus rendering, browser test)"
    fi
  else
    log "not root: skipping apt. Corpus rendering (and with --dev the browser test) needs: ${missing[*]}"
  fi
fi

# 2. Virtual environment with the pinned CPU PyTorch first, so the package's torch range pulls nothing more.
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
piplog=$(mktemp)
trap 'rm -f "$piplog"' EXIT
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION"
  "${PIP[@]}" install -q "torch==$TORCH_VERSION" >"$piplog" 2>&1 || { cat "$piplog" >&2; exit 1; }
fi
log "installing musiclm$extras"
"${PIP[@]}" install -q -e ".$extras" >"$piplog" 2>&1 || { cat "$piplog" >&2; exit 1; }
log "ready: .venv/bin/musiclm ($(.venv/bin/musiclm --version))"
