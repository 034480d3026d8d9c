// Microbenchmark of attention over the KV cache at decode, as the engine runs it for one
// token: distilgpt2's 6 layers x 12 heads of head_dim 64, split over the OpenMP team, each
// head reading its K and V rows once. `attention/<dtype>/keys:K/heads:N` takes the heads N at
// a time (ops::attend_heads; the engine uses N = 2); `attention/layers/...` runs the pairs as the
// engine does, one parallel region (and barrier) per layer. Reports the KV bytes read
// per second, next to the same blocks read with no arithmetic as kvscope bench's read floor
// reads them (the most this access pattern can read on this machine). The cache is cold, as in a decode step
// between two layers' weights: iterations cycle through copies that outgrow the caches.
// `attention/<dtype>/keys:K/gqa:N` gives N heads one KV head, as the engine does for Llama
// shapes. `attention_codec/...` runs the codec kernels over contiguous rows (heads:N, each head
// its own KV head; gqa:N, N query heads per KV head); `attention_runs/...` runs them over runs
// as a paged cache (blocks of 16 rows scattered over a pool) or KIVI's per-channel keys hand
// them over. `attention_paged/...` runs the float kernel over block tables in a pattern
// (PagedKv), `attention_paged_pair/...` that against the contiguous kernel call by call over
// the same pool, and `paged_read(_pair)/...` reads the pattern's blocks with no arithmetic.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <immintrin.h>
#include <omp.h>

#include "core/aligned.h"
#include "core/dtype.h"
#include "kv/kv_codec.h"
#include "ops/attention.h"
#include "ops/read.h"
#include "bench_quiet.h"

namespace kvscope {
namespace {

constexpr int kHeads = 6 * 12, kHeadDim = 64;

// Bytes read per second, and `call_us`: microseconds per call (a quiet-mode iteration is a
// burst of calls: bench_quiet.h).
void finish(benchmark::State& state, int64_t calls, int64_t bytes_per_call) {
    state.SetBytesProcessed(int64_t(state.iterations()) * calls * bytes_per_call);
    state.counters["call_us"] =
        benchmark::Counter(double(calls) * 1e-6, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
    state.counters["threads"] = double(omp_get_max_threads());
}

struct ColdKv {
    int64_t per_head;  // elements of one head's K (or V): keys x head_dim
    int64_t copies;
    AlignedArray<uint8_t> k, v;
    size_t elem;
    ColdKv(int keys, DType dt) : per_head(int64_t(keys) * kHeadDim), elem(size_t(dtype_size(dt))) {
        const int64_t bytes = 2 * per_head * kHeads * int64_t(elem);
        copies = std::max<int64_t>(2, (int64_t(1024) << 20) / bytes);
        const size_t n = size_t(per_head * kHeads * copies) * elem;
        k = make_aligned<uint8_t>(n);
        v = make_aligned<uint8_t>(n);
        // Small finite values in every storage type: 0x3c00 is 1.0 in fp16, 0x3f80 in bf16.
        for (size_t i = 0; i < n; i += elem) {
            if (dt == DType::F32) {
                const float f = 0.01f * float(i % 97);
                std::memcpy(&k[i], &f, 4);
                std::memcpy(&v[i], &f, 4);
            } else {
                const uint16_t h = dt == DType::F16 ? 0x3c00 : 0x3f80;
                std::memcpy(&k[i], &h, 2);
                std::memcpy(&v[i], &h, 2);
            }
        }
    }
    const uint8_t* head(const AlignedArray<uint8_t>& a, int64_t copy, int h) const {
        return a.get() + size_t((copy * kHeads + h) * per_head) * elem;
    }
};

// `regions` parallel regions per token, each over kHeads / regions heads: 1 (all heads, one
// barrier) or 6 (the engine's structure: one region and barrier per layer of 12 heads).
void bm_attention(benchmark::State& state, DType dt, int keys, int group, int regions, bool shared) {
    ColdKv kv(keys, dt);
    std::vector<float> q(kHeadDim, 0.1f);
    // Outputs and score rows 64-byte aligned, as in the engine: a cache line shared by two
    // threads' outputs would be written back and forth.
    auto out = make_aligned<float>(size_t(kHeads) * kHeadDim);
    const int nt = omp_get_max_threads();
    const size_t row = (size_t(group) * size_t(keys) + 15) / 16 * 16;
    auto scores = make_aligned<float>(size_t(nt) * row);
    const int per_region = kHeads / regions;
    int64_t copy = 0;
    const int64_t calls = bench::timed_loop(state, [&] {
        for (int g = 0; g < regions; g++) {
#pragma omp parallel for schedule(dynamic, 1)
            for (int h = g * per_region; h < (g + 1) * per_region; h += group) {
                float* sc = scores.get() + size_t(omp_get_thread_num()) * row;
                const float* qs[ops::kMaxHeadGroup];
                const void *ks[ops::kMaxHeadGroup], *vs[ops::kMaxHeadGroup];
                float* os[ops::kMaxHeadGroup];
                for (int x = 0; x < group; x++) {
                    qs[x] = q.data();
                    ks[x] = kv.head(kv.k, copy, shared ? h : h + x);
                    vs[x] = kv.head(kv.v, copy, shared ? h : h + x);
                    os[x] = out.get() + (h + x) * kHeadDim;
                }
                ops::attend_heads(group, qs, ks, vs, dt, kHeadDim, 0, keys, 0.125f, sc, os);
            }
        }
        benchmark::DoNotOptimize(out.get());
        copy = (copy + 1) % kv.copies;
    });
    const int64_t heads_read = shared ? kHeads / group : kHeads;
    finish(state, calls, 2 * kv.per_head * heads_read * int64_t(kv.elem));
}

// The paged layout: each head's keys in blocks of `block` rows in a pool laid out as the
// engine's ([layer][kv_head][block][block rows][head_dim]), with one block table per layer and
// copy. `runs`: 0 each layer's blocks in order, as a fresh pool hands them to one sequence;
// 1 every block anywhere; r > 1 runs of r blocks in order, the runs in a random order
// (sequences whose prompts and decode blocks came from a pool in use).
struct PagedKv {
    static constexpr int kLayers = 6, kLayerHeads = kHeads / kLayers;
    size_t row, block_bytes, per_copy;
    int blocks;  // per layer and sequence
    int64_t copies;
    AlignedArray<uint8_t> k, v;
    std::vector<std::vector<int>> table;
    PagedKv(DType dt, int keys, int block, int runs) {
        const size_t elem = size_t(dtype_size(dt));
        row = size_t(kHeadDim) * elem;
        blocks = (keys + block - 1) / block;
        block_bytes = size_t(block) * row;  // one head's
        per_copy = size_t(kLayers) * size_t(kLayerHeads) * size_t(blocks) * block_bytes;
        // An odd number of copies, so that reading them in turn two per iteration
        // (bm_attention_paged_pair) gives each side every copy.
        copies = std::max<int64_t>(2, (int64_t(1024) << 20) / int64_t(2 * per_copy)) | 1;
        k = make_aligned<uint8_t>(per_copy * size_t(copies));
        v = make_aligned<uint8_t>(per_copy * size_t(copies));
        const uint16_t one = dt == DType::F16 ? 0x3c00 : 0x3f80;
        for (size_t i = 0; i < per_copy * size_t(copies); i += elem) {
            if (dt == DType::F32) {
                const float f = 0.01f * float(i % 97);
                std::memcpy(&k[i], &f, 4);
                std::memcpy(&v[i], &f, 4);
            } else {
                std::memcpy(&k[i], &one, 2);
                std::memcpy(&v[i], &one, 2);
            }
        }
        table.resize(size_t(copies * kLayers));
        std::mt19937 rng(3);
        for (auto& t : table) {
            t.resize(size_t(blocks));
            std::iota(t.begin(), t.end(), 0);
            if (runs > 0) {  // runs of `runs` blocks in a random order (blocks: a whole number of runs or fewer)
                std::vector<int> order((t.size() + size_t(runs) - 1) / size_t(runs));
                std::iota(order.begin(), order.end(), 0);
                std::shuffle(order.begin(), order.end(), rng);
                std::vector<int> moved;
                for (int r : order)
                    for (int b = r * runs; b < std::min(blocks, (r + 1) * runs); b++) moved.push_back(b);
                t = moved;
            }
        }
    }
    // The first of head h's blocks in the pool of a copy: its blocks lie in order from there,
    // whatever order its table gives them.
    const uint8_t* head_base(const AlignedArray<uint8_t>& a, int64_t copy, int h) const {
        const int il = h / kLayerHeads, kh = h % kLayerHeads;
        return a.get() + size_t(copy) * per_copy + (size_t(il) * kLayerHeads + size_t(kh)) * size_t(blocks) * block_bytes;
    }
    // What KvCache::block_rows computes: the first row of each of head h's blocks in a copy,
    // in table order (`in_order`: pool order).
    void block_rows(const AlignedArray<uint8_t>& a, int64_t copy, int h, std::vector<const uint8_t*>* out,
                    bool in_order = false) const {
        const std::vector<int>& t = table[size_t(copy * kLayers + h / kLayerHeads)];
        const uint8_t* base = head_base(a, copy, h);
        out->resize(size_t(blocks));
        for (int b = 0; b < blocks; b++) (*out)[size_t(b)] = base + size_t(in_order ? b : t[size_t(b)]) * block_bytes;
    }
};

const char* pattern_name(int runs) { return runs == 0 ? "fresh" : runs == 1 ? "shuffled" : "runs"; }

// One decode step's attention over a PagedKv copy, heads two by two as attend_cached takes
// them (KvCache::block_rows, then ops::attend_heads_blocks); `contiguous`: the contiguous
// kernel (ops::attend_heads) over the same bytes, each head's blocks read in pool order.
struct PagedStep {
    const PagedKv& kv;
    DType dt;
    int keys, block;
    std::vector<float> q = std::vector<float>(kHeadDim, 0.1f);
    AlignedArray<float> out = make_aligned<float>(size_t(kHeads) * kHeadDim);
    size_t srow = (2 * size_t(keys) + 15) / 16 * 16;
    AlignedArray<float> scores = make_aligned<float>(size_t(omp_get_max_threads()) * srow);
    PagedStep(const PagedKv& kv_, DType dt_, int keys_, int block_) : kv(kv_), dt(dt_), keys(keys_), block(block_) {}
    void run(int64_t copy, bool contiguous) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int h = 0; h < kHeads; h += 2) {
            thread_local std::vector<const uint8_t*> kb[2], vb[2];
            float* sc = scores.get() + size_t(omp_get_thread_num()) * srow;
            const float* qs[2] = {q.data(), q.data()};
            const uint8_t* const* kbp[2];
            const uint8_t* const* vbp[2];
            const void *k0[2], *v0[2];
            float* os[2];
            for (int x = 0; x < 2; x++) {
                if (contiguous) {
                    k0[x] = kv.head_base(kv.k, copy, h + x), v0[x] = kv.head_base(kv.v, copy, h + x);
                } else {
                    kv.block_rows(kv.k, copy, h + x, &kb[x]);
                    kv.block_rows(kv.v, copy, h + x, &vb[x]);
                    kbp[x] = kb[x].data(), vbp[x] = vb[x].data();
                }
                os[x] = out.get() + (h + x) * kHeadDim;
            }
            if (contiguous) ops::attend_heads(2, qs, k0, v0, dt, kHeadDim, 0, keys, 0.125f, sc, os);
            else ops::attend_heads_blocks(2, qs, kbp, vbp, block, dt, kHeadDim, 0, keys, 0.125f, sc, os);
        }
        benchmark::DoNotOptimize(out.get());
    }
};

// PagedKv read through block tables, alone. To compare with the contiguous kernel use
// attention_paged_pair: attention/<dtype>/... reads a buffer of its own, and two buffers
// differ here by up to 20% for the same reads.
void bm_attention_paged(benchmark::State& state, DType dt, int keys, int block, int runs) {
    const PagedKv kv(dt, keys, block, runs);
    PagedStep step(kv, dt, keys, block);
    int64_t copy = 0;
    const int64_t calls = bench::timed_loop(state, [&] {
        step.run(copy, false);
        copy = (copy + 1) % kv.copies;
    });
    finish(state, calls, 2 * int64_t(keys) * int64_t(kv.row) * kHeads);
}

// Runs base(copy) and then paged(copy) once per iteration over a PagedKv's copies, taken in
// turn (kv.copies is odd, so each side reads every copy, and cold), timing each call.
// Counters: each side's median call (<base_name>_us, paged_us) and the median of the pairs'
// ratios (paged_ratio).
template <class Base, class Paged>
void paired_calls(benchmark::State& state, const PagedKv& kv, const std::string& base_name, Base&& base, Paged&& paged) {
    std::vector<double> tb, tp, ratio;
    int64_t copy = 0;
    using clock = std::chrono::steady_clock;
    for (auto _ : state) {
        const auto t0 = clock::now();
        base(copy);
        copy = (copy + 1) % kv.copies;
        const auto t1 = clock::now();
        paged(copy);
        copy = (copy + 1) % kv.copies;
        const auto t2 = clock::now();
        tb.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        tp.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
        ratio.push_back(tp.back() / tb.back());
    }
    auto median = [](std::vector<double> v) {
        std::nth_element(v.begin(), v.begin() + ptrdiff_t(v.size() / 2), v.end());
        return v[v.size() / 2];
    };
    state.counters[base_name + "_us"] = median(tb);
    state.counters["paged_us"] = median(tp);
    state.counters["paged_ratio"] = median(ratio);
    state.counters["threads"] = double(omp_get_max_threads());
}

// The paged kernel against the contiguous one, call by call over the same bytes: the
// contiguous kernel over one copy of the pool, each head's blocks in pool order, then the
// paged kernel over the next copy through the pattern's tables (paired_calls). Why: the
// memory bandwidth of this VM drifts by tens of percent over seconds, and two buffers
// allocated apart differ by up to 20% for the same reads (the host's placement of guest
// memory): alternating single calls keeps both sides under the same drift, and one pool read
// both ways keeps them on the same memory.
void bm_attention_paged_pair(benchmark::State& state, DType dt, int keys, int block, int runs) {
    const PagedKv kv(dt, keys, block, runs);
    PagedStep step(kv, dt, keys, block);
    paired_calls(state, kv, "contiguous", [&](int64_t copy) { step.run(copy, true); },
                 [&](int64_t copy) { step.run(copy, false); });
}

// The same blocks read with no arithmetic (ops::read_words), heads two by two, K of both then
// V of both, block by block in table order (`in_order`: pool order) with the two heads'
// blocks side by side: what this machine charges for the pattern itself. `ahead`: bytes
// ahead at which each block's cache lines are requested through the table (0: none, the
// hardware prefetchers alone).
uint32_t read_paged(const PagedKv& kv, int64_t copy, int ahead, bool in_order = false) {
    const int ahead_blocks = ahead > 0 ? int((size_t(ahead) + kv.block_bytes - 1) / kv.block_bytes) : 0;
    uint32_t total = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : total)
    for (int h = 0; h < kHeads; h += 2) {
        thread_local std::vector<const uint8_t*> b[2];
        for (const AlignedArray<uint8_t>* side : {&kv.k, &kv.v}) {
            for (int x = 0; x < 2; x++) kv.block_rows(*side, copy, h + x, &b[x], in_order);
            for (int i = 0; i < kv.blocks; i++)
                for (int x = 0; x < 2; x++) {
                    if (ahead_blocks > 0 && i + ahead_blocks < kv.blocks)
                        for (size_t o = 0; o < kv.block_bytes; o += 64)
                            _mm_prefetch(reinterpret_cast<const char*>(b[x][size_t(i + ahead_blocks)] + o), _MM_HINT_T0);
                    total += ops::read_words(b[x][size_t(i)], int64_t(kv.block_bytes));
                }
        }
    }
    return total;
}

void bm_paged_read(benchmark::State& state, DType dt, int keys, int block, int runs, int ahead) {
    const PagedKv kv(dt, keys, block, runs);
    int64_t copy = 0;
    const int64_t calls = bench::timed_loop(state, [&] {
        benchmark::DoNotOptimize(read_paged(kv, copy, ahead));
        copy = (copy + 1) % kv.copies;
    });
    finish(state, calls, 2 * int64_t(keys) * int64_t(kv.row) * kHeads);
}

// bm_paged_read through the pattern's tables against the same read in pool order, call by
// call over the same pool (as bm_attention_paged_pair): what the pattern itself costs.
void bm_paged_read_pair(benchmark::State& state, DType dt, int keys, int block, int runs, int ahead) {
    const PagedKv kv(dt, keys, block, runs);
    paired_calls(state, kv, "in_order", [&](int64_t copy) { benchmark::DoNotOptimize(read_paged(kv, copy, ahead, true)); },
                 [&](int64_t copy) { benchmark::DoNotOptimize(read_paged(kv, copy, ahead)); });
}

// The same blocks read with no attention work, as kvscope bench's read floor reads them
// (Gpt2Model::read_step): heads two by two, dynamic, K of both then V of both, each block as two
// streams (ops::read_words).
void bm_kv_read(benchmark::State& state, DType dt, int keys) {
    ColdKv kv(keys, dt);
    const int64_t bytes = kv.per_head * int64_t(kv.elem);
    int64_t copy = 0;
    const int64_t calls = bench::timed_loop(state, [&] {
        uint32_t total = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : total)
        for (int h = 0; h < kHeads; h += 2) {
            for (int x = 0; x < 2; x++) total += ops::read_words(kv.head(kv.k, copy, h + x), bytes);
            for (int x = 0; x < 2; x++) total += ops::read_words(kv.head(kv.v, copy, h + x), bytes);
        }
        benchmark::DoNotOptimize(total);
        copy = (copy + 1) % kv.copies;
    });
    finish(state, calls, 2 * kv.per_head * kHeads * int64_t(kv.elem));
}

// attend_heads_codec over rows in a KV codec (kv/kv_codec.h), cold as above. `shared`: the
// group's heads read one KV head (grouped-query attention), else each its own.
void bm_attention_codec(benchmark::State& state, std::string codec, int keys, int group, bool shared) {
    const KvCodec c = kv_codec_for(parse_kv_codec(codec, "codec"), kHeadDim, "codec");
    const int64_t stride = kv_row_stride(c, kHeadDim), per_head = stride * keys;
    const int64_t copies = std::max<int64_t>(2, (int64_t(1024) << 20) / (2 * per_head * kHeads));
    auto k = make_aligned<uint8_t>(size_t(per_head * kHeads * copies)), v = make_aligned<uint8_t>(size_t(per_head * kHeads * copies));
    std::vector<float> x(kHeadDim);
    for (int64_t r = 0; r < kHeads * keys; r++) {  // one copy, then the others as its bytes
        for (int i = 0; i < kHeadDim; i++) x[size_t(i)] = 0.01f * float((r * 7 + i * 13) % 97) - 0.4f;
        kv_encode_row(c, kHeadDim, x.data(), k.get() + r * stride);
        kv_encode_row(c, kHeadDim, x.data(), v.get() + r * stride);
    }
    for (int64_t cp = 1; cp < copies; cp++) {
        std::memcpy(k.get() + cp * kHeads * per_head, k.get(), size_t(kHeads * per_head));
        std::memcpy(v.get() + cp * kHeads * per_head, v.get(), size_t(kHeads * per_head));
    }
    std::vector<float> q(kHeadDim, 0.1f);
    auto out = make_aligned<float>(size_t(kHeads) * kHeadDim);
    const int nt = omp_get_max_threads();
    const size_t row = (size_t(group) * size_t(keys) + 15) / 16 * 16;
    auto scores = make_aligned<float>(size_t(nt) * row);
    int64_t copy = 0;
    const int64_t calls = bench::timed_loop(state, [&] {
#pragma omp parallel for schedule(dynamic, 1)
        for (int h = 0; h < kHeads; h += group) {
            float* sc = scores.get() + size_t(omp_get_thread_num()) * row;
            const float* qs[ops::kMaxHeadGroup];
            const void *ks[ops::kMaxHeadGroup], *vs[ops::kMaxHeadGroup];
            float* os[ops::kMaxHeadGroup];
            for (int y = 0; y < group; y++) {
                const int kvh = shared ? h : h + y;
                qs[y] = q.data();
                ks[y] = k.get() + (copy * kHeads + kvh) * per_head;
                vs[y] = v.get() + (copy * kHeads + kvh) * per_head;
                os[y] = out.get() + (h + y) * kHeadDim;
            }
            ops::attend_heads_codec(group, qs, ks, vs, c, c, kHeadDim, 0, keys, 0.125f, sc, os);
        }
        benchmark::DoNotOptimize(out.get());
        copy = (copy + 1) % copies;
    });
    // Bytes of the KV heads read: one per group when shared.
    finish(state, calls, 2 * per_head * (shared ? kHeads / group : kHeads));
}

// attend_heads_runs over each KV head's rows as the cache hands them over, cold as above.
// "paged": blocks of 16 rows, every KV head's blocks scattered over the copy's pool; "kivi":
// keys per channel in blocks of 32 tokens (the partial last block in fp16, as the cache's ring
// holds it) and values per token in groups of 32, both asymmetric. `shared` as above.
void bm_attention_runs(benchmark::State& state, std::string codec, std::string layout, int keys, int group,
                       bool shared) {
    const bool kivi = layout == "kivi";
    const KvFormat f = parse_kv_format_spec(kivi ? codec + "-kivi" : codec, "codec");
    const KvCodec kc = kv_codec_for(f.k, kHeadDim, "codec"), vc = kv_codec_for(f.v, kHeadDim, "codec");
    const KvCodec f16 = KvFormat(DType::F16).k;
    const int n_kv = shared ? kHeads / group : kHeads, bt = 16;
    const int coded = kivi ? keys / kc.group * kc.group : keys;  // per-channel keys in whole blocks
    const int64_t ks = kv_row_stride(kc, kHeadDim), vs = kv_row_stride(vc, kHeadDim), hs = 2 * kHeadDim;
    const int64_t mb = kv_channel_meta_bytes(kc, kHeadDim), k_meta = mb * kv_channel_blocks(kc, keys);
    const int64_t k_head = ks * keys + k_meta + hs * (keys - coded), v_head = vs * keys;
    const int64_t copies = std::max<int64_t>(2, (int64_t(1024) << 20) / ((k_head + v_head) * n_kv));
    auto kp = make_aligned<uint8_t>(size_t(k_head * n_kv * copies)), vp = make_aligned<uint8_t>(size_t(v_head * n_kv * copies));
    std::vector<KvRuns> kr(size_t(copies * n_kv)), vr(size_t(copies * n_kv));
    // Every copy holds the same rows, encoded once per KV head; a paged copy scatters them anew.
    std::vector<uint8_t> krow(size_t(n_kv * ks * keys)), vrow(size_t(n_kv * vs * keys)), kmeta(size_t(n_kv * k_meta)),
        kring(size_t(n_kv * hs * (keys - coded)));
    std::vector<float> x(size_t(keys) * kHeadDim);
    for (int h = 0; h < n_kv; h++) {
        for (int j = 0; j < keys; j++)
            for (int i = 0; i < kHeadDim; i++)
                x[size_t(j) * kHeadDim + size_t(i)] = 0.01f * float(((h * keys + j) * 7 + i * 13) % 97) - 0.4f;
        if (kivi) {
            for (int j0 = 0; j0 < coded; j0 += kc.group)
                kv_encode_block(kc, kHeadDim, x.data() + size_t(j0) * kHeadDim, kHeadDim, &krow[size_t(h * ks * keys + j0 * ks)],
                                ks, &kmeta[size_t(h * k_meta + j0 / kc.group * mb)]);
            for (int j = coded; j < keys; j++)
                kv_encode_row(f16, kHeadDim, x.data() + size_t(j) * kHeadDim, &kring[size_t((h * (keys - coded) + j - coded) * hs)]);
        } else {
            for (int j = 0; j < keys; j++) kv_encode_row(kc, kHeadDim, x.data() + size_t(j) * kHeadDim, &krow[size_t((h * keys + j) * ks)]);
        }
        for (int j = 0; j < keys; j++) kv_encode_row(vc, kHeadDim, x.data() + size_t(j) * kHeadDim, &vrow[size_t((h * keys + j) * vs)]);
    }
    std::mt19937 rng(7);
    const int blocks = (keys + bt - 1) / bt;
    std::vector<int> where(size_t(blocks) * size_t(n_kv));  // block b of KV head h: pool block where[h * blocks + b]
    for (int64_t c = 0; c < copies; c++) {
        std::iota(where.begin(), where.end(), 0);
        std::shuffle(where.begin(), where.end(), rng);
        for (int h = 0; h < n_kv; h++) {
            KvRuns& k = kr[size_t(c * n_kv + h)];
            KvRuns& v = vr[size_t(c * n_kv + h)];
            if (kivi) {
                uint8_t* kb = kp.get() + (c * n_kv + h) * k_head;
                uint8_t* meta = kb + ks * keys;
                uint8_t* ring = meta + k_meta;
                std::memcpy(kb, &krow[size_t(h * ks * keys)], size_t(ks * keys));
                std::memcpy(meta, &kmeta[size_t(h * k_meta)], size_t(k_meta));
                std::memcpy(ring, &kring[size_t(h * hs * (keys - coded))], size_t(hs * (keys - coded)));
                k.add(KvRun{kb, meta, kc, ks, 0, coded});
                if (coded < keys) k.add(KvRun{ring, nullptr, f16, hs, coded, keys});
                uint8_t* vb = vp.get() + (c * n_kv + h) * v_head;
                std::memcpy(vb, &vrow[size_t(h * vs * keys)], size_t(vs * keys));
                v.add(KvRun{vb, nullptr, vc, vs, 0, keys});
            } else {
                for (int b = 0; b < blocks; b++) {
                    const int64_t at = (c * n_kv * blocks + where[size_t(h * blocks + b)]) * bt;  // first row in the pool
                    const int j0 = b * bt, j1 = std::min(keys, j0 + bt);
                    std::memcpy(kp.get() + at * ks, &krow[size_t((h * keys + j0) * ks)], size_t((j1 - j0) * ks));
                    std::memcpy(vp.get() + at * vs, &vrow[size_t((h * keys + j0) * vs)], size_t((j1 - j0) * vs));
                    k.add(KvRun{kp.get() + at * ks, nullptr, kc, ks, j0, j1});
                    v.add(KvRun{vp.get() + at * vs, nullptr, vc, vs, j0, j1});
                }
            }
        }
    }
    std::vector<float> q(kHeadDim, 0.1f);
    auto out = make_aligned<float>(size_t(kHeads) * kHeadDim);
    const int nt = omp_get_max_threads();
    const size_t row = (size_t(group) * size_t(keys) + 15) / 16 * 16;
    auto scores = make_aligned<float>(size_t(nt) * row);
    int64_t copy = 0;
    const int64_t calls = bench::timed_loop(state, [&] {
#pragma omp parallel for schedule(dynamic, 1)
        for (int h = 0; h < kHeads; h += group) {
            float* sc = scores.get() + size_t(omp_get_thread_num()) * row;
            const float* qs[ops::kMaxHeadGroup];
            const KvRuns *ks_[ops::kMaxHeadGroup], *vs_[ops::kMaxHeadGroup];
            float* os[ops::kMaxHeadGroup];
            for (int y = 0; y < group; y++) {
                const int kvh = shared ? h / group : h + y;
                qs[y] = q.data();
                ks_[y] = &kr[size_t(copy * n_kv + kvh)];
                vs_[y] = &vr[size_t(copy * n_kv + kvh)];
                os[y] = out.get() + (h + y) * kHeadDim;
            }
            ops::attend_heads_runs(group, qs, ks_, vs_, kHeadDim, 0, keys, 0.125f, sc, os);
        }
        benchmark::DoNotOptimize(out.get());
        copy = (copy + 1) % copies;
    });
    finish(state, calls, (k_head + v_head) * n_kv);
}

const int kRegistered = [] {
    auto add = [](const std::string& name, auto fn, auto... args) {
        auto* b = benchmark::RegisterBenchmark(name.c_str(), fn, args...)->Unit(benchmark::kMicrosecond)->MeasureProcessCPUTime();
        if (bench::quiet_mode()) b->UseManualTime();
        else b->UseRealTime();
    };
    for (int keys : {912, 3648}) {
        const std::string k = "/keys:" + std::to_string(keys);
        for (const char* codec : {"fp32", "fp16", "int8", "int4", "int2"}) {
            for (int group : {1, 2})
                add("attention_codec/" + std::string(codec) + k + "/heads:" + std::to_string(group), bm_attention_codec,
                    std::string(codec), keys, group, false);
            for (int group : {2, 3, 4})
                add("attention_codec/" + std::string(codec) + k + "/gqa:" + std::to_string(group), bm_attention_codec,
                    std::string(codec), keys, group, true);
        }
        for (const char* codec : {"fp16", "int8", "int4", "int2"}) {
            add("attention_runs/paged16/" + std::string(codec) + k + "/heads:2", bm_attention_runs, std::string(codec),
                std::string("paged"), keys, 2, false);
            for (int group : {3, 4})
                add("attention_runs/paged16/" + std::string(codec) + k + "/gqa:" + std::to_string(group),
                    bm_attention_runs, std::string(codec), std::string("paged"), keys, group, true);
        }
        for (const char* codec : {"int8", "int4", "int2"}) {
            add("attention_runs/kivi/" + std::string(codec) + k + "/heads:2", bm_attention_runs, std::string(codec),
                std::string("kivi"), keys, 2, false);
            add("attention_runs/kivi/" + std::string(codec) + k + "/gqa:3", bm_attention_runs, std::string(codec),
                std::string("kivi"), keys, 3, true);
        }
        for (DType dt : {DType::F32, DType::F16, DType::BF16})
            for (int group : {2, 3, 4})
                add("attention/" + std::string(dtype_name(dt)) + k + "/gqa:" + std::to_string(group), bm_attention, dt,
                    keys, group, 1, true);
    }
    for (int keys : {128, 912, 3648}) {
        const std::string k = "/keys:" + std::to_string(keys);
        for (DType dt : {DType::F32, DType::F16, DType::BF16})
            for (int group : {1, 2, 3, 4, 6})
                add("attention/" + std::string(dtype_name(dt)) + k + "/heads:" + std::to_string(group), bm_attention, dt,
                    keys, group, 1, false);
        for (DType dt : {DType::F32, DType::F16})
            for (int block : {16, 32, 64})
                for (int runs : {0, 8, 1}) {
                    const std::string name = std::string(dtype_name(dt)) + k + "/block:" + std::to_string(block) + "/" +
                                             pattern_name(runs) + (runs > 1 ? ":" + std::to_string(runs) : "");
                    add("attention_paged/" + name, bm_attention_paged, dt, keys, block, runs);
                    add("attention_paged_pair/" + name, bm_attention_paged_pair, dt, keys, block, runs);
                    add("paged_read/" + name + "/ahead:0", bm_paged_read, dt, keys, block, runs, 0);
                    add("paged_read/" + name + "/ahead:4096", bm_paged_read, dt, keys, block, runs, 4096);
                    add("paged_read_pair/" + name + "/ahead:0", bm_paged_read_pair, dt, keys, block, runs, 0);
                    add("paged_read_pair/" + name + "/ahead:4096", bm_paged_read_pair, dt, keys, block, runs, 4096);
                }
        add("attention/layers/fp32" + k, bm_attention, DType::F32, keys, 2, 6, false);
        add("attention/read_floor/fp32" + k, bm_kv_read, DType::F32, keys);
    }
    return 0;
}();

}  // namespace
}  // namespace kvscope
