// Model hyper-parameters: read once from a checkpoint's config, validated, and the derived
// values (head_dim, kv_dim, group size) computed here and nowhere else.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace kvscope {

// A model family: one forward pass each (src/arch). GPT2: LayerNorm, learned positions,
// gelu MLP, MHA. LLAMA: RMSNorm, rotary positions, SwiGLU MLP, grouped-query attention
// (Llama, Mistral, Qwen2 and the llama2.c checkpoints).
enum class Arch : uint8_t { GPT2, LLAMA };
const char* arch_name(Arch a);

// How rotary embeddings pair a head's dimensions: llama2.c / Meta checkpoints rotate
// (2i, 2i+1); Hugging Face checkpoints rotate (i, i + head_dim/2) (`rotate_half`).
enum class RopeLayout : uint8_t { Interleaved, Half };

// rope_scaling of config.json: none, "linear" (positions / factor) or "llama3" (frequency
// bands rescaled as Llama 3.1 does).
struct RopeScaling {
    std::string type;  // "" when absent
    float factor = 1.0f;
    float low_freq_factor = 1.0f;
    float high_freq_factor = 4.0f;
    int original_max_position_embeddings = 8192;
};

struct ModelConfig {
    Arch arch = Arch::GPT2;
    std::string model_type = "gpt2";  // config.json's model_type (gpt2, llama, mistral, qwen2, gemma...)
    int n_layer = 0;
    int n_embd = 0;
    int n_head = 0;
    int n_kv_head = 0;   // GPT-2: == n_head; Llama: num_key_value_heads (0 in config: == n_head)
    int head_dim = 0;    // n_embd / n_head unless config.json gives head_dim
    int n_ff = 0;        // GPT-2: n_inner (4 * n_embd when null); Llama: intermediate_size
    int n_vocab = 0;
    int n_ctx = 0;       // n_positions / max_position_embeddings / llama2.c seq_len
    float norm_eps = 1e-5f;
    int bos_id = 50256;
    int eos_id = 50256;
    // Llama family only.
    float rope_theta = 10000.0f;
    RopeScaling rope_scaling;
    RopeLayout rope_layout = RopeLayout::Half;
    bool tied_embeddings = true;  // the LM head is the token embedding
    bool attn_bias = false;       // q/k/v projections have biases (Qwen2)
    bool mlp_bias = false;
    int sliding_window = 0;       // Mistral: attention window (0: none)

    int q_dim() const { return n_head * head_dim; }
    int kv_dim() const { return n_kv_head * head_dim; }
    int group_size() const { return n_head / n_kv_head; }  // query heads per KV head
    // Parameters counted once (a tied head is not counted twice).
    int64_t n_params() const;
    // Validates ranges and computes the derived fields; `where` names the source in errors.
    void finalize(const std::string& where);
};

// A Hugging Face config.json: GPT-2 keys for model_type gpt2; Llama keys (hidden_size,
// num_attention_heads, num_key_value_heads, ...) for llama, mistral, qwen2 and, for sizing
// only (`kvscope plan`), gemma/gemma2/qwen3/phi3-style configs. Throws naming `path`.
ModelConfig config_from_hf_json(const nlohmann::json& j, const std::string& path);
ModelConfig load_config(const std::filesystem::path& config_json);
// The config.json a Hugging Face checkpoint of this shape carries.
nlohmann::json config_to_hf_json(const ModelConfig& c, const std::string& name);
// True when kvscope has a forward pass for this config (plan covers more).
bool runnable(const ModelConfig& c, std::string* why);

// The published models' true shapes: GPT-2 (distilgpt2 ... gpt2-xl, "tiny" for tests) and the
// Llama family (stories15M, stories110M, smollm-135m, smollm-360m, tinyllama-1.1b,
// qwen2-0.5b, llama-3.2-1b; llama-3-8b, llama-3-70b, mistral-7b, too big to run here, for
// info/plan). Returns false for an unknown name.
bool preset_config(const std::string& name, ModelConfig* out);
const char* preset_names();
// Presets whose weights would not fit this kind of machine: info and plan only.
bool preset_is_plan_only(const std::string& name);

}  // namespace kvscope
