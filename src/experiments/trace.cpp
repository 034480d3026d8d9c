#include "experiments/trace.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <random>

#include "core/error.h"
#include "core/fs.h"
#include "report/csv.h"
#include "runtime/prompts.h"

namespace kvscope::exp {

namespace {

std::string trim(std::string s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.erase(s.begin());
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
    return s;
}

bool parse_int(const std::string& s, long long* v) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
}

// Uniform integer in [lo, hi] and uniform double in [0, 1), defined here (not by the standard
// library's distributions) so that a seed gives the same trace everywhere.
int draw(std::mt19937_64& rng, const LenRange& r) { return r.lo + int(rng() % uint64_t(r.hi - r.lo + 1)); }
double unit(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

}  // namespace

LenRange parse_len_range(const std::string& s, const std::string& flag) {
    const size_t dash = s.find('-');
    long long lo = 0, hi = 0;
    const bool ok = dash == std::string::npos ? parse_int(s, &lo) && (hi = lo, true)
                                              : parse_int(s.substr(0, dash), &lo) && parse_int(s.substr(dash + 1), &hi);
    if (!ok || lo < 1 || hi < lo || hi > 1000000)
        fail("{} '{}': expected a token count like 128 or a range like 32-256 (at least 1)", flag, s);
    return {int(lo), int(hi)};
}

std::string len_range_text(const LenRange& r) {
    return r.lo == r.hi ? std::to_string(r.lo) : std::to_string(r.lo) + "-" + std::to_string(r.hi);
}

std::vector<TraceRow> generate_trace(const TraceGen& g) {
    if (g.n_requests < 1) fail("--requests {}: expected at least 1", g.n_requests);
    if (g.system_prompt < 0) fail("--system-prompt {}: expected 0 or more tokens", g.system_prompt);
    std::mt19937_64 rng(g.seed);
    std::vector<TraceRow> rows;
    for (int i = 0; i < g.n_requests; i++) {
        TraceRow r;
        r.prompt_len = g.system_prompt + draw(rng, g.prompt);
        r.output_len = draw(rng, g.output);
        r.shared_prefix_len = g.system_prompt;
        r.row = i + 1;
        rows.push_back(r);
    }
    return rows;
}

std::vector<TraceRow> with_rate(std::vector<TraceRow> rows, double rate, uint64_t seed) {
    std::mt19937_64 rng(seed ^ 0xA5A5A5A5ull);
    double t = 0;
    for (TraceRow& r : rows) {
        r.arrival_s = rate > 0 ? t : 0;
        t += -std::log(1.0 - unit(rng)) / (rate > 0 ? rate : 1);
    }
    return rows;
}

std::vector<TraceRow> parse_trace_csv(const std::string& text, const std::string& name) {
    const std::vector<std::vector<std::string>> lines = parse_csv(text);
    const std::string expected = "expected a header line with arrival_s, prompt_len, output_len (and optionally "
                                 "shared_prefix_len), then one request per row";
    if (lines.empty()) fail("{}: empty file ({})", name, expected);
    std::map<std::string, size_t> col;
    for (size_t i = 0; i < lines[0].size(); i++) col.emplace(trim(lines[0][i]), i);
    for (const char* need : {"arrival_s", "prompt_len", "output_len"})
        if (!col.count(need)) fail("{}: missing column '{}' ({})", name, need, expected);
    const bool has_shared = col.count("shared_prefix_len") > 0;
    std::vector<TraceRow> rows;
    for (size_t li = 1; li < lines.size(); li++) {
        const std::vector<std::string>& f = lines[li];
        if (f.size() == 1 && trim(f[0]).empty()) continue;  // blank line
        const int row = int(li);
        if (f.size() != lines[0].size())
            fail("{} row {}: {} fields, the header has {}", name, row, f.size(), lines[0].size());
        auto integer = [&](const char* column, long long lo) {
            const std::string v = trim(f[col.at(column)]);
            long long x = 0;
            if (!parse_int(v, &x) || x < lo || x > 1000000000)
                fail("{} row {}: {} '{}': expected an integer of at least {}", name, row, column, v, lo);
            return int(x);
        };
        TraceRow r;
        r.row = row;
        const std::string a = trim(f[col.at("arrival_s")]);
        double t = 0;
        auto [p, ec] = std::from_chars(a.data(), a.data() + a.size(), t);
        if (a.empty() || ec != std::errc() || p != a.data() + a.size() || !std::isfinite(t) || t < 0 || t > 1e9)
            fail("{} row {}: arrival_s '{}': expected seconds from the trace's start (a number >= 0)", name, row, a);
        r.arrival_s = t;
        r.prompt_len = integer("prompt_len", 1);
        r.output_len = integer("output_len", 1);
        r.shared_prefix_len = has_shared ? integer("shared_prefix_len", 0) : 0;
        if (r.shared_prefix_len > r.prompt_len)
            fail("{} row {}: shared_prefix_len {} is longer than prompt_len {}", name, row, r.shared_prefix_len,
                 r.prompt_len);
        rows.push_back(r);
    }
    if (rows.empty()) fail("{}: header but no requests ({})", name, expected);
    return rows;
}

std::vector<TraceRow> load_trace_csv(const std::filesystem::path& path) {
    if (!std::filesystem::is_regular_file(path)) fail("--trace {}: no such file", path.string());
    return parse_trace_csv(read_file(path), path.string());
}

std::vector<TraceRequest> trace_requests(const std::vector<TraceRow>& rows, const Tokenizer* tok,
                                         const ModelConfig& c, int max_len, const std::string& name, uint64_t seed) {
    int shared = 0;
    for (const TraceRow& r : rows) {
        if (int64_t(r.prompt_len) + r.output_len > max_len)
            fail("{} row {}: prompt_len {} + output_len {} = {} exceeds the {} positions a request may hold", name,
                 r.row, r.prompt_len, r.output_len, int64_t(r.prompt_len) + r.output_len, max_len);
        shared = std::max(shared, r.shared_prefix_len);
    }
    const std::vector<int32_t> common = prompt_of_length(tok, c.n_vocab, shared);
    std::vector<TraceRequest> out;
    out.reserve(rows.size());
    for (const TraceRow& r : rows) {
        TraceRequest q;
        q.arrival_s = r.arrival_s;
        q.max_new = r.output_len;
        q.prompt.assign(common.begin(), common.begin() + r.shared_prefix_len);
        std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + uint64_t(r.row));
        while (int(q.prompt.size()) < r.prompt_len) {
            const int32_t id = int32_t(rng() % uint64_t(c.n_vocab));
            if (c.n_vocab > 8 && (id < 3 || id == c.bos_id || id == c.eos_id)) continue;  // no special tokens
            q.prompt.push_back(id);
        }
        out.push_back(std::move(q));
    }
    return out;
}

}  // namespace kvscope::exp
