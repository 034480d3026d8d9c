// libFuzzer target: config_from_hf_json on arbitrary bytes. The bytes go through
// nlohmann::json::parse first (its errors are the caller's business, as in load_config); any
// JSON value must then give a valid ModelConfig or throw kvscope::Error. An accepted config must
// satisfy the invariants the engine relies on and survive config_to_hf_json unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_config: %s\n", what);
    std::abort();
}

void check(const kvscope::ModelConfig& c) {
    if (c.n_layer < 1 || c.n_embd < 1 || c.n_head < 1 || c.n_vocab < 1 || c.n_ctx < 1 || c.n_ff < 1)
        bug("accepted a non-positive size");
    if (c.n_kv_head < 1 || c.n_head % c.n_kv_head != 0) bug("n_head not a multiple of n_kv_head");
    if (c.head_dim < 1) bug("head_dim < 1");
    if (c.arch == kvscope::Arch::GPT2) {
        if (c.n_head * c.head_dim != c.n_embd) bug("head_dim * n_head != n_embd");
        if (c.n_kv_head != c.n_head || c.kv_dim() != c.n_embd) bug("kv_dim != n_embd for GPT-2");
    } else if (c.head_dim % 2 != 0) {
        bug("odd head_dim accepted for rotary embeddings");
    }
    if (!(c.norm_eps > 0.0f && c.norm_eps < 1.0f)) bug("layer_norm_epsilon outside (0, 1)");
    if (c.n_params() <= 0) bug("n_params() overflowed");

    // Round trip through the config.json we write for a checkpoint of this shape.
    const nlohmann::json j = kvscope::config_to_hf_json(c, "fuzz");
    const kvscope::ModelConfig r =
        kvscope::config_from_hf_json(nlohmann::json::parse(j.dump()), "fuzz round trip");
    if (r.n_layer != c.n_layer || r.n_embd != c.n_embd || r.n_head != c.n_head ||
        r.n_kv_head != c.n_kv_head || r.head_dim != c.head_dim || r.n_ff != c.n_ff ||
        r.n_vocab != c.n_vocab || r.n_ctx != c.n_ctx || r.norm_eps != c.norm_eps ||
        r.bos_id != c.bos_id || r.eos_id != c.eos_id || r.model_type != c.model_type || r.arch != c.arch ||
        r.rope_theta != c.rope_theta || r.tied_embeddings != c.tied_embeddings || r.attn_bias != c.attn_bias ||
        r.rope_scaling.type != c.rope_scaling.type || r.rope_scaling.factor != c.rope_scaling.factor)
        bug("config_to_hf_json -> config_from_hf_json changed the config");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(data, data + size);
    } catch (const nlohmann::json::exception&) {
        return 0;  // not JSON: load_config reports that itself
    }
    try {
        check(kvscope::config_from_hf_json(j, "fuzz/config.json"));
    } catch (const kvscope::Error&) {
        // Rejected with the project's error type: expected for bad input.
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_config: unexpected exception %s: %s\n", typeid(e).name(), e.what());
        std::abort();
    }
    return 0;
}
