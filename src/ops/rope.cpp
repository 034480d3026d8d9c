#include "ops/rope.h"

#include <cmath>

namespace kvscope::ops {

std::vector<float> rope_inv_freq(const ModelConfig& c) {
    const int half = c.head_dim / 2;
    std::vector<float> f(static_cast<size_t>(half));
    const RopeScaling& r = c.rope_scaling;
    for (int i = 0; i < half; i++) {
        double inv = 1.0 / std::pow(double(c.rope_theta), 2.0 * i / double(c.head_dim));
        if (r.type == "linear") {
            inv /= r.factor;
        } else if (r.type == "llama3") {
            // transformers' _compute_llama3_parameters: long wavelengths divided by factor,
            // short ones kept, the band between interpolated.
            const double low_wavelen = r.original_max_position_embeddings / r.low_freq_factor;
            const double high_wavelen = r.original_max_position_embeddings / r.high_freq_factor;
            const double wavelen = 2.0 * M_PI / inv;
            if (wavelen > low_wavelen) {
                inv /= r.factor;
            } else if (wavelen >= high_wavelen) {
                const double smooth = (r.original_max_position_embeddings / wavelen - r.low_freq_factor) /
                                      (r.high_freq_factor - r.low_freq_factor);
                inv = (1.0 - smooth) * inv / r.factor + smooth * inv;
            }
        }
        f[size_t(i)] = float(inv);
    }
    return f;
}

void rope_angles(const float* inv_freq, int half, int pos, float* cs, float* sn) {
    for (int i = 0; i < half; i++) {
        const float a = float(pos) * inv_freq[i];  // fp32 product, as run.c and transformers form it
        cs[i] = std::cos(a);
        sn[i] = std::sin(a);
    }
}

void rope(float* x, int n_heads, int head_dim, RopeLayout layout, const float* cs, const float* sn) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float* v = x + int64_t(h) * head_dim;
        if (layout == RopeLayout::Interleaved) {
            for (int i = 0; i < half; i++) {
                const float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * cs[i] - b * sn[i];
                v[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        } else {
            for (int i = 0; i < half; i++) {
                const float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = a * sn[i] + b * cs[i];
            }
        }
    }
}

}  // namespace kvscope::ops
