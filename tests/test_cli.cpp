// The command line on good and bad input: one-line errors naming the file or flag, non-zero
// exit, and an existing CSV left untouched.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "report/csv.h"
#include "test_util.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

fs::path model_dir() { return test::tiny_model_dir("cli", test::tiny_config()); }

// A copy of the tiny model whose files the test may break.
fs::path broken_copy(const std::string& tag) {
    fs::path d = test::temp_dir("broken-" + tag);
    for (const auto& e : fs::directory_iterator(model_dir())) fs::copy(e.path(), d / e.path().filename());
    return d;
}

std::string run_args(const std::string& args) { return test::kvscope_bin() + " " + args; }

// Expects failure with a single-line message containing every needle.
void expect_error(const std::string& args, std::vector<std::string> needles) {
    auto r = test::run_cmd(run_args(args));
    EXPECT_NE(r.status, 0) << args;
    std::string e = r.err;
    while (!e.empty() && e.back() == '\n') e.pop_back();
    EXPECT_EQ(e.find('\n'), std::string::npos) << "multi-line error for " << args << ":\n" << r.err;
    for (const auto& n : needles) EXPECT_NE(e.find(n), std::string::npos) << "'" << n << "' not in: " << e;
}

}  // namespace

TEST(Cli, RunPrintsSummaryAndAppendsCsvRows) {
    fs::path d = test::temp_dir("cli-ok");
    fs::path csv = d / "logs.csv";
    std::string base = "run --model " + model_dir().string() + " --prompt-ids 1,2,3 --max_new_tokens 8 --csv " + csv.string();
    auto r = test::run_cmd(run_args(base + " --use_cache 1"));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("prefill"), std::string::npos);
    EXPECT_NE(r.out.find("weights=synthetic"), std::string::npos);
    r = test::run_cmd(run_args(base + " --use_cache 0"));
    ASSERT_EQ(r.status, 0) << r.err;
    std::string text = read_file(csv);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3);
    EXPECT_EQ(text.rfind("model,dtype,device,use_cache,batch_size,prompt_len,max_new_tokens,total_time_s,"
                         "tokens_generated,tokens_per_s,p50_latency_s,p95_latency_s,peak_mem_mb,weights",
                         0),
              0u);
}

TEST(Cli, RunJsonHasTokensAndLatencySeries) {
    auto r = test::run_cmd(run_args("run --model " + model_dir().string() +
                                    " --prompt-ids 1,2,3 --prompt-ids 4,5 --batch-size 2 --max-new-tokens 6 --json"));
    ASSERT_EQ(r.status, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["tokens"].size(), 2u);
    EXPECT_EQ(j["tokens"][0].size(), 6u);
    EXPECT_EQ(j["step_ms"].size(), 5u);
    EXPECT_EQ(j["weights"], "synthetic");
    EXPECT_GT(j["kv_bytes"].get<int64_t>(), 0);
}

TEST(Cli, MissingConfig) {
    fs::path d = broken_copy("noconfig");
    fs::remove(d / "config.json");
    expect_error("run --model " + d.string(), {(d / "config.json").string(), "missing"});
}

TEST(Cli, MissingWeights) {
    fs::path d = broken_copy("noweights");
    fs::remove(d / "model.safetensors");
    expect_error("run --model " + d.string(), {"model.safetensors", "missing"});
}

TEST(Cli, TruncatedSafetensors) {
    fs::path d = broken_copy("trunc");
    fs::resize_file(d / "model.safetensors", fs::file_size(d / "model.safetensors") / 2);
    expect_error("run --model " + d.string(), {"model.safetensors", "truncated"});
}

TEST(Cli, HeaderLengthPastTheEnd) {
    fs::path d = broken_copy("hdr");
    {
        std::fstream f(d / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
        const char big[8] = {char(0xff), char(0xff), char(0xff), char(0x7f), 0, 0, 0, 0};
        f.write(big, 8);
    }
    expect_error("run --model " + d.string(), {"model.safetensors", "past the end"});
}

TEST(Cli, MalformedConfigJson) {
    fs::path d = broken_copy("badjson");
    write_file_atomic(d / "config.json", "{\"n_layer\": 2,");
    expect_error("run --model " + d.string(), {"config.json", "malformed JSON"});
}

TEST(Cli, ConfigMissingKey) {
    fs::path d = broken_copy("nokey");
    write_file_atomic(d / "config.json", R"({"model_type":"gpt2","n_layer":2,"n_embd":64,"vocab_size":96,"n_positions":128})");
    expect_error("run --model " + d.string(), {"config.json", "n_head"});
}

TEST(Cli, WrongShapeAndMissingTensor) {
    fs::path d = broken_copy("shape");
    auto cfg = nlohmann::json::parse(read_file(d / "config.json"));
    cfg["n_inner"] = 128;  // the file's MLP is 256 wide
    write_file_atomic(d / "config.json", cfg.dump());
    expect_error("run --model " + d.string(), {"model.safetensors", "mlp.c_fc.weight", "has shape"});
    cfg["n_inner"] = nullptr;
    cfg["n_layer"] = 3;  // no h.2.*
    write_file_atomic(d / "config.json", cfg.dump());
    expect_error("run --model " + d.string(), {"model.safetensors", "missing tensor", "h.2."});
}

TEST(Cli, UnknownDtypeInCheckpoint) {
    fs::path d = test::temp_dir("dtype");
    fs::copy(model_dir() / "config.json", d / "config.json");
    std::string h = R"({"transformer.wte.weight":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})";
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; i++) bytes[size_t(i)] = char((h.size() >> (8 * i)) & 0xff);
    write_file_atomic(d / "model.safetensors", bytes + h + "xx");
    expect_error("run --model " + d.string(), {"model.safetensors", "unknown dtype"});
}

TEST(Cli, MissingVocabularyForTextPrompt) {
    expect_error("run --model " + model_dir().string() + " --prompt hello", {"--prompt", "vocab"});
}

TEST(Cli, PromptTooLong) {
    expect_error("run --model " + model_dir().string() + " --prompt_len 100 --max_new_tokens 40",
                 {"context window", "128"});
}

TEST(Cli, BadFlagValues) {
    std::string m = " --model " + model_dir().string();
    expect_error("run" + m + " --dtype fp8", {"--dtype", "fp8"});
    expect_error("run" + m + " --kv-dtype int3", {"--kv-dtype"});
    expect_error("run" + m + " --use_cache 2", {"--use_cache"});
    expect_error("run" + m + " --device cuda", {"--device cuda", "GPU"});
    expect_error("run" + m + " --prompt-ids 1,x", {"--prompt-ids"});
    expect_error("run" + m + " --prompt-ids 1,96", {"--prompt-ids", "outside the vocabulary"});
    expect_error("run" + m + " --padding right", {"--padding"});
    expect_error("run" + m + " --batch_size 0", {"--batch-size"});
    expect_error("run --model /nonexistent/model", {"--model /nonexistent/model"});
}

TEST(Cli, FailedRunLeavesExistingCsvUntouched) {
    fs::path d = test::temp_dir("csv-untouched");
    fs::path csv = d / "logs.csv";
    std::string base = "run --model " + model_dir().string() + " --prompt-ids 1,2 --max_new_tokens 4 --csv " + csv.string();
    ASSERT_EQ(test::run_cmd(run_args(base)).status, 0);
    std::string before = read_file(csv);
    EXPECT_NE(test::run_cmd(run_args(base + " --max_new_tokens 500")).status, 0);
    EXPECT_NE(test::run_cmd(run_args(base + " --dtype fp8")).status, 0);
    EXPECT_EQ(read_file(csv), before);
    // A CSV with another header is refused, not mixed.
    fs::path other = d / "other.csv";
    write_file_atomic(other, "a,b\n1,2\n");
    expect_error("run --model " + model_dir().string() + " --prompt-ids 1 --max_new_tokens 2 --csv " + other.string(),
                 {"--csv", "different header"});
    EXPECT_EQ(read_file(other), "a,b\n1,2\n");
    for (const auto& e : fs::directory_iterator(d)) EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos);
}

TEST(Cli, InfoShowsConfigAndKvBytesPerToken) {
    auto r = test::run_cmd(run_args("info --model " + model_dir().string()));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("layers         2"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("head_dim       16"), std::string::npos) << r.out;
    // 2 x 2 layers x 4 heads x 16 x 4 bytes = 1024
    EXPECT_NE(r.out.find("1024 B/token"), std::string::npos) << r.out;
}

TEST(Cli, MakeModelWritesALoadableDirectory) {
    fs::path d = test::temp_dir("mk") / "m";
    auto r = test::run_cmd(run_args("make-model --preset tiny --seed 3 --out " + d.string()));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(d / "config.json"));
    EXPECT_TRUE(fs::exists(d / "model.safetensors"));
    auto again = test::run_cmd(run_args("make-model --preset tiny --out " + d.string()));
    EXPECT_NE(again.status, 0);
    expect_error("make-model --preset gpt5 --out " + (d.string() + "x"), {"--preset gpt5"});
}

TEST(Cli, FindsAModelInTheHuggingFaceHubCache) {
    fs::path home = test::temp_dir("hfhome");
    fs::path repo = home / "hub" / "models--someorg--tiny-gpt2";
    fs::path snap = repo / "snapshots" / "0123abcd";
    fs::create_directories(snap);
    fs::create_directories(repo / "blobs");
    // The hub stores files as blobs with symlinks in the snapshot, as huggingface_hub does.
    for (std::string f : {"config.json", "model.safetensors"}) {
        fs::copy(model_dir() / f, repo / "blobs" / f);
        fs::create_symlink(repo / "blobs" / f, snap / f);
    }
    fs::create_directories(repo / "refs");
    write_file_atomic(repo / "refs" / "main", "0123abcd");
    auto r = test::run_cmd("HF_HOME=" + home.string() + " " + run_args("info --model someorg/tiny-gpt2"));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("hugging face cache"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(snap.string()), std::string::npos) << r.out;
}

TEST(Cli, PresetWithoutLocalCopyGeneratesSyntheticWeightsOnceAndSaysSo) {
    fs::path cache = test::temp_dir("kvcache");
    std::string env = "HOME=" + cache.string() + " KVSCOPE_CACHE=" + cache.string() + " ";
    auto r = test::run_cmd(env + run_args("run --model tiny --prompt-ids 1,2 --max_new_tokens 2 --json"));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("synthetic weights"), std::string::npos) << r.err;
    EXPECT_EQ(nlohmann::json::parse(r.out)["weights"], "synthetic");
    auto again = test::run_cmd(env + run_args("run --model tiny --prompt-ids 1,2 --max_new_tokens 2"));
    ASSERT_EQ(again.status, 0) << again.err;
    EXPECT_EQ(again.err.find("generating"), std::string::npos) << again.err;
    EXPECT_NE(again.out.find("weights=synthetic"), std::string::npos);
}

// kvscope bench on the tiny model: every row in bench.csv, each on the roofline of the
// bandwidth sampled during the runs (the figure the table's header prints).
TEST(Cli, BenchQuickWritesEveryRowAgainstTheInRunBandwidth) {
    fs::path d = test::temp_dir("cli-bench");
    auto r = test::run_cmd(run_args("bench --quick --model " + model_dir().string() + " --out " + d.string() +
                                    " --prompt-len 4 --new-tokens 8"));
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string key = "GB/s during the runs (median of ";
    const size_t at = r.out.find(key);
    ASSERT_NE(at, std::string::npos) << r.out;
    // "... at the start (...), 12.3 GB/s during the runs (median of 3 samples ...": the number before key.
    const size_t num_end = r.out.rfind(' ', at - 1);
    const size_t num_begin = r.out.rfind(' ', num_end - 1) + 1;
    const double printed = std::stod(r.out.substr(num_begin, num_end - num_begin));
    EXPECT_EQ(std::stoi(r.out.substr(at + key.size())), 3);  // before each of 2 rounds, and after

    // Index of a column in a CSV's header row.
    auto column = [](const std::vector<std::string>& header, const std::string& name) {
        auto it = std::find(header.begin(), header.end(), name);
        EXPECT_NE(it, header.end()) << name;
        return size_t(it - header.begin());
    };
    auto rows = read_csv(d / "bench.csv");
    ASSERT_EQ(rows.size(), 1u + 8u);
    auto col = [&](const std::string& name) { return column(rows[0], name); };
    const size_t label = col("label"), peak = col("peak_gbs"), gbs = col("gbs");
    std::vector<std::string> labels;
    for (size_t i = 1; i < rows.size(); i++) {
        labels.push_back(rows[i][label]);
        EXPECT_NEAR(std::stod(rows[i][peak]), printed, 0.05 + 1e-9) << rows[i][label];
        EXPECT_EQ(rows[i][peak], rows[1][peak]);
        EXPECT_GT(std::stod(rows[i][gbs]), 0.0) << rows[i][label];
    }
    EXPECT_EQ(labels, (std::vector<std::string>{"decode fp32 b1", "decode bf16 b1", "decode fp16 b1", "decode fp32 b8",
                                                "decode fp32 b1 depth 96", "prefill fp32 127", "prefill bf16 127",
                                                "no-cache fp32 b1 +8"}));

    // Decode at depth: N - 1 = 7 steps centred on depth 96 alternated with 7 from depth 36 (the
    // prompt's 4 + 32), the read floor's at both with them; one row per round of repetitions.
    EXPECT_NE(r.out.find("steps at depths 36-42 and 93-99 alternated (7 of each per round, 2 rounds)"),
              std::string::npos)
        << r.out;
    auto depth = read_csv(d / "bench_depth.csv");
    ASSERT_EQ(depth.size(), 1u + 2u);
    auto dcol = [&](const std::string& name) { return column(depth[0], name); };
    for (size_t i = 1; i < depth.size(); i++) {
        EXPECT_EQ(depth[i][dcol("rep")], std::to_string(i));
        EXPECT_EQ(depth[i][dcol("steps")], "7");
        EXPECT_EQ(depth[i][dcol("shallow_lo")], "36");
        EXPECT_EQ(depth[i][dcol("shallow_hi")], "43");
        EXPECT_EQ(depth[i][dcol("deep_lo")], "93");
        EXPECT_EQ(depth[i][dcol("deep_hi")], "100");
        EXPECT_GT(std::stod(depth[i][dcol("shallow_ms")]), 0.0);
        EXPECT_GT(std::stod(depth[i][dcol("deep_ms")]), 0.0);
        EXPECT_GT(std::stod(depth[i][dcol("bytes_rise_pct")]), 0.0);  // the KV read grows with depth
        // The read-only floor of the same windows, one per round.
        EXPECT_GT(std::stod(depth[i][dcol("floor_shallow_ms")]), 0.0);
        EXPECT_GT(std::stod(depth[i][dcol("floor_deep_ms")]), 0.0);
    }
    EXPECT_NE(r.out.find("read floor:"), std::string::npos) << r.out;
}
