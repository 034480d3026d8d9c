// Request traces for the serving experiment: generated (Poisson arrivals, lengths drawn
// uniformly from ranges, optionally a system prompt every request starts with) or read from a
// CSV the user gives, then turned into token ids for one model.
//
// Trace CSV: a header line, then one request per row. Columns (any order, others ignored):
//   arrival_s          seconds from the trace's start, >= 0 (rows need not be sorted)
//   prompt_len         prompt tokens, >= 1
//   output_len         tokens to generate, >= 1
//   shared_prefix_len  optional: how many of the prompt's first tokens are the trace's common
//                      system prompt (0 to prompt_len; default 0)
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/config.h"
#include "runtime/server.h"
#include "tokenizer/tokenizer.h"

namespace kvscope::exp {

struct LenRange {
    int lo = 1, hi = 1;  // inclusive
};
// "128" or "32-256"; throws a one-line error naming `flag` otherwise.
LenRange parse_len_range(const std::string& s, const std::string& flag);
std::string len_range_text(const LenRange& r);

struct TraceRow {
    double arrival_s = 0;
    int prompt_len = 1, output_len = 1, shared_prefix_len = 0;
    int row = 0;  // 1-based row of the source (CSV data row, or generation order)
};

struct TraceGen {
    int n_requests = 32;
    LenRange prompt{32, 128};  // tokens after the system prompt
    LenRange output{16, 128};
    int system_prompt = 0;     // tokens every request's prompt starts with
    uint64_t seed = 1;
};
// Lengths drawn with the seed; arrivals all at 0 (with_rate spreads them).
std::vector<TraceRow> generate_trace(const TraceGen& g);
// The same requests arriving as a Poisson process of `rate` requests/s: the gaps are fixed
// exponential draws (seeded) divided by the rate, so traces at two rates differ only in scale.
// rate <= 0: every request at 0.
std::vector<TraceRow> with_rate(std::vector<TraceRow> rows, double rate, uint64_t seed);

// Parses a trace CSV (`name` is the file named in errors: "NAME row 3: ..."); every error is
// one line naming the row and the column.
std::vector<TraceRow> parse_trace_csv(const std::string& text, const std::string& name);
std::vector<TraceRow> load_trace_csv(const std::filesystem::path& path);

// Token ids for each row: the first shared_prefix_len tokens of one common text (the same
// for every row), then ids drawn from a generator seeded by (seed, row), skipping special ids.
// Fails naming the row when prompt_len + output_len exceeds max_len.
std::vector<TraceRequest> trace_requests(const std::vector<TraceRow>& rows, const Tokenizer* tok,
                                         const ModelConfig& c, int max_len, const std::string& name, uint64_t seed);

}  // namespace kvscope::exp
