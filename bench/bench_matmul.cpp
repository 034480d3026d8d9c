// Microbenchmarks of the matmul kernels on distilgpt2's shapes, plus the two ceilings they
// are judged against: the machine's read bandwidth (measured here) and OpenBLAS on the same
// shapes. Decode kernels report bytes/s of weights streamed (the roofline that matters at
// m = 1), every kernel reports FLOP/s. Run with OMP_NUM_THREADS set; see docs/KERNELS.md.
//
// Weights are cold, as in a real decode step (which streams every layer's weights once per
// token): each benchmark cycles through enough copies of its weight to exceed the caches.
//
// On a shared machine, KVSCOPE_BENCH_QUIET=1 times bursts of calls on an idle CPU only
// (bench_quiet.h).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include "core/aligned.h"
#include "core/dtype.h"
#include "ops/convert.h"
#include "ops/gemm.h"
#include "ops/gemv.h"
#include "ops/matmul.h"
#include "ops/pack.h"
#include "bench_quiet.h"

namespace kvscope {
namespace {

// Footprint of the rotating weight copies. This VM's last-level cache serves 128 MiB at
// ~90 GB/s and 512 MiB at ~60 GB/s, so it takes 2 GiB to measure DRAM;
// KVSCOPE_BENCH_COLD_MIB overrides it (e.g. 330 for "the whole fp32 model, hot").
int64_t cold_bytes() {
    const char* env = std::getenv("KVSCOPE_BENCH_COLD_MIB");
    return (env ? std::atoll(env) : 2048) << 20;
}

struct Shape {
    const char* name;
    Layout layout;
    int64_t n_in, n_out;
};
const Shape kShapes[] = {
    {"attn_qkv", Layout::KN, 768, 2304}, {"attn_proj", Layout::KN, 768, 768}, {"mlp_fc", Layout::KN, 768, 3072},
    {"mlp_proj", Layout::KN, 3072, 768}, {"lm_head", Layout::NK, 768, 50257},
};
// TinyLlama-1.1B's (grouped-query QKV, gate+up stacked) and SmolLM-135M's decode matrices.
const Shape kLlamaShapes[] = {
    {"tinyllama_qkv", Layout::NK, 2048, 2560},      {"tinyllama_o", Layout::NK, 2048, 2048},
    {"tinyllama_gate_up", Layout::NK, 2048, 11264}, {"tinyllama_down", Layout::NK, 5632, 2048},
    {"smollm_qkv", Layout::NK, 576, 960},           {"smollm_gate_up", Layout::NK, 576, 3072},
    {"smollm_down", Layout::NK, 1536, 576},
};

// Several copies of one random weight in `dtype`, 64-byte aligned, filling kColdBytes, back
// to back in one buffer on huge pages (as the model's weights are: core/aligned.h).
struct ColdWeights {
    AlignedArray<uint8_t> copies;
    std::vector<WeightView> views;
    int64_t next = 0;

    ColdWeights(const Shape& s, DType dtype, int64_t footprint = cold_bytes()) {
        WeightView w{nullptr, dtype, s.layout, s.n_in, s.n_out};
        const int64_t bytes = w.bytes();
        const int64_t n_copies = std::max<int64_t>(2, footprint / bytes);
        std::mt19937 rng(1);
        std::uniform_real_distribution<float> dist(-0.05f, 0.05f);
        std::vector<float> f(size_t(s.n_in * s.n_out));
        for (float& v : f) v = dist(rng);
        const int64_t stride = (bytes + 63) / 64 * 64;
        copies = make_aligned<uint8_t>(size_t(n_copies * stride));
        for (int64_t c = 0; c < n_copies; c++) {
            uint8_t* p = copies.get() + c * stride;
            auto* p16 = reinterpret_cast<uint16_t*>(p);
            if (s.layout == Layout::Packed)
                ops::pack_weight({f.data(), DType::F32, Layout::KN, s.n_in, s.n_out}, dtype, p);
            else if (dtype == DType::F32) std::memcpy(p, f.data(), size_t(bytes));
            else if (dtype == DType::BF16) ops::f32_to_bf16(f.data(), p16, int64_t(f.size()));
            else ops::f32_to_f16(f.data(), p16, int64_t(f.size()));
            w.data = p;
            views.push_back(w);
        }
    }
    const WeightView& take() {
        const WeightView& w = views[size_t(next)];
        next = (next + 1) % int64_t(views.size());
        return w;
    }
};

using bench::quiet_mode;
using bench::timed_loop;

std::vector<float> random_vec(int64_t n) {
    std::mt19937 rng(2);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& f : v) f = dist(rng);
    return v;
}

void set_counters(benchmark::State& state, const WeightView& w, int64_t m, int64_t calls) {
    state.SetBytesProcessed(int64_t(state.iterations()) * calls * w.bytes());
    state.counters["FLOP/s"] = benchmark::Counter(2.0 * double(calls) * double(m) * double(w.n_in) * double(w.n_out),
                                                  benchmark::Counter::kIsIterationInvariantRate);
    state.counters["threads"] = omp_get_max_threads();
    state.counters["calls_per_iter"] = double(calls);
}

enum class Kernel { Gemv, Gemm, OpenBlas };

void bm_matmul(benchmark::State& state, Kernel kernel, Shape s, DType dtype, int64_t m) {
    ColdWeights cw(s, dtype);
    const std::vector<float> x = random_vec(m * s.n_in);
    const std::vector<float> bias = random_vec(s.n_out);
    std::vector<float> y(size_t(m * s.n_out));
    const float* b = s.layout == Layout::KN ? bias.data() : nullptr;  // the LM head has no bias
    const int64_t calls = timed_loop(state, [&] {
        const WeightView& w = cw.take();
        switch (kernel) {
            case Kernel::Gemv: ops::gemv(x.data(), m, w, b, y.data()); break;
            case Kernel::Gemm: ops::gemm(x.data(), m, w, b, y.data()); break;
            case Kernel::OpenBlas:  // fp32 only: what we would get by handing decode to BLAS
                if (m == 1) {
                    // Row-major A = W: [rows, cols]; KN wants y = A^T x, NK wants y = A x.
                    const bool kn = w.layout == Layout::KN;
                    const int rows = int(kn ? w.n_in : w.n_out), cols = int(kn ? w.n_out : w.n_in);
                    cblas_sgemv(CblasRowMajor, kn ? CblasTrans : CblasNoTrans, rows, cols, 1.0f,
                                static_cast<const float*>(w.data), cols, x.data(), 1, 0.0f, y.data(), 1);
                } else {
                    ops::gemm(x.data(), m, w, b, y.data());
                }
                break;
        }
        benchmark::DoNotOptimize(y.data());
        benchmark::ClobberMemory();
    });
    set_counters(state, cw.views[0], m, calls);
}

// The roofline: read a cold buffer with `streams` interleaved sequential streams per thread
// (each thread sums its own contiguous part, cut into `streams` equal pieces read in step).
void bm_read_bandwidth(benchmark::State& state, int streams, int64_t bytes) {
    const int64_t n = bytes / 4;
    std::vector<float> buf(size_t(n), 1.0f);
    float sink = 0;
    const int64_t calls = timed_loop(state, [&] {
#pragma omp parallel reduction(+ : sink)
        {
            const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
            const int64_t per = n / nt / streams / 32 * 32;
            const float* base = buf.data() + t * per * streams;
            __m256 acc[8] = {};
            for (int64_t i = 0; i < per; i += 32)
                for (int s = 0; s < streams; s++) {
                    const float* p = base + s * per + i;
                    const __m256 lo = _mm256_add_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8));
                    const __m256 hi = _mm256_add_ps(_mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24));
                    acc[s % 8] = _mm256_add_ps(acc[s % 8], _mm256_add_ps(lo, hi));
                }
            for (int s = 1; s < 8; s++) acc[0] = _mm256_add_ps(acc[0], acc[s]);
            float tmp[8];
            _mm256_storeu_ps(tmp, acc[0]);
            for (float v : tmp) sink += v;
        }
        benchmark::DoNotOptimize(sink);
    });
    const int64_t nt = omp_get_max_threads();
    state.SetBytesProcessed(int64_t(state.iterations()) * calls * (n / nt / streams / 32 * 32) * streams * nt * 4);
    state.counters["threads"] = double(nt);
}

std::string shape_name(const Shape& s) {
    return std::string(s.name) + "_" + (s.layout == Layout::KN ? "KN" : s.layout == Layout::NK ? "NK" : "Packed") + "_" + std::to_string(s.n_in) + "x" +
           std::to_string(s.n_out);
}

template <class... Args>
void add(const std::string& name, benchmark::TimeUnit unit, Args&&... args) {
    // Real time, not the main thread's CPU time: the work runs on the whole OpenMP team.
    // Process CPU time is reported too: on a shared machine, cpu < threads x real means
    // another process took one of our cores during the run and the sample is not clean.
    auto* b = benchmark::RegisterBenchmark(name.c_str(), std::forward<Args>(args)...);
    b->MeasureProcessCPUTime()->Unit(unit);
    if (quiet_mode()) b->UseManualTime();
    else b->UseRealTime();
}

std::string path(const char* kernel, DType dt, const Shape& s, int64_t m) {
    return std::string(kernel) + "/" + dtype_name(dt) + "/" + shape_name(s) + "/m:" + std::to_string(m);
}

const int kRegistered = [] {
    using benchmark::kMicrosecond, benchmark::kMillisecond;
    for (int streams : {1, 2, 4, 8})
        add("read_bandwidth/streams:" + std::to_string(streams) + "/MiB:2048", kMillisecond, bm_read_bandwidth,
            streams, int64_t(2048) << 20);
    for (int64_t mib : {8, 32, 128, 512, 1024})
        add("read_bandwidth/streams:4/MiB:" + std::to_string(mib), kMillisecond, bm_read_bandwidth, 4, mib << 20);

    const DType dtypes[] = {DType::F32, DType::BF16, DType::F16};
    // Each decode shape in the layout the model uses (Packed) and in its checkpoint's layout.
    for (const Shape& c : kShapes)
        for (Layout l : {Layout::Packed, c.layout})
            for (DType dt : dtypes)
                for (int64_t m : {1, 8}) {
                    Shape s = c;
                    s.layout = l;
                    add(path("gemv", dt, s, m), kMicrosecond, bm_matmul, Kernel::Gemv, s, dt, m);
                }
    for (Shape s : kLlamaShapes)
        for (DType dt : dtypes) {
            s.layout = Layout::Packed;
            add(path("gemv", dt, s, 1), kMicrosecond, bm_matmul, Kernel::Gemv, s, dt, int64_t(1));
        }
    for (const Shape& s : kShapes)
        for (int64_t m : {1, 8})
            add(path("openblas", DType::F32, s, m), kMicrosecond, bm_matmul, Kernel::OpenBlas, s, DType::F32, m);
    for (const Shape& s : kShapes)
        for (DType dt : dtypes)
            add(path("gemm", dt, s, 512), kMillisecond, bm_matmul, Kernel::Gemm, s, dt, int64_t(512));

    // Crossover between the two paths (sets ops::gemv_max_rows): both kernels, m = 8..48.
    for (Shape s : {kShapes[0], kShapes[3]})
        for (DType dt : dtypes)
            for (int64_t m : {8, 16, 24, 32, 48, 64, 96, 128, 256, 512}) {
                s.layout = Layout::Packed;
                add(path("crossover/gemv", dt, s, m), kMicrosecond, bm_matmul, Kernel::Gemv, s, dt, m);
                add(path("crossover/gemm", dt, s, m), kMicrosecond, bm_matmul, Kernel::Gemm, s, dt, m);
            }
    return 0;
}();

}  // namespace
}  // namespace kvscope
