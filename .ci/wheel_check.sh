#!/usr/bin/env bash
# `make wheel-check`: install masra as `pip install masra` would, in a fresh virtual environment (torch first,
# then the wheel with its core dependencies only), and train + predict with it (.ci/core_install_smoke.py).
# Usage: .ci/wheel_check.sh BUILD_PYTHON BASE_PYTHON (the dev venv's python builds the wheel; the fresh venv
# is made from BASE_PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
build_python="$1"
base_python="$2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
start=$SECONDS

"$build_python" -m pip wheel -q --no-deps -w "$work/dist" .
"$base_python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q torch==2.13.0
"$work/venv/bin/python" -m pip install -q "$work"/dist/masra-*.whl
"$work/venv/bin/python" .ci/core_install_smoke.py
echo "wheel check: passed in $((SECONDS - start)) s"
