#include <algorithm>
#include "analysis/cost_model.h"

#include "kv/kv_layout.h"

namespace kvscope {

namespace {

// Weights of one layer's matrices: GPT-2 qkv, attn proj, fc, mlp proj; Llama q/k/v (k and v
// of n_kv_head heads), o, gate, up, down.
double matrix_params_per_layer(const ModelConfig& c) {
    const double d = c.n_embd, f = c.n_ff, q = c.q_dim(), kv = c.kv_dim();
    if (c.arch == Arch::GPT2) return d * 3 * d + d * d + d * f + f * d;
    return d * (q + 2 * kv) + q * d + 3 * d * f;
}

// fp32 vectors one step reads: norms and biases of every layer, the final norm.
double vector_params_per_step(const ModelConfig& c) {
    const double d = c.n_embd, f = c.n_ff, q = c.q_dim(), kv = c.kv_dim();
    if (c.arch == Arch::GPT2) return c.n_layer * (4 * d + 3 * d + d + f + d) + 2 * d;  // LayerNorms + biases
    const double per_layer = 2 * d + (c.attn_bias ? q + 2 * kv : 0) + (c.mlp_bias ? 2 * f + d : 0);
    return c.n_layer * per_layer + d;
}

}  // namespace

double matmul_flops_per_token(const ModelConfig& c, bool with_head) {
    const double macs = c.n_layer * matrix_params_per_layer(c) + (with_head ? double(c.n_embd) * c.n_vocab : 0.0);
    return 2.0 * macs;
}

double weight_bytes_per_step(const ModelConfig& c, DType w) {
    const double mats = c.n_layer * matrix_params_per_layer(c) + double(c.n_vocab) * c.n_embd;
    return mats * dtype_size(w) + vector_params_per_step(c) * 4.0;
}

namespace {

// Bytes a decode step reads over `keys` cached tokens of one sequence. A windowed format reads
// its sinks and its newest `residual` tokens as fp16 rows on each integer side, the rest as codes.
double kv_read_per_seq(const ModelConfig& c, const KvFormat& kv, double keys) {
    const double kvpt = kv_bytes_per_token(c.n_layer, c.n_kv_head, c.head_dim, kv);
    if (!kv.windowed()) return keys * kvpt;
    KvFormat full = kv;
    for (KvCodec* side : {&full.k, &full.v})
        if (side->axis != KvAxis::None) *side = KvFormat(DType::F16).k;
    const double n_full = std::min(keys, double(kv.residual + kv.sinks));
    return n_full * kv_bytes_per_token(c.n_layer, c.n_kv_head, c.head_dim, full) + (keys - n_full) * kvpt;
}

}  // namespace

Cost decode_step_cost(const ModelConfig& c, DType w, const KvFormat& kv, int batch, int ctx) {
    Cost k;
    const double keys = double(ctx) + 1.0;  // the cached tokens and the new one
    const double kvpt = double(kv_bytes_per_token(c.n_layer, c.n_kv_head, c.head_dim, kv));
    k.flops_matmul = batch * matmul_flops_per_token(c, true);
    k.flops_attn = batch * c.n_layer * 4.0 * c.n_head * c.head_dim * keys;
    k.bytes_weights = weight_bytes_per_step(c, w);
    k.bytes_kv_read = batch * kv_read_per_seq(c, kv, keys);
    k.bytes_kv_write = batch * kvpt;
    return k;
}

Cost prefill_cost(const ModelConfig& c, DType w, const KvFormat& kv, int batch, int len) {
    Cost k;
    const double n = len;
    const double kvpt = double(kv_bytes_per_token(c.n_layer, c.n_kv_head, c.head_dim, kv));
    k.flops_matmul = batch * (n * matmul_flops_per_token(c, false) + matmul_flops_per_token(c, true) -
                              matmul_flops_per_token(c, false));
    // Token i (1-based) attends over i keys: sum_i 4 * d * i = 2 d n (n + 1) per layer.
    k.flops_attn = batch * c.n_layer * 2.0 * c.n_head * c.head_dim * n * (n + 1.0);
    k.bytes_weights = weight_bytes_per_step(c, w);
    // Within a prefill each K/V row is re-read by every later token, but from cache: a
    // per-head block is n x head_dim values, well inside L2. Memory sees each row once.
    k.bytes_kv_read = batch * n * kvpt;
    k.bytes_kv_write = batch * n * kvpt;
    return k;
}

}  // namespace kvscope
