#!/usr/bin/env bash
# Quick start, part 2: install everything (with test tools) and run the test suite.
# GUI tests need a display: without one they run under Xvfb.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${NAPARI_ORGANELLE_VENV:-$repo/.venv}"
bash "$repo/scripts/setup.sh" testing
cd "$repo"
export PYTHONUNBUFFERED=1
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null; then
  exec xvfb-run -a -s "-screen 0 1280x1024x24" "$venv/bin/python" -m pytest "$@"
fi
exec "$venv/bin/python" -m pytest "$@"
