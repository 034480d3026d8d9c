#include "arch/gpt2.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "ops/attention.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/pack.h"
#include "ops/read.h"
#include "ops/simd.h"

namespace kvscope {

// Heads per ops::attend_heads call in a decode or prefill step (docs/KERNELS.md, attention).
constexpr int kHeadGroup = 2;

Gpt2Model::Gpt2Model(const Gpt2Weights& w, int max_tok, int max_out, int max_slots)
    : w_(w), c_(w.config()), max_tok_(max_tok), max_out_(max_out), max_slots_(max_slots),
      n_threads_(omp_get_max_threads()) {
    const int64_t T = max_tok, d = c_.n_embd;
    const int64_t sizes[] = {T * d, T * d, T * 3 * d, T * d, T * d, T * c_.n_ff,
                             int64_t(n_threads_) * kHeadGroup * max_slots, int64_t(max_out) * d};
    int64_t total = 0;
    for (int64_t s : sizes) total += (s + 15) / 16 * 16;  // keep every view 64-byte aligned
    mem_ = make_aligned<float>(size_t(total));
    std::memset(mem_.get(), 0, size_t(total) * 4);
    scratch_bytes_ = total * 4;
    float* p = mem_.get();
    float** views[] = {&x_, &xn_, &qkv_, &att_, &tmp_, &h_, &scores_, &xo_};
    for (int i = 0; i < 8; i++) {
        *views[i] = p;
        p += (sizes[i] + 15) / 16 * 16;
    }
    // The largest product's copy of x (the MLP's down projection, or the LM head's rows).
    ops::reserve_matmul(std::max<int64_t>(T, max_out), std::max<int64_t>(d, c_.n_ff));
}

// x = wte[tok] + wpe[pos]: the token's embedding is its output column of the (packed) head.
static void embed_row(const WeightView& wte, int32_t tok, const float* wpe_row, int64_t d, float* out) {
    ops::weight_column(wte, tok, out);
    for (int64_t i = 0; i < d; i++) out[i] += wpe_row[i];
}

void Gpt2Model::forward(const Ubatch& ub, KvCache& cache, const KvSeqs& seqs, float* logits) {
    const int T = ub.n_tok;
    const int64_t d = c_.n_embd, ff = c_.n_ff;
    const int n_head = c_.n_head, hd = c_.head_dim;
    const float scale = 1.0f / std::sqrt(float(hd));
    const bool scratch_cache = cache.shape().n_layer == 1 && c_.n_layer > 1;

    for (int t = 0; t < T; t++) embed_row(w_.wte, ub.token[t], w_.wpe + int64_t(ub.pos[t]) * d, d, x_ + t * d);

    for (int il = 0; il < c_.n_layer; il++) {
        const Gpt2Layer& L = w_.layers[size_t(il)];
        const int kl = scratch_cache ? 0 : il;

        // attention
        ops::layernorm(x_, T, d, L.ln1_w, L.ln1_b, c_.norm_eps, xn_);
        ops::matmul(xn_, T, L.attn_qkv, L.attn_qkv_b, qkv_);                        // [T, 3d]
        for (int t = 0; t < T; t++) {
            const float* q = qkv_ + int64_t(t) * 3 * d;
            cache.write(kl, ub.seq[t], ub.slot[t], q + d, q + 2 * d);              // K, V of token t
        }
        // Heads kHeadGroup at a time (attend_heads reads the group's streams side by side).
        const int n_group = (n_head + kHeadGroup - 1) / kHeadGroup;
#pragma omp parallel for collapse(2) schedule(dynamic, 1)
        for (int t = 0; t < T; t++) {
            for (int g = 0; g < n_group; g++) {
                const int s = ub.seq[t], slot = ub.slot[t], h0 = g * kHeadGroup;
                const int n = std::min(kHeadGroup, n_head - h0);
                const int pad = seqs.pad(s);
                const int lo = slot < pad ? slot : pad;  // a padding token sees only itself
                const float* q[kHeadGroup];
                const void *k[kHeadGroup], *v[kHeadGroup];
                float* out[kHeadGroup];
                for (int x = 0; x < n; x++) {
                    q[x] = qkv_ + int64_t(t) * 3 * d + (h0 + x) * hd;
                    k[x] = cache.k(kl, s, h0 + x);
                    v[x] = cache.v(kl, s, h0 + x);
                    out[x] = att_ + int64_t(t) * d + (h0 + x) * hd;
                }
                float* scores = scores_ + int64_t(omp_get_thread_num()) * kHeadGroup * max_slots_;
                ops::attend_heads(n, q, k, v, cache.dtype(), hd, lo, slot + 1, scale, scores, out);
            }
        }
        ops::matmul(att_, T, L.attn_proj, L.attn_proj_b, tmp_);                     // [T, d]
        ops::add_inplace(x_, tmp_, int64_t(T) * d);

        // MLP
        ops::layernorm(x_, T, d, L.ln2_w, L.ln2_b, c_.norm_eps, xn_);
        ops::matmul(xn_, T, L.fc, L.fc_b, h_);                                      // [T, ff]
        ops::gelu_new(h_, int64_t(T) * ff);
        ops::matmul(h_, T, L.proj, L.proj_b, tmp_);                                 // [T, d]
        ops::add_inplace(x_, tmp_, int64_t(T) * d);
    }

    for (int o = 0; o < ub.n_out; o++) std::memcpy(xo_ + int64_t(o) * d, x_ + int64_t(ub.out_idx[o]) * d, size_t(d) * 4);
    ops::layernorm(xo_, ub.n_out, d, w_.lnf_w, w_.lnf_b, c_.norm_eps, xo_);
    ops::matmul(xo_, ub.n_out, w_.lm_head, nullptr, logits);                        // [n_out, n_vocab]
}

uint32_t Gpt2Model::read_step(const KvCache& cache, int seq, int keys) const {
    const KvShape& ks = cache.shape();
    if (keys < 1 || keys > ks.n_slots)
        fail("read_step: {} keys; the cache holds 1 to {} per sequence", keys, ks.n_slots);
    const int64_t kv_bytes = int64_t(keys) * ks.head_dim * int64_t(dtype_size(ks.dtype));
    const int n_group = (ks.n_kv_head + kHeadGroup - 1) / kHeadGroup;
    uint32_t total = 0;
    auto weights = [&total](const WeightView& w) {
#pragma omp parallel reduction(+ : total)
        total += ops::read_share(w.data, w.bytes(), omp_get_thread_num(), omp_get_num_threads());
    };
    for (int il = 0; il < c_.n_layer; il++) {
        const Gpt2Layer& L = w_.layers[size_t(il)];
        const int kl = ks.n_layer == 1 ? 0 : il;
        weights(L.attn_qkv);
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : total)
        for (int g = 0; g < n_group; g++) {
            const int h1 = std::min(ks.n_kv_head, (g + 1) * kHeadGroup);
            for (int h = g * kHeadGroup; h < h1; h++) total += ops::read_words(cache.k(kl, seq, h), kv_bytes);
            for (int h = g * kHeadGroup; h < h1; h++) total += ops::read_words(cache.v(kl, seq, h), kv_bytes);
        }
        weights(L.attn_proj);
        weights(L.fc);
        weights(L.proj);
    }
    weights(w_.lm_head);
    return total;
}

}  // namespace kvscope
