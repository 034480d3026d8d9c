// kvscope exp quant on the real stories260K model, end to end: one row per (scheme, context),
// bytes per token exactly the codec formula, the fp32 row identical to its reference, accuracy
// falling with the bits, and the report's quant section with both plots and its findings.
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "core/fs.h"
#include "test_util.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

using Row = std::map<std::string, std::string>;

std::vector<Row> read_rows(const fs::path& p) {
    std::istringstream in(read_file(p));
    std::string line;
    std::vector<std::string> header;
    std::vector<Row> rows;
    auto cells = [](const std::string& l) {
        std::vector<std::string> c;
        std::string x;
        std::istringstream ls(l);
        while (std::getline(ls, x, ',')) c.push_back(x);
        return c;
    };
    std::getline(in, line);
    header = cells(line);
    while (std::getline(in, line)) {
        const auto c = cells(line);
        Row r;
        for (size_t i = 0; i < header.size() && i < c.size(); i++) r[header[i]] = c[i];
        rows.push_back(r);
    }
    return rows;
}

double num(const Row& r, const std::string& c) { return std::stod(r.at(c)); }

}  // namespace

TEST(Quant, ExperimentOnStories260KThenItsReportSection) {
    const fs::path st = fs::path(test::shared_dir()) / "models/stories260K";
    const fs::path out = test::temp_dir("quant");
    auto r = test::run_cmd(test::kvscope_bin() + " exp quant --quick --model '" + (st / "stories260K.bin").string() +
                           "' --tokenizer '" + (st / "tok512.bin").string() + "' --kv-dtypes fp32,fp16,int8,int4,int2,int8/int4" +
                           " --out '" + out.string() + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::vector<Row> rows = read_rows(out / "quant.csv");
    ASSERT_EQ(rows.size(), 6u * 2);  // 6 schemes x contexts 64, 128
    std::map<std::string, Row> at128;
    for (const Row& row : rows)
        if (row.at("context") == "128") at128[row.at("kv_dtype")] = row;
    ASSERT_EQ(at128.size(), 6u);
    // stories260K: 5 layers x 4 KV heads, head_dim 8 (so every integer group is the row).
    const double LH = 5 * 4;
    EXPECT_EQ(num(at128["fp32"], "kv_bytes_per_token"), LH * 2 * 8 * 4);
    EXPECT_EQ(num(at128["fp16"], "kv_bytes_per_token"), LH * 2 * 8 * 2);
    EXPECT_EQ(num(at128["int8-sym"], "kv_bytes_per_token"), LH * 2 * (8 + 2));
    EXPECT_EQ(num(at128["int4-asym"], "kv_bytes_per_token"), LH * 2 * (4 + 4));
    EXPECT_EQ(num(at128["int2-asym"], "kv_bytes_per_token"), LH * 2 * (2 + 4));
    EXPECT_EQ(num(at128["k=int8-sym/v=int4-asym"], "kv_bytes_per_token"), LH * ((8 + 2) + (4 + 4)));
    EXPECT_EQ(num(at128["int8-sym"], "kv_bytes_mha_per_token"), 2 * num(at128["int8-sym"], "kv_bytes_per_token"));
    for (auto& [name, row] : at128) {
        EXPECT_EQ(num(row, "kv_bytes"), num(row, "kv_bytes_theory")) << name;
        EXPECT_GT(num(row, "decode_ms_median"), 0) << name;
        EXPECT_GT(num(row, "floor_ms"), 0) << name;
        EXPECT_GT(num(row, "stream_tokens"), 0) << name;
    }
    EXPECT_EQ(num(at128["fp32"], "kl_mean"), 0);
    EXPECT_EQ(num(at128["fp32"], "top1_agreement"), 1);
    EXPECT_EQ(num(at128["fp32"], "ppl"), num(at128["fp32"], "ppl_ref"));
    // Real weights: fewer bits cost more.
    EXPECT_LT(num(at128["fp16"], "kl_mean"), num(at128["int8-sym"], "kl_mean"));
    EXPECT_LT(num(at128["int8-sym"], "kl_mean"), num(at128["int4-asym"], "kl_mean"));
    EXPECT_LT(num(at128["int4-asym"], "kl_mean"), num(at128["int2-asym"], "kl_mean"));
    EXPECT_GT(num(at128["int2-asym"], "ppl"), num(at128["int2-asym"], "ppl_ref"));

    r = test::run_cmd(test::kvscope_bin() + " report --results '" + out.string() + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string md = read_file(out / "report.md");
    EXPECT_NE(md.find("Quantized KV cache (quant.csv)"), std::string::npos);
    EXPECT_NE(md.find("int2-asym: "), std::string::npos) << md;  // its finding
    EXPECT_TRUE(fs::exists(out / "plots/quant_accuracy.png"));
    EXPECT_TRUE(fs::exists(out / "plots/quant_speed.svg"));
}

TEST(Quant, BadSchemeIsOneLine) {
    auto r = test::run_cmd(test::kvscope_bin() + " exp quant --quick --model tiny --kv-dtypes int5 --out /tmp/kvscope-q-bad");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("--kv-dtypes int5"), std::string::npos) << r.err;
    r = test::run_cmd(test::kvscope_bin() + " run --model tiny --prompt-ids 1,2 --max-new-tokens 2 --k-dtype int4-g12");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("--k-dtype int4-g12"), std::string::npos) << r.err;
}
