#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "ops/matmul_simd.h"
#include "ops/simd.h"

namespace kvscope::ops {

namespace {

// Dot product of q with the first hd8 values of one key (8-float blocks), in two accumulators.
template <DType T>
inline __m256 dot_blocks(const float* q, const void* K, int64_t base, int hd8) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= hd8; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load8<T>(K, base + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), simd::load8<T>(K, base + i + 8), a1);
    }
    if (i < hd8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), simd::load8<T>(K, base + i), a0);
    return _mm256_add_ps(a0, a1);
}

// Scores of keys [j, j + 4) into s[j ..]: four dot products finished by one shuffle tree.
template <DType T, int HD>
[[gnu::always_inline]] inline void scores4(const float* q, const void* K, int hd_, int j, float scale, float* s) {
    const int hd = HD ? HD : hd_;
    const int hd8 = hd / 8 * 8;
    const __m256 d0 = dot_blocks<T>(q, K, int64_t(j) * hd, hd8), d1 = dot_blocks<T>(q, K, int64_t(j + 1) * hd, hd8);
    const __m256 d2 = dot_blocks<T>(q, K, int64_t(j + 2) * hd, hd8), d3 = dot_blocks<T>(q, K, int64_t(j + 3) * hd, hd8);
    __m128 s4 = mm::hsum4(d0, d1, d2, d3);
    if (hd8 < hd) {
        alignas(16) float t[4] = {0, 0, 0, 0};
        for (int k = 0; k < 4; k++)
            for (int i = hd8; i < hd; i++) t[k] += q[i] * simd::load1<T>(K, int64_t(j + k) * hd + i);
        s4 = _mm_add_ps(s4, _mm_load_ps(t));
    }
    _mm_storeu_ps(s + j, _mm_mul_ps(s4, _mm_set1_ps(scale)));
}

template <DType T, int HD>
[[gnu::always_inline]] inline float score1(const float* q, const void* K, int hd_, int j, float scale) {
    const int hd = HD ? HD : hd_;
    const int hd8 = hd / 8 * 8;
    float t = simd::hsum(dot_blocks<T>(q, K, int64_t(j) * hd, hd8));
    for (int i = hd8; i < hd; i++) t += q[i] * simd::load1<T>(K, int64_t(j) * hd + i);
    return t * scale;
}

// max of s[lo, hi), in four vector accumulators: a plain loop compiles to one scalar maxss
// per score, each waiting for the last (4 cycles a score: ~3.6k cycles per head at 912 keys).
inline float max_of(const float* s, int lo, int hi) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int j = lo;
    for (; j + 32 <= hi; j += 32) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(s + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(s + j + 8));
        m2 = _mm256_max_ps(m2, _mm256_loadu_ps(s + j + 16));
        m3 = _mm256_max_ps(m3, _mm256_loadu_ps(s + j + 24));
    }
    for (; j + 8 <= hi; j += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(s + j));
    alignas(32) float l[8];
    _mm256_store_ps(l, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    float mx = l[0];
    for (int i = 1; i < 8; i++) mx = l[i] > mx ? l[i] : mx;
    for (; j < hi; j++) mx = s[j] > mx ? s[j] : mx;
    return mx;
}

// s[lo, hi) <- exp(s - max s); returns 1 / their sum.
inline float exp_shifted(float* s, int lo, int hi) {
    const float mx = max_of(s, lo, hi);
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vs = _mm256_setzero_ps();
    int j = lo;
    for (; j + 8 <= hi; j += 8) {
        const __m256 e = simd::exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
        _mm256_storeu_ps(s + j, e);
        vs = _mm256_add_ps(vs, e);
    }
    float sum = simd::hsum(vs);
    for (; j < hi; j++) sum += (s[j] = std::exp(s[j] - mx));
    return 1.0f / sum;
}

// Bytes ahead of the current key at which the K and V loops request cache lines. At 912 keys
// (bench_attention, Intel VM, 2 runs each, heads:2): fp32 1425/1346 us without, 1306/1303 at
// 1 KiB, 1315/1329 at 2 KiB, 1305/1272 at 4 KiB; bf16 829/784, 686/676, 687/668, 736/700.
constexpr int64_t kPrefetchBytes = 2048;

// Requests the cache lines of bytes [from, from + n) of `base` (n a multiple of 64).
inline void prefetch_lines(const void* base, int64_t from, int64_t n) {
    const char* p = static_cast<const char*>(base) + from;
    for (int64_t o = 0; o < n; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

// acc[0, hd) += sum over keys k in [c, e) of p[k] * V[k]. 64 columns (8 accumulators) per
// pass: one pass for GPT-2's head_dim of 64, so each value row is read once. Rows are
// prefetched kPrefetchBytes ahead while that stays below byte pf_end of V.
template <DType T, int HD>
void accumulate_values(const float* p, const void* V, int hd_, int c, int e, float* acc, int64_t pf_end) {
    const int hd = HD ? HD : hd_;
    const int64_t row = int64_t(hd) * int64_t(dtype_size(T));  // bytes of one value row
    int i = 0;
    for (; i + 64 <= hd; i += 64) {
        __m256 o[8];
        for (int b = 0; b < 8; b++) o[b] = _mm256_loadu_ps(acc + i + 8 * b);
        for (int k = c; k < e; k++) {
            if (i == 0 && k * row + kPrefetchBytes < pf_end) prefetch_lines(V, k * row + kPrefetchBytes, row);
            const __m256 pk = _mm256_set1_ps(p[k]);
            const int64_t base = int64_t(k) * hd + i;
            for (int b = 0; b < 8; b++) o[b] = _mm256_fmadd_ps(pk, simd::load8<T>(V, base + 8 * b), o[b]);
        }
        for (int b = 0; b < 8; b++) _mm256_storeu_ps(acc + i + 8 * b, o[b]);
    }
    for (; i + 8 <= hd; i += 8) {
        __m256 o = _mm256_loadu_ps(acc + i);
        for (int k = c; k < e; k++) o = _mm256_fmadd_ps(_mm256_set1_ps(p[k]), simd::load8<T>(V, int64_t(k) * hd + i), o);
        _mm256_storeu_ps(acc + i, o);
    }
    for (; i < hd; i++) {
        float a = acc[i];
        for (int k = c; k < e; k++) a += p[k] * simd::load1<T>(V, int64_t(k) * hd + i);
        acc[i] = a;
    }
}

// Keys per burst when several heads' values are read together.
constexpr int kValueChunk = 16;

// N heads attending over the same keys [lo, hi): scores (q . K) first, then softmax, then the
// weighted sum of V. With N = 2 the heads' K streams are read side by side and their V
// streams in alternating bursts of kValueChunk keys: two streams per thread read the cold
// cache faster than one (docs/KERNELS.md, attention). scores: N rows of hi floats.
template <DType T, int N, int HD>
void attend(const float* const* q_, const void* const* K_, const void* const* V_, int hd_, int lo, int hi, float scale,
            float* scores, float* const* out) {
    const int hd = HD ? HD : hd_;
    // Local copies: the score stores below cannot alias them, so they stay in registers.
    const float* q[N];
    const void *K[N], *V[N];
    float* s[N];
    for (int x = 0; x < N; x++) {
        q[x] = q_[x], K[x] = K_[x], V[x] = V_[x];
        s[x] = scores + int64_t(x) * hi;
    }
    const int64_t row = int64_t(hd) * int64_t(dtype_size(T));  // bytes of one key
    int j = lo;
    for (; j + 4 <= hi; j += 4)
        for (int x = 0; x < N; x++) {
            prefetch_lines(K[x], j * row + kPrefetchBytes, 4 * row);
            scores4<T, HD>(q[x], K[x], hd, j, scale, s[x]);
        }
    for (; j < hi; j++)
        for (int x = 0; x < N; x++) s[x][j] = score1<T, HD>(q[x], K[x], hd, j, scale);
    float inv[N];
    for (int x = 0; x < N; x++) {
        inv[x] = exp_shifted(s[x], lo, hi);
        for (int i = 0; i < hd; i++) out[x][i] = 0.0f;
    }
    const int chunk = N == 1 ? hi - lo : kValueChunk;
    for (int c = lo; c < hi; c += chunk) {
        const int e = hi - c < chunk ? hi : c + chunk;
        for (int x = 0; x < N; x++) accumulate_values<T, HD>(s[x], V[x], hd, c, e, out[x], INT64_MAX);
    }
    for (int x = 0; x < N; x++)
        for (int i = 0; i < hd; i++) out[x][i] *= inv[x];
}

// Bytes ahead at which BlockCursor requests rows. Over 16-token blocks in a random order (AMD
// VM, 912 keys, 72 heads, against the contiguous kernel on the same rows): fp16 1.60x at
// 2 KiB, 1.50x at 3 KiB, 1.43-1.51x at 4 KiB, 1.50x at 6 KiB; fp32 1.65x, 1.52x, 1.44-1.47x, 1.44x.
constexpr int64_t kCursorBytes = 4096;

// Requests the rows of slots [from, to) of a head's blocks (slot j is row j % bt of block
// blocks[j / bt]): the prefetches that cross from one span of adjacent blocks into the next.
inline void prefetch_slots(const uint8_t* const* blocks, int bt, int64_t row, int from, int to) {
    while (from < to) {
        const int b = from / bt, r = from - b * bt, take = std::min(to - from, bt - r);
        prefetch_lines(blocks[b], r * row, (take * row + 63) / 64 * 64);
        from += take;
    }
}

// attend's key loop over rows [j, e) of one contiguous span (row r at K[x] + r * row), each
// step requesting the rows kPrefetchBytes ahead. Kept out of line, as are score_tail and
// value_span: inlined into attend_blocks, the same loops ran 25-30% slower on cold rows
// (bench_attention, attention_paged/*/fresh).
template <DType T, int N, int HD>
[[gnu::noinline]] void score_span(const float* const* q, const void* const* K, int hd, int j, int e, float scale,
                                  float* const* s) {
    const int64_t row = int64_t(HD ? HD : hd) * int64_t(dtype_size(T));
    for (; j + 4 <= e; j += 4)
        for (int x = 0; x < N; x++) {
            prefetch_lines(K[x], j * row + kPrefetchBytes, 4 * row);
            scores4<T, HD>(q[x], K[x], hd, j, scale, s[x]);
        }
}

// attend's value loop over rows [c0, e) of one span, prefetching inside it (pf_end: its bytes)
// and, for the rows kPrefetchBytes ahead that lie past it, through the block table (blocks:
// each head's, the span's row r being slot a0 + r; hi: the last slot + 1).
template <DType T, int N, int HD>
[[gnu::noinline]] void value_span(const float* const* s, const void* const* V, const uint8_t* const* const* blocks,
                                  int bt, int a0, int hi, int hd, int c0, int e, float* const* out) {
    const int64_t row = int64_t(HD ? HD : hd) * int64_t(dtype_size(T));
    const int ahead = int(std::max<int64_t>(1, kPrefetchBytes / row));
    const int chunk = N == 1 ? e - c0 : kValueChunk;
    for (int c = c0; c < e; c += chunk) {
        const int ce = e - c < chunk ? e : c + chunk;
        for (int x = 0; x < N; x++) {
            if (ce + ahead > e)
                prefetch_slots(blocks[x], bt, row, a0 + std::max(e, c + ahead), std::min(hi, a0 + ce + ahead));
            accumulate_values<T, HD>(s[x], V[x], hd, c, ce, out[x], e * row);
        }
    }
}

// The key loop over a span's last rows [j, e), whose prefetches fall past it (score_span's
// arguments, and value_span's for the block table).
template <DType T, int N, int HD>
[[gnu::noinline]] void score_tail(const float* const* q, const void* const* K, const uint8_t* const* const* blocks,
                                  int bt, int a0, int hi, int hd, int j, int e, float scale, float* const* s) {
    const int64_t row = int64_t(HD ? HD : hd) * int64_t(dtype_size(T));
    const int ahead = int(std::max<int64_t>(1, kPrefetchBytes / row));
    for (; j + 4 <= e; j += 4)
        for (int x = 0; x < N; x++) {
            prefetch_slots(blocks[x], bt, row, a0 + std::max(e, j + ahead), std::min(hi, a0 + j + 4 + ahead));
            scores4<T, HD>(q[x], K[x], hd, j, scale, s[x]);
        }
    for (; j < e; j++)
        for (int x = 0; x < N; x++) s[x][j] = score1<T, HD>(q[x], K[x], hd, j, scale);
}

// A prefetch cursor over a head's blocks: the row kCursorBytes ahead of the rows being read,
// in slot order, so blocks that lie anywhere in the pool (where no hardware prefetcher
// follows) are requested ahead across block boundaries.
class BlockCursor {
  public:
    BlockCursor() = default;
    BlockCursor(const uint8_t* const* blocks, int bt, int64_t row, int from, int hi) : blocks_(blocks), bt_(bt), row_(row) {
        const int j = std::min(hi, from + int(std::max<int64_t>(1, kCursorBytes / row)));
        b_ = j / bt, r_ = j - b_ * bt;
        left_ = hi - j;
    }
    // Requests the next n rows.
    void request(int n) {
        n = std::min(n, left_);
        left_ -= n;
        while (n > 0) {
            const int take = std::min(n, bt_ - r_);
            prefetch_lines(blocks_[b_], r_ * row_, (take * row_ + 63) / 64 * 64);
            n -= take;
            if ((r_ += take) == bt_) b_++, r_ = 0;
        }
    }

  private:
    const uint8_t* const* blocks_ = nullptr;
    int bt_ = 1;
    int64_t row_ = 0;
    int b_ = 0, r_ = 0, left_ = 0;  // the next row to request: row r_ of block b_; rows left
};

// attend over blocks scattered over the pool (see attend_blocks): attend's loops block by
// block, the prefetches following the block table (BlockCursor).
template <DType T, int N, int HD>
void attend_scattered(const float* const* q_, const uint8_t* const* const* kb, const uint8_t* const* const* vb, int bt,
                      int hd_, int lo, int hi, float scale, float* scores, float* const* out) {
    const int hd = HD ? HD : hd_;
    const float* q[N];
    float* s[N];
    for (int x = 0; x < N; x++) {
        q[x] = q_[x];
        s[x] = scores + int64_t(x) * hi;
    }
    const int64_t row = int64_t(hd) * int64_t(dtype_size(T));
    BlockCursor pf[N];
    for (int x = 0; x < N; x++) pf[x] = BlockCursor(kb[x], bt, row, lo, hi);
    for (int b = lo / bt; b * bt < hi; b++) {
        const int base = b * bt, e = std::min(hi, base + bt) - base;
        int j = std::max(lo, base) - base;
        for (; j + 4 <= e; j += 4)
            for (int x = 0; x < N; x++) {
                pf[x].request(4);
                scores4<T, HD>(q[x], kb[x][b], hd, j, scale, s[x] + base);
            }
        for (; j < e; j++)
            for (int x = 0; x < N; x++) s[x][base + j] = score1<T, HD>(q[x], kb[x][b], hd, j, scale);
    }
    float inv[N];
    for (int x = 0; x < N; x++) {
        inv[x] = exp_shifted(s[x], lo, hi);
        for (int i = 0; i < hd; i++) out[x][i] = 0.0f;
        pf[x] = BlockCursor(vb[x], bt, row, lo, hi);
    }
    for (int b = lo / bt; b * bt < hi; b++) {
        const int base = b * bt, e = std::min(hi, base + bt) - base;
        const int chunk = N == 1 ? e : kValueChunk;
        for (int c = std::max(lo, base) - base; c < e; c += chunk) {
            const int ce = e - c < chunk ? e : c + chunk;
            for (int x = 0; x < N; x++) {
                pf[x].request(ce - c);
                accumulate_values<T, HD>(s[x] + base, vb[x][b], hd, c, ce, out[x], 0);
            }
        }
    }
    for (int x = 0; x < N; x++)
        for (int i = 0; i < hd; i++) out[x][i] *= inv[x];
}

// Blocks per span, on average, from which attend_blocks reads spans rather than blocks.
constexpr int kSpanBlocks = 4;

// attend over a paged cache's blocks: head x's slot j is row j % bt of block kb[x][j / bt]
// (N heads of one sequence, so one block size and block count). Blocks that follow one another
// in the pool, for every head and both sides, form a span, read by attend's own loops as one
// contiguous run; over a span's last kPrefetchBytes the requests follow the block table into
// the next span, wherever it lies; a table that is one span from its first block goes to attend
// itself. Blocks scattered over the pool (spans shorter than kSpanBlocks on average) are read
// block by block instead (attend_scattered): on single-block spans the span loops took 1.6-1.7x
// its time (docs/KERNELS.md, paged rows).
template <DType T, int N, int HD>
void attend_blocks(const float* const* q_, const uint8_t* const* const* kb, const uint8_t* const* const* vb, int bt,
                   int hd_, int lo, int hi, float scale, float* scores, float* const* out) {
    const int hd = HD ? HD : hd_;
    float* s[N];
    for (int x = 0; x < N; x++) s[x] = scores + int64_t(x) * hi;
    const int64_t row = int64_t(hd) * int64_t(dtype_size(T));
    const int ahead = int(std::max<int64_t>(1, kPrefetchBytes / row));  // rows
    const int64_t block_bytes = bt * row;
    // Whether block b + 1 follows block b in the pool, for every head and both sides.
    auto adjacent = [&](int b) {
        for (int x = 0; x < N; x++)
            if (kb[x][b + 1] != kb[x][b] + block_bytes || vb[x][b + 1] != vb[x][b] + block_bytes) return false;
        return true;
    };
    // The spans, found once for both passes: [lo, ends[0]), [ends[0], ends[1]), ...
    thread_local std::vector<int> ends;
    ends.clear();
    for (int a = lo, last = (hi - 1) / bt; a < hi; a = ends.back()) {
        int b = a / bt;
        while (b < last && adjacent(b)) b++;
        ends.push_back(std::min(hi, (b + 1) * bt));
    }
    const int spans = int(ends.size());
    if (spans * kSpanBlocks > (hi - 1) / bt - lo / bt + 1) {
        attend_scattered<T, N, HD>(q_, kb, vb, bt, hd, lo, hi, scale, scores, out);
        return;
    }
    if (spans == 1 && lo < bt) {  // one stretch from the first block: the contiguous kernel itself
        const void *K[N], *V[N];
        for (int x = 0; x < N; x++) K[x] = kb[x][0], V[x] = vb[x][0];
        attend<T, N, HD>(q_, K, V, hd, lo, hi, scale, scores, out);
        return;
    }
    // A span [a, z) starts inside block a / bt; its row r is slot a0 + r.
    for (int i = 0, a = lo; i < spans; a = ends[size_t(i++)]) {
        const int z = ends[size_t(i)], a0 = a / bt * bt;
        const void* K[N];
        float* sa[N];
        for (int x = 0; x < N; x++) K[x] = kb[x][a0 / bt], sa[x] = s[x] + a0;
        // Rows before j prefetch inside the span, the rest through the block table.
        const int j = a + std::max(0, (z - ahead - a) / 4 * 4);
        if (j > a) score_span<T, N, HD>(q_, K, hd, a - a0, j - a0, scale, sa);
        score_tail<T, N, HD>(q_, K, kb, bt, a0, hi, hd, j - a0, z - a0, scale, sa);
    }
    float inv[N];
    for (int x = 0; x < N; x++) {
        inv[x] = exp_shifted(s[x], lo, hi);
        for (int i = 0; i < hd; i++) out[x][i] = 0.0f;
    }
    for (int i = 0, a = lo; i < spans; a = ends[size_t(i++)]) {
        const int z = ends[size_t(i)], a0 = a / bt * bt;
        const void* V[N];
        const float* sa[N];
        for (int x = 0; x < N; x++) V[x] = vb[x][a0 / bt], sa[x] = s[x] + a0;
        value_span<T, N, HD>(sa, V, vb, bt, a0, hi, hd, a - a0, z - a0, out);
    }
    for (int x = 0; x < N; x++)
        for (int i = 0; i < hd; i++) out[x][i] *= inv[x];
}

template <int N, int HD>
void attend_blocks_typed(const float* const* q, const uint8_t* const* const* kb, const uint8_t* const* const* vb, int bt,
                         DType dt, int hd, int lo, int hi, float scale, float* scores, float* const* out) {
    switch (dt) {
        case DType::F32: attend_blocks<DType::F32, N, HD>(q, kb, vb, bt, hd, lo, hi, scale, scores, out); break;
        case DType::F16: attend_blocks<DType::F16, N, HD>(q, kb, vb, bt, hd, lo, hi, scale, scores, out); break;
        case DType::BF16: attend_blocks<DType::BF16, N, HD>(q, kb, vb, bt, hd, lo, hi, scale, scores, out); break;
        default: break;
    }
}

template <int N>
void attend_blocks_dispatch(const float* const* q, const uint8_t* const* const* kb, const uint8_t* const* const* vb,
                            int bt, DType dt, int hd, int lo, int hi, float scale, float* scores, float* const* out) {
    if (hd == 64) attend_blocks_typed<N, 64>(q, kb, vb, bt, dt, hd, lo, hi, scale, scores, out);
    else attend_blocks_typed<N, 0>(q, kb, vb, bt, dt, hd, lo, hi, scale, scores, out);
}

template <int N, int HD>
void attend_typed(const float* const* q, const void* const* K, const void* const* V, DType dt, int hd, int lo, int hi,
                  float scale, float* scores, float* const* out) {
    switch (dt) {
        case DType::F32: attend<DType::F32, N, HD>(q, K, V, hd, lo, hi, scale, scores, out); break;
        case DType::F16: attend<DType::F16, N, HD>(q, K, V, hd, lo, hi, scale, scores, out); break;
        case DType::BF16: attend<DType::BF16, N, HD>(q, K, V, hd, lo, hi, scale, scores, out); break;
        default: break;
    }
}

// head_dim 64 (every GPT-2 size) gets loops of known length; other sizes the general code.
template <int N>
void attend_dispatch(const float* const* q, const void* const* K, const void* const* V, DType dt, int hd, int lo, int hi,
                     float scale, float* scores, float* const* out) {
    if (hd == 64) attend_typed<N, 64>(q, K, V, dt, hd, lo, hi, scale, scores, out);
    else attend_typed<N, 0>(q, K, V, dt, hd, lo, hi, scale, scores, out);
}

}  // namespace

float softmax_inplace(float* s, int lo, int hi) { return exp_shifted(s, lo, hi); }

void attend_head(const float* q, const void* K, const void* V, DType dt, int head_dim, int lo, int hi, float scale,
                 float* scores, float* out) {
    attend_dispatch<1>(&q, &K, &V, dt, head_dim, lo, hi, scale, scores, &out);
}

void attend_heads(int n, const float* const* q, const void* const* K, const void* const* V, DType dt, int head_dim,
                  int lo, int hi, float scale, float* scores, float* const* out) {
    switch (n) {
        case 1: attend_dispatch<1>(q, K, V, dt, head_dim, lo, hi, scale, scores, out); break;
        case 2: attend_dispatch<2>(q, K, V, dt, head_dim, lo, hi, scale, scores, out); break;
        case 3: attend_dispatch<3>(q, K, V, dt, head_dim, lo, hi, scale, scores, out); break;
        case 4: attend_dispatch<4>(q, K, V, dt, head_dim, lo, hi, scale, scores, out); break;
        case 5: attend_dispatch<5>(q, K, V, dt, head_dim, lo, hi, scale, scores, out); break;
        case 6: attend_dispatch<6>(q, K, V, dt, head_dim, lo, hi, scale, scores, out); break;
        case 7: attend_dispatch<7>(q, K, V, dt, head_dim, lo, hi, scale, scores, out); break;
        case 8: attend_dispatch<8>(q, K, V, dt, head_dim, lo, hi, scale, scores, out); break;
        default: fail("attend_heads: {} heads in a group; expected 1 to {}", n, kMaxHeadGroup);
    }
}

void attend_heads_blocks(int n, const float* const* q, const uint8_t* const* const* kblocks,
                         const uint8_t* const* const* vblocks, int block_tokens, DType dt, int head_dim, int lo, int hi,
                         float scale, float* scores, float* const* out) {
    if (block_tokens < 1) fail("internal: attend_heads_blocks: {} tokens per block", block_tokens);
    switch (n) {
        case 1: attend_blocks_dispatch<1>(q, kblocks, vblocks, block_tokens, dt, head_dim, lo, hi, scale, scores, out); break;
        case 2: attend_blocks_dispatch<2>(q, kblocks, vblocks, block_tokens, dt, head_dim, lo, hi, scale, scores, out); break;
        case 3: attend_blocks_dispatch<3>(q, kblocks, vblocks, block_tokens, dt, head_dim, lo, hi, scale, scores, out); break;
        case 4: attend_blocks_dispatch<4>(q, kblocks, vblocks, block_tokens, dt, head_dim, lo, hi, scale, scores, out); break;
        case 5: attend_blocks_dispatch<5>(q, kblocks, vblocks, block_tokens, dt, head_dim, lo, hi, scale, scores, out); break;
        case 6: attend_blocks_dispatch<6>(q, kblocks, vblocks, block_tokens, dt, head_dim, lo, hi, scale, scores, out); break;
        case 7: attend_blocks_dispatch<7>(q, kblocks, vblocks, block_tokens, dt, head_dim, lo, hi, scale, scores, out); break;
        case 8: attend_blocks_dispatch<8>(q, kblocks, vblocks, block_tokens, dt, head_dim, lo, hi, scale, scores, out); break;
        default: fail("attend_heads_blocks: {} heads in a group; expected 1 to {}", n, kMaxHeadGroup);
    }
}

namespace ref {

static float at(const void* p, DType dt, int64_t i) {
    switch (dt) {
        case DType::F32: return static_cast<const float*>(p)[i];
        case DType::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
        case DType::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
        default: return 0.0f;
    }
}

void attend_head(const float* q, const void* K, const void* V, DType dt, int hd, int lo, int hi, float scale,
                 float* out) {
    std::vector<double> s(size_t(hi - lo));
    double mx = -INFINITY, sum = 0;
    for (int j = lo; j < hi; j++) {
        double d = 0;
        for (int i = 0; i < hd; i++) d += double(q[i]) * at(K, dt, int64_t(j) * hd + i);
        s[size_t(j - lo)] = d * scale;
        mx = std::max(mx, s[size_t(j - lo)]);
    }
    for (auto& v : s) sum += (v = std::exp(v - mx));
    for (int i = 0; i < hd; i++) {
        double acc = 0;
        for (int j = lo; j < hi; j++) acc += s[size_t(j - lo)] * at(V, dt, int64_t(j) * hd + i);
        out[i] = float(acc / sum);
    }
}

}  // namespace ref
}  // namespace kvscope::ops
