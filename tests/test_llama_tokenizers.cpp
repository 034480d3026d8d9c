// The Llama tokenizers against SentencePiece's own tools (Debian's sentencepiece package:
// spm_encode / spm_decode) on Llama 2's tokenizer.model and real English and Unicode texts:
// the library-backed tokenizer.model reader, and kvscope's tokenizer.json reader on the
// tokenizer.json transformers' converter makes of the same model (tools/spm_to_tokenizer_json.py).
#include <gtest/gtest.h>

#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "test_util.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/sentencepiece_tok.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

fs::path llama2_model() { return fs::path(test::shared_dir()) / "tokenizers/llama2/tokenizer.model"; }

const std::vector<std::string>& texts() {
    static const std::vector<std::string> t = {
        "Hello world",
        "The KV cache grows with every token; at batch 8 and context 1024 it reads more bytes than the weights.",
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
        "  leading spaces, trailing spaces   ",
        "Numbers: 3.14159, 2,718 and 1e-9; code: for (int i = 0; i < n; i++) { x[i] += y[i]; }",
        "h\xC3\xA9llo w\xC3\xB6rld, na\xC3\xAFve caf\xC3\xA9, \xC3\x9F\xC3\xA4\xC3\xB6\xC3\xBC",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87\xE7\xAB\xA0\xE3\x81\xA7\xE3\x81\x99\xE3\x80\x82",
        "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80! \xCE\x93\xCE\xB5\xCE\xB9\xCE\xAC",
        "emoji \xF0\x9F\x9A\x80\xF0\x9F\x98\x80 and a snowman \xE2\x98\x83 (rare pieces fall back to bytes)",
        "tabs\tand\tdouble  spaces",
        "It's the model's \"quoted\" text -- with dashes -- and ellipses...",
        "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87 \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7",
    };
    return t;
}

bool have_spm() { return test::run_cmd("command -v spm_encode && command -v spm_decode").status == 0; }

// spm_encode --output_format=id over every text, one line each.
std::vector<std::vector<int32_t>> spm_ids() {
    fs::path d = test::temp_dir("spm");
    std::string all;
    for (const auto& t : texts()) all += t + "\n";
    write_file_atomic(d / "in.txt", all);
    auto r = test::run_cmd("spm_encode --model " + llama2_model().string() + " --output_format=id " + (d / "in.txt").string());
    EXPECT_EQ(r.status, 0) << r.err;
    std::vector<std::vector<int32_t>> out;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream ids(line);
        out.emplace_back();
        for (int32_t id; ids >> id;) out.back().push_back(id);
    }
    return out;
}

}  // namespace

TEST(SentencePieceTokenizer, EncodesAndDecodesAsSpmTools) {
    if (!have_spm()) GTEST_SKIP() << "spm_encode absent: apt-get install sentencepiece";
    auto tok = SentencePieceTokenizer::load(llama2_model());
    EXPECT_EQ(tok->vocab_size(), 32000);
    EXPECT_EQ(tok->bos_id(), 1);
    EXPECT_EQ(tok->eos_id(), 2);
    const auto ref = spm_ids();
    ASSERT_EQ(ref.size(), texts().size());
    for (size_t i = 0; i < texts().size(); i++) {
        EXPECT_EQ(tok->encode(texts()[i]), ref[i]) << texts()[i];
        std::vector<int32_t> with_bos = tok->encode_prompt(texts()[i]);
        ASSERT_FALSE(with_bos.empty());
        EXPECT_EQ(with_bos[0], 1);
        // spm_decode of the same ids.
        std::string line;
        for (int32_t id : ref[i]) line += std::to_string(id) + " ";
        fs::path d = test::temp_dir("spmdec");
        write_file_atomic(d / "ids.txt", line + "\n");
        auto r = test::run_cmd("spm_decode --model " + llama2_model().string() + " --input_format=id " + (d / "ids.txt").string());
        ASSERT_EQ(r.status, 0) << r.err;
        std::string want = r.out;
        if (!want.empty() && want.back() == '\n') want.pop_back();
        EXPECT_EQ(tok->decode(with_bos), want) << texts()[i];
    }
}

TEST(HfBpeTokenizer, ConvertedLlama2TokenizerJsonEncodesAsSentencePiece) {
    if (!have_spm()) GTEST_SKIP() << "spm_encode absent: apt-get install sentencepiece";
    if (test::run_cmd("/usr/bin/python3 -c 'import sentencepiece'").status != 0)
        GTEST_SKIP() << "python3-sentencepiece absent (scripts/setup.sh installs it)";
    fs::path d = test::temp_dir("tokjson");
    auto r = test::run_cmd("/usr/bin/python3 " + test::source_dir() + "/tools/spm_to_tokenizer_json.py " +
                           llama2_model().string() + " " + (d / "tokenizer.json").string());
    ASSERT_EQ(r.status, 0) << r.err;
    const HfBpeTokenizer tok = HfBpeTokenizer::load(d / "tokenizer.json");
    EXPECT_EQ(tok.vocab_size(), 32000);
    EXPECT_TRUE(tok.adds_bos());
    EXPECT_EQ(tok.bos_id(), 1);
    EXPECT_EQ(tok.eos_id(), 2);
    const auto ref = spm_ids();
    ASSERT_EQ(ref.size(), texts().size());
    for (size_t i = 0; i < texts().size(); i++) {
        EXPECT_EQ(tok.encode(texts()[i]), ref[i]) << texts()[i];
        EXPECT_EQ(tok.decode(tok.encode_prompt(texts()[i])), texts()[i]);
    }
    // Added tokens are cut out whole.
    const auto ids = tok.encode("</s>Hi<s>");
    ASSERT_GE(ids.size(), 3u);
    EXPECT_EQ(ids.front(), 2);
    EXPECT_EQ(ids.back(), 1);
}

TEST(HfBpeTokenizer, BadFilesGetOneLineNamingThem) {
    fs::path d = test::temp_dir("tokjson-bad");
    write_file_atomic(d / "a.json", R"({"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})");
    try {
        HfBpeTokenizer::load(d / "a.json");
        ADD_FAILURE() << "a merge of an unknown piece loaded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("merges[0]"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(d.string()), std::string::npos) << e.what();
    }
    write_file_atomic(d / "b.json", R"({"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0, "b": 2}, "merges": []}})");
    EXPECT_THROW(HfBpeTokenizer::load(d / "b.json"), Error);  // id 1 missing
    write_file_atomic(d / "c.json", R"({"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": -4}}})");
    EXPECT_THROW(HfBpeTokenizer::load(d / "c.json"), Error);
    write_file_atomic(d / "d.json", "{\"model\": ");
    EXPECT_THROW(HfBpeTokenizer::load(d / "d.json"), Error);
}
