#include "analysis/plan.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "analysis/hw.h"
#include "core/error.h"

namespace kvscope::analysis {

namespace {

constexpr double GiB = 1024.0 * 1024.0 * 1024.0;

// "3.35TB/s" -> (3.35, "tb/s"); the unit lower-cased, spaces dropped.
std::pair<double, std::string> split_unit(const std::string& s, const std::string& flag, const char* expect) {
    std::string t;
    for (char c : s)
        if (!std::isspace(static_cast<unsigned char>(c))) t += char(std::tolower(static_cast<unsigned char>(c)));
    size_t i = 0;
    while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.' || t[i] == 'e' ||
                            ((t[i] == '-' || t[i] == '+') && i > 0 && t[i - 1] == 'e')))
        i++;
    // An 'e' that starts the unit ("eb/s") is not an exponent.
    while (i > 0 && t[i - 1] == 'e') i--;
    double v = 0;
    try {
        size_t used = 0;
        v = std::stod(t.substr(0, i), &used);
        if (used != i) throw std::invalid_argument("");
    } catch (const std::exception&) {
        fail("{} {}: expected a number with a unit, like {}", flag, s, expect);
    }
    if (!(v > 0) || !std::isfinite(v)) fail("{} {}: expected a positive number", flag, s);
    return {v, t.substr(i)};
}

double prefix(const std::string& u, size_t n, const std::string& flag, const std::string& s, const char* expect) {
    const std::string p = u.substr(0, n);
    if (p.empty()) return 1;
    if (p == "k") return 1e3;
    if (p == "m") return 1e6;
    if (p == "g") return 1e9;
    if (p == "t") return 1e12;
    if (p == "p") return 1e15;
    if (p == "ki") return 1024.0;
    if (p == "mi") return 1024.0 * 1024;
    if (p == "gi") return GiB;
    if (p == "ti") return GiB * 1024;
    fail("{} {}: unknown unit prefix \"{}\" (expected something like {})", flag, s, p, expect);
}

}  // namespace

double parse_bytes(const std::string& s, const std::string& flag) {
    const char* expect = "80GiB, 24GB or 512MiB";
    auto [v, u] = split_unit(s, flag, expect);
    if (u.empty() || u.back() != 'b') fail("{} {}: expected a size in bytes, like {}", flag, s, expect);
    return v * prefix(u, u.size() - 1, flag, s, expect);
}

double parse_rate(const std::string& s, const std::string& flag) {
    const char* expect = "3.35TB/s or 100GB/s";
    auto [v, u] = split_unit(s, flag, expect);
    if (u.size() < 3 || u.compare(u.size() - 3, 3, "b/s") != 0) fail("{} {}: expected bytes per second, like {}", flag, s, expect);
    return v * prefix(u, u.size() - 3, flag, s, expect);
}

double parse_flops(const std::string& s, const std::string& flag) {
    const char* expect = "989TFLOPS or 3.6TFLOP/s";
    auto [v, u] = split_unit(s, flag, expect);
    for (const char* suffix : {"flop/s", "flops"}) {
        const std::string sf = suffix;
        if (u.size() >= sf.size() && u.compare(u.size() - sf.size(), sf.size(), sf) == 0)
            return v * prefix(u, u.size() - sf.size(), flag, s, expect);
    }
    fail("{} {}: expected FLOP/s, like {}", flag, s, expect);
}

bool named_device(const std::string& name, Device* out) {
    // Vendor spec sheets: dense bf16 tensor FLOP/s (no sparsity), memory bandwidth, memory.
    struct D { const char* name; double tbs, tflops, gb; };
    static const D devices[] = {
        {"H100", 3.35, 989, 80},  {"H200", 4.8, 989, 141},  {"A100-80GB", 2.039, 312, 80},
        {"L4", 0.3, 121, 24},     {"RTX4090", 1.008, 165.2, 24}, {"M2", 0.1, 3.6, 24},
    };
    std::string key;
    for (char c : name)
        if (c != ' ' && c != '_') key += char(std::toupper(static_cast<unsigned char>(c)));
    if (key == "RTX-4090") key = "RTX4090";
    if (key == "APPLEM2" || key == "APPLE-M2") key = "M2";
    for (const D& d : devices) {
        std::string dn = d.name;
        if (key == dn) {
            *out = {d.name, d.tbs * 1e12, d.tflops * 1e12, d.gb * 1e9, "vendor spec sheet"};
            return true;
        }
    }
    if (key == "THIS" || key == "LOCAL" || key == "CPU") {
        HwInfo hw = load_or_probe(default_cache_file(), 0, false, false);
        *out = {"this machine (" + hw.cpu_model + ")", hw.bw_gbs_all.median * 1e9, hw.gflops_all.median * 1e9,
                double(hw.ram_bytes), "kvscope hw, " + hw.measured_at};
        return true;
    }
    return false;
}

const char* device_names() { return "H100, H200, A100-80GB, L4, RTX4090, M2 (Apple), this (kvscope hw's measurement)"; }

const std::vector<WeightFormat>& weight_formats() {
    static const std::vector<WeightFormat> f = {
        {"fp32", 4}, {"bf16", 2}, {"fp16", 2}, {"int8", 1 + 2.0 / 128}, {"int4", 0.5 + 2.0 / 128}};
    return f;
}

const std::vector<KvFormat>& kv_formats() {
    static const std::vector<KvFormat> f = {
        {"fp32", {DType::F32, KvAxis::None, 0, false}},
        {"fp16", {DType::F16, KvAxis::None, 0, false}},
        {"fp8", {DType::F8, KvAxis::None, 0, false}},
        {"int8", {DType::I8, KvAxis::Token, 0, false}},
        {"int4", {DType::I4, KvAxis::Token, 32, true}},
    };
    return f;
}

namespace {

double kv_per_token(const ModelConfig& c, int kv_heads, const KvCodec& k) {
    return 2.0 * c.n_layer * kv_heads * kv_row_bytes(k, c.head_dim);
}

// Parameters that take part in a product per token (every matrix and the LM head; not an
// untied embedding table, nor GPT-2's position table, which are only looked up).
double matmul_params(const ModelConfig& c) {
    double p = double(c.n_params());
    if (c.arch == Arch::GPT2) return p - double(c.n_ctx) * c.n_embd;
    return c.tied_embeddings ? p : p - double(c.n_vocab) * c.n_embd;
}

}  // namespace

PlanResult plan(const PlanInput& in) {
    const ModelConfig& c = in.cfg;
    if (in.tp < 1 || in.tp > c.n_head || c.n_head % in.tp != 0)
        fail("--tp {}: expected a divisor of n_head {} (tensor parallelism splits the heads)", in.tp, c.n_head);
    auto wf = std::find_if(weight_formats().begin(), weight_formats().end(), [&](const WeightFormat& f) { return f.name == in.weights; });
    if (wf == weight_formats().end()) fail("--weights {}: expected fp32, bf16, fp16, int8 or int4", in.weights);
    auto kf = std::find_if(kv_formats().begin(), kv_formats().end(), [&](const KvFormat& f) { return f.name == in.kv; });
    if (kf == kv_formats().end()) fail("--kv {}: expected fp32, fp16, fp8, int8 or int4", in.kv);
    const int context = in.context > 0 ? in.context : c.n_ctx;
    const int prompt = in.prompt > 0 ? in.prompt : context;
    if (in.batch < 1) fail("--batch {}: expected at least 1", in.batch);

    PlanResult r;
    r.params = c.n_params();
    for (const WeightFormat& f : weight_formats()) r.weight_bytes_by_format.push_back({f.name, double(r.params) * f.bytes_per_param});
    for (const KvFormat& f : kv_formats()) r.kv_bytes_by_format.push_back({f.name, kv_per_token(c, c.n_kv_head, f.codec)});
    r.weight_bytes = double(r.params) * wf->bytes_per_param;
    r.weight_bytes_per_device = r.weight_bytes / in.tp;
    r.kv_heads_per_device = (c.n_kv_head + in.tp - 1) / in.tp;
    r.kv_bytes_per_token = kv_per_token(c, c.n_kv_head, kf->codec);
    r.kv_bytes_per_token_device = kv_per_token(c, r.kv_heads_per_device, kf->codec);
    r.kv_bytes_per_token_mha = kv_per_token(c, c.n_head, kf->codec);

    const double memory = in.memory > 0 ? in.memory : in.device.memory;
    r.free_bytes = std::max(0.0, memory - r.weight_bytes_per_device);
    std::vector<int> contexts;
    for (int ctx : {1024, 4096, 8192, 32768, 131072})
        if (ctx < c.n_ctx) contexts.push_back(ctx);
    contexts.push_back(c.n_ctx);
    for (int ctx : contexts) r.fits.push_back({ctx, int64_t(std::floor(r.free_bytes / (r.kv_bytes_per_token_device * ctx)))});
    r.max_context_batch1 = std::min<int64_t>(c.n_ctx, int64_t(std::floor(r.free_bytes / r.kv_bytes_per_token_device)));
    r.fits_at_batch = r.kv_bytes_per_token_device * context * in.batch <= r.free_bytes;

    // Decode: every weight read once per step, plus each sequence's cache; two FLOPs per
    // weight per sequence, plus attention's 4 x n_layer x context x q_dim per sequence.
    const double mm = matmul_params(c);
    r.decode_bytes = mm * wf->bytes_per_param / in.tp + r.kv_bytes_per_token_device * context * in.batch;
    r.decode_flops = (2.0 * mm + 4.0 * c.n_layer * double(context) * c.q_dim()) * in.batch / in.tp;
    if (in.device.bandwidth > 0 && in.device.flops > 0) {
        const double tm = r.decode_bytes / in.device.bandwidth, tc = r.decode_flops / in.device.flops;
        r.decode_step_s = std::max(tm, tc);
        r.decode_memory_bound = tm >= tc;
        r.decode_tok_s = in.batch / r.decode_step_s;
        // Prefill of one prompt: 2 FLOPs per weight per token, causal attention 2 x P^2 x q_dim per layer.
        r.prefill_flops = (2.0 * mm * prompt + 2.0 * c.n_layer * double(prompt) * prompt * c.q_dim()) / in.tp;
        r.prefill_s = std::max(r.prefill_flops / in.device.flops, mm * wf->bytes_per_param / in.tp / in.device.bandwidth);
    }
    return r;
}

namespace {

std::string human(double bytes) {
    if (bytes >= GiB) return fmt::format("{:.2f} GiB", bytes / GiB);
    if (bytes >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", bytes / (1024.0 * 1024));
    if (bytes >= 1024.0) return fmt::format("{:.2f} KiB", bytes / 1024.0);
    return fmt::format("{:.0f} B", bytes);
}

std::string num(double v) {
    if (v == std::floor(v) && std::abs(v) < 1e15) return fmt::format("{}", int64_t(v));
    return fmt::format("{:.6g}", v);
}

}  // namespace

std::string plan_table(const PlanInput& in, const PlanResult& r) {
    const ModelConfig& c = in.cfg;
    const int context = in.context > 0 ? in.context : c.n_ctx;
    std::string s;
    s += fmt::format("model        {} ({}), {} layers, hidden {}, {} heads, {} KV heads, head_dim {}, context {}\n",
                     c.model_type, arch_name(c.arch), c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.head_dim, c.n_ctx);
    s += fmt::format("parameters   {} ({:.2f} B)\n", r.params, double(r.params) / 1e9);
    s += "weights      ";
    for (size_t i = 0; i < r.weight_bytes_by_format.size(); i++)
        s += fmt::format("{}{} {}", i ? " | " : "", r.weight_bytes_by_format[i].first, human(r.weight_bytes_by_format[i].second));
    s += "\n";
    s += fmt::format("KV / token   2 x n_layer x n_kv_head x head_dim x bytes = 2 x {} x {} x {} x bytes:\n", c.n_layer,
                     c.n_kv_head, c.head_dim);
    for (size_t i = 0; i < r.kv_bytes_by_format.size(); i++)
        s += fmt::format("  {:<5} {:>10} B/token   {} at {} tokens\n", r.kv_bytes_by_format[i].first,
                         num(r.kv_bytes_by_format[i].second), human(r.kv_bytes_by_format[i].second * c.n_ctx), c.n_ctx);
    if (c.n_kv_head != c.n_head)
        s += fmt::format("  grouped-query attention: {}x smaller than with n_kv_head = n_head ({} B/token in {})\n",
                         c.group_size(), num(r.kv_bytes_per_token_mha), in.kv);
    s += fmt::format("device       {}: {:.3g} GB/s, {:.3g} TFLOP/s, {} ({}){}\n", in.device.name, in.device.bandwidth / 1e9,
                     in.device.flops / 1e12, human(in.memory > 0 ? in.memory : in.device.memory), in.device.source,
                     in.tp > 1 ? fmt::format(", x{} (tensor parallel: KV heads per device {})", in.tp, r.kv_heads_per_device) : "");
    s += fmt::format("memory       weights ({}) {} per device, {} left for the cache ({} KV: {} B/token per device)\n",
                     in.weights, human(r.weight_bytes_per_device), human(r.free_bytes), in.kv, num(r.kv_bytes_per_token_device));
    s += "fits         ";
    for (size_t i = 0; i < r.fits.size(); i++) s += fmt::format("{}{} x {}", i ? " | " : "", r.fits[i].max_batch, r.fits[i].context);
    s += fmt::format("  (largest batch x context); one sequence up to {} tokens\n", r.max_context_batch1);
    if (r.decode_step_s > 0) {
        s += fmt::format("decode       batch {} at {} tokens: {} read, {:.3g} GFLOP per step -> {:.3g} ms/step, "
                         "{:.1f} tokens/s ({}-bound){}\n",
                         in.batch, context, human(r.decode_bytes), r.decode_flops / 1e9, r.decode_step_s * 1e3,
                         r.decode_tok_s, r.decode_memory_bound ? "memory" : "compute",
                         r.fits_at_batch ? "" : "  [does not fit the memory]");
        s += fmt::format("prefill      {} tokens: {:.3g} TFLOP per device -> {:.3g} s at peak\n",
                         in.prompt > 0 ? in.prompt : context, r.prefill_flops / 1e12, r.prefill_s);
    }
    return s;
}

nlohmann::json plan_json(const PlanInput& in, const PlanResult& r) {
    nlohmann::json j;
    const ModelConfig& c = in.cfg;
    j["model"] = {{"model_type", c.model_type}, {"n_layer", c.n_layer}, {"n_embd", c.n_embd}, {"n_head", c.n_head},
                  {"n_kv_head", c.n_kv_head}, {"head_dim", c.head_dim}, {"n_ctx", c.n_ctx}, {"params", r.params}};
    for (const auto& [n, b] : r.weight_bytes_by_format) j["weight_bytes"][n] = b;
    for (const auto& [n, b] : r.kv_bytes_by_format) j["kv_bytes_per_token"][n] = b;
    j["device"] = {{"name", in.device.name}, {"bandwidth_bytes_s", in.device.bandwidth}, {"flops", in.device.flops},
                   {"memory_bytes", in.memory > 0 ? in.memory : in.device.memory}, {"source", in.device.source}};
    j["tp"] = in.tp;
    j["weights"] = in.weights;
    j["kv"] = in.kv;
    j["kv_heads_per_device"] = r.kv_heads_per_device;
    j["kv_bytes_per_token_device"] = r.kv_bytes_per_token_device;
    j["kv_bytes_per_token_mha"] = r.kv_bytes_per_token_mha;
    j["weight_bytes_per_device"] = r.weight_bytes_per_device;
    j["free_bytes"] = r.free_bytes;
    for (const FitRow& f : r.fits) j["max_batch_at_context"][std::to_string(f.context)] = f.max_batch;
    j["max_context_batch1"] = r.max_context_batch1;
    j["decode"] = {{"batch", in.batch}, {"context", in.context > 0 ? in.context : c.n_ctx}, {"bytes", r.decode_bytes},
                   {"flops", r.decode_flops}, {"step_s", r.decode_step_s}, {"tokens_per_s", r.decode_tok_s},
                   {"memory_bound", r.decode_memory_bound}, {"fits", r.fits_at_batch}};
    j["prefill"] = {{"tokens", in.prompt > 0 ? in.prompt : (in.context > 0 ? in.context : c.n_ctx)},
                    {"flops", r.prefill_flops}, {"seconds", r.prefill_s}};
    return j;
}

std::vector<std::string> plan_csv_header() {
    return {"model_type", "n_layer", "n_head", "n_kv_head", "head_dim", "params", "weights", "kv", "tp", "device",
            "weight_bytes", "kv_bytes_per_token", "kv_bytes_per_token_device", "free_bytes", "batch", "context",
            "fits", "decode_bytes", "decode_flops", "decode_step_s", "decode_tok_s", "memory_bound", "prefill_s",
            "max_context_batch1"};
}

std::vector<std::string> plan_csv_row(const PlanInput& in, const PlanResult& r) {
    const ModelConfig& c = in.cfg;
    return {c.model_type, num(c.n_layer), num(c.n_head), num(c.n_kv_head), num(c.head_dim), num(double(r.params)),
            in.weights, in.kv, num(in.tp), in.device.name, num(r.weight_bytes), num(r.kv_bytes_per_token),
            num(r.kv_bytes_per_token_device), num(r.free_bytes), num(in.batch), num(in.context > 0 ? in.context : c.n_ctx),
            r.fits_at_batch ? "1" : "0", num(r.decode_bytes), num(r.decode_flops), num(r.decode_step_s),
            num(r.decode_tok_s), r.decode_memory_bound ? "1" : "0", num(r.prefill_s), num(double(r.max_context_batch1))};
}

}  // namespace kvscope::analysis
