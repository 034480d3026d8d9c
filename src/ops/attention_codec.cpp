// Attention over KV rows in any codec (kv/kv_codec.h), decoded inside the kernels: codes are
// widened and scaled in registers, never written back as floats. This file splits a call into
// groups of query heads that share a KV head and each head's history into runs, picks a kernel
// per run (AVX-512 where enabled and the shape fits, else AVX2: attention_codec_avx*.cpp), and
// puts queries and value sums into and out of the kernels' channel order.
#include <algorithm>
#include <cstring>

#include <immintrin.h>

#include "core/error.h"
#include "kv/kv_codec.h"
#include "ops/attention.h"
#include "ops/attention_codec.h"
#include "ops/gemv_avx512.h"
#include "ops/simd.h"

namespace kvscope::ops {

namespace {

using codec::Heads;
using codec::Kind;
using codec::Mode;
using codec::Order;
using codec::Rows;

constexpr int kMaxHeadDim = 512;

Kind kind_of(const KvCodec& c) {
    switch (c.dtype) {
        case DType::F32: return Kind::F32;
        case DType::F16: return Kind::F16;
        case DType::BF16: return Kind::BF16;
        case DType::I8: return c.zero_point ? Kind::I8A : Kind::I8S;
        case DType::I4: return Kind::I4;
        case DType::I2: return Kind::I2;
        default: fail("attention: KV codec {} has no kernel", kv_codec_name(c));
    }
}

// A run's rows as the kernels see them; a per-channel run as its bare codes.
Rows rows_of(const KvRun& run, int hd) {
    Rows r;
    r.rows = run.rows;
    r.stride = run.stride;
    r.n = run.j1 - run.j0;
    r.kind = kind_of(run.codec);
    r.hd = hd;
    if (run.codec.axis == KvAxis::None) return r;
    const int bits = kv_codec_bits(run.codec);
    r.zp = run.codec.zero_point;
    r.offset = (!r.zp && bits < 8) ? float(1 << (bits - 1)) : 0.0f;
    r.code_bytes = int64_t(hd) * bits / 8;
    if (run.codec.axis == KvAxis::Channel) return r;
    r.G = run.codec.group > 0 && run.codec.group < hd ? run.codec.group : hd;
    r.mode = r.zp ? Mode::Lane : r.G == hd ? Mode::Row : Mode::LaneSym;
    return r;
}

enum class Isa { Avx512, Avx2, Any };
struct Kernel {
    Isa isa;
    Order order;
};

Kernel kernel_for(const Rows& r) {
    if (avx512::enabled() && codec::avx512::covers(r)) return {Isa::Avx512, codec::avx512::order(r.kind)};
    if (codec::avx2::covers(r)) return {Isa::Avx2, codec::avx2::order(r.kind)};
    return {Isa::Any, Order{8, 1}};
}

void run_scores(const Kernel& k, const Rows& r, const Heads& h, float scale) {
    switch (k.isa) {
        case Isa::Avx512: codec::avx512::scores(r, h, scale); break;
        case Isa::Avx2: codec::avx2::scores(r, h, scale); break;
        case Isa::Any: codec::avx2::scores_any(r, h, scale); break;
    }
}

void run_values(const Kernel& k, const Rows& r, const Heads& h) {
    switch (k.isa) {
        case Isa::Avx512: codec::avx512::values(r, h); break;
        case Isa::Avx2: codec::avx2::values(r, h); break;
        case Isa::Any: codec::avx2::values_any(r, h); break;
    }
}

// d[o.index(c)] = s[c] for the hd channels (a whole number of o's units).
void to_order(const Order& o, const float* s, float* d, int hd) {
    for (int u = 0; u < hd; u += o.P * o.L)
        for (int l = 0; l < o.L; l++)
            for (int k = 0; k < o.P; k++) d[u + k * o.L + l] = s[u + l * o.P + k];
}

// The group's queries in a kernel's channel order, permuted when an order is first asked for
// (a call's runs are float rows, in natural order, and at most one codec).
class Queries {
  public:
    Queries(int m, const float* const* q, int hd) : m_(m), hd_(hd), q_(q) {}
    const float* const* in(Order o) {
        if (o.identity()) return q_;
        if (o.P != have_.P || o.L != have_.L) {
            for (int h = 0; h < m_; h++) {
                to_order(o, q_[h], buf_ + h * hd_, hd_);
                ptr_[h] = buf_ + h * hd_;
            }
            have_ = o;
        }
        return ptr_;
    }

  private:
    int m_, hd_;
    const float* const* q_;
    Order have_{0, 0};
    const float* ptr_[kMaxHeadGroup] = {};
    alignas(64) float buf_[kMaxHeadGroup * kMaxHeadDim];
};

// Scores over a per-channel run: per block of G rows, q is folded into the block's scales once
// (q'_i = q_i s_i, c = sum q_i m_i), so each row costs what bare codes cost: q' . codes + c.
void channel_scores(int m, const float* const* q, Queries& qs, const KvRun& run, int hd, float scale,
                    float* const* s) {
    Rows r = rows_of(run, hd);
    const Kernel k = kernel_for(r);
    const float* const* qk = qs.in(k.order);
    const int G = run.codec.group;
    const int64_t mb = kv_channel_meta_bytes(run.codec, hd);
    alignas(32) float sn[kMaxHeadDim], sk[kMaxHeadDim], qf[kMaxHeadGroup * kMaxHeadDim], cst[kMaxHeadGroup];
    Heads hs;
    hs.m = m;
    hs.cst = cst;
    for (int x = 0; x < m; x++) hs.q[x] = qf + x * hd;
    const uint8_t* rows = run.rows;
    for (int j0 = run.j0; j0 < run.j1; j0 += G) {
        const auto* meta = reinterpret_cast<const __m128i*>(run.meta + int64_t((j0 - run.j0) / G) * mb);
        __m256 c[kMaxHeadGroup];
        for (int x = 0; x < m; x++) c[x] = _mm256_setzero_ps();
        for (int i = 0; i < hd; i += 8) {
            const __m256 si = _mm256_cvtph_ps(_mm_loadu_si128(meta + i / 8));
            const __m256 mi = r.zp ? _mm256_cvtph_ps(_mm_loadu_si128(meta + (hd + i) / 8))
                                   : _mm256_mul_ps(si, _mm256_set1_ps(-r.offset));
            _mm256_store_ps(sn + i, si);
            for (int x = 0; x < m; x++) c[x] = _mm256_fmadd_ps(_mm256_loadu_ps(q[x] + i), mi, c[x]);
        }
        const float* sc = sn;
        if (!k.order.identity()) {
            to_order(k.order, sn, sk, hd);
            sc = sk;
        }
        for (int x = 0; x < m; x++) {
            cst[x] = simd::hsum(c[x]);
            for (int i = 0; i < hd; i += 8)
                _mm256_storeu_ps(qf + x * hd + i, _mm256_mul_ps(_mm256_loadu_ps(qk[x] + i), _mm256_load_ps(sc + i)));
            hs.s[x] = s[x] + j0;
        }
        r.rows = rows + int64_t(j0 - run.j0) * run.stride;
        r.n = std::min(G, run.j1 - j0);
        run_scores(k, r, hs, scale);
    }
}

// Requests the lines of a head's runs ahead of the kernels, across run boundaries: a kernel
// requests lines 2 KiB ahead inside its run only, and a paged cache's next block may lie
// anywhere in its pool, where no hardware prefetcher follows. Before run i: its first 2 KiB
// (the kernel's distance) and the 2 KiB that follow its end, each line once.
class RunPrefetch {
  public:
    RunPrefetch(const KvRun* runs, int n) : runs_(runs), n_(n) {}
    void before(int i) {
        if (at_ <= i) {
            request(i, at_ == i ? off_ : 0, std::min(bytes_of(i), kAhead));
            at_ = i + 1, off_ = 0;  // the rest of run i: the kernel
        }
        int64_t want = kAhead;
        for (int r = i + 1; r < n_ && want > 0; r++) {
            const int64_t b = bytes_of(r), upto = std::min(b, want);
            if (r == at_ && upto > off_) {
                request(r, off_, upto);
                if (upto == b) at_ = r + 1, off_ = 0;
                else off_ = upto;
            }
            want -= b;
        }
    }

  private:
    static constexpr int64_t kAhead = 2048;
    int64_t bytes_of(int r) const { return int64_t(runs_[r].j1 - runs_[r].j0) * runs_[r].stride; }
    void request(int r, int64_t from, int64_t upto) const {
        if (upto <= from) return;
        const char* p = reinterpret_cast<const char*>(runs_[r].rows);
        for (int64_t o = from; o < upto; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
        _mm_prefetch(p + upto - 1, _MM_HINT_T0);
    }
    const KvRun* runs_;
    int n_;
    int at_ = 0;        // the first run not yet requested as far as wanted
    int64_t off_ = 0;   // bytes of it requested
};

// Value sums in one kernel order other than the natural one, added into out when done.
class PermutedSums {
  public:
    PermutedSums(int m, int hd, float* const* out) : m_(m), hd_(hd), out_(out) {}
    ~PermutedSums() { flush(); }
    float* in(Order o, int x) {
        if (o.P != have_.P || o.L != have_.L) {
            flush();
            std::fill(buf_, buf_ + m_ * hd_, 0.0f);
            have_ = o;
        }
        return buf_ + x * hd_;
    }
    void flush() {
        if (have_.P == 0) return;
        const Order& o = have_;
        for (int x = 0; x < m_; x++)
            for (int u = 0; u < hd_; u += o.P * o.L)
                for (int l = 0; l < o.L; l++)
                    for (int k = 0; k < o.P; k++) out_[x][u + l * o.P + k] += buf_[x * hd_ + u + k * o.L + l];
        have_ = Order{0, 0};
    }

  private:
    int m_, hd_;
    float* const* out_;
    Order have_{0, 0};
    alignas(64) float buf_[kMaxHeadGroup * kMaxHeadDim];
};

// m heads over the same K and V runs (one KV head): scores run by run into one row per head,
// one softmax over [lo, hi), then the values run by run. Each run is read once for all m heads.
void attend_group(int m, const float* const* q, const KvRun* kr, int nk, const KvRun* vr, int nv, int hd, int lo,
                  int hi, float scale, float* scores, float* const* out) {
    float* s[kMaxHeadGroup];
    for (int x = 0; x < m; x++) s[x] = scores + int64_t(x) * hi;
    {
        Queries qs(m, q, hd);
        RunPrefetch pf(kr, nk);
        for (int i = 0; i < nk; i++) {
            const KvRun& run = kr[i];
            if (run.j1 <= run.j0) continue;
            pf.before(i);
            if (run.codec.axis == KvAxis::Channel) {
                channel_scores(m, q, qs, run, hd, scale, s);
                continue;
            }
            const Rows r = rows_of(run, hd);
            const Kernel k = kernel_for(r);
            const float* const* qk = qs.in(k.order);
            Heads hs;
            hs.m = m;
            for (int x = 0; x < m; x++) hs.q[x] = qk[x], hs.s[x] = s[x] + run.j0;
            run_scores(k, r, hs, scale);
        }
    }
    float inv[kMaxHeadGroup];
    for (int x = 0; x < m; x++) {
        inv[x] = softmax_inplace(s[x], lo, hi);
        std::fill(out[x], out[x] + hd, 0.0f);
    }
    {
        PermutedSums sums(m, hd, out);
        RunPrefetch pf(vr, nv);
        for (int i = 0; i < nv; i++) {
            const KvRun& run = vr[i];
            if (run.j1 <= run.j0) continue;
            pf.before(i);
            if (run.codec.axis == KvAxis::Channel) fail("attention: values are stored per token, not per channel");
            const Rows r = rows_of(run, hd);
            const Kernel k = kernel_for(r);
            Heads hs;
            hs.m = m;
            for (int x = 0; x < m; x++) {
                hs.s[x] = s[x] + run.j0;
                hs.acc[x] = k.order.identity() ? out[x] : sums.in(k.order, x);
            }
            run_values(k, r, hs);
        }
    }
    for (int x = 0; x < m; x++)
        for (int i = 0; i < hd; i++) out[x][i] *= inv[x];
}

void check_head_dim(int hd) {
    if (hd % 8 != 0 || hd > kMaxHeadDim)
        fail("attention: head_dim {} (codec kernels take multiples of 8 up to {})", hd, kMaxHeadDim);
}

}  // namespace

void attend_heads_runs(int n, const float* const* q, const KvRuns* const* kruns, const KvRuns* const* vruns, int hd,
                       int lo, int hi, float scale, float* scores, float* const* out) {
    check_head_dim(hd);
    for (int x0 = 0, x1; x0 < n; x0 = x1) {
        for (x1 = x0 + 1; x1 < n && kruns[x1] == kruns[x0] && vruns[x1] == vruns[x0];) x1++;
        attend_group(x1 - x0, q + x0, kruns[x0]->r.data(), kruns[x0]->n, vruns[x0]->r.data(), vruns[x0]->n, hd, lo, hi,
                     scale, scores + int64_t(x0) * hi, out + x0);
    }
}

void attend_heads_codec(int n, const float* const* q, const void* const* K, const void* const* V, const KvCodec& kc,
                        const KvCodec& vc, int hd, int lo, int hi, float scale, float* scores, float* const* out) {
    check_head_dim(hd);
    if (kc.axis == KvAxis::Channel || vc.axis == KvAxis::Channel)
        fail("attention: per-channel codecs are read through runs (attend_heads_runs)");
    const int64_t ks = kv_row_stride(kc, hd), vs = kv_row_stride(vc, hd);
    for (int x0 = 0, x1; x0 < n; x0 = x1) {
        for (x1 = x0 + 1; x1 < n && K[x1] == K[x0] && V[x1] == V[x0];) x1++;
        const KvRun kr{static_cast<const uint8_t*>(K[x0]) + lo * ks, nullptr, kc, ks, lo, hi};
        const KvRun vr{static_cast<const uint8_t*>(V[x0]) + lo * vs, nullptr, vc, vs, lo, hi};
        attend_group(x1 - x0, q + x0, &kr, 1, &vr, 1, hd, lo, hi, scale, scores + int64_t(x0) * hi, out + x0);
    }
}

}  // namespace kvscope::ops
