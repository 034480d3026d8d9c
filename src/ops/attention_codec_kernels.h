// The codec attention kernels, written once over a vector type. Included by
// attention_codec_avx2.cpp (8 lanes) and attention_codec_avx512.cpp (16 lanes), each after
// defining KVSCOPE_CODEC_TARGET (the target attribute of its functions) and its traits class:
// everything here has internal linkage, so each file compiles its own copy for its
// instruction set and no 512-bit code can leak into a function the AVX2 path shares.
//
// Traits I: V (fp32 vector) and Vi (int32 vector) of L lanes, and always-inline functions
// zero, set1, load, store, add, mul, fmadd, cvt (int32 to fp32), u8 / s8 (L bytes widened),
// and_, srli<N>, f32 / f16 / bf16 (L stored floats widened), nat4 / nat2 (8 codes of 4 / 2 bits
// in natural order; 8-lane traits only), meta (n fp16 values widened), perm (a table's lanes
// by index), iota, seti, addi, sll, srl (shift by a count; 32 or more gives 0), reduce4.
//
// A row is read in meta passes of B blocks of L channels (B = 4; 1 for the natural-order
// kernels): the group scales a pass needs are one vector, fetched and widened once per row and
// pass, and each block takes its lanes' scales and minima from it by index.
#pragma once

#include <algorithm>
#include <cstdint>

#include <immintrin.h>

#include "ops/attention_codec.h"

namespace kvscope::ops::codec {
namespace {  // NOLINT(google-build-namespaces): one copy per including file, by design

// Bytes ahead of the current row at which the kernels request cache lines (as the float
// attention kernel: docs/KERNELS.md, attention).
constexpr int kPrefetchBytes = 2048;
// Rows per chunk when a call reads each row in several passes over channel slices (values,
// more heads than registers hold): the chunk's rows stay in L1 between passes.
constexpr int kChunkRows = 64;

constexpr bool is_float(Kind k) { return k == Kind::F32 || k == Kind::F16 || k == Kind::BF16; }

// Vectors per unit of codes: int4 and int2 split each byte with shifts and masks.
template <Kind K, bool Nat>
constexpr int vectors_per_unit() {
    return Nat ? 1 : K == Kind::I4 ? 2 : K == Kind::I2 ? 4 : 1;
}

// Vector k of the unit starting at channel c of a row, widened to fp32, no scales applied.
template <class I, Kind K, bool Nat>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline typename I::V widened(const uint8_t* row, int c, int k) {
    if constexpr (K == Kind::F32) return I::f32(row + 4 * c);
    else if constexpr (K == Kind::F16) return I::f16(row + 2 * c);
    else if constexpr (K == Kind::BF16) return I::bf16(row + 2 * c);
    else if constexpr (K == Kind::I8S) return I::cvt(I::s8(row + c));
    else if constexpr (K == Kind::I8A) return I::cvt(I::u8(row + c));
    else if constexpr (Nat && K == Kind::I4) return I::cvt(I::nat4(row + c / 2));
    else if constexpr (Nat) return I::cvt(I::nat2(row + c / 4));
    else if constexpr (K == Kind::I4) {
        const auto d = I::u8(row + c / 2);  // one byte per lane: codes 2l and 2l + 1
        return I::cvt(k == 0 ? I::and_(d, 15) : I::template srli<4>(d));
    } else {
        const auto d = I::u8(row + c / 4);  // codes 4l .. 4l + 3
        switch (k) {
            case 0: return I::cvt(I::and_(d, 3));
            case 1: return I::cvt(I::and_(I::template srli<2>(d), 3));
            case 2: return I::cvt(I::and_(I::template srli<4>(d), 3));
            default: return I::cvt(I::template srli<6>(d));
        }
    }
}

// What a kernel computes once per call from a run's geometry.
template <class I, int B>
struct Setup {
    typename I::Vi is[B], im[B];  // Lane: per block, the lanes' scale and minimum in the pass vector
    int halves = 0;               // Lane: fp16 values in one pass's scales
    int32_t meta_at[64] = {};     // Lane: per pass, the byte of its first group's scale
    int passes = 0;
};

template <class I, Kind K, Mode Md, bool Nat, int B>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline void setup(const Rows& r, Setup<I, B>* st) {
    constexpr int L = I::L, P = vectors_per_unit<K, Nat>(), MP = B * L;
    st->passes = r.hd / MP;
    if constexpr (Md == Mode::Lane) {
        const int per = r.zp ? 2 : 1;  // fp16 values per group
        const int shift = r.G < MP ? __builtin_ctz(unsigned(r.G)) : 32;
        st->halves = (r.G < MP ? MP / r.G : 1) * per;
        for (int b = 0; b < B; b++) {
            // Lane l of block b holds channel (b / P) P L + l P + b % P of the pass.
            const auto c = I::addi(I::sll(I::iota(), __builtin_ctz(unsigned(P))), I::seti((b / P) * P * L + b % P));
            st->is[b] = I::sll(I::srl(c, shift), per - 1);
            st->im[b] = I::addi(st->is[b], I::seti(per - 1));
        }
        for (int p = 0; p < st->passes; p++)
            st->meta_at[p] = int32_t(r.code_bytes + int64_t(p * MP / r.G) * per * 2);
    }
}

// A pass's scales and minima as vectors (symmetric codes: minus the offset times the scale).
template <class I>
struct PassMeta {
    typename I::V s, m;
};

template <class I, int B>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline PassMeta<I> pass_meta(const Rows& r, const Setup<I, B>& st,
                                                                        const uint8_t* row, int p) {
    PassMeta<I> pm;
    pm.s = I::meta(row + st.meta_at[p], st.halves);
    pm.m = r.zp ? pm.s : I::mul(pm.s, I::set1(-r.offset));
    return pm;
}

// Block b of pass p of a row: its L channels' values (Row: before the row's scale).
template <class I, Kind K, Mode Md, bool Nat, int B>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline typename I::V decoded(const uint8_t* row, int p, int b,
                                                                       const Setup<I, B>& st, const PassMeta<I>& pm,
                                                                       typename I::V neg_offset) {
    constexpr int L = I::L, P = vectors_per_unit<K, Nat>(), MP = B * L;
    auto x = widened<I, K, Nat>(row, p * MP + (b / P) * P * L, b % P);
    if constexpr (Md == Mode::Lane) x = I::fmadd(x, I::perm(pm.s, st.is[b]), I::perm(pm.m, st.im[b]));
    if constexpr (Md == Mode::Row && K != Kind::I8S) x = I::add(x, neg_offset);
    return x;
}

template <class I>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline float row_scale(const Rows& r, const uint8_t* row) {
    uint16_t h;
    __builtin_memcpy(&h, row + r.code_bytes, 2);
    return _cvtsh_ss(h);
}

// Scores of KB consecutive rows from row j for the M heads: per row, each block is decoded
// once and multiplied into every head's sum; the M x KB sums are reduced four at a time.
template <class I, Kind K, Mode Md, int M, bool Nat, int B, int KB>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline void scores_step(const Rows& r, const Heads& hs,
                                                                    const Setup<I, B>& st, int j, float scale) {
    using V = typename I::V;
    constexpr int L = I::L, MP = B * L, NF = M * KB;
    V acc[NF];
#pragma GCC unroll 32
    for (int f = 0; f < NF; f++) acc[f] = I::zero();
    const V neg_offset = I::set1(-r.offset);
#pragma GCC unroll 4
    for (int k = 0; k < KB; k++) {
        const uint8_t* row = r.rows + int64_t(j + k) * r.stride;
        _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetchBytes, _MM_HINT_T0);
        for (int p = 0; p < st.passes; p++) {
            PassMeta<I> pm{};
            if constexpr (Md == Mode::Lane) pm = pass_meta<I, B>(r, st, row, p);
#pragma GCC unroll 4
            for (int b = 0; b < B; b++) {
                const V x = decoded<I, K, Md, Nat, B>(row, p, b, st, pm, neg_offset);
#pragma GCC unroll 8
                for (int h = 0; h < M; h++)
                    acc[h * KB + k] = I::fmadd(I::load(hs.q[h] + p * MP + b * L), x, acc[h * KB + k]);
            }
        }
        if constexpr (Md == Mode::Row) {
            const V rs = I::set1(row_scale<I>(r, row));
#pragma GCC unroll 8
            for (int h = 0; h < M; h++) acc[h * KB + k] = I::mul(acc[h * KB + k], rs);
        }
    }
    const V z = I::zero();
#pragma GCC unroll 8
    for (int g = 0; g < (NF + 3) / 4; g++) {
        const __m128 d = I::reduce4(acc[4 * g], 4 * g + 1 < NF ? acc[4 * g + 1] : z, 4 * g + 2 < NF ? acc[4 * g + 2] : z,
                                    4 * g + 3 < NF ? acc[4 * g + 3] : z);
        if constexpr (M == 1 && KB == 4) {
            const __m128 c = _mm_set1_ps(hs.cst ? hs.cst[0] : 0.0f);
            _mm_storeu_ps(hs.s[0] + j, _mm_mul_ps(_mm_add_ps(d, c), _mm_set1_ps(scale)));
        } else {
            alignas(16) float t[4];
            _mm_store_ps(t, d);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const int f = 4 * g + i;
                if (f < NF) hs.s[f / KB][j + f % KB] = (t[i] + (hs.cst ? hs.cst[f / KB] : 0.0f)) * scale;
            }
        }
    }
}

// s[h][j] = scale * (q[h] . row j + cst[h]) for the run's rows.
template <class I, Kind K, Mode Md, int M, bool Nat>
KVSCOPE_CODEC_TARGET void scores_k(const Rows& r, const Heads& hs, float scale) {
    constexpr int B = Nat ? 1 : 4;
    // Rows per reduction: four sums per shuffle tree, from one head's 4 rows or 2 heads' 2.
    constexpr int KB = M == 1 ? 4 : M == 2 ? 2 : 1;
    Setup<I, B> st;
    setup<I, K, Md, Nat, B>(r, &st);
    int j = 0;
    for (; j + KB <= r.n; j += KB) scores_step<I, K, Md, M, Nat, B, KB>(r, hs, st, j, scale);
    for (; j < r.n; j++) scores_step<I, K, Md, M, Nat, B, 1>(r, hs, st, j, scale);
}

// acc[h][c] += sum over rows j in [j0, j1) of w[h][j] * row j's channel c, for the SB blocks
// from block BP0 of pass p (SB <= B) or the SB / B passes from p (SB > B), the blocks' sums
// for all heads held in registers over the rows.
template <class I, Kind K, Mode Md, int M, bool Nat, int B, int SB, int BP0>
KVSCOPE_CODEC_TARGET void values_slice(const Rows& r, const Heads& hs, const Setup<I, B>& st, int p, int j0, int j1) {
    using V = typename I::V;
    constexpr int L = I::L, MP = B * L, NP = SB > B ? SB / B : 1, BB = SB > B ? B : SB;
    const int c0 = p * MP + BP0 * L;
    const bool first = p == 0 && BP0 == 0;
    V a[M][SB];
#pragma GCC unroll 8
    for (int h = 0; h < M; h++)
#pragma GCC unroll 8
        for (int b = 0; b < SB; b++) a[h][b] = I::load(hs.acc[h] + c0 + b * L);
    const V neg_offset = I::set1(-r.offset);
    for (int j = j0; j < j1; j++) {
        const uint8_t* row = r.rows + int64_t(j) * r.stride;
        if (first) _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetchBytes, _MM_HINT_T0);
        float rs = 1.0f;
        if constexpr (Md == Mode::Row) rs = row_scale<I>(r, row);
        V w[M];
#pragma GCC unroll 8
        for (int h = 0; h < M; h++) w[h] = I::set1(hs.s[h][j] * rs);
#pragma GCC unroll 2
        for (int pp = 0; pp < NP; pp++) {
            PassMeta<I> pm{};
            if constexpr (Md == Mode::Lane) pm = pass_meta<I, B>(r, st, row, p + pp);
#pragma GCC unroll 4
            for (int bi = 0; bi < BB; bi++) {
                const V x = decoded<I, K, Md, Nat, B>(row, p + pp, BP0 + bi, st, pm, neg_offset);
#pragma GCC unroll 8
                for (int h = 0; h < M; h++) a[h][pp * B + bi] = I::fmadd(w[h], x, a[h][pp * B + bi]);
            }
        }
    }
#pragma GCC unroll 8
    for (int h = 0; h < M; h++)
#pragma GCC unroll 8
        for (int b = 0; b < SB; b++) I::store(hs.acc[h] + c0 + b * L, a[h][b]);
}

// acc[h] += sum over the run's rows of w[h][j] * row j. SB: blocks whose sums stay in registers
// for all M heads; a row wider than that is read in slices, chunk by chunk.
template <class I, Kind K, Mode Md, int M, bool Nat, int SB>
KVSCOPE_CODEC_TARGET void values_k(const Rows& r, const Heads& hs) {
    constexpr int B = Nat ? 1 : 4;
    Setup<I, B> st;
    setup<I, K, Md, Nat, B>(r, &st);
    const int slices = SB >= B ? st.passes / (SB / B) : st.passes * (B / SB);
    const int chunk = slices > 1 ? kChunkRows : r.n;
    for (int j0 = 0; j0 < r.n; j0 += chunk) {
        const int j1 = std::min(r.n, j0 + chunk);
        if constexpr (SB >= B) {
            for (int p = 0; p < st.passes; p += SB / B) values_slice<I, K, Md, M, Nat, B, SB, 0>(r, hs, st, p, j0, j1);
        } else {
            for (int p = 0; p < st.passes; p++) {
                values_slice<I, K, Md, M, Nat, B, SB, 0>(r, hs, st, p, j0, j1);
                if constexpr (B / SB >= 2) values_slice<I, K, Md, M, Nat, B, SB, SB>(r, hs, st, p, j0, j1);
                if constexpr (B / SB >= 4) {
                    values_slice<I, K, Md, M, Nat, B, SB, 2 * SB>(r, hs, st, p, j0, j1);
                    values_slice<I, K, Md, M, Nat, B, SB, 3 * SB>(r, hs, st, p, j0, j1);
                }
            }
        }
    }
}

// Run-time dispatch: M (1 to 8) and the codec, for one instruction set; I::slice_blocks<M>()
// gives the blocks per values slice.
template <class I, Kind K, Mode Md, bool Nat>
KVSCOPE_CODEC_TARGET void scores_m(const Rows& r, const Heads& hs, float scale) {
    switch (hs.m) {
        case 1: return scores_k<I, K, Md, 1, Nat>(r, hs, scale);
        case 2: return scores_k<I, K, Md, 2, Nat>(r, hs, scale);
        case 3: return scores_k<I, K, Md, 3, Nat>(r, hs, scale);
        case 4: return scores_k<I, K, Md, 4, Nat>(r, hs, scale);
        case 5: return scores_k<I, K, Md, 5, Nat>(r, hs, scale);
        case 6: return scores_k<I, K, Md, 6, Nat>(r, hs, scale);
        case 7: return scores_k<I, K, Md, 7, Nat>(r, hs, scale);
        default: return scores_k<I, K, Md, 8, Nat>(r, hs, scale);
    }
}

template <class I, Kind K, Mode Md, int M, bool Nat>
KVSCOPE_CODEC_TARGET void values_sb(const Rows& r, const Heads& hs) {
    constexpr int B = Nat ? 1 : 4;
    constexpr int SB = Nat ? 1 : I::template slice_blocks<M>();
    if constexpr (SB > B) {
        if ((r.hd / (B * I::L)) % (SB / B) != 0) return values_k<I, K, Md, M, Nat, B>(r, hs);
    }
    values_k<I, K, Md, M, Nat, SB>(r, hs);
}

template <class I, Kind K, Mode Md, bool Nat>
KVSCOPE_CODEC_TARGET void values_m(const Rows& r, const Heads& hs) {
    switch (hs.m) {
        case 1: return values_sb<I, K, Md, 1, Nat>(r, hs);
        case 2: return values_sb<I, K, Md, 2, Nat>(r, hs);
        case 3: return values_sb<I, K, Md, 3, Nat>(r, hs);
        case 4: return values_sb<I, K, Md, 4, Nat>(r, hs);
        case 5: return values_sb<I, K, Md, 5, Nat>(r, hs);
        case 6: return values_sb<I, K, Md, 6, Nat>(r, hs);
        case 7: return values_sb<I, K, Md, 7, Nat>(r, hs);
        default: return values_sb<I, K, Md, 8, Nat>(r, hs);
    }
}

// One entry per (kind, mode) pair the cache can hand over; `Values` picks values_m over scores_m.
template <class I, bool Nat, bool Values>
KVSCOPE_CODEC_TARGET void dispatch(const Rows& r, const Heads& hs, float scale) {
#define KVSCOPE_CODEC_CALL(K, Md)                                              \
    {                                                                          \
        if constexpr (Values) return values_m<I, Kind::K, Mode::Md, Nat>(r, hs); \
        else return scores_m<I, Kind::K, Mode::Md, Nat>(r, hs, scale);           \
    }
    switch (r.kind) {
        case Kind::F32: KVSCOPE_CODEC_CALL(F32, Plain);
        case Kind::F16: KVSCOPE_CODEC_CALL(F16, Plain);
        case Kind::BF16: KVSCOPE_CODEC_CALL(BF16, Plain);
        case Kind::I8S:
            if (r.mode == Mode::Row) KVSCOPE_CODEC_CALL(I8S, Row);
            if (r.mode == Mode::Lane) KVSCOPE_CODEC_CALL(I8S, Lane);
            KVSCOPE_CODEC_CALL(I8S, Plain);
        case Kind::I8A:
            if (r.mode == Mode::Lane) KVSCOPE_CODEC_CALL(I8A, Lane);
            KVSCOPE_CODEC_CALL(I8A, Plain);
        case Kind::I4:
            if (r.mode == Mode::Row) KVSCOPE_CODEC_CALL(I4, Row);
            if (r.mode == Mode::Lane) KVSCOPE_CODEC_CALL(I4, Lane);
            KVSCOPE_CODEC_CALL(I4, Plain);
        case Kind::I2:
            if (r.mode == Mode::Row) KVSCOPE_CODEC_CALL(I2, Row);
            if (r.mode == Mode::Lane) KVSCOPE_CODEC_CALL(I2, Lane);
            KVSCOPE_CODEC_CALL(I2, Plain);
    }
#undef KVSCOPE_CODEC_CALL
}

// Whether the B-block kernels take a run: head_dim whole passes of B x L channels, and groups
// that split a pass evenly or span whole passes.
template <class I>
bool covers_passes(const Rows& r, int B) {
    const int MP = B * I::L;
    if (r.hd % MP != 0 || r.hd / MP > 64) return false;
    if (r.mode != Mode::Lane) return true;
    return r.G < MP ? MP % r.G == 0 : r.G % MP == 0;
}

}  // namespace
}  // namespace kvscope::ops::codec
