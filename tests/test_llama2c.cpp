// Golden tests on the real stories260K checkpoint (llama2.c format, pretrained weights,
// grouped-query attention: 8 query heads, 4 KV heads) against llama2.c itself: its logits at
// every position of its greedy run from BOS (../shared/reference), its text, and the token ids
// its run.c encodes for a few prompts. Then the loaders' and tokenizer's errors on bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "kv/kv_layout.h"
#include "model/llama2c.h"
#include "model/loader.h"
#include "runtime/engine.h"
#include "test_util.h"
#include "tokenizer/llama2c_tok.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

fs::path stories() { return fs::path(test::shared_dir()) / "models/stories260K"; }

struct Ref {
    std::vector<int32_t> tokens;      // BOS, then 64 greedy tokens
    std::vector<std::vector<float>> logits;  // 64 rows of 512: logits after tokens[0..i]
};

const Ref& reference() {
    static const Ref r = [] {
        auto j = nlohmann::json::parse(read_file(fs::path(test::shared_dir()) / "reference/stories260K_greedy_from_bos.json"));
        Ref x;
        x.tokens = j["tokens"].get<std::vector<int32_t>>();
        x.logits = j["logits"].get<std::vector<std::vector<float>>>();
        return x;
    }();
    return r;
}

const Model& model() {
    static const Model m = load_model((stories() / "stories260K.bin").string(), DType::F32);
    return m;
}

double max_diff(const float* a, const std::vector<float>& b) {
    double d = 0;
    for (size_t i = 0; i < b.size(); i++) d = std::max(d, double(std::abs(a[i] - b[i])));
    return d;
}

}  // namespace

TEST(Llama2c, ReadsTheHeaderAsAGroupedQueryModel) {
    const ModelConfig& c = model().cfg;
    EXPECT_EQ(c.arch, Arch::LLAMA);
    EXPECT_EQ(c.n_embd, 64);
    EXPECT_EQ(c.n_layer, 5);
    EXPECT_EQ(c.n_head, 8);
    EXPECT_EQ(c.n_kv_head, 4);
    EXPECT_EQ(c.n_ff, 172);
    EXPECT_EQ(c.n_vocab, 512);
    EXPECT_EQ(c.n_ctx, 512);
    EXPECT_EQ(c.rope_layout, RopeLayout::Interleaved);
    EXPECT_TRUE(c.tied_embeddings);
    EXPECT_FALSE(model().synthetic);
    ASSERT_TRUE(model().tokenizer) << "tok512.bin beside the checkpoint";
    EXPECT_EQ(model().tokenizer->vocab_size(), 512);
}

// Every position of llama2.c's run, prefilled at once and decoded one token at a time.
TEST(Llama2c, LogitsMatchLlama2cAtEveryPosition) {
    const Ref& ref = reference();
    const int n = int(ref.logits.size()), V = model().cfg.n_vocab;
    std::vector<int32_t> prompt(ref.tokens.begin(), ref.tokens.begin() + n);
    EngineOptions eo;
    eo.max_prompt = n;
    eo.max_new_tokens = 1;
    eo.all_logits = true;
    Engine e(*model().weights, eo);
    const std::vector<float> all = e.all_logits(prompt);
    EngineOptions fo;
    fo.max_prompt = 1;
    fo.max_new_tokens = n;
    Engine f(*model().weights, fo);
    const std::vector<float> forced =
        f.forced_logits({ref.tokens[0]}, std::vector<int32_t>(ref.tokens.begin() + 1, ref.tokens.begin() + n + 1));
    double worst_prefill = 0, worst_decode = 0;
    for (int i = 0; i < n; i++) {
        const double dp = max_diff(all.data() + int64_t(i) * V, ref.logits[size_t(i)]);
        const double dd = max_diff(forced.data() + int64_t(i) * V, ref.logits[size_t(i)]);
        worst_prefill = std::max(worst_prefill, dp);
        worst_decode = std::max(worst_decode, dd);
        EXPECT_LE(dp, 1e-4) << "prefill, position " << i;
        EXPECT_LE(dd, 1e-4) << "decode, position " << i;
    }
    std::printf("stories260K vs llama2.c, %d positions: max |logit diff| prefill %.3g, decode %.3g\n", n, worst_prefill,
                worst_decode);
}

TEST(Llama2c, GreedyFromBosIsLlama2csTextByteForByte) {
    const Ref& ref = reference();
    const int n = int(ref.tokens.size()) - 1;
    for (bool cache : {true, false}) {
        EngineOptions eo;
        eo.max_prompt = 1;
        eo.max_new_tokens = n;
        eo.use_cache = cache;
        Engine e(*model().weights, eo);
        GenerateOptions go;
        go.max_new_tokens = n;
        go.stop_at_eos = false;
        const auto got = e.generate({{ref.tokens[0]}}, go).tokens[0];
        EXPECT_EQ(got, std::vector<int32_t>(ref.tokens.begin() + 1, ref.tokens.end())) << "cache " << cache;
    }
    // What llama2.c's run.c prints for `run stories260K.bin -z tok512.bin -t 0 -n 64 -i ""`
    // (less the newline it adds at the end).
    const std::string llama2c_text =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
        "a big, red ball. She wanted to play with it, but it was too high.\nLily";
    EXPECT_EQ(model().tokenizer->decode(ref.tokens), llama2c_text);
}

// Token ids from llama2.c's own encode() (run.c, bos=1, eos=0) for these texts.
TEST(Llama2c, EncodesTextAsRunCDoes) {
    const std::vector<std::pair<std::string, std::vector<int32_t>>> cases = {
        {"Once upon a time", {1, 403, 407, 261, 378}},
        {"The cat sat on the mat.", {1, 291, 280, 294, 262, 294, 353, 265, 284, 294, 426}},
        {"Lily and Tom went to the park! They saw a dog.",
         {1, 317, 269, 274, 287, 263, 377, 267, 265, 282, 295, 433, 443, 342, 394, 261, 400, 428, 426}},
        {"h\xC3\xA9llo w\xC3\xB6rld \xE2\x98\x83 123",
         {1, 270, 485, 306, 414, 263, 198, 185, 420, 341, 410, 229, 155, 134, 410, 475, 479, 472}},
        {"  two  spaces", {1, 410, 410, 259, 424, 414, 410, 262, 427, 412, 331, 419}},
        {"tab\tand\nnewline", {1, 259, 412, 430, 12, 412, 264, 13, 416, 411, 424, 421, 271, 411}},
    };
    for (const auto& [text, ids] : cases) EXPECT_EQ(model().tokenizer->encode_prompt(text), ids) << text;
}

// Batched decode of unequal prompts on a GQA model: each sequence gets what it gets alone.
TEST(Llama2c, BatchOfUnequalPromptsEqualsEachAlone) {
    const auto& tok = *model().tokenizer;
    std::vector<std::vector<int32_t>> prompts = {tok.encode_prompt("Once upon a time"),
                                                 tok.encode_prompt("The cat sat on the mat. It was"),
                                                 tok.encode_prompt("Lily")};
    auto run = [&](const std::vector<std::vector<int32_t>>& ps, bool left_pad) {
        EngineOptions eo;
        eo.n_seq = int(ps.size());
        for (const auto& p : ps) eo.max_prompt = std::max(eo.max_prompt, int(p.size()));
        eo.max_new_tokens = 40;
        eo.left_pad = left_pad;
        Engine e(*model().weights, eo);
        GenerateOptions go;
        go.max_new_tokens = 40;
        go.stop_at_eos = false;
        return e.generate(ps, go).tokens;
    };
    const auto batch = run(prompts, false), padded = run(prompts, true);
    for (size_t i = 0; i < prompts.size(); i++) {
        const auto alone = run({prompts[i]}, false);
        EXPECT_EQ(batch[i], alone[0]) << "prompt " << i;
        EXPECT_EQ(padded[i], alone[0]) << "left-padded prompt " << i;
    }
}

// The cache holds n_kv_head = 4 heads per layer: exactly half of what 8 would take.
TEST(Llama2c, KvBytesAreThoseOfTheKvHeads) {
    const ModelConfig& c = model().cfg;
    EngineOptions eo;
    eo.max_prompt = 8;
    eo.max_new_tokens = 120;
    Engine e(*model().weights, eo);
    const int64_t mha = kv_cache_bytes({c.n_layer, 1, c.n_head, 128, c.head_dim, DType::F32});
    EXPECT_EQ(e.kv_bytes(), 2 * 5 * 4 * 128 * 8 * 4);
    EXPECT_EQ(2 * e.kv_bytes(), mha);
}

namespace {

// A copy of stories260K.bin, changed by `edit`, written to a temporary file.
fs::path edited_bin(const std::string& tag, const std::function<void(std::string&)>& edit) {
    std::string b = read_file(stories() / "stories260K.bin");
    edit(b);
    fs::path d = test::temp_dir("l2c-" + tag);
    write_file_atomic(d / "model.bin", b);
    return d / "model.bin";
}

void set_i32(std::string& b, size_t at, int32_t v) { std::memcpy(b.data() + at, &v, 4); }

void expect_error(const fs::path& bin, const std::vector<std::string>& needles) {
    auto r = test::run_cmd(test::kvscope_bin() + " run --model " + bin.string() + " --prompt-ids 1 --max-new-tokens 2");
    EXPECT_NE(r.status, 0);
    std::string e = r.err;
    while (!e.empty() && e.back() == '\n') e.pop_back();
    EXPECT_EQ(e.find('\n'), std::string::npos) << r.err;
    for (const auto& n : needles) EXPECT_NE(e.find(n), std::string::npos) << "'" << n << "' not in: " << e;
}

}  // namespace

TEST(Llama2c, BadCheckpointsGetOneLineNamingTheFile) {
    fs::path truncated = edited_bin("trunc", [](std::string& b) { b.resize(b.size() / 2); });
    expect_error(truncated, {truncated.string(), "bytes", "implies"});
    fs::path longer = edited_bin("long", [](std::string& b) { b += std::string(64, '\0'); });
    expect_error(longer, {longer.string(), "disagree"});
    fs::path wrong_dim = edited_bin("dim", [](std::string& b) { set_i32(b, 0, 128); });  // dim 128: sizes disagree
    expect_error(wrong_dim, {wrong_dim.string(), "implies"});
    fs::path heads = edited_bin("heads", [](std::string& b) { set_i32(b, 16, 3); });  // n_kv_heads 3 of 8
    expect_error(heads, {heads.string(), "not divisible by n_kv_head 3"});
    fs::path version = edited_bin("version", [](std::string& b) {
        set_i32(b, 0, int32_t(0x616b3432));
        set_i32(b, 4, 7);
    });
    expect_error(version, {version.string(), "version 7"});
}

TEST(Llama2c, TokenizerOfTheWrongSizeIsRefused) {
    const fs::path tok = stories() / "tok512.bin";
    EXPECT_THROW(Llama2cTokenizer::load(tok, 500), Error);
    EXPECT_THROW(Llama2cTokenizer::load(tok, 600), Error);
    // Llama 2's 32000-token tokenizer with a 512-token model: named in one line.
    const fs::path llama2 = fs::path(test::shared_dir()) / "tokenizers/llama2/tokenizer.model";
    auto r = test::run_cmd(test::kvscope_bin() + " run --model " + (stories() / "stories260K.bin").string() +
                           " --tokenizer " + llama2.string() + " --prompt hello --max-new-tokens 2");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.err.find("32000 tokens but the model's vocabulary has 512"), std::string::npos) << r.err;
    const std::string b = read_file(tok);
    try {
        Llama2cTokenizer::parse(reinterpret_cast<const uint8_t*>(b.data()), b.size() - 3, 512, "cut.bin");
        ADD_FAILURE() << "a truncated tokenizer loaded";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("cut.bin"), std::string::npos) << e.what();
    }
}

// The versioned formats (export.py's version 1 in fp32 and version 2 in q8_0), written here
// from the legacy file's arrays, load to the same model; q8_0 within its rounding.
TEST(Llama2c, VersionedExportsLoadLikeTheLegacyFile) {
    const std::string legacy = read_file(stories() / "stories260K.bin");
    const ModelConfig& c = model().cfg;
    const int64_t d = c.n_embd, L = c.n_layer, q = c.q_dim(), kv = c.kv_dim(), f = c.n_ff, V = c.n_vocab;
    const float* w = reinterpret_cast<const float*>(legacy.data() + 28);
    // Legacy offsets (floats): embed, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final.
    std::vector<int64_t> off;
    int64_t at = 0;
    for (int64_t n : {V * d, L * d, L * q * d, L * kv * d, L * kv * d, L * d * q, L * d, L * f * d, L * d * f, L * f * d, d}) {
        off.push_back(at);
        at += n;
    }
    auto header = [&](int version) {
        std::string h(256, '\0');
        const int32_t v[9] = {int32_t(0x616b3432), version, int32_t(d), int32_t(f), int32_t(L), int32_t(c.n_head),
                              int32_t(c.n_kv_head), int32_t(V), int32_t(c.n_ctx)};
        std::memcpy(h.data(), v, sizeof v);
        h[36] = 1;  // shared classifier
        return h;
    };
    auto floats = [&](int64_t o, int64_t n) { return std::string(reinterpret_cast<const char*>(w + o), size_t(n) * 4); };
    // norms (att, ffn, final), then embed, wq, wk, wv, wo, w1, w2, w3 (layers stacked).
    const std::string norms = floats(off[1], L * d) + floats(off[6], L * d) + floats(off[10], d);
    std::string v1 = header(1) + norms;
    for (int i : {0, 2, 3, 4, 5, 7, 8, 9}) v1 += floats(off[size_t(i)], (i == 0 ? V * d : (off[size_t(i) + 1] - off[size_t(i)])));
    fs::path d1 = test::temp_dir("l2c-v1");
    write_file_atomic(d1 / "model.bin", v1);
    // Version 2: each matrix (each layer's separately) as int8 with one fp32 scale per 64 values.
    const int gs = 64;
    std::string v2 = header(2);
    const int32_t gsv = gs;
    std::memcpy(v2.data() + 37, &gsv, 4);
    v2 += norms;
    auto q8 = [&](int64_t o, int64_t n) {
        std::string qs(size_t(n), '\0'), ss;
        for (int64_t g = 0; g < n / gs; g++) {
            float mx = 0;
            for (int64_t i = 0; i < gs; i++) mx = std::max(mx, std::abs(w[o + g * gs + i]));
            const float scale = mx / 127.0f;
            for (int64_t i = 0; i < gs; i++)
                qs[size_t(g * gs + i)] = char(int8_t(std::lround(scale > 0 ? w[o + g * gs + i] / scale : 0)));
            ss.append(reinterpret_cast<const char*>(&scale), 4);
        }
        return qs + ss;
    };
    v2 += q8(off[0], V * d);
    for (int i : {2, 3, 4, 5, 7, 8, 9}) {
        const int64_t per = (off[size_t(i) + 1] - off[size_t(i)]) / L;
        for (int64_t il = 0; il < L; il++) v2 += q8(off[size_t(i)] + il * per, per);
    }
    write_file_atomic(d1 / "model_q8.bin", v2);
    const Ref& ref = reference();
    std::vector<int32_t> prompt(ref.tokens.begin(), ref.tokens.begin() + 16);
    auto logits = [&](const fs::path& p) {
        Model m = load_model(p.string(), DType::F32);
        EngineOptions eo;
        eo.max_prompt = 16;
        eo.max_new_tokens = 1;
        eo.all_logits = true;
        Engine e(*m.weights, eo);
        return e.all_logits(prompt);
    };
    const auto base = logits(stories() / "stories260K.bin"), l1 = logits(d1 / "model.bin"), l2 = logits(d1 / "model_q8.bin");
    double d1max = 0, d2max = 0;
    for (size_t i = 0; i < base.size(); i++) {
        d1max = std::max(d1max, double(std::abs(base[i] - l1[i])));
        d2max = std::max(d2max, double(std::abs(base[i] - l2[i])));
    }
    std::printf("version 1 vs legacy: max |diff| %.3g; version 2 (q8_0) vs legacy: %.3g\n", d1max, d2max);
    EXPECT_EQ(d1max, 0.0);
    EXPECT_GT(d2max, 0.0);
    EXPECT_LT(d2max, 0.5);
}
