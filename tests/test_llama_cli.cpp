// Llama models through the commands a user runs: the study on the real stories260K checkpoint
// (its report shows the model's text and what GQA saves), exp memory's KV bytes by n_kv_head,
// make-model on a Llama preset, and info/run on presets too big for this machine.
#include <gtest/gtest.h>

#include <sstream>

#include "core/fs.h"
#include "test_util.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

fs::path stories() { return fs::path(test::shared_dir()) / "models/stories260K"; }

std::string stories_args() {
    return " --model '" + (stories() / "stories260K.bin").string() + "' --tokenizer '" +
           (stories() / "tok512.bin").string() + "'";
}

std::vector<std::vector<std::string>> read_csv(const fs::path& p) {
    std::vector<std::vector<std::string>> rows;
    std::istringstream in(read_file(p));
    std::string line;
    while (std::getline(in, line)) {
        std::vector<std::string> cells;
        std::string cell;
        std::istringstream ls(line);
        while (std::getline(ls, cell, ',')) cells.push_back(cell);
        rows.push_back(cells);
    }
    return rows;
}

size_t column(const std::vector<std::string>& header, const std::string& name) {
    for (size_t i = 0; i < header.size(); i++)
        if (header[i] == name) return i;
    ADD_FAILURE() << "no column " << name;
    return 0;
}

}  // namespace

// The end-to-end check: the study runs on real weights, and the report carries the
// model's own greedy text, the architecture and the GQA saving.
TEST(LlamaCli, StudyOnStories260KShowsRealTextAndTheGqaSaving) {
    const fs::path out = test::temp_dir("llama-study");
    auto r = test::run_cmd(test::kvscope_bin() + " study --quick" + stories_args() + " --out '" + out.string() + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_TRUE(fs::exists(out / "report.html"));
    const std::string md = read_file(out / "report.md");
    EXPECT_NE(md.find("Once upon a time, there was a little girl named Lily"), std::string::npos) << md.substr(0, 4000);
    EXPECT_NE(md.find("| architecture | llama |"), std::string::npos);
    EXPECT_NE(md.find("n_kv_head 4 x head_dim 8"), std::string::npos);
    EXPECT_NE(md.find("2 query heads share each KV head, so the cache is 2x smaller"), std::string::npos);
    EXPECT_EQ(md.find("synthetic weights, so not meaningful"), std::string::npos);
    const std::string html = read_file(out / "report.html");
    EXPECT_NE(html.find("<pre class=\"sample\">Once upon a time"), std::string::npos);
}

// exp memory on a GQA model: the cache the engine allocated is 2 x L x n_kv_head x head_dim x
// bytes per position, half of what the same model would need with n_kv_head = n_head.
TEST(LlamaCli, ExpMemoryCountsKvHeadsNotQueryHeads) {
    const fs::path out = test::temp_dir("llama-memory");
    auto r = test::run_cmd(test::kvscope_bin() + " exp memory --quick" + stories_args() + " --out '" + out.string() + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    auto rows = read_csv(out / "memory.csv");
    ASSERT_GT(rows.size(), 1u);
    const auto& h = rows[0];
    const size_t kv = column(h, "kv_bytes"), th = column(h, "kv_bytes_theory"), b = column(h, "batch_size"),
                 ctx = column(h, "context"), dt = column(h, "kv_dtype"), ok = column(h, "kv_formula_matches");
    const int64_t L = 5, n_kv = 4, n_head = 8, hd = 8;  // stories260K
    for (size_t i = 1; i < rows.size(); i++) {
        const auto& row = rows[i];
        const int64_t bytes = row[dt] == "fp32" ? 4 : 2;
        const int64_t positions = std::stoll(row[b]) * std::stoll(row[ctx]);
        EXPECT_EQ(std::stoll(row[kv]), 2 * L * n_kv * hd * bytes * positions) << "row " << i;
        EXPECT_EQ(row[kv], row[th]);
        EXPECT_EQ(row[ok], "1");
        EXPECT_EQ(2 * std::stoll(row[kv]), 2 * L * n_head * hd * bytes * positions);
    }
}

// A Llama preset written by make-model loads back with its shape, GQA included.
TEST(LlamaCli, MakeModelWritesALlamaPreset) {
    const fs::path out = test::temp_dir("llama-make") / "stories15M";
    auto r = test::run_cmd(test::kvscope_bin() + " make-model --preset stories15M --out '" + out.string() + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string cfg = read_file(out / "config.json");
    EXPECT_NE(cfg.find("LlamaForCausalLM"), std::string::npos) << cfg;
    r = test::run_cmd(test::kvscope_bin() + " info --model '" + out.string() + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("llama"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("layers         6"), std::string::npos) << r.out;
    r = test::run_cmd(test::kvscope_bin() + " run --model '" + out.string() + "' --prompt-ids 1,2,3 --max-new-tokens 3 --quiet");
    EXPECT_EQ(r.status, 0) << r.err;
}

// Presets too big to run here: info describes them, run refuses with the memory needed.
TEST(LlamaCli, PlanOnlyPresetsAreDescribedButNotRun) {
    auto r = test::run_cmd(test::kvscope_bin() + " info --model llama-3-8b");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("layers         32"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("131072"), std::string::npos) << r.out;  // fp16 KV bytes per token: 2 x 32 x 8 x 128 x 2
    r = test::run_cmd(test::kvscope_bin() + " run --model llama-3-8b --prompt-ids 1,2 --max-new-tokens 1");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("GiB"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("llama-3-8b"), std::string::npos) << r.err;
}
