#include "model/config.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace kvscope {

int64_t ModelConfig::n_params() const {
    int64_t d = n_embd, f = n_ff;
    int64_t per_layer = 2 * d                      // ln_1
                        + d * 3 * d + 3 * d        // c_attn
                        + d * d + d                // attn c_proj
                        + 2 * d                    // ln_2
                        + d * f + f                // c_fc
                        + f * d + d;               // mlp c_proj
    return int64_t(n_vocab) * d + int64_t(n_ctx) * d + n_layer * per_layer + 2 * d;
}

void ModelConfig::finalize(const std::string& where) {
    auto need = [&](int v, const char* key, int lo, int hi) {
        if (v < lo || v > hi) fail("{}: {} = {} is out of range (expected {}..{})", where, key, v, lo, hi);
    };
    need(n_layer, "n_layer", 1, 1024);
    need(n_embd, "n_embd", 1, 1 << 16);
    need(n_head, "n_head", 1, 1024);
    need(n_vocab, "vocab_size", 1, 1 << 22);
    need(n_ctx, "n_positions", 1, 1 << 20);
    if (n_embd % n_head != 0) fail("{}: n_embd {} is not divisible by n_head {}", where, n_embd, n_head);
    if (n_kv_head == 0) n_kv_head = n_head;
    if (n_ff == 0) n_ff = 4 * n_embd;
    need(n_ff, "n_inner", 1, 1 << 20);
    head_dim = n_embd / n_head;
    if (!(norm_eps > 0.0f && norm_eps < 1.0f)) fail("{}: layer_norm_epsilon {} is not in (0, 1)", where, norm_eps);
}

static int get_int(const nlohmann::json& j, const char* key, const std::string& path, bool required, int dflt) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) fail("{}: missing key \"{}\" (expected a GPT-2 config.json)", path, key);
        return dflt;
    }
    if (!it->is_number_integer()) fail("{}: key \"{}\" must be an integer", path, key);
    int64_t v = it->get<int64_t>();
    if (v < 0 || v > (int64_t(1) << 30)) fail("{}: key \"{}\" = {} is out of range", path, key, v);
    return int(v);
}

static std::string get_str(const nlohmann::json& j, const char* key, const std::string& path, const char* dflt) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (!it->is_string()) fail("{}: key \"{}\" must be a string", path, key);
    return it->get<std::string>();
}

ModelConfig config_from_hf_json(const nlohmann::json& j, const std::string& path) {
    if (!j.is_object()) fail("{}: expected a JSON object", path);
    ModelConfig c;
    std::string type = get_str(j, "model_type", path, "gpt2");
    if (type != "gpt2") fail("{}: model_type \"{}\" is not supported (expected \"gpt2\")", path, type);
    c.model_type = type;
    c.n_layer = get_int(j, "n_layer", path, true, 0);
    c.n_embd = get_int(j, "n_embd", path, true, 0);
    c.n_head = get_int(j, "n_head", path, true, 0);
    c.n_vocab = get_int(j, "vocab_size", path, true, 0);
    c.n_ctx = get_int(j, "n_positions", path, true, 0);
    c.n_ff = get_int(j, "n_inner", path, false, 0);
    c.bos_id = get_int(j, "bos_token_id", path, false, 50256);
    c.eos_id = get_int(j, "eos_token_id", path, false, 50256);
    if (auto it = j.find("layer_norm_epsilon"); it != j.end() && !it->is_null()) {
        if (!it->is_number()) fail("{}: key \"layer_norm_epsilon\" must be a number", path);
        c.norm_eps = it->get<float>();
    }
    std::string act = get_str(j, "activation_function", path, "gelu_new");
    if (act != "gelu_new" && act != "gelu_pytorch_tanh")
        fail("{}: activation_function \"{}\" is not supported (expected \"gelu_new\")", path, act);
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

bool preset_config(const std::string& name, ModelConfig* out) {
    struct P { const char* name; int n_layer, n_embd, n_head, n_vocab, n_ctx; };
    static const P presets[] = {
        {"distilgpt2", 6, 768, 12, 50257, 1024},   {"gpt2", 12, 768, 12, 50257, 1024},
        {"gpt2-medium", 24, 1024, 16, 50257, 1024}, {"gpt2-large", 36, 1280, 20, 50257, 1024},
        {"gpt2-xl", 48, 1600, 25, 50257, 1024},    {"tiny", 2, 64, 4, 50257, 128},
    };
    for (const P& p : presets) {
        if (name == p.name) {
            ModelConfig c;
            c.n_layer = p.n_layer;
            c.n_embd = p.n_embd;
            c.n_head = p.n_head;
            c.n_vocab = p.n_vocab;
            c.n_ctx = p.n_ctx;
            c.finalize(std::string("preset ") + p.name);
            *out = c;
            return true;
        }
    }
    return false;
}

const char* preset_names() { return "distilgpt2, gpt2, gpt2-medium, gpt2-large, gpt2-xl, tiny"; }

}  // namespace kvscope
