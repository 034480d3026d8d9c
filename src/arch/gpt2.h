// The GPT-2 forward pass over a set of tokens from one or more sequences.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/aligned.h"
#include "kv/kv_cache.h"
#include "kv/kv_seqs.h"
#include "model/gpt2_weights.h"

namespace kvscope {

// The tokens of one forward call. Token t belongs to sequence seq[t], is stored at cache slot
// slot[t] and has position pos[t]. Logits are produced for the tokens listed in out_idx only.
struct Ubatch {
    int n_tok = 0;
    const int32_t* token = nullptr;
    const int* seq = nullptr;
    const int* slot = nullptr;
    const int* pos = nullptr;
    int n_out = 0;
    const int* out_idx = nullptr;
};

class Gpt2Model {
public:
    // Scratch for up to `max_tok` tokens per call and `max_out` logit rows, allocated here once.
    Gpt2Model(const Gpt2Weights& w, int max_tok, int max_out, int max_slots);

    // Writes K/V of every token into `cache` (layer il, or layer 0 for a one-layer scratch
    // cache, which is what the no-cache path uses), then attends over slots [pad, slot].
    // logits: [n_out, n_vocab].
    void forward(const Ubatch& ub, KvCache& cache, const KvSeqs& seqs, float* logits);

    // Reads, without computing anything, the bytes a decode step of one token of sequence
    // `seq` reads with `keys` keys cached (its own included), in forward()'s order and split
    // over the threads as it splits them: each layer's QKV weights, the heads' K and V rows
    // [0, keys) (head pairs, dynamic), the other three weight matrices; then the LM head.
    // Returns a checksum of the bytes (ops::read_words). The floor under a decode step.
    uint32_t read_step(const KvCache& cache, int seq, int keys) const;

    int max_tok() const { return max_tok_; }
    int64_t scratch_bytes() const { return scratch_bytes_; }
    const Gpt2Weights& weights() const { return w_; }

private:
    const Gpt2Weights& w_;
    const ModelConfig& c_;
    int max_tok_, max_out_, max_slots_, n_threads_;
    int64_t scratch_bytes_ = 0;
    AlignedArray<float> mem_;
    float* x_;       // [max_tok, n_embd] residual stream
    float* xn_;      // [max_tok, n_embd] normalized input of a sublayer
    float* qkv_;     // [max_tok, 3 * n_embd]
    float* att_;     // [max_tok, n_embd] attention output, heads concatenated
    float* tmp_;     // [max_tok, n_embd] sublayer output before the residual add
    float* h_;       // [max_tok, n_ff] MLP hidden
    float* scores_;  // [n_threads, 2 * max_slots] attention scores of two heads, one row per thread
    float* xo_;      // [max_out, n_embd] final-norm rows whose logits are wanted
};

}  // namespace kvscope
