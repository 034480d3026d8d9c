// kvscope exp evict end to end on stories260K (--quick): every policy at every budget against the
// full cache, the stream past the window against the sliding-window recompute, the positions
// kept, and the report's section; kvscope run's eviction flags and their errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "report/csv.h"
#include "test_util.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

struct Rows {
    std::vector<std::string> header;
    std::vector<std::map<std::string, std::string>> rows;
    double num(size_t r, const std::string& c) const { return std::stod(rows.at(r).at(c)); }
};

Rows load(const fs::path& p) {
    const auto raw = read_csv(p);
    Rows t;
    t.header = raw.at(0);
    for (size_t i = 1; i < raw.size(); i++) {
        std::map<std::string, std::string> r;
        for (size_t k = 0; k < t.header.size() && k < raw[i].size(); k++) r[t.header[k]] = raw[i][k];
        t.rows.push_back(r);
    }
    return t;
}

std::string stories() {
    const std::string s = test::shared_dir() + "/models/stories260K/";
    return " --model " + s + "stories260K.bin --tokenizer " + s + "tok512.bin";
}

const fs::path& results() {
    static fs::path dir;
    if (dir.empty()) {
        dir = test::temp_dir("evict");
        auto r = test::run_cmd("XDG_CACHE_HOME=" + dir.string() + "/cache " + test::kvscope_bin() + " exp evict --quick" +
                               stories() + " --out " + dir.string());
        EXPECT_EQ(r.status, 0) << r.err;
        EXPECT_NE(r.err.find("[exp evict]"), std::string::npos) << "no progress display";
    }
    return dir;
}

TEST(Evict, EveryPolicyAtEveryBudgetAgainstTheFullCache) {
    const Rows t = load(results() / "evict.csv");
    // --quick: the full cache, then 5 policies at 25% and 100%, sinks and h2o also with int8.
    ASSERT_EQ(t.rows.size(), 1u + 2 * (5 + 2));
    EXPECT_EQ(t.rows[0].at("policy"), "full");
    const double full_bytes = t.num(0, "kv_bytes");
    std::set<std::string> policies;
    for (size_t r = 0; r < t.rows.size(); r++) {
        policies.insert(t.rows[r].at("policy"));
        EXPECT_EQ(t.rows[r].at("weights"), "pretrained");
        EXPECT_GT(t.num(r, "ppl"), 1);
        EXPECT_GT(t.num(r, "decode_ms_per_token"), 0);
        EXPECT_GT(t.num(r, "recall_prob"), 0);
        const bool fp32 = t.rows[r].at("kv_dtype") == "fp32";
        if (t.num(r, "budget_frac") == 1 && fp32) {
            // A budget that covers the stream evicts nothing: the full cache's numbers exactly.
            EXPECT_EQ(t.num(r, "kl_mean"), 0) << t.rows[r].at("policy");
            EXPECT_EQ(t.num(r, "top1_agreement"), 1);
            EXPECT_EQ(t.num(r, "ppl"), t.num(0, "ppl"));
            EXPECT_EQ(t.rows[r].at("recall_prob"), t.rows[0].at("recall_prob"));
        }
        if (t.num(r, "budget_frac") < 1) {
            EXPECT_LT(t.num(r, "kv_bytes"), full_bytes / 2);
            if (fp32) {
                EXPECT_GT(t.num(r, "kl_mean"), 0) << t.rows[r].at("policy");
            }
        }
    }
    EXPECT_EQ(policies, (std::set<std::string>{"full", "window", "sinks", "h2o", "snapkv", "tova"}));
    const Rows k = load(results() / "evict_kept.csv");
    ASSERT_FALSE(k.rows.empty());
    for (size_t r = 0; r < k.rows.size(); r++) {
        EXPECT_GE(k.num(r, "kept_frac"), 0);
        EXPECT_LE(k.num(r, "kept_frac"), 1);
    }
}

// The stream of twice the window (--quick) through each bounded policy and the recompute.
TEST(Evict, PastTheWindowEachPolicyAgainstTheRecompute) {
    const Rows t = load(results() / "evict_long.csv");
    ASSERT_EQ(t.rows.size(), 6u);
    EXPECT_EQ(t.rows.back().at("method"), "recompute");
    for (size_t r = 0; r < t.rows.size(); r++) {
        EXPECT_EQ(t.num(r, "stream_len"), 1024);
        EXPECT_GT(t.num(r, "ppl"), 1);
        EXPECT_GT(t.num(r, "ppl_past_window"), 1);
        EXPECT_GT(t.num(r, "ms_per_token_early"), 0);
        EXPECT_GT(t.num(r, "ms_per_token_late"), 0);
    }
}

TEST(Evict, ReportHasTheSectionAndItsPlots) {
    auto r = test::run_cmd(test::kvscope_bin() + " report --results " + results().string());
    ASSERT_EQ(r.status, 0) << r.err;
    for (const char* p : {"evict_accuracy", "evict_recall", "evict_kept"}) {
        EXPECT_TRUE(fs::file_size(results() / "plots" / (std::string(p) + ".png")) > 0) << p;
        EXPECT_TRUE(fs::file_size(results() / "plots" / (std::string(p) + ".svg")) > 0) << p;
    }
    const std::string md = test::run_cmd("cat " + (results() / "report.md").string()).out;
    EXPECT_NE(md.find("## Keeping less of the cache: eviction policies"), std::string::npos);
    EXPECT_NE(md.find("## Past the context window"), std::string::npos);
    EXPECT_NE(md.find("sliding-window recompute"), std::string::npos);
}

TEST(Evict, RunFlagsAndTheirErrors) {
    const std::string run = test::kvscope_bin() + " run" + stories() + " --prompt-ids 1 --quiet";
    auto ok = test::run_cmd(run + " --max-new-tokens 600 --kv-policy sinks --kv-budget 0.125 --ignore-eos");
    ASSERT_EQ(ok.status, 0) << ok.err;
    EXPECT_NE(ok.out.find("KV policy sinks(4)+60: 64 of 600 tokens held"), std::string::npos) << ok.out;
    auto check = [&](const std::string& flags, const std::string& want) {
        auto r = test::run_cmd(run + " " + flags);
        EXPECT_EQ(r.status, 1) << flags;
        EXPECT_NE(r.err.find(want), std::string::npos) << flags << ": " << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    };
    check("--kv-budget 100", "--kv-budget 100: needs a bounded --kv-policy");
    check("--kv-policy h2o", "--kv-policy h2o: give the tokens to keep with --kv-budget");
    check("--kv-policy lru --kv-budget 9", "--kv-policy 'lru': expected full, window, sinks, h2o, snapkv or tova");
    check("--kv-policy sinks --kv-budget 4", "--evict-sinks 4: expected 0 to 3");
    check("--kv-policy tova --kv-budget 2.5", "--kv-budget '2.5': expected a number of tokens");
    check("--kv-policy h2o --kv-budget 64 --kv-layout paged", "eviction compacts each sequence's contiguous rows");
    check("--kv-policy window --kv-budget 64 --use_cache 0", "needs the cache on");
    check("--max-new-tokens 600", "exceeds the context window");
    // GPT-2's learned positions end at the window.
    const fs::path tiny = test::tiny_model_dir("evict", test::tiny_config(96, 128));
    auto g = test::run_cmd(test::kvscope_bin() + " run --model " + tiny.string() +
                           " --prompt-ids 1 --max-new-tokens 200 --kv-policy window --kv-budget 32 --quiet");
    EXPECT_EQ(g.status, 1);
    EXPECT_NE(g.err.find("learned positions end there"), std::string::npos) << g.err;
}

}  // namespace
}  // namespace kvscope
