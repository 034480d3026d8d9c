// No allocation inside the decode loop: the number of heap allocations of a generation does
// not depend on how many tokens it generates (everything is sized at setup).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "model/loader.h"
#include "runtime/engine.h"
#include "test_util.h"

namespace {
std::atomic<long> g_allocs{0};
}

// Counts every heap allocation of the test process (replaceable global operator new; the
// replacement pairs malloc with free, which GCC cannot see through).
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace kvscope;

TEST(NoAlloc, DecodeStepsAllocateNothing) {
    Model m = load_model(test::tiny_model_dir("noalloc", test::tiny_config()).string(), DType::F32);
    for (bool cache : {true, false})
        for (int batch : {1, 3}) {
            EngineOptions eo;
            eo.n_seq = batch;
            eo.max_prompt = 5;
            eo.max_new_tokens = 64;
            eo.use_cache = cache;
            Engine e(*m.weights, eo);
            std::vector<std::vector<int32_t>> prompts(size_t(batch), std::vector<int32_t>{1, 2, 3, 4, 5});
            GenerateOptions go;
            go.stop_at_eos = false;
            auto count = [&](int n) {
                go.max_new_tokens = n;
                long before = g_allocs.load();
                e.generate(prompts, go);
                return g_allocs.load() - before;
            };
            count(4);  // first call: lazily sized per-thread scratch in the kernels, if any
            long short_run = count(4), long_run = count(64);
            EXPECT_EQ(short_run, long_run) << "cache " << cache << " batch " << batch
                                           << ": allocations grow with the number of decode steps";
        }
}
