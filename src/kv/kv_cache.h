// The KV cache bytes and their layout. Nothing else knows where a key lives: the forward pass
// calls write() for each new token and reads a head's keys/values through runs() (or k()/v()
// for a format that is not windowed).
//
// Layout: [n_layer][n_seq][n_kv_head][n_slots][row] for K, the same for V, so one head's
// history is one contiguous stream (what attention reads at each decode step). A row is one
// token's head_dim values in the K or V codec (kv/kv_codec.h): fp32, fp16, bf16, or integer
// codes with their scales; rows are encoded once, when written, and decoded inside the
// attention kernel.
//
// A windowed format (kv_layout.h: a full-precision window, sinks, or per-channel keys) adds for
// each integer side, per (layer, sequence, KV head): the fp16 rows of the sinks, a ring of
// fp16 rows for the newest tokens (kv_ring_rows), and for a Channel codec one block of
// per-channel scales per `group` slots. Every real row after the sinks is written to the ring,
// and its codes are made from those fp16 values: at once for a Token codec, when its block's
// last row is written for a Channel codec. Which copy attention reads depends only on the
// reading token's slot (rows still inside its window read fp16), so a token sees the same
// values whether its sequence was written one token at a time or in one forward: cache on and
// off agree. The ring must hold every row the newest chunk reads: a forward writes at most
// max_chunk rows per sequence.
//
// Paged layout (KvShape::paged): [n_layer][n_kv_head][n_blocks][block_tokens][row] for K, the
// same for V. Slot s of a sequence is row s % block_tokens of block table[s / block_tokens]
// (kv_blocks.h, attached with set_tables), so a head's history is one contiguous run per
// block, and attention reads it block by block through block_rows() (or runs()), with no
// copy. A head's blocks are neighbours in the pool, so a sequence given blocks one after
// another (the pool does where it has room: KvBlockPool::allocate_after) reads each head as
// one stream, as the contiguous layout does.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/aligned.h"
#include "kv/kv_layout.h"

namespace kvscope {

class KvBlockTables;
class KvEvictor;

class KvCache {
public:
    explicit KvCache(const KvShape& shape);  // allocates once; never grows

    // A paged cache's block tables (owned by the caller, alive as long as the cache is used).
    void set_tables(const KvBlockTables* t) { tables_ = t; }
    bool paged() const { return s_.paged(); }
    // Copies every layer's K and V rows of block src to block dst (copy-on-write).
    void copy_block(int src, int dst);

    // Eviction (kv_evict.h): the bookkeeping attention reports its probabilities to (owned by
    // the caller; nullptr: none), and the row moves that compact a stream (contiguous layout).
    void set_evictor(KvEvictor* e) { evictor_ = e; }
    KvEvictor* evictor() const { return evictor_; }
    void move_row(int il, int seq, int h, int from, int to);
    // Virtual sinks (KvShape::virtual_sinks): sink j's key of head h as first written, and a
    // replacement key row for a slot (encoded in the K codec).
    const float* sink_key(int il, int seq, int h, int j) const {
        return sink_keys_ + (head(il, seq, h) * s_.virtual_sinks + j) * s_.head_dim;
    }
    void write_k(int il, int seq, int h, int slot, const float* k);

    // k, v: [n_kv_head * head_dim] fp32, encoded (and rounded) in the K and V codecs. pad: the
    // sequence's first real slot (KvSeqs::pad); slots before it are padding.
    void write(int il, int seq, int slot, int pad, const float* k, const float* v);
    // Start of head h's [n_slots] code rows (the contiguous layout).
    const void* k(int il, int seq, int h) const { return base_[0] + row(il, seq, h, 0) * stride_[0]; }
    const void* v(int il, int seq, int h) const { return base_[1] + row(il, seq, h, 0) * stride_[1]; }
    // The K (side 0) or V (side 1) rows of head h that a token reads over slots [lo, hi), its
    // own slot being hi - 1 (hi - 1 < pad: a padding token reading itself, lo = hi - 1).
    void runs(int side, int il, int seq, int h, int pad, int lo, int hi, KvRuns* out) const;
    // A paged cache: the first row of each block holding slots [0, hi) of a head, in slot order.
    void block_rows(int side, int il, int seq, int h, int hi, std::vector<const uint8_t*>* out) const;

    const KvShape& shape() const { return s_; }
    const KvFormat& format() const { return s_.format; }
    bool windowed() const { return s_.format.windowed(); }
    // Bytes from one K (V) row to the next.
    int64_t k_stride() const { return stride_[0]; }
    int64_t v_stride() const { return stride_[1]; }
    int64_t bytes_allocated() const { return bytes_; }
    int ring_rows() const { return ring_; }

private:
    int64_t row(int il, int seq, int h, int slot) const {
        return ((int64_t(il) * s_.n_seq + seq) * s_.n_kv_head + h) * s_.n_slots + slot;
    }
    // Index of the row that holds slot `slot` of (il, seq, h), in either layout.
    int64_t slot_row(int il, int seq, int h, int slot) const;
    int64_t block_row(int il, int blk, int h) const {
        return ((int64_t(il) * s_.n_kv_head + h) * s_.n_blocks + blk) * s_.block_tokens;
    }
    int64_t head(int il, int seq, int h) const { return (int64_t(il) * s_.n_seq + seq) * s_.n_kv_head + h; }
    const KvCodec& codec(int side) const { return side == 0 ? s_.format.k : s_.format.v; }
    bool has_side(int side) const { return windowed() && codec(side).axis != KvAxis::None; }
    uint16_t* sink(int side, int64_t hd_index) const { return sink_[side] + hd_index * s_.format.sinks * s_.head_dim; }
    uint16_t* ring(int side, int64_t hd_index) const { return ring_base_[side] + hd_index * ring_ * s_.head_dim; }
    uint8_t* meta(int side, int64_t hd_index) const { return meta_[side] + hd_index * meta_per_head_[side]; }
    void write_side(int side, int il, int seq, int h, int slot, int pad, const float* x);

    KvShape s_;
    const KvBlockTables* tables_ = nullptr;
    KvEvictor* evictor_ = nullptr;
    float* sink_keys_ = nullptr;
    int64_t stride_[2] = {0, 0};
    int64_t bytes_ = 0;
    int ring_ = 0;
    int64_t meta_per_head_[2] = {0, 0};
    AlignedArray<uint8_t> mem_;
    uint8_t* base_[2] = {nullptr, nullptr};
    uint8_t* meta_[2] = {nullptr, nullptr};
    uint16_t* sink_[2] = {nullptr, nullptr};
    uint16_t* ring_base_[2] = {nullptr, nullptr};
    std::vector<float> block_;  // a Channel block's rows as floats, while it is encoded
};

}  // namespace kvscope
