// Every experiment end to end on a tiny model with --quick: each expected file, row and column
// is present, numbers are finite and positive where they must be, and the KV formula equals
// the allocation in every memory row.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "experiments/bench.h"
#include "experiments/harness.h"
#include "report/csv.h"
#include "test_util.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

struct Table {
    std::vector<std::string> header;
    std::vector<std::map<std::string, std::string>> rows;
};

Table load(const fs::path& p) {
    auto raw = read_csv(p);
    Table t;
    t.header = raw.at(0);
    for (size_t i = 1; i < raw.size(); i++) {
        EXPECT_EQ(raw[i].size(), t.header.size()) << p << " row " << i;
        std::map<std::string, std::string> r;
        for (size_t k = 0; k < t.header.size() && k < raw[i].size(); k++) r[t.header[k]] = raw[i][k];
        t.rows.push_back(r);
    }
    return t;
}

double num(const std::map<std::string, std::string>& r, const std::string& k) {
    auto it = r.find(k);
    EXPECT_NE(it, r.end()) << "missing column " << k;
    return it == r.end() ? NAN : std::stod(it->second);
}

const fs::path& results() {
    static fs::path dir;
    if (dir.empty()) {
        fs::path model = test::tiny_model_dir("exp", test::tiny_config(96, 128));
        dir = test::temp_dir("exp-results");
        auto r = test::run_cmd("XDG_CACHE_HOME=" + dir.string() + "/cache " + test::kvscope_bin() +
                               " exp all --quick --model " + model.string() + " --out " + dir.string());
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_NE(r.err.find("[exp cache]"), std::string::npos) << "no progress display on stderr";
    }
    return dir;
}

}  // namespace

TEST(Experiments, EveryFileHasTheCommonColumnsAndPositiveTimings) {
    for (std::string name : {"cache", "batch", "precision", "seqlen", "memory", "roofline", "serving"}) {
        Table t = load(results() / (name + ".csv"));
        auto common = exp::common_columns();
        ASSERT_GE(t.header.size(), common.size()) << name;
        for (size_t i = 0; i < common.size(); i++) EXPECT_EQ(t.header[i], common[i]) << name;
        ASSERT_FALSE(t.rows.empty()) << name;
        for (const auto& r : t.rows) {
            EXPECT_EQ(r.at("experiment"), name);
            EXPECT_EQ(r.at("weights"), "synthetic");
            for (std::string k : {"prefill_ms_median", "total_ms_median", "tokens_per_s", "kv_bytes", "weight_bytes",
                                  "peak_rss_bytes", "reps"}) {
                double v = num(r, k);
                EXPECT_TRUE(std::isfinite(v) && v > 0) << name << "." << k << " = " << v;
            }
        }
        auto side = nlohmann::json::parse(read_file(results() / (name + ".json")));
        EXPECT_EQ(side["model"]["n_layer"], 2);
        EXPECT_TRUE(side["hw"].contains("cpu_model"));
    }
}

TEST(Experiments, CacheHasBothModesPerLengthWithOneSpeedup) {
    Table t = load(results() / "cache.csv");
    std::map<std::string, std::set<std::string>> modes;
    std::map<std::string, std::set<std::string>> speedups;
    for (const auto& r : t.rows) {
        modes[r.at("max_new_tokens")].insert(r.at("use_cache"));
        speedups[r.at("max_new_tokens")].insert(r.at("speedup"));
        EXPECT_GT(num(r, "speedup"), 0);
    }
    EXPECT_EQ(modes.size(), 2u);  // --quick: L = 8, 16
    for (const auto& [L, m] : modes) {
        EXPECT_EQ(m, (std::set<std::string>{"0", "1"})) << L;
        EXPECT_EQ(speedups[L].size(), 1u) << L;
    }
    Table tok = load(results() / "cache_tokens.csv");
    EXPECT_EQ(tok.header, (std::vector<std::string>{"use_cache", "step", "token_ms", "cumulative_ms"}));
    EXPECT_EQ(tok.rows.size(), 2u * 16);  // steps 0..15 in each mode
}

TEST(Experiments, MemoryFormulaEqualsAllocationInEveryRow) {
    Table t = load(results() / "memory.csv");
    ASSERT_FALSE(t.rows.empty());
    for (const auto& r : t.rows) {
        EXPECT_EQ(r.at("kv_formula_matches"), "1");
        // 2 x batch x S x n_layer x n_kv_head x head_dim x bytes
        double expect = 2 * num(r, "batch_size") * num(r, "context") * 2 * 4 * 16 * (r.at("kv_dtype") == "fp32" ? 4 : 2);
        EXPECT_EQ(num(r, "kv_bytes"), expect);
    }
}

TEST(Experiments, PrecisionReferenceRowIsExactAndOthersArePositive) {
    Table t = load(results() / "precision.csv");
    ASSERT_EQ(t.rows.size(), 9u);
    EXPECT_EQ(t.rows[0].at("dtype"), "fp32");
    EXPECT_EQ(t.rows[0].at("kv_dtype"), "fp32");
    EXPECT_EQ(num(t.rows[0], "top1_agreement"), 1);
    EXPECT_EQ(num(t.rows[0], "kl_mean"), 0);
    for (size_t i = 1; i < t.rows.size(); i++) {
        EXPECT_GT(num(t.rows[i], "max_abs_logit_diff"), 0) << i;
        EXPECT_GE(num(t.rows[i], "kl_mean"), 0) << i;
        EXPECT_LE(num(t.rows[i], "top1_agreement"), 1) << i;
    }
}

TEST(Experiments, RooflineRowsCarryAVerdict) {
    Table t = load(results() / "roofline.csv");
    std::set<std::string> phases;
    for (const auto& r : t.rows) {
        phases.insert(r.at("phase"));
        EXPECT_TRUE(r.at("bound") == "memory" || r.at("bound") == "compute");
        EXPECT_GT(num(r, "gbs"), 0);
        EXPECT_GT(num(r, "peak_gbs"), 0);
        EXPECT_NEAR(num(r, "intensity"), num(r, "flops") / num(r, "bytes"), 1e-3 * num(r, "intensity"));
    }
    EXPECT_EQ(phases, (std::set<std::string>{"prefill", "decode"}));
}

TEST(Experiments, ServingHasEveryPolicyAtEveryRateAndATimeline) {
    Table t = load(results() / "serving.csv");
    ASSERT_EQ(t.rows.size(), 6u);  // --quick: 2 rates x static, paged, prefix
    std::map<std::string, int> per_policy;
    for (const auto& r : t.rows) {
        per_policy[r.at("policy")]++;
        EXPECT_EQ(num(r, "requests"), 8);
        EXPECT_EQ(num(r, "output_tokens"), num(r, "tokens_generated"));
        for (std::string k : {"rate_req_s", "throughput_req_s", "ttft_ms_p50", "ttft_ms_p99", "e2e_ms_p50", "makespan_s",
                              "max_running", "mean_reserved_tokens", "system_prompt_prefill_ms"})
            EXPECT_GT(num(r, k), 0) << r.at("policy") << "." << k;
        EXPECT_LE(num(r, "ttft_ms_p50"), num(r, "ttft_ms_p99"));
        EXPECT_LE(num(r, "ttft_ms_p99"), num(r, "e2e_ms_p99"));
        EXPECT_GE(num(r, "waste_pct"), 0);
        EXPECT_LE(num(r, "waste_pct"), 100);
        EXPECT_LE(num(r, "mean_held_tokens"), num(r, "mean_reserved_tokens"));
        EXPECT_LE(num(r, "peak_reserved_tokens"), num(r, "kv_tokens"));
        if (r.at("policy") == "static") {
            EXPECT_EQ(num(r, "lanes"), num(r, "kv_tokens") / num(r, "max_len"));
            EXPECT_LE(num(r, "max_running"), num(r, "lanes"));
        }
        // Every request starts with the 32-token system prompt (two blocks): the prefix policy finds it cached.
        EXPECT_EQ(num(r, "system_prompt"), 32);
        if (r.at("policy") == "prefix") {
            EXPECT_GT(num(r, "prefix_tokens_reused"), 0);
            EXPECT_EQ(std::fmod(num(r, "prefix_tokens_reused"), 16), 0);
        } else {
            EXPECT_EQ(num(r, "prefix_tokens_reused"), 0);
        }
    }
    EXPECT_EQ(per_policy, (std::map<std::string, int>{{"paged", 2}, {"prefix", 2}, {"static", 2}}));
    Table tl = load(results() / "serving_timeline.csv");
    ASSERT_FALSE(tl.rows.empty());
    for (const auto& r : tl.rows) EXPECT_LE(num(r, "held_tokens"), num(r, "reserved_tokens"));
}

// A bad trace is refused before anything runs, with one line naming the file and row; no
// result file is written.
TEST(Experiments, ServingRefusesABadTraceNamingItsRow) {
    fs::path model = test::tiny_model_dir("exp", test::tiny_config(96, 128));
    fs::path out = test::temp_dir("exp-trace");
    const fs::path trace = out / "trace.csv";
    auto run = [&](const std::string& csv) {
        std::ofstream(trace) << csv;
        return test::run_cmd("XDG_CACHE_HOME=" + out.string() + "/cache " + test::kvscope_bin() +
                             " exp serving --quick --model " + model.string() + " --out " + (out / "res").string() +
                             " --trace " + trace.string());
    };
    auto missing = run("arrival_s,prompt_len\n0,4\n");
    EXPECT_EQ(missing.status, 1);
    EXPECT_EQ(missing.err, "kvscope: error: " + trace.string() +
                               ": missing column 'output_len' (expected a header line with arrival_s, prompt_len, "
                               "output_len (and optionally shared_prefix_len), then one request per row)\n");
    auto negative = run("arrival_s,prompt_len,output_len\n0,4,2\n0.5,-3,2\n");
    EXPECT_EQ(negative.status, 1);
    EXPECT_EQ(negative.err, "kvscope: error: " + trace.string() + " row 2: prompt_len '-3': expected an integer of at least 1\n");
    auto too_long = run("arrival_s,prompt_len,output_len\n0,4,2\n0.5,100,40\n");
    EXPECT_EQ(too_long.status, 1);
    EXPECT_EQ(too_long.err, "kvscope: error: " + trace.string() +
                                " row 2: prompt_len 100 + output_len 40 = 140 exceeds the 128 positions a request may hold\n");
    EXPECT_FALSE(fs::exists(out / "res" / "serving.csv"));
    // A good one runs with the trace's own arrivals.
    auto good = run("arrival_s,prompt_len,output_len,shared_prefix_len\n0,20,4,16\n0.01,24,3,16\n0.02,9,5,0\n");
    ASSERT_EQ(good.status, 0) << good.err;
    Table t = load(out / "res" / "serving.csv");
    ASSERT_EQ(t.rows.size(), 3u);
    EXPECT_EQ(num(t.rows[0], "requests"), 3);
    EXPECT_EQ(num(t.rows[0], "output_tokens"), 12);
}

TEST(Experiments, ListFlagsExpandIntoAGrid) {
    fs::path model = test::tiny_model_dir("exp", test::tiny_config(96, 128));
    fs::path out = test::temp_dir("exp-grid");
    auto r = test::run_cmd("XDG_CACHE_HOME=" + out.string() + "/cache " + test::kvscope_bin() +
                           " exp batch --quick --reps 1 --warmup 0 --batch 1,3,5 --new-tokens 4 --model " +
                           model.string() + " --out " + out.string());
    ASSERT_EQ(r.status, 0) << r.err;
    Table t = load(out / "batch.csv");
    ASSERT_EQ(t.rows.size(), 5u);  // 3 batch sizes + unequal prompts packed and left-padded
    EXPECT_EQ(t.rows[1].at("batch_size"), "3");
    EXPECT_EQ(t.rows[3].at("padding"), "none");
    EXPECT_EQ(t.rows[4].at("padding"), "left");
    EXPECT_GT(num(t.rows[4], "padded_tokens"), 0);
    EXPECT_EQ(num(t.rows[3], "padded_tokens"), 0);
    auto bad = test::run_cmd(test::kvscope_bin() + " exp batch --batch 0 --model " + model.string() + " --out " + out.string());
    EXPECT_NE(bad.status, 0);
    EXPECT_NE(bad.err.find("--batch"), std::string::npos);
    auto unknown = test::run_cmd(test::kvscope_bin() + " exp kvquant --model " + model.string());
    EXPECT_NE(unknown.status, 0);
    EXPECT_NE(unknown.err.find("unknown experiment"), std::string::npos);
}

// The depth sweep's windows: step ms = 5 + 0.002 x depth, with a stray +5 ms on every fifth
// of the last 128 steps (some inside the deep window). The medians keep the rise and the time
// per key near the line's (means over the windows would give 0.0055 ms per key).
TEST(Experiments, DepthWindowIgnoresStraySlowSteps) {
    // Steps cost 5 ms + 2 us per key; every fifth deep step is 5 ms slower (another process,
    // an interrupt): the windows' medians and the cost per key ignore them.
    std::vector<double> shallow, deep;
    for (int k = 0; k < 64; k++) {
        shallow.push_back(5 + 0.002 * (10 + k));
        deep.push_back(5 + 0.002 * (300 + k) + (k % 5 == 0 ? 5 : 0));
    }
    const exp::DepthWindow w = exp::depth_window(shallow, deep, 290);
    EXPECT_NEAR(w.shallow_ms, 5 + 0.002 * 41.5, 0.002);
    EXPECT_NEAR(w.deep_ms, 5 + 0.002 * 331.5, 0.03);
    EXPECT_NEAR(w.rise, w.deep_ms / w.shallow_ms - 1, 1e-12);
    EXPECT_NEAR(w.ms_per_key, 0.002, 0.0001);
    // No steps, or a deep window that is not deeper, is an error, not a figure.
    EXPECT_THROW(exp::depth_window({}, deep, 290), std::exception);
    EXPECT_THROW(exp::depth_window(shallow, {}, 290), std::exception);
    EXPECT_THROW(exp::depth_window(shallow, deep, 0), std::exception);
}
