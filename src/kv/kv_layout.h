// The KV cache's shape and the single formula for its size. The memory experiment, `info`,
// the planner and the allocator all call kv_cache_bytes(), so theory and allocation agree
// by construction (and a test checks the allocator against the textbook formula).
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace kvscope {

// How one K or V row (one token of one KV head: head_dim values) is stored. Float types
// store values as they are; integer types store codes with scales (and zero points when
// asymmetric), one per `group` channels of a token (axis Token) or one per channel for a
// group of tokens (axis Channel, KIVI's keys). Scales and zero points are fp16.
enum class KvAxis : uint8_t { None, Token, Channel };
struct KvCodec {
    DType dtype = DType::F32;
    KvAxis axis = KvAxis::None;
    int group = 0;  // Token: channels per scale (0: the whole row); Channel: tokens per scale
    bool zero_point = false;
    static constexpr int kScaleBytes = 2;
};
// Bytes of one row per token, scales included (a Channel codec's scales are shared by its
// group of tokens, so they count 1/group per token).
double kv_row_bytes(const KvCodec& c, int head_dim);

// The storage of keys and of values, chosen separately (an implicit DType is both), and which
// rows of an integer side stay in fp16 instead of codes: the first `sinks` real tokens of a
// sequence (attention sinks) and the most recent `residual` tokens (KIVI's full-precision
// window). A row leaves the window when the sequence grows past it: a Token row as soon as it
// is `residual` tokens old, a Channel block of `group` tokens once its newest row is.
struct KvFormat {
    KvCodec k, v;
    int residual = 0;
    int sinks = 0;
    KvFormat() = default;
    // K and V both in d: float types as they are, integer types in their default codec
    // (kv_codec.h: int8 symmetric per row, int4/int2 asymmetric in groups of 32).
    KvFormat(DType d);  // NOLINT(google-explicit-constructor)
    explicit KvFormat(const KvCodec& c) : k(c), v(c) {}
    KvFormat(const KvCodec& kc, const KvCodec& vc) : k(kc), v(vc) {}
    bool is_float(DType d) const { return k.axis == KvAxis::None && v.axis == KvAxis::None && k.dtype == d && v.dtype == d; }
    // Some integer rows are held in fp16 before (or instead of) their codes: a window, sinks,
    // or per-channel keys (a block's scales need all its tokens).
    bool windowed() const { return residual > 0 || sinks > 0 || k.axis == KvAxis::Channel || v.axis == KvAxis::Channel; }
};

struct KvShape {
    int n_layer = 0;    // layers with their own storage (1 for the no-cache scratch)
    int n_seq = 0;      // sequences in the batch
    int n_kv_head = 0;
    int n_slots = 0;    // positions per sequence the cache can hold
    int head_dim = 0;
    KvFormat format = DType::F32;
    int max_chunk = 0;  // most tokens one sequence writes in one forward (0: n_slots); sizes the window ring
    // Paged layout (kv_blocks.h) when block_tokens > 0: the rows live in a pool of n_blocks blocks
    // of block_tokens slots shared by all sequences, each sequence reaching its slots through
    // its block table; n_slots is then the most one sequence may hold.
    int block_tokens = 0;
    int n_blocks = 0;
    bool paged() const { return block_tokens > 0; }
    // Eviction with StreamingLLM's positions (kv_evict.h, policy sinks): the first virtual_sinks
    // slots of each sequence are attention sinks whose keys the forward pass rotates, every
    // forward, to the positions just before the kept window; the cache keeps each sink's key as
    // first written (fp32, rotated at its own position) to rotate from.
    int virtual_sinks = 0;
};

// Where the rows of slots [j0, j1) of one KV head live, for attention: `rows` is slot j0's row,
// rows `stride` bytes apart in `codec`; for a Channel codec j0 starts a block and `meta` is
// that block's scales (blocks of codec.group rows, kv_channel_meta_bytes apart).
struct KvRun {
    const uint8_t* rows = nullptr;
    const uint8_t* meta = nullptr;
    KvCodec codec;
    int64_t stride = 0;
    int j0 = 0, j1 = 0;
};
// A head's slots [lo, hi) as consecutive runs: sinks, codes, the ring, the ring's wrap; or a
// paged cache's blocks. The storage grows to the most runs seen and is then reused.
struct KvRuns {
    int n = 0;
    std::vector<KvRun> r;
    void clear() { n = 0; }
    void add(const KvRun& run) {
        if (size_t(n) == r.size()) r.push_back(run);
        else r[size_t(n)] = run;
        n++;
    }
};

// Rows of a windowed format's fp16 ring per (layer, sequence, KV head): enough for every row a
// token of the newest chunk may read in fp16 (the window, a partly filled Channel block, the
// chunk itself), at most n_slots. 0 when the format is not windowed.
int kv_ring_rows(const KvShape& s);

// n_layer x n_seq x n_slots x n_kv_head x (bytes of a K row + bytes of a V row), a row being
// head_dim values with their scales (kv_row_stride): for float storage 2 x n_layer x n_seq x
// n_slots x n_kv_head x head_dim x bytes per element. A windowed format adds, per layer,
// sequence and KV head and integer side, its Channel scales (one block per `group` slots) and
// fp16 rows for the sinks and the ring. A paged layout holds n_blocks x block_tokens slots in
// place of n_seq x n_slots. Virtual sinks add their fp32 keys per layer, sequence and KV head.
int64_t kv_cache_bytes(const KvShape& s);
// Bytes of K and V for one token of one sequence across all layers, a Channel codec's scales
// shared by its block (kv_row_bytes); a window's fp16 rows are a fixed cost, not per token.
double kv_bytes_per_token(int n_layer, int n_kv_head, int head_dim, const KvFormat& f);

}  // namespace kvscope
