// FLOPs and bytes of one decode step and of one prefill, for GPT-2 and Llama shapes. These are the
// numerators of every achieved GFLOP/s and GB/s kvscope reports, so they are code with
// exact unit tests, not estimates in prose.
//
// Conventions: a multiply-add is 2 FLOPs; bytes are what must come from memory at least
// once: every weight matrix and vector read for the step, the K/V rows attention reads, the
// K/V rows written. Activations (a few KB per token) are not counted.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "kv/kv_layout.h"
#include "model/config.h"

namespace kvscope {

struct Cost {
    double flops_matmul = 0;   // weight GEMMs/GEMVs incl. the LM head
    double flops_attn = 0;     // q.k and p.v over the cache
    double bytes_weights = 0;  // weights read
    double bytes_kv_read = 0;  // K and V rows read by attention
    double bytes_kv_write = 0; // K and V rows written
    double flops() const { return flops_matmul + flops_attn; }
    double bytes() const { return bytes_weights + bytes_kv_read + bytes_kv_write; }
    double intensity() const { return flops() / bytes(); }
};

// Weight bytes one decode step reads: every layer matrix, the LM head (tied or not), the norm
// and bias vectors (fp32); not the embedding rows looked up.
double weight_bytes_per_step(const ModelConfig& c, DType weights);
// FLOPs of the weight matmuls for one token, without / with the LM head.
double matmul_flops_per_token(const ModelConfig& c, bool with_head);

// One decode step: `batch` sequences, each with `ctx` tokens already cached, one new token each.
Cost decode_step_cost(const ModelConfig& c, DType weights, const KvFormat& kv, int batch, int ctx);
// Prefill of `batch` prompts of `len` tokens, logits for the last token of each. With the cache
// off, each generation step costs a prefill of the whole sequence (len = its current length).
Cost prefill_cost(const ModelConfig& c, DType weights, const KvFormat& kv, int batch, int len);

}  // namespace kvscope
