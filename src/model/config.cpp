#include "model/config.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace kvscope {

const char* arch_name(Arch a) { return a == Arch::GPT2 ? "gpt2" : "llama"; }

int64_t ModelConfig::n_params() const {
    const int64_t d = n_embd, f = n_ff, q = q_dim(), kv = kv_dim();
    if (arch == Arch::GPT2) {
        int64_t per_layer = 2 * d                      // ln_1
                            + d * 3 * d + 3 * d        // c_attn
                            + d * d + d                // attn c_proj
                            + 2 * d                    // ln_2
                            + d * f + f                // c_fc
                            + f * d + d;               // mlp c_proj
        return int64_t(n_vocab) * d + int64_t(n_ctx) * d + n_layer * per_layer + 2 * d;
    }
    int64_t per_layer = d                                   // input_layernorm
                        + d * (q + 2 * kv) + q * d          // q, k, v, o projections
                        + (attn_bias ? q + 2 * kv : 0)      // q, k, v biases (Qwen2)
                        + d                                 // post_attention_layernorm
                        + 3 * d * f + (mlp_bias ? 2 * f + d : 0);  // gate, up, down
    return int64_t(n_vocab) * d * (tied_embeddings ? 1 : 2) + n_layer * per_layer + d;
}

void ModelConfig::finalize(const std::string& where) {
    auto need = [&](int v, const char* key, int lo, int hi) {
        if (v < lo || v > hi) fail("{}: {} = {} is out of range (expected {}..{})", where, key, v, lo, hi);
    };
    const bool gpt2 = arch == Arch::GPT2;
    need(n_layer, gpt2 ? "n_layer" : "num_hidden_layers", 1, 1024);
    need(n_embd, gpt2 ? "n_embd" : "hidden_size", 1, 1 << 16);
    need(n_head, gpt2 ? "n_head" : "num_attention_heads", 1, 1024);
    need(n_vocab, "vocab_size", 1, 1 << 22);
    need(n_ctx, gpt2 ? "n_positions" : "max_position_embeddings", 1, 1 << 24);
    if (n_kv_head == 0) n_kv_head = n_head;
    need(n_kv_head, "num_key_value_heads", 1, 1024);
    if (n_head % n_kv_head != 0)
        fail("{}: n_head {} is not divisible by n_kv_head {} (each KV head serves a whole group of query heads)",
             where, n_head, n_kv_head);
    if (head_dim == 0) {
        if (n_embd % n_head != 0) fail("{}: n_embd {} is not divisible by n_head {}", where, n_embd, n_head);
        head_dim = n_embd / n_head;
    }
    need(head_dim, "head_dim", 1, 1 << 12);
    if (gpt2) {
        if (n_kv_head != n_head) fail("{}: GPT-2 has one KV head per query head (n_kv_head {} != n_head {})", where, n_kv_head, n_head);
        if (head_dim * n_head != n_embd) fail("{}: head_dim {} x n_head {} != n_embd {}", where, head_dim, n_head, n_embd);
        if (n_ff == 0) n_ff = 4 * n_embd;
    } else if (head_dim % 2 != 0) {
        fail("{}: head_dim {} is odd (rotary embeddings rotate pairs of dimensions)", where, head_dim);
    }
    need(n_ff, gpt2 ? "n_inner" : "intermediate_size", 1, 1 << 20);
    if (!(norm_eps > 0.0f && norm_eps < 1.0f))
        fail("{}: {} {} is not in (0, 1)", where, gpt2 ? "layer_norm_epsilon" : "rms_norm_eps", norm_eps);
    if (!gpt2) {
        if (!(rope_theta > 1.0f && rope_theta < 1e9f)) fail("{}: rope_theta {} is out of range (expected > 1)", where, rope_theta);
        const RopeScaling& r = rope_scaling;
        if (!r.type.empty()) {
            if (!(r.factor >= 1.0f && r.factor < 1e4f)) fail("{}: rope_scaling.factor {} is out of range (expected >= 1)", where, r.factor);
            if (r.type == "llama3" && !(r.high_freq_factor > r.low_freq_factor && r.low_freq_factor > 0 &&
                                        r.original_max_position_embeddings > 0))
                fail("{}: rope_scaling (llama3) needs high_freq_factor > low_freq_factor > 0 and "
                     "original_max_position_embeddings > 0", where);
        }
    }
}

namespace {

int get_int(const nlohmann::json& j, const char* key, const std::string& path, bool required, int dflt) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) fail("{}: missing key \"{}\" (expected a Hugging Face config.json)", path, key);
        return dflt;
    }
    if (!it->is_number_integer()) fail("{}: key \"{}\" must be an integer", path, key);
    int64_t v = it->get<int64_t>();
    if (v < 0 || v > (int64_t(1) << 30)) fail("{}: key \"{}\" = {} is out of range", path, key, v);
    return int(v);
}

float get_float(const nlohmann::json& j, const char* key, const std::string& path, float dflt) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (!it->is_number()) fail("{}: key \"{}\" must be a number", path, key);
    double v = it->get<double>();
    if (!(v > -1e30 && v < 1e30)) fail("{}: key \"{}\" = {} is out of range", path, key, v);
    return float(v);
}

bool get_bool(const nlohmann::json& j, const char* key, const std::string& path, bool dflt) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) fail("{}: key \"{}\" must be true or false", path, key);
    return it->get<bool>();
}

std::string get_str(const nlohmann::json& j, const char* key, const std::string& path, const char* dflt) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (!it->is_string()) fail("{}: key \"{}\" must be a string", path, key);
    return it->get<std::string>();
}

// bos/eos ids: an integer, a list of integers (the first one counts), null (none: -1), or
// absent (the family's default).
int get_token_id(const nlohmann::json& j, const char* key, const std::string& path, int dflt) {
    auto it = j.find(key);
    if (it == j.end()) return dflt;
    if (it->is_null() || (it->is_array() && it->empty())) return -1;
    const nlohmann::json& v = it->is_array() && !it->empty() ? it->front() : *it;
    if (!v.is_number_integer()) fail("{}: key \"{}\" must be a token id or a list of them", path, key);
    const int64_t x = v.get<int64_t>();
    return x < 0 || x > (int64_t(1) << 30) ? -1 : int(x);
}

ModelConfig gpt2_from_json(const nlohmann::json& j, const std::string& path) {
    ModelConfig c;
    c.arch = Arch::GPT2;
    c.model_type = "gpt2";
    c.n_layer = get_int(j, "n_layer", path, true, 0);
    c.n_embd = get_int(j, "n_embd", path, true, 0);
    c.n_head = get_int(j, "n_head", path, true, 0);
    c.n_vocab = get_int(j, "vocab_size", path, true, 0);
    c.n_ctx = get_int(j, "n_positions", path, true, 0);
    c.n_ff = get_int(j, "n_inner", path, false, 0);
    c.bos_id = get_int(j, "bos_token_id", path, false, 50256);
    c.eos_id = get_int(j, "eos_token_id", path, false, 50256);
    c.norm_eps = get_float(j, "layer_norm_epsilon", path, 1e-5f);
    std::string act = get_str(j, "activation_function", path, "gelu_new");
    if (act != "gelu_new" && act != "gelu_pytorch_tanh")
        fail("{}: activation_function \"{}\" is not supported (expected \"gelu_new\")", path, act);
    return c;
}

// Llama-style keys, shared by llama, mistral, qwen2 and the plan-only families.
ModelConfig llama_from_json(const nlohmann::json& j, const std::string& path, const std::string& type) {
    ModelConfig c;
    c.arch = Arch::LLAMA;
    c.model_type = type;
    c.rope_layout = RopeLayout::Half;  // Hugging Face checkpoints store q/k for rotate_half
    c.n_layer = get_int(j, "num_hidden_layers", path, true, 0);
    c.n_embd = get_int(j, "hidden_size", path, true, 0);
    c.n_head = get_int(j, "num_attention_heads", path, true, 0);
    c.n_kv_head = get_int(j, "num_key_value_heads", path, false, 0);
    c.head_dim = get_int(j, "head_dim", path, false, 0);
    c.n_ff = get_int(j, "intermediate_size", path, true, 0);
    c.n_vocab = get_int(j, "vocab_size", path, true, 0);
    c.n_ctx = get_int(j, "max_position_embeddings", path, true, 0);
    c.norm_eps = get_float(j, "rms_norm_eps", path, 1e-6f);
    c.rope_theta = get_float(j, "rope_theta", path, 10000.0f);
    c.bos_id = get_token_id(j, "bos_token_id", path, 1);
    c.eos_id = get_token_id(j, "eos_token_id", path, 2);
    c.tied_embeddings = get_bool(j, "tie_word_embeddings", path, type == "gemma" || type == "gemma2");
    c.attn_bias = type == "qwen2" || get_bool(j, "attention_bias", path, false);
    c.mlp_bias = get_bool(j, "mlp_bias", path, false);
    if (type == "mistral" || (type == "qwen2" && get_bool(j, "use_sliding_window", path, false)))
        c.sliding_window = get_int(j, "sliding_window", path, false, 0);
    if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
        if (!it->is_object()) fail("{}: key \"rope_scaling\" must be an object or null", path);
        RopeScaling& r = c.rope_scaling;
        r.type = get_str(*it, "rope_type", path, "");
        if (r.type.empty()) r.type = get_str(*it, "type", path, "");
        if (r.type == "default") r.type.clear();
        r.factor = get_float(*it, "factor", path, 1.0f);
        r.low_freq_factor = get_float(*it, "low_freq_factor", path, 1.0f);
        r.high_freq_factor = get_float(*it, "high_freq_factor", path, 4.0f);
        r.original_max_position_embeddings = get_int(*it, "original_max_position_embeddings", path, false, 8192);
    }
    std::string act = get_str(j, "hidden_act", path, "silu");
    if (act != "silu" && type != "gemma" && type != "gemma2" && type != "gemma3_text")
        fail("{}: hidden_act \"{}\" is not supported (expected \"silu\")", path, act);
    return c;
}

bool is_llama_style(const std::string& t) {
    for (const char* k : {"llama", "mistral", "qwen2", "gemma", "gemma2", "gemma3_text", "qwen3", "phi3", "granite", "olmo2"})
        if (t == k) return true;
    return false;
}

}  // namespace

bool runnable(const ModelConfig& c, std::string* why) {
    if (c.arch == Arch::GPT2 || c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2") {
        if (!c.rope_scaling.type.empty() && c.rope_scaling.type != "linear" && c.rope_scaling.type != "llama3") {
            if (why) *why = "rope_scaling type \"" + c.rope_scaling.type + "\" is not implemented (linear and llama3 are)";
            return false;
        }
        return true;
    }
    if (why)
        *why = "model_type \"" + c.model_type + "\" has no forward pass in kvscope (gpt2, llama, mistral and qwen2 run; "
               "the others size only, in kvscope plan)";
    return false;
}

ModelConfig config_from_hf_json(const nlohmann::json& j, const std::string& path) {
    if (!j.is_object()) fail("{}: expected a JSON object", path);
    std::string type = get_str(j, "model_type", path, "gpt2");
    ModelConfig c;
    if (type == "gpt2") c = gpt2_from_json(j, path);
    else if (is_llama_style(type)) c = llama_from_json(j, path, type);
    else fail("{}: model_type \"{}\" is not supported (expected gpt2, llama, mistral, qwen2 or a Llama-style config)", path, type);
    c.finalize(path);
    return c;
}

ModelConfig load_config(const std::filesystem::path& p) {
    std::ifstream f(p);
    if (!f) fail("{}: cannot open config (expected a Hugging Face config.json)", p.string());
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(f);
    } catch (const nlohmann::json::exception& e) {
        fail("{}: malformed JSON ({})", p.string(), e.what());
    }
    return config_from_hf_json(j, p.string());
}

nlohmann::json config_to_hf_json(const ModelConfig& c, const std::string& name) {
    nlohmann::json j;
    j["_name_or_path"] = name;
    if (c.arch == Arch::GPT2) {
        j["architectures"] = {"GPT2LMHeadModel"};
        j["model_type"] = "gpt2";
        j["activation_function"] = "gelu_new";
        j["n_layer"] = c.n_layer;
        j["n_embd"] = c.n_embd;
        j["n_head"] = c.n_head;
        j["n_positions"] = c.n_ctx;
        j["n_ctx"] = c.n_ctx;
        j["n_inner"] = nullptr;
        if (c.n_ff != 4 * c.n_embd) j["n_inner"] = c.n_ff;
        j["vocab_size"] = c.n_vocab;
        j["layer_norm_epsilon"] = c.norm_eps;
        j["initializer_range"] = 0.02;
        j["bos_token_id"] = c.bos_id;
        j["eos_token_id"] = c.eos_id;
        j["torch_dtype"] = "float32";
        return j;
    }
    const std::string& t = c.model_type;
    j["architectures"] = {t == "mistral" ? "MistralForCausalLM" : t == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"};
    j["model_type"] = t;
    j["hidden_act"] = "silu";
    j["hidden_size"] = c.n_embd;
    j["intermediate_size"] = c.n_ff;
    j["num_hidden_layers"] = c.n_layer;
    j["num_attention_heads"] = c.n_head;
    j["num_key_value_heads"] = c.n_kv_head;
    if (c.head_dim * c.n_head != c.n_embd) j["head_dim"] = c.head_dim;
    j["vocab_size"] = c.n_vocab;
    j["max_position_embeddings"] = c.n_ctx;
    j["rms_norm_eps"] = c.norm_eps;
    j["rope_theta"] = c.rope_theta;
    j["tie_word_embeddings"] = c.tied_embeddings;
    if (t == "llama") {
        j["attention_bias"] = c.attn_bias;
        j["mlp_bias"] = c.mlp_bias;
    }
    if (t == "mistral") j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json();
    if (t == "qwen2") {
        j["use_sliding_window"] = c.sliding_window > 0;
        if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
    }
    if (c.rope_scaling.type.empty()) {
        j["rope_scaling"] = nullptr;
    } else {
        const RopeScaling& r = c.rope_scaling;
        j["rope_scaling"] = {{"rope_type", r.type}, {"factor", r.factor}};
        if (r.type == "llama3") {
            j["rope_scaling"]["low_freq_factor"] = r.low_freq_factor;
            j["rope_scaling"]["high_freq_factor"] = r.high_freq_factor;
            j["rope_scaling"]["original_max_position_embeddings"] = r.original_max_position_embeddings;
        }
    }
    j["bos_token_id"] = c.bos_id >= 0 ? nlohmann::json(c.bos_id) : nlohmann::json();
    j["eos_token_id"] = c.eos_id >= 0 ? nlohmann::json(c.eos_id) : nlohmann::json();
    j["torch_dtype"] = "float32";
    return j;
}

namespace {

struct Preset {
    const char* name;
    const char* type;  // "gpt2" or a Llama-family model_type
    int n_layer, n_embd, n_head, n_kv_head, n_ff, n_vocab, n_ctx;
    float rope_theta, norm_eps;
    bool tied, attn_bias, plan_only;
    int bos, eos;
    RopeLayout layout;
};

// config.json values of the published checkpoints (llama2.c's stories models: their .bin
// headers; their RoPE pairs are interleaved).
constexpr Preset kPresets[] = {
    {"distilgpt2", "gpt2", 6, 768, 12, 12, 0, 50257, 1024, 0, 1e-5f, true, false, false, 50256, 50256, RopeLayout::Half},
    {"gpt2", "gpt2", 12, 768, 12, 12, 0, 50257, 1024, 0, 1e-5f, true, false, false, 50256, 50256, RopeLayout::Half},
    {"gpt2-medium", "gpt2", 24, 1024, 16, 16, 0, 50257, 1024, 0, 1e-5f, true, false, false, 50256, 50256, RopeLayout::Half},
    {"gpt2-large", "gpt2", 36, 1280, 20, 20, 0, 50257, 1024, 0, 1e-5f, true, false, false, 50256, 50256, RopeLayout::Half},
    {"gpt2-xl", "gpt2", 48, 1600, 25, 25, 0, 50257, 1024, 0, 1e-5f, true, false, false, 50256, 50256, RopeLayout::Half},
    {"tiny", "gpt2", 2, 64, 4, 4, 0, 50257, 128, 0, 1e-5f, true, false, false, 50256, 50256, RopeLayout::Half},
    {"stories15M", "llama", 6, 288, 6, 6, 768, 32000, 256, 10000, 1e-5f, true, false, false, 1, 2, RopeLayout::Interleaved},
    {"stories110M", "llama", 12, 768, 12, 12, 2048, 32000, 1024, 10000, 1e-5f, true, false, false, 1, 2, RopeLayout::Interleaved},
    {"smollm-135m", "llama", 30, 576, 9, 3, 1536, 49152, 2048, 10000, 1e-5f, true, false, false, 0, 0, RopeLayout::Half},
    {"smollm-360m", "llama", 32, 960, 15, 5, 2560, 49152, 2048, 10000, 1e-5f, true, false, false, 0, 0, RopeLayout::Half},
    {"tinyllama-1.1b", "llama", 22, 2048, 32, 4, 5632, 32000, 2048, 10000, 1e-5f, false, false, false, 1, 2, RopeLayout::Half},
    {"qwen2-0.5b", "qwen2", 24, 896, 14, 2, 4864, 151936, 131072, 1000000, 1e-6f, true, true, false, 151643, 151643, RopeLayout::Half},
    {"llama-3.2-1b", "llama", 16, 2048, 32, 8, 8192, 128256, 131072, 500000, 1e-5f, true, false, false, 128000, 128001, RopeLayout::Half},
    {"llama-3-8b", "llama", 32, 4096, 32, 8, 14336, 128256, 8192, 500000, 1e-5f, false, false, true, 128000, 128001, RopeLayout::Half},
    {"llama-3-70b", "llama", 80, 8192, 64, 8, 28672, 128256, 8192, 500000, 1e-5f, false, false, true, 128000, 128001, RopeLayout::Half},
    {"mistral-7b", "mistral", 32, 4096, 32, 8, 14336, 32000, 32768, 10000, 1e-5f, false, false, true, 1, 2, RopeLayout::Half},
};

}  // namespace

bool preset_config(const std::string& name, ModelConfig* out) {
    for (const Preset& p : kPresets) {
        if (name != p.name) continue;
        ModelConfig c;
        c.arch = std::string(p.type) == "gpt2" ? Arch::GPT2 : Arch::LLAMA;
        c.model_type = p.type;
        c.n_layer = p.n_layer;
        c.n_embd = p.n_embd;
        c.n_head = p.n_head;
        c.n_kv_head = p.n_kv_head;
        c.n_ff = p.n_ff;
        c.n_vocab = p.n_vocab;
        c.n_ctx = p.n_ctx;
        c.norm_eps = p.norm_eps;
        c.bos_id = p.bos;
        c.eos_id = p.eos;
        if (c.arch == Arch::LLAMA) {
            c.rope_theta = p.rope_theta;
            c.tied_embeddings = p.tied;
            c.attn_bias = p.attn_bias;
            c.rope_layout = p.layout;
            if (name == "llama-3.2-1b") c.rope_scaling = {"llama3", 32.0f, 1.0f, 4.0f, 8192};
            if (name == "mistral-7b") c.sliding_window = 4096;
        }
        c.finalize(std::string("preset ") + p.name);
        *out = c;
        return true;
    }
    return false;
}

bool preset_is_plan_only(const std::string& name) {
    for (const Preset& p : kPresets)
        if (name == p.name) return p.plan_only;
    return false;
}

const char* preset_names() {
    return "distilgpt2, gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny, stories15M, stories110M, smollm-135m, "
           "smollm-360m, tinyllama-1.1b, qwen2-0.5b, llama-3.2-1b; for info/plan only: llama-3-8b, llama-3-70b, "
           "mistral-7b";
}

}  // namespace kvscope
