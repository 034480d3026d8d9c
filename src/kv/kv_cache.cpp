#include "kv/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "kv/kv_blocks.h"
#include "kv/kv_codec.h"

namespace kvscope {

KvCache::KvCache(const KvShape& shape) : s_(shape) {
    for (const KvCodec* c : {&s_.format.k, &s_.format.v})
        if (c->dtype == DType::F8) fail("--kv-dtype fp8: the KV cache stores fp32, fp16, bf16, int8, int4 or int2");
    if (s_.format.v.axis == KvAxis::Channel) fail("--v-dtype {}: values are quantized per token, not per channel", kv_codec_name(s_.format.v));
    s_.format.k = kv_codec_for(s_.format.k, s_.head_dim, "--k-dtype");
    s_.format.v = kv_codec_for(s_.format.v, s_.head_dim, "--v-dtype");
    if (s_.paged() && s_.format.windowed())
        fail("--kv-layout paged: KV format {} keeps a window, sinks or per-channel keys per sequence; the paged "
             "layout takes fp32, fp16, bf16 and per-token integer codecs", kv_format_name(s_.format));
    if (s_.paged() && s_.n_blocks < 1) fail("--kv-layout paged: the pool needs at least one block");
    stride_[0] = kv_row_stride(s_.format.k, s_.head_dim);
    stride_[1] = kv_row_stride(s_.format.v, s_.head_dim);
    ring_ = kv_ring_rows(s_);
    bytes_ = kv_cache_bytes(s_);
    mem_ = make_aligned<uint8_t>(size_t(bytes_));
    // Touch every page now so the first decode steps do not pay page faults (and RSS shows it).
    std::memset(mem_.get(), 0, size_t(bytes_));
    const int64_t heads = head(s_.n_layer, 0, 0);
    const int64_t rows = s_.paged() ? block_row(s_.n_layer, 0, 0) : heads * s_.n_slots;
    uint8_t* p = mem_.get();
    for (int side = 0; side < 2; side++) {
        base_[side] = p;
        p += rows * stride_[side];
    }
    int G = 0;
    for (int side = 0; side < 2; side++) {
        if (!has_side(side)) continue;
        meta_per_head_[side] = kv_channel_blocks(codec(side), s_.n_slots) * kv_channel_meta_bytes(codec(side), s_.head_dim);
        meta_[side] = p;
        p += heads * meta_per_head_[side];
        sink_[side] = reinterpret_cast<uint16_t*>(p);
        p += heads * s_.format.sinks * s_.head_dim * 2;
        ring_base_[side] = reinterpret_cast<uint16_t*>(p);
        p += heads * int64_t(ring_) * s_.head_dim * 2;
        if (codec(side).axis == KvAxis::Channel) G = std::max(G, codec(side).group);
    }
    if (s_.virtual_sinks > 0) {
        if (s_.paged() || s_.format.windowed()) fail("internal: virtual sinks need the contiguous layout and a per-token format");
        sink_keys_ = reinterpret_cast<float*>(p);
        p += heads * s_.virtual_sinks * s_.head_dim * 4;
    }
    if (p != mem_.get() + bytes_) fail("internal: KV cache layout ({} bytes) differs from kv_cache_bytes ({})", p - mem_.get(), bytes_);
    block_.resize(size_t(std::max(G, 1)) * size_t(s_.head_dim));
}

int64_t KvCache::slot_row(int il, int seq, int h, int slot) const {
    if (!s_.paged()) return row(il, seq, h, slot);
    return block_row(il, tables_->block_of(seq, slot), h) + slot % s_.block_tokens;
}

void KvCache::copy_block(int src, int dst) {
    for (int side = 0; side < 2; side++) {
        const int64_t bytes = int64_t(s_.block_tokens) * stride_[side];
        for (int il = 0; il < s_.n_layer; il++)
            for (int h = 0; h < s_.n_kv_head; h++)
                std::memcpy(base_[side] + block_row(il, dst, h) * stride_[side],
                            base_[side] + block_row(il, src, h) * stride_[side], size_t(bytes));
    }
}

void KvCache::move_row(int il, int seq, int h, int from, int to) {
    if (s_.paged() || windowed()) fail("internal: moving KV rows needs the contiguous layout and a per-token format");
    for (int side = 0; side < 2; side++)
        std::memcpy(base_[side] + row(il, seq, h, to) * stride_[side], base_[side] + row(il, seq, h, from) * stride_[side],
                    size_t(stride_[side]));
}

void KvCache::write_k(int il, int seq, int h, int slot, const float* k) {
    kv_encode_row(s_.format.k, s_.head_dim, k, base_[0] + slot_row(il, seq, h, slot) * stride_[0]);
}

void KvCache::write(int il, int seq, int slot, int pad, const float* k, const float* v) {
    const int hd = s_.head_dim;
    if (slot < s_.virtual_sinks)
        for (int h = 0; h < s_.n_kv_head; h++)
            std::memcpy(sink_keys_ + (head(il, seq, h) * s_.virtual_sinks + slot) * hd, k + h * hd, size_t(hd) * 4);
    for (int h = 0; h < s_.n_kv_head; h++) {
        write_side(0, il, seq, h, slot, pad, k + h * hd);
        write_side(1, il, seq, h, slot, pad, v + h * hd);
    }
}

void KvCache::write_side(int side, int il, int seq, int h, int slot, int pad, const float* x) {
    const int hd = s_.head_dim;
    const KvCodec& c = codec(side);
    if (!has_side(side)) {
        kv_encode_row(c, hd, x, base_[side] + slot_row(il, seq, h, slot) * stride_[side]);
        return;
    }
    uint8_t* codes = base_[side] + row(il, seq, h, 0) * stride_[side];
    const int64_t hi = head(il, seq, h);
    const int base = pad + s_.format.sinks;
    if (slot >= pad && slot < base) {
        uint16_t* r = sink(side, hi) + int64_t(slot - pad) * hd;
        for (int i = 0; i < hd; i++) r[i] = f32_to_f16(x[i]);
        return;
    }
    uint16_t* r = ring(side, hi) + int64_t(slot % ring_) * hd;
    for (int i = 0; i < hd; i++) r[i] = f32_to_f16(x[i]);
    if (slot < pad) return;  // padding: read only by itself, from the ring
    if (c.axis == KvAxis::Token) {
        for (int i = 0; i < hd; i++) block_[size_t(i)] = f16_to_f32(r[i]);
        kv_encode_row(c, hd, block_.data(), codes + slot * stride_[side]);
        return;
    }
    const int G = c.group;
    if ((slot - base + 1) % G != 0) return;  // the block is not complete yet
    const int first = slot - G + 1;
    for (int j = 0; j < G; j++) {
        const uint16_t* src = ring(side, hi) + int64_t((first + j) % ring_) * hd;
        for (int i = 0; i < hd; i++) block_[size_t(j) * size_t(hd) + size_t(i)] = f16_to_f32(src[i]);
    }
    kv_encode_block(c, hd, block_.data(), hd, codes + first * stride_[side], stride_[side],
                    meta(side, hi) + int64_t((first - base) / G) * kv_channel_meta_bytes(c, hd));
}

void KvCache::runs(int side, int il, int seq, int h, int pad, int lo, int hi, KvRuns* out) const {
    const int hd = s_.head_dim;
    const KvCodec& c = codec(side);
    out->clear();
    auto add = [&](const uint8_t* rows, const uint8_t* m, const KvCodec& cc, int64_t stride, int j0, int j1) {
        if (j1 <= j0) return;
        out->add(KvRun{rows, m, cc, stride, j0, j1});
    };
    if (s_.paged()) {  // one run per block
        const int bt = s_.block_tokens;
        const std::vector<int>& table = tables_->table(seq);
        for (int j0 = lo; j0 < hi;) {
            const int b = j0 / bt, j1 = std::min(hi, (b + 1) * bt);
            add(base_[side] + (block_row(il, table[size_t(b)], h) + j0 % bt) * stride_[side], nullptr, c,
                stride_[side], j0, j1);
            j0 = j1;
        }
        return;
    }
    const uint8_t* codes = base_[side] + row(il, seq, h, 0) * stride_[side];
    if (!has_side(side)) {
        add(codes + lo * stride_[side], nullptr, c, stride_[side], lo, hi);
        return;
    }
    const KvCodec f16 = KvFormat(DType::F16).k;
    const int64_t hx = head(il, seq, h);
    auto add_ring = [&](int j0, int j1) {  // fp16 rows of slots [j0, j1) from the ring, split where it wraps
        while (j0 < j1) {
            const int r0 = j0 % ring_, n = std::min(j1 - j0, ring_ - r0);
            add(reinterpret_cast<const uint8_t*>(ring(side, hx) + int64_t(r0) * hd), nullptr, f16, hd * 2, j0, j0 + n);
            j0 += n;
        }
    };
    if (hi - 1 < pad) {  // a padding token
        add_ring(lo, hi);
        return;
    }
    const int base = pad + s_.format.sinks, L = hi;
    add(reinterpret_cast<const uint8_t*>(sink(side, hx) + int64_t(lo - pad) * hd), nullptr, f16, hd * 2, lo,
        std::min(base, L));
    int qend = base;
    if (L > base) {
        if (c.axis == KvAxis::Token) qend = std::max(base, L - s_.format.residual);
        else qend = base + (std::max(0, L - base - s_.format.residual) / c.group) * c.group;
    }
    add(codes + int64_t(base) * stride_[side], meta(side, hx), c, stride_[side], base, qend);
    add_ring(std::max(base, qend), L);
}

void KvCache::block_rows(int side, int il, int seq, int h, int hi, std::vector<const uint8_t*>* out) const {
    const int bt = s_.block_tokens, nb = (hi + bt - 1) / bt;
    const std::vector<int>& table = tables_->table(seq);
    out->resize(size_t(nb));
    const uint8_t* base = base_[side] + block_row(il, 0, h) * stride_[side];
    const int64_t block_bytes = int64_t(bt) * stride_[side];
    for (int b = 0; b < nb; b++) (*out)[size_t(b)] = base + table[size_t(b)] * block_bytes;
}

}  // namespace kvscope
