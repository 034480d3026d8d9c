// Quiet mode for the microbenchmarks on a shared machine (other builds and runs on our 2
// cores): a run where another process takes a core mid-kernel is meaningless, since the whole
// OpenMP team then waits for the preempted thread. With KVSCOPE_BENCH_QUIET=1 each benchmark
// iteration is a burst of ~20 ms of calls, started only once the CPU has been idle for 200 ms
// and retried when the process got less than 96% of threads x wall time during it (manual
// timing: register the benchmark with UseManualTime() in quiet mode).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>

#include <benchmark/benchmark.h>
#include <omp.h>

namespace kvscope::bench {

inline bool quiet_mode() {
    const char* env = std::getenv("KVSCOPE_BENCH_QUIET");
    return env && env[0] == '1';
}

inline double seconds(clockid_t clock) {
    timespec ts;
    clock_gettime(clock, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Fraction of all CPUs' time spent idle over the next `window` seconds (/proc/stat).
inline double idle_fraction(double window) {
    auto sample = [](double* total, double* idle) {
        std::ifstream f("/proc/stat");
        std::string cpu;
        double v[8] = {};
        f >> cpu;
        for (double& x : v) f >> x;
        *total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
        *idle = v[3] + v[4];
    };
    double t0, i0, t1, i1;
    sample(&t0, &i0);
    std::this_thread::sleep_for(std::chrono::duration<double>(window));
    sample(&t1, &i1);
    return t1 > t0 ? (i1 - i0) / (t1 - t0) : 0.0;
}

// Runs call() once per iteration, or in quiet mode, bursts of calls on an idle machine.
// Returns the number of calls per iteration.
template <class F>
int64_t timed_loop(benchmark::State& state, F&& call) {
    if (!quiet_mode()) {
        for (auto _ : state) call();
        return 1;
    }
    const double t0 = seconds(CLOCK_MONOTONIC);
    call();
    const int64_t burst = std::max<int64_t>(1, int64_t(0.02 / std::max(1e-7, seconds(CLOCK_MONOTONIC) - t0)));
    const double threads = omp_get_max_threads();
    for (auto _ : state) {
        for (;;) {
            while (idle_fraction(0.2) < 0.92) {}
            const double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
            for (int64_t i = 0; i < burst; i++) call();
            const double w1 = seconds(CLOCK_MONOTONIC), c1 = seconds(CLOCK_PROCESS_CPUTIME_ID);
            if (c1 - c0 >= 0.96 * threads * (w1 - w0)) {
                state.SetIterationTime(w1 - w0);
                break;
            }
        }
    }
    return burst;
}

}  // namespace kvscope::bench
