#include "analysis/cost_model.h"

#include "kv/kv_layout.h"

namespace kvscope {

double matmul_flops_per_token(const ModelConfig& c, bool with_head) {
    const double d = c.n_embd, f = c.n_ff;
    double per_layer = d * 3 * d + d * d + d * f + f * d;  // qkv, attn proj, fc, mlp proj
    double macs = c.n_layer * per_layer + (with_head ? d * c.n_vocab : 0.0);
    return 2.0 * macs;
}

double weight_bytes_per_step(const ModelConfig& c, DType w) {
    const double d = c.n_embd, f = c.n_ff;
    double mats = c.n_layer * (d * 3 * d + d * d + d * f + f * d) + double(c.n_vocab) * d;
    double vecs = c.n_layer * (4 * d + 3 * d + d + f + d) + 2 * d;  // LayerNorms + biases, fp32
    return mats * dtype_size(w) + vecs * 4.0;
}

Cost decode_step_cost(const ModelConfig& c, DType w, DType kv, int batch, int ctx) {
    Cost k;
    const double keys = double(ctx) + 1.0;  // the cached tokens and the new one
    const double kvpt = double(kv_bytes_per_token(c.n_layer, c.n_kv_head, c.head_dim, kv));
    k.flops_matmul = batch * matmul_flops_per_token(c, true);
    k.flops_attn = batch * c.n_layer * 4.0 * c.n_head * c.head_dim * keys;
    k.bytes_weights = weight_bytes_per_step(c, w);
    k.bytes_kv_read = batch * keys * kvpt;
    k.bytes_kv_write = batch * kvpt;
    return k;
}

Cost prefill_cost(const ModelConfig& c, DType w, DType kv, int batch, int len) {
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
