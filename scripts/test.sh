#!/usr/bin/env bash
# The test suite: the parsers under AddressSanitizer/UBSan, a short fuzzing run of each, then
# the unit, golden (PyTorch / llama2.c references), CLI and end-to-end tests (ctest, last, so
# its summary closes the output).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if [[ -f scripts/sanitize.sh ]]; then bash scripts/sanitize.sh; fi
if [[ -f scripts/fuzz.sh ]]; then FUZZ_SECONDS="${FUZZ_SECONDS:-30}" bash scripts/fuzz.sh; fi
cmake --build build -j"$(nproc)" >/dev/null
cd build && OMP_NUM_THREADS=2 ctest --output-on-failure --timeout 1200 "$@"
