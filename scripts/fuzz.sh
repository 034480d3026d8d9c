#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/*.cpp) with clang + ASan/UBSan into build-fuzz/ and runs
# each for FUZZ_SECONDS seconds (default 60) from its seed corpus in fuzz/corpus/<name>/.
# FUZZ_SECONDS=0 only replays the seed corpora (a quick regression check). Exits non-zero if a
# target crashes, hangs, leaks, runs out of memory or trips a sanitizer; the input that did it
# is left in build-fuzz/artifacts/<name>/.
#   FUZZ_SECONDS=300 scripts/fuzz.sh                 # all targets, 5 min each
#   scripts/fuzz.sh fuzz_config                      # one target
# Env: FUZZ_SECONDS, FUZZ_JOBS (build parallelism, default nproc), FUZZ_MAX_LEN (default 8192),
#      FUZZ_ARGS (extra libFuzzer flags), CXX/CC (default clang++/clang, or the -14 names).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-$(nproc)}"
max_len="${FUZZ_MAX_LEN:-8192}"
build="$root/build-fuzz"
log() { echo "fuzz.sh: $*" >&2; }

pick() { for c in "$@"; do if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi; done; return 1; }
cxx="${CXX:-}"; cc="${CC:-}"
[[ "$cxx" == *clang* ]] || cxx="$(pick clang++ clang++-14)" || { log "clang++ not found: run scripts/setup.sh (apt-get install clang libclang-rt-14-dev)"; exit 1; }
[[ "$cc" == *clang* ]] || cc="$(pick clang clang-14)" || { log "clang not found: run scripts/setup.sh"; exit 1; }

# Preflight: libFuzzer's runtime (libclang-rt-14-dev) and clang's OpenMP (libomp-14-dev, which
# find_package(OpenMP) needs under clang; apt does not pull it in with --no-install-recommends).
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf '#include <cstdint>\n#include <cstddef>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >"$probe/f.cpp"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe/f.cpp" -o "$probe/f" 2>"$probe/err"; then
    cat "$probe/err" >&2
    log "$cxx cannot link a libFuzzer target: apt-get install libclang-rt-14-dev"
    exit 1
fi
printf '#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n' >"$probe/omp.cpp"
if ! "$cxx" -fopenmp "$probe/omp.cpp" -o "$probe/omp" 2>/dev/null; then
    sudo_cmd=""; [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
    log "clang has no OpenMP runtime: installing libomp-14-dev"
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends libomp-14-dev >/dev/null ||
        { log "apt-get install libomp-14-dev failed"; exit 1; }
fi

# -DKVSCOPE_SANITIZE=ON instruments the library with ASan/UBSan as well; KVSCOPE_FUZZ adds
# coverage instrumentation to it and defines one executable per fuzz/*.cpp.
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_C_COMPILER="$cc" -DKVSCOPE_FUZZ=ON -DKVSCOPE_SANITIZE=ON -DKVSCOPE_BENCH=OFF >/dev/null

if (($#)); then
    targets=("$@")
else
    targets=()
    for f in fuzz/*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
log "building ${targets[*]} in $build"
cmake --build "$build" -j"$jobs" --target "${targets[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export OMP_NUM_THREADS=1

read -r -a extra <<<"${FUZZ_ARGS:-}"
failed=()
summary=()
for t in "${targets[@]}"; do
    seeds="$root/fuzz/corpus/$t"
    work="$build/corpus/$t"        # new inputs go here, not into the source tree
    artifacts="$build/artifacts/$t/"
    mkdir -p "$seeds" "$work" "$artifacts"
    out="$build/$t.log"
    args=(-timeout=10 -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1
          -artifact_prefix="$artifacts")
    if [[ "$seconds" == 0 ]]; then
        log "$t: replaying $(find "$seeds" -type f | wc -l) seeds"
        mapfile -t files < <(find "$seeds" "$work" -type f | sort)
        ((${#files[@]})) || { summary+=("$t: no seeds to replay"); continue; }
        cmd=("$build/$t" "${args[@]}" "${extra[@]}" "${files[@]}")
    else
        log "$t: fuzzing for ${seconds}s (log: $out)"
        cmd=("$build/$t" "${args[@]}" -max_total_time="$seconds" "${extra[@]}" "$work" "$seeds")
    fi
    set +e
    "${cmd[@]}" >"$out" 2>&1
    rc=$?
    set -e
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)"
    cov="$(grep -o 'cov: [0-9]*' "$out" | tail -1 || true)"
    if ((rc != 0)); then
        failed+=("$t")
        summary+=("$t: FAILED (exit $rc)")
        log "$t: FAILED (exit $rc); last lines of $out:"
        tail -n 60 "$out" >&2
        for a in "$artifacts"*; do
            [[ -e "$a" ]] && log "  reproduce: $build/$t $a"
        done
    else
        if [[ "$seconds" == 0 ]]; then summary+=("$t: ok, ${#files[@]} inputs replayed")
        else summary+=("$t: ok, ${execs:-?} execs in ${seconds}s, ${cov:-cov: ?}"); fi
    fi
done

for s in "${summary[@]}"; do log "$s"; done
if ((${#failed[@]})); then
    log "findings in: ${failed[*]}"
    exit 1
fi
