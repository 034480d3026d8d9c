#include "arch/gpt2.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/pack.h"

namespace kvscope {

std::unique_ptr<Forward> Gpt2Weights::make_forward(int max_tok, int max_out, int max_slots) const {
    return std::make_unique<Gpt2Model>(*this, max_tok, max_out, max_slots);
}

Gpt2Model::Gpt2Model(const Gpt2Weights& w, int max_tok, int max_out, int max_slots)
    : w_(w), c_(w.config()), plan_(attn_plan(c_.n_head, c_.n_kv_head, c_.head_dim)), max_tok_(max_tok),
      max_out_(max_out), max_slots_(max_slots), n_threads_(omp_get_max_threads()) {
    const int64_t T = max_tok, d = c_.n_embd;
    const int64_t sizes[] = {T * d, T * d, T * 3 * d, T * d, T * d, T * c_.n_ff,
                             int64_t(n_threads_) * plan_.scores_per_thread(max_slots), int64_t(max_out) * d};
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
            cache.write(kl, ub.seq[t], ub.slot[t], seqs.pad(ub.seq[t]), q + d, q + 2 * d);  // K, V of token t
        }
        attend_cached(plan_, ub, cache, seqs, kl, qkv_, 3 * d, att_, d, scores_, max_slots_);  // [T, d]
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
    uint32_t total = 0;
    for (int il = 0; il < c_.n_layer; il++) {
        const Gpt2Layer& L = w_.layers[size_t(il)];
        const int kl = cache.shape().n_layer == 1 ? 0 : il;
        total += read_weight(L.attn_qkv);
        total += read_kv(plan_, cache, kl, seq, keys);
        total += read_weight(L.attn_proj) + read_weight(L.fc) + read_weight(L.proj);
    }
    return total + read_weight(w_.lm_head);
}

}  // namespace kvscope
