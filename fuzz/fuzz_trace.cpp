// libFuzzer target: parse_trace_csv on arbitrary bytes, then trace_requests for a small model.
// Either throws kvscope::Error or returns rows that keep the invariants the server relies on:
// finite non-negative arrivals, positive lengths, a shared prefix within its prompt; and the
// requests made from them stay inside the vocabulary and the positions a request may hold.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

#include "core/error.h"
#include "experiments/trace.h"

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_trace: %s\n", what);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    kvscope::ModelConfig c;
    c.n_vocab = 96;
    c.n_ctx = 256;
    c.bos_id = c.eos_id = 95;
    try {
        const auto rows = kvscope::exp::parse_trace_csv(text, "fuzz.csv");
        if (rows.empty()) bug("accepted a trace with no requests");
        for (const auto& r : rows) {
            if (!std::isfinite(r.arrival_s) || r.arrival_s < 0) bug("accepted a bad arrival");
            if (r.prompt_len < 1 || r.output_len < 1) bug("accepted a non-positive length");
            if (r.shared_prefix_len < 0 || r.shared_prefix_len > r.prompt_len) bug("accepted a bad shared prefix");
        }
        const auto reqs = kvscope::exp::trace_requests(rows, nullptr, c, 64, "fuzz.csv", 1);
        for (const auto& q : reqs) {
            if (q.prompt.empty() || int(q.prompt.size()) + q.max_new > 64) bug("request longer than max_len");
            for (int32_t t : q.prompt)
                if (t < 0 || t >= c.n_vocab) bug("token outside the vocabulary");
        }
    } catch (const kvscope::Error&) {
        // Rejected with the project's error type: expected for bad input.
    } catch (const std::exception& e) {
        std::fprintf(stderr, "fuzz_trace: unexpected exception %s: %s\n", typeid(e).name(), e.what());
        std::abort();
    }
    return 0;
}
