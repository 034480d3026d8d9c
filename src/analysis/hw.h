// The machine's ceilings, measured: read bandwidth from DRAM and peak fp32 FMA throughput.
// Every performance figure kvscope reports (achieved GB/s, fraction of roofline) is quoted
// against these numbers, so the method is fixed here and recorded with the result:
//  - bandwidth: a buffer of 3x the last-level cache (256 MiB to 2 GiB; 1 GiB when /sys does not
//    report the caches; quick: 64 MiB), on transparent huge pages, touched once; then each
//    thread sums its own contiguous share with an AVX2 kernel, its share split into k equal
//    parts read in lock-step ("k interleaved streams per thread"), k in {1, 2, 4, 8};
//  - FLOP/s: an AVX2 FMA loop with 12 independent accumulators per thread for ~0.2 s.
// Each figure is repeated and kept with its spread, because bandwidth on shared machines
// drifts by tens of percent from minute to minute.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kvscope::analysis {

// One measured ceiling with its spread over `reps` repetitions (best = max: higher is better).
struct Measure {
    double best = 0, median = 0, min = 0, max = 0;
    int reps = 0;
    bool operator==(const Measure&) const = default;
};

struct HwInfo {
    std::string cpu_model;  // /proc/cpuinfo "model name"
    int cores = 0;          // physical cores
    int threads = 0;        // logical CPUs online
    // Per instance, from /sys/devices/system/cpu/cpu0/cache/index*/; 0 when /sys does not say.
    int64_t l1d_bytes = 0, l1i_bytes = 0, l2_bytes = 0, l3_bytes = 0;
    std::string cache_note;  // "L1d 48 KiB x2, L2 1 MiB x2, L3 32 MiB shared", or "unknown"
    int64_t ram_bytes = 0;   // MemTotal
    std::string isa;         // what the engine uses and the CPU has: "AVX2 FMA F16C"

    int measured_threads = 0;         // the "all threads" count of the figures below; 0 = not measured
    bool quick = false;               // measured in quick mode (small buffer, few reps)
    Measure bw_gbs_1t, bw_gbs_all;    // read GB/s (1e9), at the best stream count of each
    int bw_best_streams = 0;          // streams per thread that gave bw_gbs_all.best
    std::map<int, Measure> bw_1t_by_streams, bw_all_by_streams;  // streams per thread -> GB/s
    Measure gflops_1t, gflops_all;    // peak fp32 FMA GFLOP/s
    std::string measured_at;          // ISO-8601 UTC, e.g. "2025-03-01T09:30:12.345Z"

    double ridge_flop_per_byte() const;  // gflops_all.median / bw_gbs_all.median; 0 if unmeasured
    bool operator==(const HwInfo&) const = default;
};

// The static description only (model, topology, caches, RAM, ISA): no measurement, fast.
HwInfo describe_machine();

// Static description + measurements with `threads` OpenMP threads (<= 0: every CPU this
// process may run on). quick: 64 MiB buffer, 3 reps, short FMA runs; for tests and CI.
HwInfo probe_hardware(int threads, bool quick);

// Read bandwidth sampled again and again during a long measurement, by the probe's method:
// a benchmark that lasts minutes on a machine whose bandwidth drifts by tens of percent is
// judged against the bandwidth of its own minutes, not of the probe's. Each sample is the best
// of one pass at every stream count the probe tries (1, 2, 4, 8 per thread), as the probe's
// own figure is: which count reads fastest changes with the machine's phase too.
// Holds the probe-sized buffer (see bandwidth_buffer_bytes) until destroyed.
class BandwidthSampler {
public:
    BandwidthSampler(int threads, bool quick);
    ~BandwidthSampler();

    double sample();            // the best of one pass per stream count, GB/s (1e9); kept
    Measure samples() const;    // the spread of every sample so far (reps = their count)
    // How many samples each stream count won, indexed by streams per thread (1, 2, 4, 8).
    std::map<int, int> wins() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The probe, cached as JSON at `cache_file`. Re-measured when the file is missing or
// unreadable, when it describes another CPU model or thread count, when it holds a quick
// measurement and a full one is asked for, or when fresh == true; then the file is rewritten.
HwInfo load_or_probe(const std::filesystem::path& cache_file, int threads, bool fresh, bool quick);

nlohmann::json to_json(const HwInfo& hw);
HwInfo hw_from_json(const nlohmann::json& j);  // throws kvscope::Error on missing or mistyped keys

std::string format_table(const HwInfo& hw);  // multi-line, for the terminal
std::filesystem::path default_cache_file();  // data_dir() / "hw.json" (core/paths.h)

namespace detail {
// Exposed for tests, which cannot count on the machine they run on to publish cache info.
struct Caches {
    int64_t l1d_bytes = 0, l1i_bytes = 0, l2_bytes = 0, l3_bytes = 0;
    int64_t llc_total_bytes = 0;  // last-level size x instances: what a buffer must outgrow
    std::string note = "unknown";
};
Caches read_caches(const std::filesystem::path& sys_cpu_dir);  // e.g. /sys/devices/system/cpu
// From CPUID (AMD leaves 0x80000005/6, Intel leaf 4), for machines (VMs) without sysfs caches.
Caches cpuid_caches();
// sysfs when it lists the caches, otherwise CPUID.
Caches system_caches();
int64_t parse_cache_size(std::string_view s);  // "48K" -> 49152, "32M", "1024"; -1 if malformed
int count_cpu_list(std::string_view s);        // "0-3,8" -> 5; -1 if malformed
}  // namespace detail

}  // namespace kvscope::analysis
