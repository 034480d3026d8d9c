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
// by index), lanes (an index vector from L ints), iota, seti, addi, sll, srl (shift by a
// count; 32 or more gives 0), reduce4, and slice_blocks<M>().
//
// A row is read in passes of B blocks of L channels (B = 4; 1 for the natural-order kernels):
// the group scales a pass needs are one vector, fetched and widened once per row and pass, and
// each block takes its lanes' scales and minima from it by index. Where the pass count (head_dim
// 64) and the group (32 channels, every default codec) are known at compile time, the indices
// are constants: blocks of one group share one permute, and the pass loop unrolls.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include <immintrin.h>

#include "ops/attention_codec.h"

namespace kvscope::ops::codec {
namespace {  // NOLINT(google-build-namespaces): one copy per including file, by design

// Bytes ahead of the current row at which the kernels request cache lines (as the float
// attention kernel: docs/KERNELS.md, attention), inside the run; the caller requests the lines
// past its end (the next runs may lie anywhere).
constexpr int kPrefetchBytes = 2048;
// Rows per chunk when a call reads each row in several passes over channel slices (values,
// more heads than registers hold): the chunk's rows stay in L1 between passes.
constexpr int kChunkRows = 64;

constexpr bool is_lane(Mode m) { return m == Mode::Lane || m == Mode::LaneSym; }

// What a kernel knows at compile time about the rows it reads.
template <class I_, Kind K_, Mode Md_, bool Nat_, int NP_, int GC_>
struct Shape {
    using I = I_;
    using V = typename I::V;
    using Vi = typename I::Vi;
    static constexpr Kind K = K_;
    static constexpr Mode Md = Md_;
    static constexpr bool Nat = Nat_;         // natural channel order, 8 at a time (any head_dim)
    static constexpr int L = I::L;
    static constexpr int P = Nat ? 1 : K == Kind::I4 ? 2 : K == Kind::I2 ? 4 : 1;  // vectors per unit
    static constexpr int B = Nat ? 1 : 4;     // blocks per pass
    static constexpr int MP = B * L;          // channels per pass
    static constexpr int NP = NP_;            // passes per row; 0: counted at run time
    static constexpr int GC = GC_;            // Lane: channels per group; 0: given at run time
    static constexpr int per = Md == Mode::Lane ? 2 : 1;  // fp16 values per group

    // Bytes of n channels.
    static constexpr int bytes(int n) {
        return K == Kind::F32 ? 4 * n : K == Kind::F16 || K == Kind::BF16 ? 2 * n : K == Kind::I4 ? n / 2 : K == Kind::I2 ? n / 4 : n;
    }
    // Lane l of block b holds channel (b / P) P L + l P + b % P of its pass.
    static constexpr int channel(int b, int l) { return (b / P) * P * L + l * P + b % P; }
    // Where lane l of block b finds its group's scale in the pass vector (GC known).
    static constexpr std::array<int, L> scale_lanes(int b, int extra) {
        std::array<int, L> a{};
        for (int l = 0; l < L; l++) a[size_t(l)] = (GC < MP ? channel(b, l) / GC : 0) * per + extra;
        return a;
    }
};

// Vector k of the unit of codes at `unit`, widened to fp32, no scales applied.
template <class S>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline typename S::V widened(const uint8_t* unit, int k) {
    using I = typename S::I;
    constexpr Kind K = S::K;
    if constexpr (K == Kind::F32) return I::f32(unit);
    else if constexpr (K == Kind::F16) return I::f16(unit);
    else if constexpr (K == Kind::BF16) return I::bf16(unit);
    else if constexpr (K == Kind::I8S) return I::cvt(I::s8(unit));
    else if constexpr (K == Kind::I8A) return I::cvt(I::u8(unit));
    else if constexpr (S::Nat && K == Kind::I4) return I::cvt(I::nat4(unit));
    else if constexpr (S::Nat) return I::cvt(I::nat2(unit));
    else if constexpr (K == Kind::I4) {
        const auto d = I::u8(unit);  // one byte per lane: codes 2l and 2l + 1
        return I::cvt(k == 0 ? I::and_(d, 15) : I::template srli<4>(d));
    } else {
        const auto d = I::u8(unit);  // codes 4l .. 4l + 3
        switch (k) {
            case 0: return I::cvt(I::and_(d, 3));
            case 1: return I::cvt(I::and_(I::template srli<2>(d), 3));
            case 2: return I::cvt(I::and_(I::template srli<4>(d), 3));
            default: return I::cvt(I::template srli<6>(d));
        }
    }
}

// What a kernel computes once per call from a run's geometry (the Lane modes' group layout
// when it is not known at compile time).
template <class S>
struct Setup {
    typename S::Vi is[S::B], im[S::B];  // per block, the lanes' scale and minimum in the pass vector
    int halves = 0;                     // fp16 values in one pass's scales
    int32_t meta_at[64] = {};           // per pass, the byte of its first group's scale
    int passes = 0;
    int prefetch_end = 0;               // rows whose prefetch stays inside the run
};

template <class S>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline void setup(const Rows& r, Setup<S>* st) {
    using I = typename S::I;
    constexpr int MP = S::MP, per = S::per;
    st->passes = S::NP ? S::NP : r.hd / MP;
    st->prefetch_end = r.n - int((kPrefetchBytes + r.stride - 1) / r.stride);
    if constexpr (is_lane(S::Md) && S::GC == 0) {
        const int shift = r.G < MP ? __builtin_ctz(unsigned(r.G)) : 32;
        st->halves = (r.G < MP ? MP / r.G : 1) * per;
        for (int b = 0; b < S::B; b++) {
            const auto c = I::addi(I::sll(I::iota(), __builtin_ctz(unsigned(S::P))), I::seti(S::channel(b, 0)));
            st->is[b] = I::sll(I::srl(c, shift), per - 1);
            st->im[b] = I::addi(st->is[b], I::seti(per - 1));
        }
        for (int p = 0; p < st->passes; p++) st->meta_at[p] = int32_t(r.code_bytes + int64_t(p * MP / r.G) * per * 2);
    }
}

// A pass's scales and minima as vectors (symmetric codes: minus the offset times the scale).
template <class S>
struct PassMeta {
    typename S::V s, m;
};

template <class S>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline PassMeta<S> pass_meta(const Rows& r, const Setup<S>& st,
                                                                        const uint8_t* row, int p) {
    using I = typename S::I;
    PassMeta<S> pm;
    if constexpr (S::GC > 0) {
        constexpr int groups = S::GC < S::MP ? S::MP / S::GC : 1;
        pm.s = I::meta(row + r.code_bytes + int64_t(p) * S::MP / S::GC * S::per * 2, groups * S::per);
    } else {
        pm.s = I::meta(row + st.meta_at[p], st.halves);
    }
    if constexpr (S::Md == Mode::Lane) pm.m = pm.s;
    else pm.m = I::mul(pm.s, I::set1(-r.offset));
    return pm;
}

// Block b of pass p of a row: its L channels' values (Row: before the row's scale).
template <class S>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline typename S::V decoded(const uint8_t* row, int p, int b,
                                                                       const Setup<S>& st, const PassMeta<S>& pm,
                                                                       typename S::V neg_offset) {
    using I = typename S::I;
    constexpr int P = S::P;
    const uint8_t* unit = row + int64_t(p) * S::bytes(S::MP) + (b / P) * S::bytes(P * S::L);
    auto x = widened<S>(unit, b % P);
    if constexpr (is_lane(S::Md) && S::GC > 0) {
        // Constant indices: the blocks of one group permute the same lanes, once.
        x = I::fmadd(x, I::perm(pm.s, I::lanes(S::scale_lanes(b, 0))), I::perm(pm.m, I::lanes(S::scale_lanes(b, S::per - 1))));
    } else if constexpr (is_lane(S::Md)) {
        x = I::fmadd(x, I::perm(pm.s, st.is[b]), I::perm(pm.m, st.im[b]));
    }
    if constexpr (S::Md == Mode::Row && S::K != Kind::I8S) x = I::add(x, neg_offset);
    return x;
}

[[gnu::always_inline]] inline uint16_t row_scale_half(const Rows& r, const uint8_t* row) {
    uint16_t h;
    __builtin_memcpy(&h, row + r.code_bytes, 2);
    return h;
}

// Scores of KB consecutive rows from row j for the M heads: per row, each block is decoded
// once and multiplied into every head's sum; the M x KB sums are reduced four at a time.
template <class S, int M, int KB>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline void scores_step(const Rows& r, const Heads& hs, const Setup<S>& st,
                                                                    int j, float scale) {
    using I = typename S::I;
    using V = typename S::V;
    constexpr int NF = M * KB;
    V acc[NF];
#pragma GCC unroll 32
    for (int f = 0; f < NF; f++) acc[f] = I::zero();
    const V neg_offset = I::set1(-r.offset);
    const int passes = S::NP ? S::NP : st.passes;
    [[maybe_unused]] uint16_t rsh[KB];
#pragma GCC unroll 4
    for (int k = 0; k < KB; k++) {
        const uint8_t* row = r.rows + int64_t(j + k) * r.stride;
        if (j + k < st.prefetch_end) _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetchBytes, _MM_HINT_T0);
#pragma GCC unroll 4
        for (int p = 0; p < passes; p++) {
            PassMeta<S> pm{};
            if constexpr (is_lane(S::Md)) pm = pass_meta<S>(r, st, row, p);
#pragma GCC unroll 4
            for (int b = 0; b < S::B; b++) {
                const V x = decoded<S>(row, p, b, st, pm, neg_offset);
#pragma GCC unroll 8
                for (int h = 0; h < M; h++)
                    acc[h * KB + k] = I::fmadd(I::load(hs.q[h] + p * S::MP + b * S::L), x, acc[h * KB + k]);
            }
        }
        if constexpr (S::Md == Mode::Row) rsh[k] = row_scale_half(r, row);
    }
    const V z = I::zero();
    const __m128 vscale = _mm_set1_ps(scale);
#pragma GCC unroll 8
    for (int g = 0; g < (NF + 3) / 4; g++) {
        __m128 d = I::reduce4(acc[4 * g], 4 * g + 1 < NF ? acc[4 * g + 1] : z, 4 * g + 2 < NF ? acc[4 * g + 2] : z,
                              4 * g + 3 < NF ? acc[4 * g + 3] : z);
        if constexpr (S::Md == Mode::Row) {  // lane i holds row (4g + i) % KB
            __m128i h = _mm_setzero_si128();
            h = _mm_insert_epi16(h, rsh[(4 * g) % KB], 0);
            h = _mm_insert_epi16(h, rsh[(4 * g + 1) % KB], 1);
            h = _mm_insert_epi16(h, rsh[(4 * g + 2) % KB], 2);
            h = _mm_insert_epi16(h, rsh[(4 * g + 3) % KB], 3);
            d = _mm_mul_ps(d, _mm_cvtph_ps(h));
        }
        if constexpr (M == 1 && KB == 4) {
            if (hs.cst) d = _mm_add_ps(d, _mm_set1_ps(hs.cst[0]));
            _mm_storeu_ps(hs.s[0] + j, _mm_mul_ps(d, vscale));
        } else {
            alignas(16) float t[4];
            _mm_store_ps(t, _mm_mul_ps(d, vscale));
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                const int f = 4 * g + i;
                if (f < NF) hs.s[f / KB][j + f % KB] = t[i] + (hs.cst ? hs.cst[f / KB] * scale : 0.0f);
            }
        }
    }
}

// s[h][j] = scale * (q[h] . row j + cst[h]) for the run's rows.
template <class S, int M>
KVSCOPE_CODEC_TARGET void scores_k(const Rows& r, const Heads& hs, float scale) {
    // Rows per reduction: four sums per shuffle tree, from one head's 4 rows or 2 heads' 2.
    constexpr int KB = M == 1 ? 4 : M == 2 ? 2 : 1;
    Setup<S> st;
    setup<S>(r, &st);
    int j = 0;
    for (; j + KB <= r.n; j += KB) scores_step<S, M, KB>(r, hs, st, j, scale);
    for (; j < r.n; j++) scores_step<S, M, 1>(r, hs, st, j, scale);
}

// acc[h][c] += sum over rows j in [j0, j1) of w[h][j] * row j's channel c, for the SB blocks
// from block BP0 of pass p (SB <= B) or the SB / B passes from p (SB > B), the blocks' sums
// for all heads held in registers over the rows.
template <class S, int M, int SB, int BP0>
[[gnu::always_inline]] KVSCOPE_CODEC_TARGET inline void values_slice(const Rows& r, const Heads& hs,
                                                                     const Setup<S>& st, int p, int j0, int j1) {
    using I = typename S::I;
    using V = typename S::V;
    constexpr int B = S::B, L = S::L, NPS = SB > B ? SB / B : 1, BB = SB > B ? B : SB;
    const int c0 = p * S::MP + BP0 * L;
    const bool first = p == 0 && BP0 == 0;
    V a[M][SB];
#pragma GCC unroll 8
    for (int h = 0; h < M; h++)
#pragma GCC unroll 8
        for (int b = 0; b < SB; b++) a[h][b] = I::load(hs.acc[h] + c0 + b * L);
    const V neg_offset = I::set1(-r.offset);
    for (int j = j0; j < j1; j++) {
        const uint8_t* row = r.rows + int64_t(j) * r.stride;
        if (first && j < st.prefetch_end) _mm_prefetch(reinterpret_cast<const char*>(row) + kPrefetchBytes, _MM_HINT_T0);
        float rs = 1.0f;
        if constexpr (S::Md == Mode::Row) rs = _cvtsh_ss(row_scale_half(r, row));
        V w[M];
#pragma GCC unroll 8
        for (int h = 0; h < M; h++) w[h] = I::set1(hs.s[h][j] * rs);
#pragma GCC unroll 2
        for (int pp = 0; pp < NPS; pp++) {
            PassMeta<S> pm{};
            if constexpr (is_lane(S::Md)) pm = pass_meta<S>(r, st, row, p + pp);
#pragma GCC unroll 4
            for (int bi = 0; bi < BB; bi++) {
                const V x = decoded<S>(row, p + pp, BP0 + bi, st, pm, neg_offset);
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
template <class S, int M, int SB>
KVSCOPE_CODEC_TARGET void values_k(const Rows& r, const Heads& hs) {
    constexpr int B = S::B;
    Setup<S> st;
    setup<S>(r, &st);
    const int passes = st.passes;
    const int slices = SB >= B ? passes / (SB / B) : passes * (B / SB);
    const int chunk = slices > 1 ? kChunkRows : r.n;
    for (int j0 = 0; j0 < r.n; j0 += chunk) {
        const int j1 = std::min(r.n, j0 + chunk);
        if constexpr (SB >= B) {
#pragma GCC unroll 2
            for (int p = 0; p < passes; p += SB / B) values_slice<S, M, SB, 0>(r, hs, st, p, j0, j1);
        } else {
#pragma GCC unroll 2
            for (int p = 0; p < passes; p++) {
                values_slice<S, M, SB, 0>(r, hs, st, p, j0, j1);
                if constexpr (B / SB >= 2) values_slice<S, M, SB, SB>(r, hs, st, p, j0, j1);
                if constexpr (B / SB >= 4) {
                    values_slice<S, M, SB, 2 * SB>(r, hs, st, p, j0, j1);
                    values_slice<S, M, SB, 3 * SB>(r, hs, st, p, j0, j1);
                }
            }
        }
    }
}

template <class S, int M>
KVSCOPE_CODEC_TARGET void values_sb(const Rows& r, const Heads& hs) {
    constexpr int B = S::B, SB = S::Nat ? 1 : S::I::template slice_blocks<M>();
    if constexpr (SB > B) {  // a slice of whole passes must divide the row
        if constexpr (S::NP > 0 && S::NP % (SB / B) != 0) return values_k<S, M, B>(r, hs);
        if ((r.hd / S::MP) % (SB / B) != 0) return values_k<S, M, B>(r, hs);
    }
    values_k<S, M, SB>(r, hs);
}

// Run-time dispatch: the number of heads (1 to 8), head_dim 64 or another, a group of 32
// channels or another, for one kind and mode.
template <class S, bool Values>
KVSCOPE_CODEC_TARGET void heads_m(const Rows& r, const Heads& hs, float scale) {
#define KVSCOPE_CODEC_M(M)                              \
    case M:                                             \
        if constexpr (Values) return values_sb<S, M>(r, hs); \
        else return scores_k<S, M>(r, hs, scale)
    switch (hs.m) {
        KVSCOPE_CODEC_M(1);
        KVSCOPE_CODEC_M(2);
        KVSCOPE_CODEC_M(3);
        KVSCOPE_CODEC_M(4);
        KVSCOPE_CODEC_M(5);
        KVSCOPE_CODEC_M(6);
        KVSCOPE_CODEC_M(7);
        default:
            if constexpr (Values) return values_sb<S, 8>(r, hs);
            else return scores_k<S, 8>(r, hs, scale);
    }
#undef KVSCOPE_CODEC_M
}

template <class I, Kind K, Mode Md, bool Nat, bool Values>
KVSCOPE_CODEC_TARGET void shape_of(const Rows& r, const Heads& hs, float scale) {
    if constexpr (!Nat) {
        constexpr int NP64 = 64 / (4 * I::L);
        if constexpr (is_lane(Md)) {
            if (r.hd == 64 && r.G == 32) return heads_m<Shape<I, K, Md, Nat, NP64, 32>, Values>(r, hs, scale);
        } else {
            if (r.hd == 64) return heads_m<Shape<I, K, Md, Nat, NP64, 0>, Values>(r, hs, scale);
        }
    }
    heads_m<Shape<I, K, Md, Nat, 0, 0>, Values>(r, hs, scale);
}

// One entry per (kind, mode) pair the cache can hand over; `Values` picks the weighted sum of
// values over the scores.
template <class I, bool Nat, bool Values>
KVSCOPE_CODEC_TARGET void dispatch(const Rows& r, const Heads& hs, float scale) {
#define KVSCOPE_CODEC_CALL(K, Md) return shape_of<I, Kind::K, Mode::Md, Nat, Values>(r, hs, scale)
    switch (r.kind) {
        case Kind::F32: KVSCOPE_CODEC_CALL(F32, Plain);
        case Kind::F16: KVSCOPE_CODEC_CALL(F16, Plain);
        case Kind::BF16: KVSCOPE_CODEC_CALL(BF16, Plain);
        case Kind::I8S:
            if (r.mode == Mode::Row) KVSCOPE_CODEC_CALL(I8S, Row);
            if (r.mode == Mode::LaneSym) KVSCOPE_CODEC_CALL(I8S, LaneSym);
            KVSCOPE_CODEC_CALL(I8S, Plain);
        case Kind::I8A:
            if (r.mode == Mode::Lane) KVSCOPE_CODEC_CALL(I8A, Lane);
            KVSCOPE_CODEC_CALL(I8A, Plain);
        case Kind::I4:
            if (r.mode == Mode::Row) KVSCOPE_CODEC_CALL(I4, Row);
            if (r.mode == Mode::Lane) KVSCOPE_CODEC_CALL(I4, Lane);
            if (r.mode == Mode::LaneSym) KVSCOPE_CODEC_CALL(I4, LaneSym);
            KVSCOPE_CODEC_CALL(I4, Plain);
        case Kind::I2:
            if (r.mode == Mode::Row) KVSCOPE_CODEC_CALL(I2, Row);
            if (r.mode == Mode::Lane) KVSCOPE_CODEC_CALL(I2, Lane);
            if (r.mode == Mode::LaneSym) KVSCOPE_CODEC_CALL(I2, LaneSym);
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
    if (!is_lane(r.mode)) return true;
    return r.G < MP ? MP % r.G == 0 : r.G % MP == 0;
}

}  // namespace
}  // namespace kvscope::ops::codec
