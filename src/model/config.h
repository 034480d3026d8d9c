// Model hyper-parameters: read once from a checkpoint's config, validated, and the derived
// values (head_dim, kv_dim) computed here and nowhere else.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace kvscope {

enum class Arch : uint8_t { GPT2 };

struct ModelConfig {
    Arch arch = Arch::GPT2;
    std::string model_type = "gpt2";
    int n_layer = 0;
    int n_embd = 0;
    int n_head = 0;
    int n_kv_head = 0;   // GPT-2: == n_head
    int head_dim = 0;    // n_embd / n_head
    int n_ff = 0;        // n_inner, 4 * n_embd when null
    int n_vocab = 0;
    int n_ctx = 0;       // n_positions
    float norm_eps = 1e-5f;
    int bos_id = 50256;
    int eos_id = 50256;

    int kv_dim() const { return n_kv_head * head_dim; }
    // Parameters counted once (the tied head is not counted twice).
    int64_t n_params() const;
    // Validates ranges and computes the derived fields; `where` names the source in errors.
    void finalize(const std::string& where);
};

// GPT-2 config.json (Hugging Face keys). Throws kvscope::Error naming `path` on bad input.
ModelConfig config_from_hf_json(const nlohmann::json& j, const std::string& path);
ModelConfig load_config(const std::filesystem::path& config_json);
// The config.json a Hugging Face GPT-2 checkpoint of this shape carries.
nlohmann::json config_to_hf_json(const ModelConfig& c, const std::string& name);

// True values of the published models: distilgpt2, gpt2, gpt2-medium, gpt2-large, gpt2-xl,
// and "tiny" (a 2-layer toy used by tests). Returns false for an unknown name.
bool preset_config(const std::string& name, ModelConfig* out);
const char* preset_names();

}  // namespace kvscope
