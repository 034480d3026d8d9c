#include "analysis/hw.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "core/aligned.h"
#include "core/error.h"
#include "core/paths.h"
#include "core/fs.h"

namespace kvscope::analysis {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;
constexpr int kStreamCounts[] = {1, 2, 4, 8};

// sysfs and procfs files are optional on containers and odd kernels: absence is not an error.
std::optional<std::string> read_small(const fs::path& p) {
    std::ifstream f(p);
    if (!f) return std::nullopt;
    std::ostringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
    return s;
}

std::string trim(std::string_view s) {
    size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t\r\n");
    return b == std::string_view::npos ? std::string() : std::string(s.substr(b, e - b + 1));
}

// Value of the first "key : value" line of a /proc file, e.g. ("model name", "AMD EPYC").
std::optional<std::string> proc_field(const std::string& text, std::string_view key) {
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        size_t colon = line.find(':');
        if (colon != std::string::npos && trim(std::string_view(line).substr(0, colon)) == key)
            return trim(std::string_view(line).substr(colon + 1));
    }
    return std::nullopt;
}

// cpu0, cpu1, ... under a /sys/devices/system/cpu-like directory, in numeric order.
std::vector<fs::path> cpu_dirs(const fs::path& sys_cpu_dir) {
    std::vector<std::pair<int, fs::path>> found;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(sys_cpu_dir, ec)) {
        std::string name = e.path().filename().string();
        if (name.size() > 3 && name.starts_with("cpu") &&
            std::all_of(name.begin() + 3, name.end(), [](char c) { return c >= '0' && c <= '9'; }))
            found.emplace_back(std::atoi(name.c_str() + 3), e.path());
    }
    std::sort(found.begin(), found.end());
    std::vector<fs::path> out;
    for (auto& [n, p] : found) out.push_back(p);
    return out;
}

int count_physical_cores(int threads) {
    std::set<std::string> ids;
    for (const fs::path& cpu : cpu_dirs("/sys/devices/system/cpu")) {
        auto core = read_small(cpu / "topology/core_id");
        if (!core) continue;  // offline CPUs have no topology
        auto pkg = read_small(cpu / "topology/physical_package_id").value_or("0");
        auto die = read_small(cpu / "topology/die_id").value_or("0");
        ids.insert(pkg + ":" + die + ":" + *core);
    }
    if (!ids.empty()) return int(ids.size());
    if (auto text = read_small("/proc/cpuinfo")) {
        std::istringstream in(*text);
        std::string pkg = "0";
        for (std::string line; std::getline(in, line);) {
            size_t colon = line.find(':');
            if (colon == std::string::npos) continue;
            std::string key = trim(std::string_view(line).substr(0, colon));
            if (key == "physical id") pkg = trim(std::string_view(line).substr(colon + 1));
            if (key == "core id") ids.insert(pkg + ":" + trim(std::string_view(line).substr(colon + 1)));
        }
    }
    return ids.empty() ? threads : int(ids.size());
}

int affinity_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return int(sysconf(_SC_NPROCESSORS_ONLN));
    return CPU_COUNT(&set);
}

std::string format_bytes(int64_t b) {
    if (b >= GiB && b % GiB == 0) return fmt::format("{} GiB", b / GiB);
    if (b >= MiB && b % MiB == 0) return fmt::format("{} MiB", b / MiB);
    if (b >= KiB && b % KiB == 0) return fmt::format("{} KiB", b / KiB);
    if (b >= GiB) return fmt::format("{:.1f} GiB", double(b) / GiB);
    if (b >= MiB) return fmt::format("{:.1f} MiB", double(b) / MiB);
    return fmt::format("{} B", b);
}

std::string iso8601_utc_now() {
    auto now = std::chrono::system_clock::now();
    std::time_t t = std::chrono::system_clock::to_time_t(now);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:03d}Z", buf, int(ms));
}

Measure summarize(std::vector<double> v) {
    Measure m;
    if (v.empty()) return m;
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    m.min = v.front();
    m.max = v.back();
    m.best = m.max;
    m.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    m.reps = int(n);
    return m;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---- read bandwidth -------------------------------------------------------------------------

// Sums K equal parts of [p, p + K * part_floats) in lock-step: one 32-byte load from each part
// per step, 8 loads per iteration into 8 independent accumulators, so neither the add latency
// nor the loop overhead limits a single core below its memory bandwidth.
// part_floats is a multiple of 64 (8 loads x 8 floats).
template <int K>
__m256 sum_streams(const float* p, size_t part_floats) {
    static_assert(K >= 1 && K <= 8 && 8 % K == 0);
    constexpr int U = 8 / K;  // consecutive loads per part per iteration
    const float* part[K];
    for (int s = 0; s < K; ++s) part[s] = p + size_t(s) * part_floats;
    __m256 acc[8];
    for (auto& a : acc) a = _mm256_setzero_ps();
    for (size_t i = 0; i < part_floats; i += 8 * U) {
        for (int u = 0; u < U; ++u)
            for (int s = 0; s < K; ++s) acc[s * U + u] = _mm256_add_ps(acc[s * U + u], _mm256_load_ps(part[s] + i + 8 * u));
    }
    __m256 a01 = _mm256_add_ps(acc[0], acc[1]), a23 = _mm256_add_ps(acc[2], acc[3]);
    __m256 a45 = _mm256_add_ps(acc[4], acc[5]), a67 = _mm256_add_ps(acc[6], acc[7]);
    return _mm256_add_ps(_mm256_add_ps(a01, a23), _mm256_add_ps(a45, a67));
}

float sum_share(const float* p, size_t share_floats, int k) {
    size_t part = share_floats / size_t(k);
    __m256 v;
    switch (k) {
        case 1: v = sum_streams<1>(p, part); break;
        case 2: v = sum_streams<2>(p, part); break;
        case 4: v = sum_streams<4>(p, part); break;
        default: v = sum_streams<8>(p, part); break;
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    float s = 0;
    for (float x : lanes) s += x;
    return s;
}

volatile float g_sink;  // keeps the kernels' results live

// A buffer much larger than the last-level cache, on transparent huge pages when the kernel
// allows it: the ceiling should not be lowered by TLB misses the engine avoids the same way
// (its weights and KV cache come from make_aligned too).
struct BigBuffer {
    AlignedArray<float> mem;  // make_aligned: 2 MiB-aligned and on huge pages at this size
    float* data = nullptr;
    size_t n_floats = 0;
    explicit BigBuffer(size_t bytes) {
        n_floats = (bytes + kHugePage - 1) / kHugePage * kHugePage / sizeof(float);
        try {
            mem = make_aligned<float>(n_floats);
        } catch (const std::bad_alloc&) {
            fail("hardware probe: cannot allocate a {} read-bandwidth buffer", format_bytes(int64_t(bytes)));
        }
        data = mem.get();
    }
};

// 3x the last-level cache, between 256 MiB and 2 GiB; 1 GiB when the size is unknown. On a
// VM with 2 vCPUs of an EPYC whose CPUID claims a 508 MiB L3, 256 and 512 MiB buffers read
// 10-25% faster than 1 and 2 GiB, which agree with each other: part of the smaller buffers
// was still served from a cache.
int64_t bandwidth_buffer_bytes(int64_t llc_total_bytes) {
    if (llc_total_bytes <= 0) return 1 * GiB;
    return std::clamp<int64_t>(3 * llc_total_bytes, 256 * MiB, 2 * GiB);
}

// One timed pass: n_threads threads each read their own contiguous share with k streams.
// Returns GB/s over the bytes actually read.
double bandwidth_pass(const BigBuffer& buf, int n_threads, int k) {
    // Shares are multiples of 8 parts x 64 floats so every k splits them evenly.
    size_t share = buf.n_floats / size_t(n_threads) / 512 * 512;
    auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel num_threads(n_threads) reduction(+ : total)
    total += sum_share(buf.data + size_t(omp_get_thread_num()) * share, share, k);
    double s = seconds_since(t0);
    g_sink = total;
    return double(share) * n_threads * sizeof(float) / s / 1e9;
}

// ---- peak FMA throughput --------------------------------------------------------------------

// 12 independent FMA chains: covers 4-5 cycles of FMA latency x 2 FMA ports with room to spare.
// acc = acc * a + b converges to b / (1 - a), so values stay finite and normal.
__attribute__((noinline)) float fma_chains(int64_t iters, float a_in, float b_in) {
    const __m256 a = _mm256_set1_ps(a_in), b = _mm256_set1_ps(b_in);
    __m256 c0 = _mm256_set1_ps(0.1f), c1 = _mm256_set1_ps(0.2f), c2 = _mm256_set1_ps(0.3f);
    __m256 c3 = _mm256_set1_ps(0.4f), c4 = _mm256_set1_ps(0.5f), c5 = _mm256_set1_ps(0.6f);
    __m256 c6 = _mm256_set1_ps(0.7f), c7 = _mm256_set1_ps(0.8f), c8 = _mm256_set1_ps(0.9f);
    __m256 c9 = _mm256_set1_ps(1.0f), c10 = _mm256_set1_ps(1.1f), c11 = _mm256_set1_ps(1.2f);
    for (int64_t i = 0; i < iters; ++i) {
        c0 = _mm256_fmadd_ps(c0, a, b), c1 = _mm256_fmadd_ps(c1, a, b), c2 = _mm256_fmadd_ps(c2, a, b);
        c3 = _mm256_fmadd_ps(c3, a, b), c4 = _mm256_fmadd_ps(c4, a, b), c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b), c7 = _mm256_fmadd_ps(c7, a, b), c8 = _mm256_fmadd_ps(c8, a, b);
        c9 = _mm256_fmadd_ps(c9, a, b), c10 = _mm256_fmadd_ps(c10, a, b), c11 = _mm256_fmadd_ps(c11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, s);
    return lanes[0] + lanes[7];
}
constexpr double kFlopsPerIter = 12 * 8 * 2;  // chains x lanes x (mul + add)

volatile float g_fma_a = 0.9999999f, g_fma_b = 1e-7f;  // opaque to the optimizer

double fma_pass(int n_threads, int64_t iters) {
    float a = g_fma_a, b = g_fma_b;
    auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel num_threads(n_threads) reduction(+ : total)
    total += fma_chains(iters, a, b);
    double s = seconds_since(t0);
    g_sink = total;
    return kFlopsPerIter * double(iters) * n_threads / s / 1e9;
}

// ---- JSON helpers ---------------------------------------------------------------------------

json measure_json(const Measure& m) {
    return {{"best", m.best}, {"median", m.median}, {"min", m.min}, {"max", m.max}, {"reps", m.reps}};
}

template <typename T>
T get_key(const json& j, const char* key) {
    if (!j.is_object()) fail("hardware description: expected a JSON object, got {}", j.type_name());
    auto it = j.find(key);
    if (it == j.end()) fail("hardware description: missing key \"{}\"", key);
    try {
        return it->get<T>();
    } catch (const json::exception&) {
        fail("hardware description: key \"{}\" has type {}, not the expected one", key, it->type_name());
    }
}

Measure measure_of(const json& m) {
    Measure out;
    out.best = get_key<double>(m, "best");
    out.median = get_key<double>(m, "median");
    out.min = get_key<double>(m, "min");
    out.max = get_key<double>(m, "max");
    out.reps = get_key<int>(m, "reps");
    return out;
}

Measure measure_from_json(const json& j, const char* key) {
    json m = get_key<json>(j, key);
    if (!m.is_object()) fail("hardware description: key \"{}\" must be an object", key);
    return measure_of(m);
}

json by_streams_json(const std::map<int, Measure>& by) {
    json a = json::array();
    for (const auto& [k, m] : by) {
        json e = measure_json(m);
        e["streams"] = k;
        a.push_back(e);
    }
    return a;
}

std::map<int, Measure> by_streams_from_json(const json& j, const char* key) {
    std::map<int, Measure> out;
    auto it = j.find(key);
    if (it == j.end()) return out;  // optional: not part of the original schema
    if (!it->is_array()) fail("hardware description: key \"{}\" must be an array", key);
    for (const json& e : *it) out[get_key<int>(e, "streams")] = measure_of(e);
    return out;
}

std::string measure_row(const Measure& m, const char* unit) {
    if (m.reps == 0) return "not measured";
    return fmt::format("{:7.1f} {}  (median {:.1f}, range {:.1f}-{:.1f}, {} reps)", m.best, unit, m.median, m.min,
                       m.max, m.reps);
}

}  // namespace

// ---- static description ---------------------------------------------------------------------

namespace detail {

int64_t parse_cache_size(std::string_view s) {
    std::string t = trim(s);
    if (t.empty()) return -1;
    int64_t mult = 1;
    switch (t.back()) {
        case 'K': case 'k': mult = KiB; t.pop_back(); break;
        case 'M': case 'm': mult = MiB; t.pop_back(); break;
        case 'G': case 'g': mult = GiB; t.pop_back(); break;
        default: break;
    }
    if (t.empty() || !std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
    return std::stoll(t) * mult;
}

int count_cpu_list(std::string_view s) {
    std::string t = trim(s);
    if (t.empty()) return -1;
    int n = 0;
    std::istringstream in(t);
    for (std::string range; std::getline(in, range, ',');) {
        int lo = 0, hi = 0;
        char dash = 0;
        std::istringstream r(range);
        if (!(r >> lo)) return -1;
        hi = lo;
        if (r >> dash && (dash != '-' || !(r >> hi))) return -1;
        if (hi < lo) return -1;
        n += hi - lo + 1;
    }
    return n;
}

Caches read_caches(const fs::path& sys_cpu_dir) {
    // (level, type) -> size on the first CPU that reports it, and the distinct sets of CPUs
    // sharing one instance: their count is the number of instances.
    struct Level {
        int64_t size = 0;
        std::set<std::string> sharing;
        int max_sharing = 0;
    };
    std::map<std::pair<int, std::string>, Level> levels;
    std::vector<fs::path> cpus = cpu_dirs(sys_cpu_dir);
    int n_cpus_with_cache = 0;
    for (const fs::path& cpu : cpus) {
        std::error_code ec;
        bool any = false;
        for (const auto& e : fs::directory_iterator(cpu / "cache", ec)) {
            if (!e.path().filename().string().starts_with("index")) continue;
            auto level = read_small(e.path() / "level");
            auto type = read_small(e.path() / "type");
            auto size = read_small(e.path() / "size");
            if (!level || !type || !size) continue;
            int64_t bytes = parse_cache_size(*size);
            int lv = std::atoi(level->c_str());
            if (bytes <= 0 || lv <= 0) continue;
            any = true;
            Level& l = levels[{lv, *type}];
            if (l.size == 0) l.size = bytes;
            std::string shared = read_small(e.path() / "shared_cpu_list").value_or(cpu.filename().string());
            l.sharing.insert(shared);
            l.max_sharing = std::max(l.max_sharing, count_cpu_list(shared));
        }
        n_cpus_with_cache += any;
    }
    Caches c;
    std::vector<std::string> parts;
    for (const auto& [key, l] : levels) {
        const auto& [lv, type] = key;
        if (type == "Instruction") {
            if (lv == 1) c.l1i_bytes = l.size;
            continue;  // not in the note: the engine's data never lives there
        }
        std::string name = lv == 1 ? "L1d" : fmt::format("L{}", lv);
        if (lv == 1) c.l1d_bytes = l.size;
        if (lv == 2) c.l2_bytes = l.size;
        if (lv == 3) c.l3_bytes = l.size;
        int instances = int(l.sharing.size());
        c.llc_total_bytes = l.size * instances;  // map order: the highest level is written last
        bool shared = instances == 1 && l.max_sharing > 1 && l.max_sharing >= n_cpus_with_cache;
        parts.push_back(fmt::format("{} {} {}", name, format_bytes(l.size), shared ? "shared" : fmt::format("x{}", instances)));
    }
    if (!parts.empty()) {
        c.note.clear();
        for (size_t i = 0; i < parts.size(); ++i) c.note += (i ? ", " : "") + parts[i];
    }
    return c;
}

Caches cpuid_caches() {
    Caches c;
    unsigned a = 0, b = 0, cx = 0, d = 0;
    if (!__get_cpuid(0, &a, &b, &cx, &d)) return c;
    const unsigned max_leaf = a;
    char vendor[13] = {};
    std::memcpy(vendor, &b, 4);
    std::memcpy(vendor + 4, &d, 4);
    std::memcpy(vendor + 8, &cx, 4);
    if (std::string_view(vendor) == "GenuineIntel" && max_leaf >= 4) {
        for (unsigned i = 0; i < 8; i++) {
            __cpuid_count(4, i, a, b, cx, d);
            const unsigned type = a & 31, level = (a >> 5) & 7;
            if (type == 0) break;
            const int64_t size = int64_t((b >> 22) + 1) * (((b >> 12) & 1023) + 1) * ((b & 4095) + 1) * (int64_t(cx) + 1);
            if (level == 1 && type == 1) c.l1d_bytes = size;
            if (level == 1 && type == 2) c.l1i_bytes = size;
            if (level == 2 && type != 2) c.l2_bytes = size;
            if (level == 3 && type != 2) c.l3_bytes = size;
        }
    } else if (__get_cpuid(0x80000000, &a, &b, &cx, &d) && a >= 0x80000006) {
        __get_cpuid(0x80000005, &a, &b, &cx, &d);
        c.l1d_bytes = int64_t(cx >> 24) * KiB;
        c.l1i_bytes = int64_t(d >> 24) * KiB;
        __get_cpuid(0x80000006, &a, &b, &cx, &d);
        c.l2_bytes = int64_t(cx >> 16) * KiB;
        c.l3_bytes = int64_t(d >> 18) * 512 * KiB;
    }
    std::vector<std::string> parts;
    if (c.l1d_bytes > 0) parts.push_back("L1d " + format_bytes(c.l1d_bytes));
    if (c.l2_bytes > 0) parts.push_back("L2 " + format_bytes(c.l2_bytes));
    if (c.l3_bytes > 0) parts.push_back("L3 " + format_bytes(c.l3_bytes));
    c.llc_total_bytes = c.l3_bytes > 0 ? c.l3_bytes : c.l2_bytes;
    if (!parts.empty()) {
        c.note.clear();
        for (size_t i = 0; i < parts.size(); ++i) c.note += (i ? ", " : "") + parts[i];
        c.note += " (CPUID; no sysfs cache list)";
    }
    return c;
}

Caches system_caches() {
    Caches c = read_caches("/sys/devices/system/cpu");
    return c.llc_total_bytes > 0 ? c : cpuid_caches();
}

}  // namespace detail

double HwInfo::ridge_flop_per_byte() const {
    return bw_gbs_all.median > 0 ? gflops_all.median / bw_gbs_all.median : 0.0;
}

namespace {

// MemTotal of /proc/meminfo; 0 when it cannot be read.
int64_t ram_bytes() {
    if (auto meminfo = read_small("/proc/meminfo"))
        if (auto total = proc_field(*meminfo, "MemTotal")) {  // "24683620 kB"
            std::string kb = total->substr(0, total->find(' '));
            if (detail::parse_cache_size(kb) > 0) return detail::parse_cache_size(kb) * KiB;
        }
    return 0;
}

// The probe's read buffer (quick: 64 MiB; else 3x the last-level cache, at most a quarter of
// RAM), first touched by the same static split of threads that reads it later (NUMA
// locality), then read once as a warm-up (page tables, thread pool, clocks).
std::unique_ptr<BigBuffer> probe_buffer(int threads, bool quick, int64_t ram) {
    int64_t bytes = quick ? 64 * MiB : bandwidth_buffer_bytes(detail::system_caches().llc_total_bytes);
    if (ram > 0) bytes = std::min(bytes, std::max<int64_t>(64 * MiB, ram / 4));
    auto buf = std::make_unique<BigBuffer>(size_t(bytes));
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < buf->n_floats; ++i) buf->data[i] = 1.0f;
    bandwidth_pass(*buf, threads, 1);
    return buf;
}

}  // namespace

HwInfo describe_machine() {
    HwInfo hw;
    auto cpuinfo = read_small("/proc/cpuinfo");
    hw.cpu_model = cpuinfo ? proc_field(*cpuinfo, "model name").value_or("") : "";
    if (hw.cpu_model.empty()) hw.cpu_model = "unknown CPU";
    hw.threads = std::max(1, int(sysconf(_SC_NPROCESSORS_ONLN)));
    hw.cores = count_physical_cores(hw.threads);

    detail::Caches c = detail::system_caches();
    hw.l1d_bytes = c.l1d_bytes;
    hw.l1i_bytes = c.l1i_bytes;
    hw.l2_bytes = c.l2_bytes;
    hw.l3_bytes = c.l3_bytes;
    hw.cache_note = c.note;

    hw.ram_bytes = ram_bytes();

    // CPUID directly (clang 14's __builtin_cpu_supports does not know "f16c").
    std::vector<std::string> isa;
    unsigned ra = 0, rb = 0, rc = 0, rd = 0;
    unsigned leaf1_ecx = __get_cpuid(1, &ra, &rb, &rc, &rd) ? rc : 0;
    unsigned leaf7_ebx = __get_cpuid_count(7, 0, &ra, &rb, &rc, &rd) ? rb : 0;
    if (leaf7_ebx & (1u << 5)) isa.push_back("AVX2");
    if (leaf1_ecx & (1u << 12)) isa.push_back("FMA");
    if (leaf1_ecx & (1u << 29)) isa.push_back("F16C");
    for (size_t i = 0; i < isa.size(); ++i) hw.isa += (i ? " " : "") + isa[i];
    return hw;
}

// ---- measurement ----------------------------------------------------------------------------

HwInfo probe_hardware(int threads, bool quick) {
    HwInfo hw = describe_machine();
    if (hw.isa != "AVX2 FMA F16C") fail("hardware probe: this CPU has \"{}\"; kvscope needs AVX2 FMA F16C", hw.isa);
    if (threads <= 0) threads = affinity_cpus();
    // The runtime may grant fewer threads than asked (OMP_THREAD_LIMIT, nested regions):
    // record what actually ran.
    int granted = 1;
#pragma omp parallel num_threads(threads)
#pragma omp single
    granted = omp_get_num_threads();
    threads = granted;
    hw.measured_threads = threads;
    hw.quick = quick;
    const int reps = quick ? 3 : 7;

    // Read bandwidth. Reps are the outer loop so slow drift of the machine's bandwidth lands
    // on every stream count alike instead of favouring whichever ran first.
    {
        const std::unique_ptr<BigBuffer> owned = probe_buffer(threads, quick, hw.ram_bytes);
        const BigBuffer& buf = *owned;

        std::map<int, std::vector<double>> one, all;
        for (int r = 0; r < reps; ++r)
            for (int k : kStreamCounts) {
                one[k].push_back(bandwidth_pass(buf, 1, k));
                all[k].push_back(bandwidth_pass(buf, threads, k));
            }
        for (int k : kStreamCounts) {
            hw.bw_1t_by_streams[k] = summarize(one[k]);
            hw.bw_all_by_streams[k] = summarize(all[k]);
            if (hw.bw_1t_by_streams[k].best > hw.bw_gbs_1t.best) hw.bw_gbs_1t = hw.bw_1t_by_streams[k];
            if (hw.bw_all_by_streams[k].best > hw.bw_gbs_all.best) {
                hw.bw_gbs_all = hw.bw_all_by_streams[k];
                hw.bw_best_streams = k;
            }
        }
    }

    // Peak FMA throughput: size the run from a short calibration so each rep takes ~target.
    {
        const double target_s = quick ? 0.05 : 0.2;
        int64_t iters = 1 << 18;
        fma_pass(threads, iters);  // warm-up, also brings every core of the team to speed
        for (;;) {
            auto t0 = std::chrono::steady_clock::now();
            g_sink = fma_chains(iters, g_fma_a, g_fma_b);
            double s = seconds_since(t0);
            if (s > 0.02) {
                iters = std::max<int64_t>(1, int64_t(double(iters) * target_s / s));
                break;
            }
            iters *= 4;
        }
        std::vector<double> one, all;
        for (int r = 0; r < reps; ++r) {
            one.push_back(fma_pass(1, iters));
            all.push_back(fma_pass(threads, iters));
        }
        hw.gflops_1t = summarize(one);
        hw.gflops_all = summarize(all);
    }
    hw.measured_at = iso8601_utc_now();
    return hw;
}

// ---- bandwidth during a run ---------------------------------------------------------------

struct BandwidthSampler::Impl {
    std::unique_ptr<BigBuffer> buf;
    int threads;
    std::vector<double> gbs;
    std::map<int, int> wins;
};

BandwidthSampler::BandwidthSampler(int threads, bool quick) {
    if (threads <= 0) threads = affinity_cpus();
    impl_.reset(new Impl{probe_buffer(threads, quick, ram_bytes()), threads, {}, {}});
}

BandwidthSampler::~BandwidthSampler() = default;

double BandwidthSampler::sample() {
    double best = 0;
    int best_k = 0;
    for (int k : kStreamCounts) {
        const double g = bandwidth_pass(*impl_->buf, impl_->threads, k);
        if (g > best) best = g, best_k = k;
    }
    impl_->gbs.push_back(best);
    impl_->wins[best_k]++;
    return best;
}

Measure BandwidthSampler::samples() const { return summarize(impl_->gbs); }

std::map<int, int> BandwidthSampler::wins() const { return impl_->wins; }

// ---- cache file -----------------------------------------------------------------------------

HwInfo load_or_probe(const fs::path& cache_file, int threads, bool fresh, bool quick) {
    int want_threads = threads > 0 ? threads : affinity_cpus();
    if (!fresh) {
        try {
            HwInfo cached = hw_from_json(json::parse(read_file(cache_file)));
            if (cached.cpu_model == describe_machine().cpu_model && cached.measured_threads == want_threads &&
                (quick || !cached.quick))
                return cached;
        } catch (const std::exception&) {
            // missing, unreadable or stale in format: measure again and overwrite it
        }
    }
    HwInfo hw = probe_hardware(want_threads, quick);
    write_file_atomic(cache_file, to_json(hw).dump(2) + "\n");
    return hw;
}

fs::path default_cache_file() { return data_dir() / "hw.json"; }

// ---- JSON and table -------------------------------------------------------------------------

json to_json(const HwInfo& hw) {
    return {
        {"cpu_model", hw.cpu_model},
        {"cores", hw.cores},
        {"threads", hw.threads},
        {"l1d_bytes", hw.l1d_bytes},
        {"l1i_bytes", hw.l1i_bytes},
        {"l2_bytes", hw.l2_bytes},
        {"l3_bytes", hw.l3_bytes},
        {"cache_note", hw.cache_note},
        {"ram_bytes", hw.ram_bytes},
        {"isa", hw.isa},
        {"measured_threads", hw.measured_threads},
        {"quick", hw.quick},
        {"bw_gbs_1t", measure_json(hw.bw_gbs_1t)},
        {"bw_gbs_all", measure_json(hw.bw_gbs_all)},
        {"bw_best_streams", hw.bw_best_streams},
        {"bw_1t_by_streams", by_streams_json(hw.bw_1t_by_streams)},
        {"bw_all_by_streams", by_streams_json(hw.bw_all_by_streams)},
        {"gflops_1t", measure_json(hw.gflops_1t)},
        {"gflops_all", measure_json(hw.gflops_all)},
        {"measured_at", hw.measured_at},
    };
}

HwInfo hw_from_json(const json& j) {
    HwInfo hw;
    hw.cpu_model = get_key<std::string>(j, "cpu_model");
    hw.cores = get_key<int>(j, "cores");
    hw.threads = get_key<int>(j, "threads");
    hw.l1d_bytes = get_key<int64_t>(j, "l1d_bytes");
    hw.l1i_bytes = get_key<int64_t>(j, "l1i_bytes");
    hw.l2_bytes = get_key<int64_t>(j, "l2_bytes");
    hw.l3_bytes = get_key<int64_t>(j, "l3_bytes");
    hw.cache_note = get_key<std::string>(j, "cache_note");
    hw.ram_bytes = get_key<int64_t>(j, "ram_bytes");
    hw.isa = get_key<std::string>(j, "isa");
    hw.measured_threads = get_key<int>(j, "measured_threads");
    hw.quick = j.contains("quick") ? get_key<bool>(j, "quick") : false;
    hw.bw_gbs_1t = measure_from_json(j, "bw_gbs_1t");
    hw.bw_gbs_all = measure_from_json(j, "bw_gbs_all");
    hw.bw_best_streams = get_key<int>(j, "bw_best_streams");
    hw.bw_1t_by_streams = by_streams_from_json(j, "bw_1t_by_streams");
    hw.bw_all_by_streams = by_streams_from_json(j, "bw_all_by_streams");
    hw.gflops_1t = measure_from_json(j, "gflops_1t");
    hw.gflops_all = measure_from_json(j, "gflops_all");
    hw.measured_at = get_key<std::string>(j, "measured_at");
    return hw;
}

std::string format_table(const HwInfo& hw) {
    std::string out;
    auto row = [&](std::string_view name, const std::string& value) { out += fmt::format("{:<18}{}\n", name, value); };
    row("CPU", hw.cpu_model);
    row("cores / threads", fmt::format("{} / {}", hw.cores, hw.threads));
    row("caches", hw.cache_note.empty() ? "unknown" : hw.cache_note);
    row("RAM", hw.ram_bytes > 0 ? fmt::format("{:.1f} GiB", double(hw.ram_bytes) / GiB) : "unknown");
    row("ISA", hw.isa.empty() ? "none of AVX2 FMA F16C" : hw.isa);
    if (hw.measured_threads == 0) {
        row("measured", "no (static description only)");
        return out;
    }
    row("measured", fmt::format("{}{}", hw.measured_at, hw.quick ? "  (quick mode)" : ""));
    std::string t_all = fmt::format("{} thread{}", hw.measured_threads, hw.measured_threads == 1 ? "" : "s");
    row("read bandwidth", fmt::format("1 thread  {}", measure_row(hw.bw_gbs_1t, "GB/s")));
    row("", fmt::format("{:<9} {}, {} stream{}/thread", t_all, measure_row(hw.bw_gbs_all, "GB/s"),
                        hw.bw_best_streams, hw.bw_best_streams == 1 ? "" : "s"));
    if (!hw.bw_all_by_streams.empty()) {
        std::string by;
        for (const auto& [k, m] : hw.bw_all_by_streams) by += fmt::format("{}{}: {:.1f}", by.empty() ? "" : ", ", k, m.median);
        row("", fmt::format("{} median GB/s by streams/thread: {}", t_all, by));
    }
    row("peak fp32 FMA", fmt::format("1 thread  {}", measure_row(hw.gflops_1t, "GFLOP/s")));
    row("", fmt::format("{:<9} {}", t_all, measure_row(hw.gflops_all, "GFLOP/s")));
    row("ridge point", fmt::format("{:.1f} FLOP/byte ({} threads, medians)", hw.ridge_flop_per_byte(), hw.measured_threads));
    return out;
}

}  // namespace kvscope::analysis
