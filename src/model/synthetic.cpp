#include "model/synthetic.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/paths.h"
#include "model/safetensors.h"

namespace kvscope {

namespace {

// splitmix64: seeds each block of a tensor independently, so the values do not depend on
// how many threads generate them.
uint64_t splitmix(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

void fill_normal(float* out, int64_t n, float stddev, uint64_t seed) {
    constexpr int64_t kBlock = 1 << 14;
#pragma omp parallel for schedule(static)
    for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
        uint64_t s = seed ^ (uint64_t(b0) * 0xD1B54A32D192ED03ull);
        const int64_t end = std::min(n, b0 + kBlock);
        for (int64_t i = b0; i < end; i += 2) {
            // Box-Muller on two uniforms in (0, 1].
            double u1 = (double(splitmix(s) >> 11) + 1.0) * 0x1.0p-53;
            double u2 = double(splitmix(s) >> 11) * 0x1.0p-53;
            double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
            out[i] = float(r * std::cos(2.0 * M_PI * u2));
            if (i + 1 < end) out[i + 1] = float(r * std::sin(2.0 * M_PI * u2));
        }
    }
}

}  // namespace

std::vector<std::filesystem::path> gpt2_vocab_dirs() {
    std::vector<std::filesystem::path> v;
    if (const char* e = std::getenv("KVSCOPE_GPT2_VOCAB"); e && *e) v.push_back(absolute_path(e));
    v.push_back(data_dir() / "gpt2");
    for (const auto& d : shipped_dirs()) v.push_back(d / "gpt2");
    return v;
}

std::filesystem::path find_gpt2_vocab_dir() {
    std::error_code ec;
    for (const auto& c : gpt2_vocab_dirs())
        if (std::filesystem::exists(c / "encoder.json", ec) && std::filesystem::exists(c / "vocab.bpe", ec)) return c;
    return {};
}

std::vector<TensorSpec> synthetic_tensors(const ModelConfig& cfg) {
    const int64_t d = cfg.n_embd, f = cfg.n_ff;
    const float s0 = 0.02f;
    std::vector<TensorSpec> v;
    if (cfg.arch == Arch::GPT2) {
        const float sp = float(0.02 / std::sqrt(2.0 * cfg.n_layer));
        v.push_back({"transformer.wte.weight", {cfg.n_vocab, d}, 'n', s0});
        v.push_back({"transformer.wpe.weight", {cfg.n_ctx, d}, 'n', s0});
        for (int il = 0; il < cfg.n_layer; il++) {
            std::string p = "transformer.h." + std::to_string(il) + ".";
            v.push_back({p + "ln_1.weight", {d}, '1', 0});
            v.push_back({p + "ln_1.bias", {d}, '0', 0});
            v.push_back({p + "attn.c_attn.weight", {d, 3 * d}, 'n', s0});
            v.push_back({p + "attn.c_attn.bias", {3 * d}, '0', 0});
            v.push_back({p + "attn.c_proj.weight", {d, d}, 'n', sp});
            v.push_back({p + "attn.c_proj.bias", {d}, '0', 0});
            v.push_back({p + "ln_2.weight", {d}, '1', 0});
            v.push_back({p + "ln_2.bias", {d}, '0', 0});
            v.push_back({p + "mlp.c_fc.weight", {d, f}, 'n', s0});
            v.push_back({p + "mlp.c_fc.bias", {f}, '0', 0});
            v.push_back({p + "mlp.c_proj.weight", {f, d}, 'n', sp});
            v.push_back({p + "mlp.c_proj.bias", {d}, '0', 0});
        }
        v.push_back({"transformer.ln_f.weight", {d}, '1', 0});
        v.push_back({"transformer.ln_f.bias", {d}, '0', 0});
        return v;
    }
    const int64_t q = cfg.q_dim(), kv = cfg.kv_dim();
    v.push_back({"model.embed_tokens.weight", {cfg.n_vocab, d}, 'n', s0});
    for (int il = 0; il < cfg.n_layer; il++) {
        std::string p = "model.layers." + std::to_string(il) + ".";
        v.push_back({p + "input_layernorm.weight", {d}, '1', 0});
        v.push_back({p + "self_attn.q_proj.weight", {q, d}, 'n', s0});
        v.push_back({p + "self_attn.k_proj.weight", {kv, d}, 'n', s0});
        v.push_back({p + "self_attn.v_proj.weight", {kv, d}, 'n', s0});
        if (cfg.attn_bias) {
            v.push_back({p + "self_attn.q_proj.bias", {q}, '0', 0});
            v.push_back({p + "self_attn.k_proj.bias", {kv}, '0', 0});
            v.push_back({p + "self_attn.v_proj.bias", {kv}, '0', 0});
        }
        v.push_back({p + "self_attn.o_proj.weight", {d, q}, 'n', s0});
        v.push_back({p + "post_attention_layernorm.weight", {d}, '1', 0});
        v.push_back({p + "mlp.gate_proj.weight", {f, d}, 'n', s0});
        v.push_back({p + "mlp.up_proj.weight", {f, d}, 'n', s0});
        v.push_back({p + "mlp.down_proj.weight", {d, f}, 'n', s0});
        if (cfg.mlp_bias) {
            v.push_back({p + "mlp.gate_proj.bias", {f}, '0', 0});
            v.push_back({p + "mlp.up_proj.bias", {f}, '0', 0});
            v.push_back({p + "mlp.down_proj.bias", {d}, '0', 0});
        }
    }
    v.push_back({"model.norm.weight", {d}, '1', 0});
    if (!cfg.tied_embeddings) v.push_back({"lm_head.weight", {cfg.n_vocab, d}, 'n', s0});
    return v;
}

void make_synthetic_model(const ModelConfig& cfg, const std::string& name, uint64_t seed,
                          const std::filesystem::path& out) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::exists(out / "model.safetensors", ec))
        fail("--out {}: already holds a model (remove it first or choose another directory)", out.string());
    fs::path tmp = out;
    tmp += ".tmp." + std::to_string(::getpid());
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) fail("--out {}: cannot create directory ({})", tmp.string(), ec.message());
    try {
        // Checkpoints past ~0.5 B parameters are written in bf16, as they are published: half
        // the disk, and loading converts to the compute dtype anyway.
        const bool bf16 = cfg.n_params() > 500'000'000;
        std::vector<std::unique_ptr<uint16_t[]>> bufs16;
        std::vector<std::unique_ptr<float[]>> bufs;
        std::vector<StWriteTensor> tensors;
        for (const TensorSpec& s : synthetic_tensors(cfg)) {
            int64_t n = 1;
            for (int64_t x : s.shape) n *= x;
            std::unique_ptr<float[]> b(new float[size_t(n)]);
            if (s.init == 'n') fill_normal(b.get(), n, s.std, seed * 0x9E3779B97F4A7C15ull ^ hash_name(s.name));
            else std::fill(b.get(), b.get() + n, s.init == '1' ? 1.0f : 0.0f);
            if (bf16) {
                std::unique_ptr<uint16_t[]> h(new uint16_t[size_t(n)]);
                for (int64_t i = 0; i < n; i++) h[size_t(i)] = f32_to_bf16(b[size_t(i)]);
                tensors.push_back({s.name, StDType::BF16, s.shape, h.get()});
                bufs16.push_back(std::move(h));
            } else {
                tensors.push_back({s.name, StDType::F32, s.shape, b.get()});
                bufs.push_back(std::move(b));
            }
        }
        write_safetensors(tmp / "model.safetensors", tensors,
                          {{"format", "pt"}, {kSyntheticKey, std::to_string(seed)}, {"kvscope_preset", name}});
        bufs.clear();
        bufs16.clear();
        nlohmann::json cj = config_to_hf_json(cfg, name);
        if (bf16) cj["torch_dtype"] = "bfloat16";
        cj["kvscope_synthetic"] = {{"seed", seed},
                                   {"note", fmt::format("random weights initialized like a fresh Hugging Face {}; not "
                                                        "the pretrained model", cfg.arch == Arch::GPT2 ? "GPT-2" : "Llama")}};
        write_file_atomic(tmp / "config.json", cj.dump(2) + "\n");
        if (cfg.arch == Arch::GPT2 && cfg.n_vocab == kGpt2Vocab) {
            fs::path vocab = find_gpt2_vocab_dir();
            if (vocab.empty()) {
                std::string looked;
                for (const auto& d : gpt2_vocab_dirs()) looked += (looked.empty() ? "" : ", ") + d.string();
                std::fprintf(stderr,
                             "kvscope: note: GPT-2's vocabulary is not installed (looked in %s); %s is written "
                             "without vocab.json/merges.txt, so it runs on --prompt-ids only. Install it with "
                             "scripts/setup.sh or `kvscope data --add-gpt2-vocab DIR`.\n",
                             looked.c_str(), out.string().c_str());
            } else {
                fs::copy_file(vocab / "encoder.json", tmp / "vocab.json", ec);
                if (!ec) fs::copy_file(vocab / "vocab.bpe", tmp / "merges.txt", ec);
                if (ec) fail("--out {}: cannot copy the GPT-2 vocabulary ({})", out.string(), ec.message());
            }
        }
        fs::create_directories(out.parent_path().empty() ? fs::path(".") : out.parent_path(), ec);
        fs::remove(out, ec);  // an empty directory of that name may exist
        fs::rename(tmp, out, ec);
        if (ec) fail("--out {}: cannot move the new model into place ({})", out.string(), ec.message());
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
}

}  // namespace kvscope
