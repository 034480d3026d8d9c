#include "model/llama2c.h"

#include <cstring>
#include <fstream>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"

namespace kvscope {

namespace {

constexpr uint32_t kMagic = 0x616b3432;  // "ak42"
constexpr uint64_t kVersionedHeader = 256;

int32_t rd_i32(const uint8_t* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

struct Array {
    std::string name;
    std::vector<int64_t> shape;
};

// The arrays of every format in the order each one stores them, with Hugging Face names.
std::vector<Array> norms(const ModelConfig& c) {
    std::vector<Array> v;
    for (int il = 0; il < c.n_layer; il++) v.push_back({fmt::format("model.layers.{}.input_layernorm.weight", il), {c.n_embd}});
    for (int il = 0; il < c.n_layer; il++)
        v.push_back({fmt::format("model.layers.{}.post_attention_layernorm.weight", il), {c.n_embd}});
    v.push_back({"model.norm.weight", {c.n_embd}});
    return v;
}

std::vector<Array> matrices(const ModelConfig& c, bool with_embedding) {
    const int64_t d = c.n_embd, q = c.q_dim(), kv = c.kv_dim(), f = c.n_ff;
    std::vector<Array> v;
    if (with_embedding) v.push_back({"model.embed_tokens.weight", {c.n_vocab, d}});
    struct M { const char* name; int64_t rows, cols; };
    const M ms[] = {{"self_attn.q_proj", q, d}, {"self_attn.k_proj", kv, d}, {"self_attn.v_proj", kv, d},
                    {"self_attn.o_proj", d, q}, {"mlp.gate_proj", f, d},     {"mlp.down_proj", d, f},
                    {"mlp.up_proj", f, d}};
    for (const M& m : ms)
        for (int il = 0; il < c.n_layer; il++)
            v.push_back({fmt::format("model.layers.{}.{}.weight", il, m.name), {m.rows, m.cols}});
    return v;
}

int64_t numel(const Array& a) {
    int64_t n = 1;
    for (int64_t x : a.shape) n *= x;
    return n;
}

// The header's seven integers as a config; `where` names the file in errors.
ModelConfig config_of(const int32_t h[7], bool* shared, const std::string& where) {
    const char* names[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
    for (int i = 0; i < 7; i++) {
        const int64_t v = i == 5 ? std::abs(int64_t(h[i])) : int64_t(h[i]);
        if (v < 1 || v > (1 << 20))
            fail("{}: llama2.c header {} = {} is out of range (a truncated or foreign .bin?)", where, names[i], h[i]);
    }
    ModelConfig c;
    c.arch = Arch::LLAMA;
    c.model_type = "llama";
    c.rope_layout = RopeLayout::Interleaved;  // Meta's layout, as run.c rotates it
    c.n_embd = h[0];
    c.n_ff = h[1];
    c.n_layer = h[2];
    c.n_head = h[3];
    c.n_kv_head = h[4];
    c.n_vocab = std::abs(h[5]);
    c.n_ctx = h[6];
    c.norm_eps = 1e-5f;  // run.c's rmsnorm
    c.rope_theta = 10000.0f;
    c.bos_id = 1;
    c.eos_id = 2;
    if (c.n_embd % c.n_head != 0)
        fail("{}: llama2.c header: dim {} is not divisible by n_heads {}", where, c.n_embd, c.n_head);
    if (c.n_layer > 4096) fail("{}: llama2.c header: n_layers {} is out of range", where, c.n_layer);
    c.finalize(where);
    if (shared) c.tied_embeddings = *shared;
    return c;
}

void need_bytes(uint64_t have, uint64_t want, const std::string& where, const char* what) {
    if (have != want)
        fail("{}: {} bytes, but the llama2.c header{} implies {} (truncated, or sizes that disagree with the file)", where,
             have, what, want);
}

}  // namespace

bool looks_like_llama2c(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    uint8_t b[28];
    if (!f.read(reinterpret_cast<char*>(b), sizeof b)) return false;
    uint32_t m;
    std::memcpy(&m, b, 4);
    if (m == kMagic) return true;
    // Legacy: seven small positive integers (vocab_size may be negative).
    for (int i = 0; i < 7; i++) {
        int64_t v = rd_i32(b + 4 * i);
        if (i == 5) v = std::abs(v);
        if (v < 1 || v > (1 << 20)) return false;
    }
    return true;
}

Checkpoint llama2c_checkpoint(const uint8_t* data, uint64_t size, const std::string& where, ModelConfig* cfg) {
    Checkpoint ck;
    ck.set_path(where);
    if (size < 28) fail("{}: {} bytes: too short for a llama2.c header (28 bytes at least)", where, size);
    uint32_t magic;
    std::memcpy(&magic, data, 4);
    const auto add = [&](const Array& a, const uint8_t* p) {
        StTensor t;
        t.name = a.name;
        t.dtype = StDType::F32;
        t.shape = a.shape;
        t.data = p;
        t.nbytes = uint64_t(numel(a)) * 4;
        return t;
    };
    if (magic != kMagic) {
        int32_t h[7];
        for (int i = 0; i < 7; i++) h[i] = rd_i32(data + 4 * i);
        bool shared = h[5] > 0;
        ModelConfig c = config_of(h, &shared, where);
        std::vector<Array> order;
        order.push_back({"model.embed_tokens.weight", {c.n_vocab, c.n_embd}});
        for (int il = 0; il < c.n_layer; il++) order.push_back({fmt::format("model.layers.{}.input_layernorm.weight", il), {c.n_embd}});
        std::vector<Array> m = matrices(c, false);
        // run.c's order: wq wk wv wo (layers stacked), rms_ffn, w1 w2 w3, rms_final, freq_cis, wcls.
        const size_t per = size_t(c.n_layer);
        order.insert(order.end(), m.begin(), m.begin() + 4 * long(per));
        for (int il = 0; il < c.n_layer; il++)
            order.push_back({fmt::format("model.layers.{}.post_attention_layernorm.weight", il), {c.n_embd}});
        order.insert(order.end(), m.begin() + 4 * long(per), m.end());
        order.push_back({"model.norm.weight", {c.n_embd}});
        order.push_back({"", {int64_t(c.n_ctx) * c.head_dim}});  // freq_cis_real and _imag (unused)
        if (!shared) order.push_back({"lm_head.weight", {c.n_vocab, c.n_embd}});
        uint64_t want = 28;
        for (const Array& a : order) want += uint64_t(numel(a)) * 4;
        need_bytes(size, want, where, "");
        const uint8_t* p = data + 28;
        for (const Array& a : order) {
            if (!a.name.empty()) ck.add(add(a, p), true);
            p += uint64_t(numel(a)) * 4;
        }
        *cfg = c;
        return ck;
    }
    if (size < kVersionedHeader) fail("{}: {} bytes: too short for a llama2.c version header (256 bytes)", where, size);
    const int32_t version = rd_i32(data + 4);
    if (version != 1 && version != 2)
        fail("{}: llama2.c format version {} is not supported (expected 1: fp32, or 2: q8_0)", where, version);
    int32_t h[7];
    for (int i = 0; i < 7; i++) h[i] = rd_i32(data + 8 + 4 * i);
    if (h[5] < 0) fail("{}: llama2.c version {} header has a negative vocab_size {}", where, version, h[5]);
    bool shared = data[36] != 0;
    ModelConfig c = config_of(h, &shared, where);
    std::vector<Array> mats = matrices(c, true);
    if (!shared) mats.push_back({"lm_head.weight", {c.n_vocab, c.n_embd}});
    const std::vector<Array> ns = norms(c);
    if (version == 1) {
        std::vector<Array> order = ns;
        order.insert(order.end(), mats.begin(), mats.end());
        uint64_t want = kVersionedHeader;
        for (const Array& a : order) want += uint64_t(numel(a)) * 4;
        need_bytes(size, want, where, " (version 1)");
        const uint8_t* p = data + kVersionedHeader;
        for (const Array& a : order) {
            ck.add(add(a, p), true);
            p += uint64_t(numel(a)) * 4;
        }
        *cfg = c;
        return ck;
    }
    // Version 2: fp32 norms, then each matrix as int8 values and one fp32 scale per group.
    const int32_t gs = rd_i32(data + 37);
    if (gs < 1 || gs > (1 << 16)) fail("{}: llama2.c q8_0 group size {} is out of range", where, gs);
    uint64_t want = kVersionedHeader;
    for (const Array& a : ns) want += uint64_t(numel(a)) * 4;
    for (const Array& a : mats) {
        if (numel(a) % gs != 0)
            fail("{}: llama2.c q8_0: {} has {} values, not a multiple of the group size {}", where, a.name, numel(a), gs);
        want += uint64_t(numel(a)) + uint64_t(numel(a) / gs) * 4;
    }
    need_bytes(size, want, where, " (version 2, q8_0)");
    const uint8_t* p = data + kVersionedHeader;
    for (const Array& a : ns) {
        ck.add(add(a, p), true);
        p += uint64_t(numel(a)) * 4;
    }
    for (const Array& a : mats) {
        const int64_t n = numel(a);
        const int8_t* q = reinterpret_cast<const int8_t*>(p);
        const uint8_t* s = p + n;
        auto buf = make_aligned<uint8_t>(size_t(n) * 4);
        float* out = reinterpret_cast<float*>(buf.get());
        for (int64_t g = 0; g < n / gs; g++) {
            float scale;
            std::memcpy(&scale, s + g * 4, 4);
            for (int64_t i = g * gs; i < (g + 1) * gs; i++) out[i] = float(q[i]) * scale;
        }
        const uint8_t* owned = ck.adopt(std::move(buf));
        ck.add(add(a, owned), false);
        p += uint64_t(n) + uint64_t(n / gs) * 4;
    }
    *cfg = c;
    return ck;
}

Checkpoint open_llama2c(const std::filesystem::path& path, ModelConfig* cfg) {
    auto f = std::make_unique<MappedFile>(path);
    Checkpoint ck = llama2c_checkpoint(f->data(), f->size(), path.string(), cfg);
    ck.adopt(std::move(f));
    return ck;
}

}  // namespace kvscope
