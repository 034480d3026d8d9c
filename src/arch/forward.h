// The seam between the engine and a model family: a family's weights make its forward pass,
// which the engine calls once per ubatch. Inside forward() each family runs its own flat loop
// over layers (no virtual call per layer); only this entry point is virtual.
#pragma once

#include <cstdint>

#include "kv/kv_cache.h"
#include "kv/kv_seqs.h"

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

class Forward {
public:
    virtual ~Forward() = default;
    // Writes K/V of every token into `cache` (layer il, or layer 0 for a one-layer scratch
    // cache, which is what the no-cache path uses), then attends over slots [pad, slot].
    // logits: [n_out, n_vocab].
    virtual void forward(const Ubatch& ub, KvCache& cache, const KvSeqs& seqs, float* logits) = 0;
    // Reads, without computing anything, the bytes a decode step of one token of sequence
    // `seq` reads with `keys` keys cached (its own included), in forward()'s order and split
    // over the threads as it splits them. Returns a checksum (ops::read_words): the floor
    // under a decode step.
    virtual uint32_t read_step(const KvCache& cache, int seq, int keys) const = 0;
    virtual int64_t scratch_bytes() const = 0;
};

}  // namespace kvscope
