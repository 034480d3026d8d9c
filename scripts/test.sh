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
# README's first command in its quick form, as a new user runs it: from the repository root,
# relative output folder, default model; then the report must render with every image.
bash scripts/first_run.sh
cd build && OMP_NUM_THREADS=2 ctest --output-on-failure --timeout 1200 "$@"
