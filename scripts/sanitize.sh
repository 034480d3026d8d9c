#!/usr/bin/env bash
# Builds kvscope and its tests with AddressSanitizer + UBSan (-DKVSCOPE_SANITIZE=ON, gcc by
# default) into build-asan/ and runs the tests of the code that reads files we did not write:
# safetensors, config, llama2.c checkpoints, tokenizers, the CLI on good and bad checkpoints,
# `plan`, the KV cache, the serving scheduler and request traces.
# Exits non-zero if a test fails or any process (the tests or the kvscope binary they run)
# reports a memory error, a leak or undefined behaviour.
#   scripts/sanitize.sh                        # default test selection
#   SANITIZE_FILTER='Safetensors*' scripts/sanitize.sh
# Env: SANITIZE_FILTER (gtest filter), SANITIZE_JOBS (build parallelism, default nproc),
#      CXX/CC (compiler, default the system's c++/cc).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

build="$root/build-asan"
filter="${SANITIZE_FILTER:-Safetensors*:Cli*:*Tokenizer*:Kv*:Llama2c*:Plan*:Scheduler*:Serving.Trace*:Serving.Generated*}"
jobs="${SANITIZE_JOBS:-$(nproc)}"
log() { echo "sanitize.sh: $*" >&2; }

cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVSCOPE_SANITIZE=ON -DKVSCOPE_FUZZ=OFF -DKVSCOPE_BENCH=OFF)
[[ -n "${CXX:-}" ]] && cmake_args+=(-DCMAKE_CXX_COMPILER="$CXX")
[[ -n "${CC:-}" ]] && cmake_args+=(-DCMAKE_C_COMPILER="$CC")
cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
log "building kvscope and kvscope_tests in $build"
cmake --build "$build" -j"$jobs" --target kvscope kvscope_tests

# Every sanitized process writes its reports to $reports/<tool>.<pid>: that also catches
# reports from the kvscope binary the CLI tests run, whose stderr the tests may swallow.
reports="$build/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# No LSan suppressions: libgomp's thread pool has not produced false leak reports here. If it
# ever does, suppress exactly those frames (LSAN_OPTIONS=suppressions=...), never real leaks.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

log "running kvscope_tests --gtest_filter='$filter' under ASan/UBSan"
set +e
(cd "$build" && ./kvscope_tests --gtest_filter="$filter" --gtest_brief=1)
rc=$?
set -e

found=0
for f in "$reports"/*; do
    [[ -s "$f" ]] || continue
    found=1
    log "sanitizer report in $f:"
    cat "$f" >&2
done
if ((found)); then
    log "FAILED: sanitizer reports above"
    exit 1
fi
if ((rc != 0)); then
    log "FAILED: kvscope_tests exited with $rc"
    exit "$rc"
fi
log "ok: no sanitizer reports"
