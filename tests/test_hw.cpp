// Hardware probe: static description, /sys cache parsing on a fabricated tree, exact JSON round
// trip, and the cache file's reuse / refresh rules. Measurements run in quick mode and are only
// checked to be finite and positive: no timing threshold belongs in a test.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "analysis/hw.h"
#include "core/error.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace kvscope::analysis;

namespace {

void write_text(const fs::path& p, const std::string& s) {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << s << "\n";
}

std::string read_text(const fs::path& p) {
    std::ifstream f(p);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

class TempDir {
public:
    explicit TempDir(const std::string& tag)
        : path_(fs::temp_directory_path() / ("kvscope_" + tag + "_" + std::to_string(::getpid()))) {
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() { fs::remove_all(path_); }
    const fs::path& path() const { return path_; }

private:
    fs::path path_;
};

// Does this machine's /sys report a cache of this level and type for cpu0?
bool sys_reports(int level, const std::string& type) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/sys/devices/system/cpu/cpu0/cache", ec)) {
        std::ifstream l(e.path() / "level"), t(e.path() / "type");
        int lv = 0;
        std::string ty;
        if (l >> lv && t >> ty && lv == level && (ty == type || ty == "Unified")) return true;
    }
    return false;
}

void expect_measure_sane(const Measure& m, const char* what) {
    SCOPED_TRACE(what);
    EXPECT_GT(m.reps, 0);
    for (double v : {m.best, m.median, m.min, m.max}) {
        EXPECT_TRUE(std::isfinite(v));
        EXPECT_GT(v, 0);
    }
    EXPECT_LE(m.min, m.median);
    EXPECT_LE(m.median, m.max);
    EXPECT_EQ(m.best, m.max);
}

void expect_measured_sane(const HwInfo& hw) {
    EXPECT_GE(hw.measured_threads, 1);
    expect_measure_sane(hw.bw_gbs_1t, "bw_gbs_1t");
    expect_measure_sane(hw.bw_gbs_all, "bw_gbs_all");
    expect_measure_sane(hw.gflops_1t, "gflops_1t");
    expect_measure_sane(hw.gflops_all, "gflops_all");
    EXPECT_TRUE(hw.bw_best_streams == 1 || hw.bw_best_streams == 2 || hw.bw_best_streams == 4 ||
                hw.bw_best_streams == 8);
    EXPECT_EQ(hw.bw_all_by_streams.size(), 4u);
    EXPECT_EQ(hw.bw_all_by_streams.at(hw.bw_best_streams), hw.bw_gbs_all);
    EXPECT_TRUE(std::isfinite(hw.ridge_flop_per_byte()));
    EXPECT_GT(hw.ridge_flop_per_byte(), 0);
    EXPECT_FALSE(hw.measured_at.empty());
}

HwInfo sample_info() {
    HwInfo hw;
    hw.cpu_model = "Test CPU \"quoted\" @ 3.0GHz";
    hw.cores = 8;
    hw.threads = 16;
    hw.l1d_bytes = 48 * 1024;
    hw.l1i_bytes = 32 * 1024;
    hw.l2_bytes = 1 << 20;
    hw.l3_bytes = int64_t(32) << 20;
    hw.cache_note = "L1d 48 KiB x8, L2 1 MiB x8, L3 32 MiB shared";
    hw.ram_bytes = int64_t(64) << 30;
    hw.isa = "AVX2 FMA F16C";
    hw.measured_threads = 16;
    hw.quick = true;
    hw.bw_gbs_1t = {0.1, 1.0 / 3.0, 1e-300, 24.123456789012345, 7};
    hw.bw_gbs_all = {41.0000000000001, 32.5, 22.25, 41.0000000000001, 7};
    hw.bw_best_streams = 4;
    hw.bw_1t_by_streams[1] = hw.bw_gbs_1t;
    hw.bw_all_by_streams[4] = hw.bw_gbs_all;
    hw.bw_all_by_streams[8] = {3.14159, 2.71828, 1.41421, 3.14159, 3};
    hw.gflops_1t = {96.5, 95.25, 90.125, 96.5, 7};
    hw.gflops_all = {192.75, 191.0, 180.0, 192.75, 7};
    hw.measured_at = "2025-03-01T09:30:12.345Z";
    return hw;
}

}  // namespace

TEST(HwDescribe, CpuidReportsPlausibleCacheSizes) {
    // Every AVX2 CPU describes its caches in CPUID (Intel leaf 4, AMD 0x80000005/6).
    detail::Caches c = detail::cpuid_caches();
    EXPECT_GE(c.l1d_bytes, 16 * 1024);
    EXPECT_LE(c.l1d_bytes, 1 << 20);
    EXPECT_GT(c.l2_bytes, c.l1d_bytes);
    if (c.l3_bytes > 0) {
        EXPECT_EQ(c.llc_total_bytes, c.l3_bytes);
    }
    EXPECT_NE(c.note.find("CPUID"), std::string::npos);
}

TEST(HwDescribe, StaticFieldsAreFilled) {
    HwInfo hw = describe_machine();
    EXPECT_FALSE(hw.cpu_model.empty());
    EXPECT_GE(hw.cores, 1);
    EXPECT_GE(hw.threads, 1);
    EXPECT_GT(hw.ram_bytes, 0);
    EXPECT_EQ(hw.isa, "AVX2 FMA F16C");  // the build requires all three
    EXPECT_EQ(hw.measured_threads, 0);
    EXPECT_EQ(hw.bw_gbs_all.reps, 0);
    if (sys_reports(1, "Data")) {
        EXPECT_GT(hw.l1d_bytes, 0);
    }
    if (sys_reports(2, "Unified")) {
        EXPECT_GT(hw.l2_bytes, 0);
    }
    if (!sys_reports(1, "Data") && !sys_reports(2, "Unified") && !sys_reports(3, "Unified")) {
        // No sysfs cache list (a VM): the sizes come from CPUID.
        detail::Caches c = detail::cpuid_caches();
        EXPECT_EQ(hw.l1d_bytes, c.l1d_bytes);
        EXPECT_EQ(hw.l2_bytes, c.l2_bytes);
        EXPECT_EQ(hw.l3_bytes, c.l3_bytes);
        EXPECT_EQ(hw.cache_note, c.note);
    }
    std::string table = format_table(hw);
    EXPECT_NE(table.find(hw.cpu_model), std::string::npos);
    EXPECT_NE(table.find("static description only"), std::string::npos);
}

TEST(HwCaches, ParsesSizesAndCpuLists) {
    using namespace detail;
    EXPECT_EQ(parse_cache_size("48K"), 48 * 1024);
    EXPECT_EQ(parse_cache_size("32768K\n"), int64_t(32) << 20);
    EXPECT_EQ(parse_cache_size("2M"), 2 << 20);
    EXPECT_EQ(parse_cache_size("4096"), 4096);
    EXPECT_EQ(parse_cache_size(""), -1);
    EXPECT_EQ(parse_cache_size("K"), -1);
    EXPECT_EQ(parse_cache_size("12Q"), -1);
    EXPECT_EQ(count_cpu_list("0"), 1);
    EXPECT_EQ(count_cpu_list("0-3,8"), 5);
    EXPECT_EQ(count_cpu_list("0,2,4-7\n"), 6);
    EXPECT_EQ(count_cpu_list(""), -1);
    EXPECT_EQ(count_cpu_list("3-1"), -1);
    EXPECT_EQ(count_cpu_list("a"), -1);
}

// A two-core machine laid out like /sys/devices/system/cpu: private L1/L2, one shared L3.
TEST(HwCaches, ReadsFabricatedSysTree) {
    TempDir dir("hw_sys");
    for (int cpu = 0; cpu < 2; ++cpu) {
        fs::path c = dir.path() / ("cpu" + std::to_string(cpu)) / "cache";
        auto index = [&](int i, int level, const char* type, const char* size, const std::string& shared) {
            fs::path d = c / ("index" + std::to_string(i));
            write_text(d / "level", std::to_string(level));
            write_text(d / "type", type);
            write_text(d / "size", size);
            write_text(d / "shared_cpu_list", shared);
        };
        index(0, 1, "Data", "48K", std::to_string(cpu));
        index(1, 1, "Instruction", "32K", std::to_string(cpu));
        index(2, 2, "Unified", "1024K", std::to_string(cpu));
        index(3, 3, "Unified", "32768K", "0-1");
    }
    fs::create_directories(dir.path() / "cpufreq");  // not a cpuN directory: ignored

    detail::Caches c = detail::read_caches(dir.path());
    EXPECT_EQ(c.l1d_bytes, 48 * 1024);
    EXPECT_EQ(c.l1i_bytes, 32 * 1024);
    EXPECT_EQ(c.l2_bytes, 1 << 20);
    EXPECT_EQ(c.l3_bytes, int64_t(32) << 20);
    EXPECT_EQ(c.llc_total_bytes, int64_t(32) << 20);
    EXPECT_EQ(c.note, "L1d 48 KiB x2, L2 1 MiB x2, L3 32 MiB shared");
}

TEST(HwCaches, NoSysCacheInfoMeansZerosAndUnknown) {
    TempDir dir("hw_nosys");
    fs::create_directories(dir.path() / "cpu0" / "topology");
    detail::Caches c = detail::read_caches(dir.path());
    EXPECT_EQ(c.l1d_bytes, 0);
    EXPECT_EQ(c.l1i_bytes, 0);
    EXPECT_EQ(c.l2_bytes, 0);
    EXPECT_EQ(c.l3_bytes, 0);
    EXPECT_EQ(c.llc_total_bytes, 0);
    EXPECT_EQ(c.note, "unknown");
    EXPECT_EQ(detail::read_caches(dir.path() / "does_not_exist").note, "unknown");
}

TEST(HwJson, RoundTripIsExact) {
    HwInfo hw = sample_info();
    HwInfo back = hw_from_json(json::parse(to_json(hw).dump()));
    EXPECT_EQ(back, hw);
    EXPECT_EQ(back.bw_gbs_1t.min, 1e-300);
    EXPECT_EQ(back.bw_gbs_1t.median, 1.0 / 3.0);
    EXPECT_DOUBLE_EQ(hw.ridge_flop_per_byte(), 191.0 / 32.5);

    HwInfo unmeasured = describe_machine();
    EXPECT_EQ(hw_from_json(json::parse(to_json(unmeasured).dump(2))), unmeasured);
}

TEST(HwJson, MissingOrMistypedKeysThrow) {
    json j = to_json(sample_info());
    for (const char* key : {"cpu_model", "cores", "l2_bytes", "bw_gbs_all", "gflops_1t", "measured_at"}) {
        json broken = j;
        broken.erase(key);
        EXPECT_THROW(hw_from_json(broken), kvscope::Error) << key;
    }
    json no_median = j;
    no_median["gflops_all"].erase("median");
    EXPECT_THROW(hw_from_json(no_median), kvscope::Error);
    json mistyped = j;
    mistyped["cpu_model"] = 42;
    EXPECT_THROW(hw_from_json(mistyped), kvscope::Error);
    EXPECT_THROW(hw_from_json(json::array()), kvscope::Error);

    // The per-stream breakdown and the quick flag came after the first schema: optional.
    json minimal = j;
    minimal.erase("bw_1t_by_streams");
    minimal.erase("bw_all_by_streams");
    minimal.erase("quick");
    HwInfo m = hw_from_json(minimal);
    EXPECT_TRUE(m.bw_all_by_streams.empty());
    EXPECT_FALSE(m.quick);
}

TEST(HwProbe, CacheIsWrittenReusedAndRefreshed) {
    TempDir dir("hw_cache");
    fs::path file = dir.path() / "sub" / "hw.json";

    HwInfo first = load_or_probe(file, 2, false, true);
    ASSERT_TRUE(fs::exists(file));
    expect_measured_sane(first);
    EXPECT_EQ(first.measured_threads, 2);
    EXPECT_TRUE(first.quick);
    EXPECT_EQ(hw_from_json(json::parse(read_text(file))), first);
    EXPECT_NE(format_table(first).find("GB/s"), std::string::npos);

    HwInfo second = load_or_probe(file, 2, false, true);
    EXPECT_EQ(second.measured_at, first.measured_at);
    EXPECT_EQ(second, first);

    // Prove the second call reads the file rather than happening to measure the same thing:
    // a marker planted in the file comes back, and fresh == true replaces it.
    json j = json::parse(read_text(file));
    j["measured_at"] = "2000-01-01T00:00:00.000Z";
    write_text(file, j.dump());
    EXPECT_EQ(load_or_probe(file, 2, false, true).measured_at, "2000-01-01T00:00:00.000Z");

    HwInfo refreshed = load_or_probe(file, 2, true, true);
    EXPECT_NE(refreshed.measured_at, "2000-01-01T00:00:00.000Z");
    expect_measured_sane(refreshed);
    EXPECT_EQ(hw_from_json(json::parse(read_text(file))).measured_at, refreshed.measured_at);
}

TEST(HwProbe, CorruptOrForeignCacheIsRemeasured) {
    TempDir dir("hw_corrupt");
    fs::path file = dir.path() / "hw.json";
    write_text(file, "{ this is not json");
    HwInfo hw = load_or_probe(file, 1, false, true);
    expect_measured_sane(hw);
    EXPECT_EQ(hw.measured_threads, 1);
    EXPECT_EQ(hw_from_json(json::parse(read_text(file))), hw);

    // Same file, another CPU model: measured again.
    json j = to_json(hw);
    j["cpu_model"] = "Some Other CPU";
    j["measured_at"] = "2000-01-01T00:00:00.000Z";
    write_text(file, j.dump());
    HwInfo again = load_or_probe(file, 1, false, true);
    EXPECT_EQ(again.cpu_model, describe_machine().cpu_model);
    EXPECT_NE(again.measured_at, "2000-01-01T00:00:00.000Z");

    // A full measurement in the cache also serves a quick request (the reverse would re-measure
    // at full size, too slow for a test).
    j = to_json(again);
    j["quick"] = false;
    j["measured_at"] = "2000-01-01T00:00:00.000Z";
    write_text(file, j.dump());
    EXPECT_EQ(load_or_probe(file, 1, false, true).measured_at, "2000-01-01T00:00:00.000Z");
}

TEST(HwProbe, DefaultCacheFileFollowsXdg) {
    const char* old = std::getenv("XDG_CACHE_HOME");
    std::string saved = old ? old : "";
    ::unsetenv("KVSCOPE_CACHE");  // it takes precedence over both
    ::setenv("XDG_CACHE_HOME", "/tmp/xdg_test", 1);
    EXPECT_EQ(default_cache_file(), fs::path("/tmp/xdg_test/kvscope/hw.json"));
    ::unsetenv("XDG_CACHE_HOME");
    if (const char* home = std::getenv("HOME"); home && *home) {
        EXPECT_EQ(default_cache_file(), fs::path(home) / ".cache/kvscope/hw.json");
    }
    if (old) ::setenv("XDG_CACHE_HOME", saved.c_str(), 1);
}

TEST(HwSampler, KeepsEverySampleWithItsSpread) {
    BandwidthSampler s(2, /*quick=*/true);
    EXPECT_EQ(s.samples().reps, 0);
    std::vector<double> got;
    for (int i = 0; i < 3; i++) got.push_back(s.sample());
    const Measure m = s.samples();
    EXPECT_EQ(m.reps, 3);
    for (double g : got) {
        EXPECT_GT(g, 0.1);  // GB/s; any machine that runs the engine reads faster than this
        EXPECT_GE(g, m.min);
        EXPECT_LE(g, m.max);
    }
    std::sort(got.begin(), got.end());
    EXPECT_EQ(m.median, got[1]);
    EXPECT_EQ(m.best, m.max);
    int won = 0;  // every sample is won by one of the probe's stream counts
    for (auto [k, n] : s.wins()) {
        EXPECT_TRUE(k == 1 || k == 2 || k == 4 || k == 8) << k;
        won += n;
    }
    EXPECT_EQ(won, 3);
}
