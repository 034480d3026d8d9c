#include "arch/llama.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/pack.h"
#include "ops/rope.h"

namespace kvscope {

std::unique_ptr<Forward> LlamaWeights::make_forward(int max_tok, int max_out, int max_slots) const {
    return std::make_unique<LlamaModel>(*this, max_tok, max_out, max_slots);
}

LlamaModel::LlamaModel(const LlamaWeights& w, int max_tok, int max_out, int max_slots)
    : w_(w), c_(w.config()), plan_(attn_plan(c_.n_head, c_.n_kv_head, c_.head_dim)), inv_freq_(ops::rope_inv_freq(c_)),
      max_tok_(max_tok), max_out_(max_out), max_slots_(max_slots), n_threads_(omp_get_max_threads()) {
    const int64_t T = max_tok, d = c_.n_embd, ff = c_.n_ff, qkv = c_.q_dim() + 2 * c_.kv_dim();
    const int64_t sizes[] = {T * d,        T * d,       T * qkv,     T * c_.q_dim(),
                             T * d,        T * 2 * ff,  T * ff,      T * c_.head_dim,
                             int64_t(n_threads_) * plan_.scores_per_thread(max_slots), int64_t(max_out) * d};
    int64_t total = 0;
    for (int64_t s : sizes) total += (s + 15) / 16 * 16;  // keep every view 64-byte aligned
    mem_ = make_aligned<float>(size_t(total));
    std::memset(mem_.get(), 0, size_t(total) * 4);
    scratch_bytes_ = total * 4;
    float* p = mem_.get();
    float** views[] = {&x_, &xn_, &qkv_, &att_, &tmp_, &gu_, &h_, &rope_, &scores_, &xo_};
    for (int i = 0; i < 10; i++) {
        *views[i] = p;
        p += (sizes[i] + 15) / 16 * 16;
    }
    ops::reserve_matmul(std::max<int64_t>(T, max_out), std::max<int64_t>({d, ff, c_.q_dim()}));
    sink_.resize(size_t(2 * c_.head_dim));
}

void LlamaModel::place_sinks(const Ubatch& ub, KvCache& cache, int kl) {
    const int S = cache.shape().virtual_sinks, hd = c_.head_dim, half = hd / 2;
    float *cs = sink_.data(), *sn = cs + half, *k = sink_.data() + hd;
    for (int t = 0; t < ub.n_tok; t++) {
        if (t > 0 && ub.seq[t - 1] == ub.seq[t]) continue;  // once per run of a sequence's tokens
        const int shift = ub.pos[t] - ub.slot[t];            // tokens evicted before this one
        if (shift <= 0) continue;
        ops::rope_angles(inv_freq_.data(), half, shift, cs, sn);
        for (int h = 0; h < c_.n_kv_head; h++)
            for (int j = 0; j < std::min(S, ub.slot[t]); j++) {
                std::copy_n(cache.sink_key(kl, ub.seq[t], h, j), hd, k);
                ops::rope(k, 1, hd, c_.rope_layout, cs, sn);
                cache.write_k(kl, ub.seq[t], h, j, k);
            }
    }
}

void LlamaModel::forward(const Ubatch& ub, KvCache& cache, const KvSeqs& seqs, float* logits) {
    const int T = ub.n_tok;
    const int64_t d = c_.n_embd, ff = c_.n_ff, qd = c_.q_dim(), kvd = c_.kv_dim(), qkv = qd + 2 * kvd;
    const int hd = c_.head_dim, half = hd / 2;
    const bool scratch_cache = cache.shape().n_layer == 1 && c_.n_layer > 1;

    for (int t = 0; t < T; t++) {
        ops::weight_column(w_.tok_embd, ub.token[t], x_ + t * d);                     // x = embed[tok]
        ops::rope_angles(inv_freq_.data(), half, ub.pos[t], rope_ + t * hd, rope_ + t * hd + half);
    }

    for (int il = 0; il < c_.n_layer; il++) {
        const LlamaLayer& L = w_.layers[size_t(il)];
        const int kl = scratch_cache ? 0 : il;

        // attention
        ops::rmsnorm(x_, T, d, L.attn_norm, c_.norm_eps, xn_);
        ops::matmul(xn_, T, L.wqkv, L.bqkv, qkv_);                                    // [T, q + 2 kv]
        for (int t = 0; t < T; t++) {
            float* q = qkv_ + int64_t(t) * qkv;
            const float *cs = rope_ + t * hd, *sn = cs + half;
            ops::rope(q, c_.n_head, hd, c_.rope_layout, cs, sn);                       // Q heads
            ops::rope(q + qd, c_.n_kv_head, hd, c_.rope_layout, cs, sn);               // K heads
            cache.write(kl, ub.seq[t], ub.slot[t], seqs.pad(ub.seq[t]), q + qd, q + qd + kvd);  // K, V of token t
        }
        if (cache.shape().virtual_sinks > 0) place_sinks(ub, cache, kl);
        attend_cached(plan_, ub, cache, seqs, kl, qkv_, qkv, att_, qd, scores_, max_slots_);  // [T, q]
        ops::matmul(att_, T, L.wo, nullptr, tmp_);                                    // [T, d]
        ops::add_inplace(x_, tmp_, int64_t(T) * d);

        // MLP (SwiGLU)
        ops::rmsnorm(x_, T, d, L.ffn_norm, c_.norm_eps, xn_);
        ops::matmul(xn_, T, L.w_gate_up, L.b_gate_up, gu_);                           // [T, 2 ff]
        ops::silu_mul(gu_, T, ff, h_);                                                // [T, ff]
        ops::matmul(h_, T, L.w_down, L.b_down, tmp_);                                 // [T, d]
        ops::add_inplace(x_, tmp_, int64_t(T) * d);
    }

    for (int o = 0; o < ub.n_out; o++) std::memcpy(xo_ + int64_t(o) * d, x_ + int64_t(ub.out_idx[o]) * d, size_t(d) * 4);
    ops::rmsnorm(xo_, ub.n_out, d, w_.out_norm, c_.norm_eps, xo_);
    ops::matmul(xo_, ub.n_out, w_.lm_head, nullptr, logits);                          // [n_out, n_vocab]
}

uint32_t LlamaModel::read_step(const KvCache& cache, int seq, int keys) const {
    uint32_t total = 0;
    for (int il = 0; il < c_.n_layer; il++) {
        const LlamaLayer& L = w_.layers[size_t(il)];
        const int kl = cache.shape().n_layer == 1 ? 0 : il;
        total += read_weight(L.wqkv);
        total += read_kv(plan_, cache, kl, seq, keys);
        total += read_weight(L.wo) + read_weight(L.w_gate_up) + read_weight(L.w_down);
    }
    return total + read_weight(w_.lm_head);
}

}  // namespace kvscope
