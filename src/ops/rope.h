// Rotary position embeddings (RoPE): each pair of a head's dimensions is rotated by
// pos * inv_freq[i]. Which dimensions pair up depends on the checkpoint (RopeLayout).
#pragma once

#include <vector>

#include "model/config.h"

namespace kvscope::ops {

// inv_freq[i] = rope_theta^(-2i / head_dim) for i < head_dim / 2, rescaled as rope_scaling
// says ("linear": / factor; "llama3": Llama 3.1's frequency bands).
std::vector<float> rope_inv_freq(const ModelConfig& c);

// cs[i] = cos(pos * inv_freq[i]), sn[i] = sin(pos * inv_freq[i]) for i < half.
void rope_angles(const float* inv_freq, int half, int pos, float* cs, float* sn);

// Rotates n_heads heads of x (head h at x + h * head_dim) in place by the angles of one
// position. Interleaved: pairs (2i, 2i+1); Half: pairs (i, i + head_dim/2).
void rope(float* x, int n_heads, int head_dim, RopeLayout layout, const float* cs, const float* sn);

}  // namespace kvscope::ops
