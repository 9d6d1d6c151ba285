#!/usr/bin/env bash
# Runs the whole test suite (format, clippy, unit and privileged
# integration tests on real hooks). Needs root. Installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo xtask test
