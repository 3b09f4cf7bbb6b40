#!/usr/bin/env bash
# Install everything napari-organelle needs on Debian/Ubuntu, idempotently:
#   - as root on Linux: the system libraries Qt, OpenGL (Mesa) and Xvfb need;
#   - a virtual environment (default .venv, or $NAPARI_ORGANELLE_VENV) with the
#     package and the extras given as arguments (e.g. "testing").
# Re-running is fast: pip is skipped while pyproject.toml and the extras are unchanged.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NAPARI_ORGANELLE_VENV:-$repo/.venv}"
extras="${1:-qt}"

system_packages=(
  xvfb xauth libgl1 libegl1 libglx-mesa0 libgl1-mesa-dri libxkbcommon-x11-0 libxkbcommon0
  libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
  libxcb-xinerama0 libxcb-xinput0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libx11-xcb1
  libdbus-1-3 libfontconfig1 libxrender1 libxi6 libglib2.0-0 fonts-dejavu-core
)

install_system_packages() {
  [ "$(uname -s)" = "Linux" ] && command -v apt-get >/dev/null || return 0
  local wanted=("${system_packages[@]}")
  if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    wanted+=(python3-venv python3-pip)
  fi
  local missing=()
  for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "napari-organelle: system libraries missing (${missing[*]});" >&2
    echo "  run as root, or: sudo apt-get install -y ${missing[*]}" >&2
    return 0
  fi
  echo "napari-organelle: installing system libraries: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

install_python_packages() {
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "napari-organelle needs Python 3.11 or newer (zarr 3); found $("$python" --version 2>&1)" >&2
    exit 1
  fi
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  local stamp="$venv/.napari-organelle-installed"
  local want
  want="$(cat "$repo/pyproject.toml" | sha256sum | cut -d' ' -f1) $extras"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
     && "$venv/bin/python" -c "import napari_organelle" 2>/dev/null; then
    return 0
  fi
  echo "napari-organelle: installing Python packages into $venv (first time: several minutes)"
  "$venv/bin/python" -m pip install -q -e "$repo[$extras]" 2>&1 | grep -v "is ignored" || true
  if [[ ",$extras," == *",testing,"* ]]; then
    # bioimageio.core (the tests' bioimage.io validator) pins a bioimageio.spec whose
    # serializers break on today's pydantic-core; 0.5.14 works with it (see pyproject.toml).
    "$venv/bin/python" -m pip install -q --no-deps "bioimageio.spec>=0.5.14" 2>&1 \
      | grep -v "is ignored" || true
  fi
  "$venv/bin/python" -c "import napari_organelle, torch, napari" # fail here, not later
  echo "$want" > "$stamp"
}

install_system_packages
install_python_packages
