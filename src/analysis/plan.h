// Planning on paper: for any model config (no weights needed), what its weights and KV cache
// take, what batch x context fits a device's memory, and how fast a memory- or compute-bound
// device could decode and prefill it (the roofline). The KV sizes use kv/kv_layout.h's one
// formula, with n_kv_head and head_dim.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kv/kv_layout.h"
#include "model/config.h"

namespace kvscope::analysis {

struct Device {
    std::string name;
    double bandwidth = 0;  // bytes/s
    double flops = 0;      // dense FLOP/s at the weights' precision (bf16 tensor cores, or this CPU's fp32 FMA)
    double memory = 0;     // bytes
    std::string source;    // "vendor spec sheet" or "kvscope hw, <date>"
};
// H100 (SXM), H200, A100-80GB, L4, RTX 4090, Apple M2 (vendor figures); "this" is this
// machine as `kvscope hw` measured it (hw.json). False for an unknown name.
bool named_device(const std::string& name, Device* out);
const char* device_names();

// "80GiB", "24GB", "512MiB" -> bytes; "3.35TB/s", "100GB/s" -> bytes/s; "989TFLOPS",
// "3.6TFLOP/s" -> FLOP/s. Throws naming `flag` on anything else.
double parse_bytes(const std::string& s, const std::string& flag);
double parse_rate(const std::string& s, const std::string& flag);
double parse_flops(const std::string& s, const std::string& flag);

struct WeightFormat {
    std::string name;         // fp32, bf16, fp16, int8, int4
    double bytes_per_param;   // int8/int4: codes + one fp16 scale per 128 weights
};
const std::vector<WeightFormat>& weight_formats();

struct KvFormat {
    std::string name;  // fp16, fp8, int8 (per token), int4 (groups of 32, asymmetric)
    KvCodec codec;
};
const std::vector<KvFormat>& kv_formats();

struct PlanInput {
    ModelConfig cfg;
    std::string weights = "bf16";  // a weight_formats() name
    std::string kv = "fp16";       // a kv_formats() name
    int tp = 1;                    // devices the heads (and the cache) are split over
    Device device;
    double memory = 0;             // bytes per device for weights + KV (0: device.memory)
    int batch = 1;
    int context = 0;               // 0: the model's context window
    int prompt = 0;                // prefill length (0: context)
};

struct FitRow {
    int context;
    int64_t max_batch;  // sequences of this many tokens whose cache fits after the weights
};

struct PlanResult {
    int64_t params = 0;
    double weight_bytes = 0;              // whole model, in the chosen format
    double weight_bytes_per_device = 0;   // / tp
    int kv_heads_per_device = 0;          // ceil(n_kv_head / tp): a KV head is never split
    double kv_bytes_per_token = 0;        // whole model, in the chosen format
    double kv_bytes_per_token_device = 0;
    double kv_bytes_per_token_mha = 0;    // the same model with n_kv_head = n_head
    std::vector<std::pair<std::string, double>> weight_bytes_by_format;  // whole model
    std::vector<std::pair<std::string, double>> kv_bytes_by_format;      // per token, whole model
    double free_bytes = 0;                // per device after the weights
    std::vector<FitRow> fits;             // max batch at contexts 1K, 4K, 8K, 32K, 128K below the window, and the window
    int64_t max_context_batch1 = 0;       // longest single sequence that fits (capped by the window)
    // Decode at `batch` sequences of `context` tokens: bytes and FLOPs one step reads/does per device.
    double decode_bytes = 0, decode_flops = 0;
    double decode_step_s = 0, decode_tok_s = 0;  // max(bytes / bandwidth, FLOPs / peak); tokens/s of the batch
    bool decode_memory_bound = true;
    double prefill_flops = 0, prefill_s = 0;     // one prompt of `prompt` tokens, per device
    bool fits_at_batch = true;                   // batch x context fits the memory
};

// Parameters, bytes and roofline times; throws on a bad input (format name, tp, sizes).
PlanResult plan(const PlanInput& in);

std::string plan_table(const PlanInput& in, const PlanResult& r);
nlohmann::json plan_json(const PlanInput& in, const PlanResult& r);
// One header and one row (the chosen configuration) for --csv.
std::vector<std::string> plan_csv_header();
std::vector<std::string> plan_csv_row(const PlanInput& in, const PlanResult& r);

}  // namespace kvscope::analysis
