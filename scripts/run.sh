#!/usr/bin/env bash
# Quick start, part 1: install, then open napari with the plugin and a sample image.
# Without a display, run the same segmentation headless and print where the results are.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NAPARI_ORGANELLE_VENV:-$repo/.venv}"
bash "$repo/scripts/setup.sh" qt
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname -s)" = "Darwin" ]; then
  exec "$venv/bin/napari-organelle" demo "$@"
else
  echo "No display: segmenting the sample headless."
  exec "$venv/bin/napari-organelle" demo --headless "$@"
fi
