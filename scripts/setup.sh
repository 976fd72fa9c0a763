#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh machine: system packages for a real
# napari viewer under Xvfb, then a virtual environment with the project and
# its test dependencies.  Called by `make demo` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

APT_PKGS="xvfb xauth libgl1-mesa-dri libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 \
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 \
libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libdbus-1-3 libfontconfig1 libglib2.0-0"

missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "[setup] installing system packages:$missing"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # CPU build of torch first (a local wheel on our machines; PyPI's CPU index elsewhere),
  # so that nothing below pulls a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" \
     || "$VENV/bin/python" -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  "$VENV/bin/python" -m pip install -q -e ".[pyqt,test]"
  # the Qt binding is PyQt6 (napari's default); an older environment's PyQt5 would shadow it
  "$VENV/bin/python" -m pip uninstall -y -q PyQt5 PyQt5-Qt5 PyQt5-sip >/dev/null 2>&1 || true
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
echo "[setup] environment ready: $VENV"
