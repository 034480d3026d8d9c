#include "report/findings.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "core/error.h"

namespace kvscope::report {

namespace {

using json = nlohmann::ordered_json;

constexpr double MiB = 1024.0 * 1024.0;
// The criteria the findings apply; quoted in the sentences as thresholds.
constexpr double kSpeedupMark = 2.0;     // "the first length where the cache passes 2x"
constexpr double kScalingMark = 1.2;     // throughput gain per doubling of the batch below which it stopped scaling
constexpr double kAgreePct = 10.0;       // measured vs theoretical KV bytes "agree" within this
constexpr double kPplMarkPct = 1.0;      // a KV scheme "keeps" perplexity within this of the fp32 cache's
constexpr double kSloMult = 2.0;         // serving: a rate is "sustained" while p99 TTFT stays within this x the baseline

// The columns that name a row of each file in findings.json, before any others.
const std::vector<std::string>& preferred_key(const std::string& file) {
    static const std::map<std::string, std::vector<std::string>> m = {
        {"cache.csv", {"use_cache", "max_new_tokens"}},   {"cache_tokens.csv", {"use_cache", "step"}},
        {"batch.csv", {"batch_size", "padding"}},         {"precision.csv", {"dtype", "kv_dtype"}},
        {"seqlen.csv", {"context", "use_cache"}},         {"memory.csv", {"context", "kv_dtype", "batch_size"}},
        {"roofline.csv", {"phase", "batch_size", "context"}}, {"quant.csv", {"kv_dtype", "context"}},
        {"serving.csv", {"policy", "rate_req_s"}},
        {"evict.csv", {"policy", "kv_dtype", "budget_frac"}}, {"evict_long.csv", {"method"}},
    };
    static const std::vector<std::string> none;
    auto it = m.find(file);
    return it == m.end() ? none : it->second;
}

CellRef ref(const Table& t, size_t row, std::string_view column) {
    return {t.file(), t.key_of(row, preferred_key(t.file())), std::string(column), t.num(row, column)};
}

// Builds one finding: every number goes through a method that records where it came from.
class Say {
public:
    explicit Say(std::string experiment) : experiment_(std::move(experiment)) {}

    std::string cell(const Table& t, size_t row, std::string_view column) { return quote(t, row, column, 1); }
    std::string mib(const Table& t, size_t row, std::string_view column) { return quote(t, row, column, MiB); }

    // a / b over two cells (same table or not).
    std::string ratio(const Table& ta, size_t ra, std::string_view ca, const Table& tb, size_t rb, std::string_view cb) {
        CellRef a = ref(ta, ra, ca), b = ref(tb, rb, cb);
        return derived("ratio", a.value / b.value, {a, b});
    }
    std::string ratio(const Table& t, size_t ra, std::string_view ca, size_t rb, std::string_view cb) {
        return ratio(t, ra, ca, t, rb, cb);
    }
    // a - b
    std::string diff(const Table& t, size_t ra, std::string_view ca, size_t rb, std::string_view cb) {
        CellRef a = ref(t, ra, ca), b = ref(t, rb, cb);
        return derived("diff", a.value - b.value, {a, b});
    }
    // 100 * |a - b| / b
    std::string pct_diff(const Table& t, size_t ra, std::string_view ca, size_t rb, std::string_view cb) {
        CellRef a = ref(t, ra, ca), b = ref(t, rb, cb);
        return derived("pct_diff", 100.0 * std::fabs(a.value - b.value) / b.value, {a, b});
    }
    // Growth of y per doubling of x between rows r1 and r2: (y2 / y1)^(1 / log2(x2 / x1)).
    std::string per_doubling(const Table& t, size_t r2, size_t r1, std::string_view y, std::string_view x) {
        CellRef y2 = ref(t, r2, y), y1 = ref(t, r1, y), x2 = ref(t, r2, x), x1 = ref(t, r1, x);
        double v = std::pow(y2.value / y1.value, 1.0 / std::log2(x2.value / x1.value));
        return derived("per_doubling", v, {y2, y1, x2, x1});
    }
    std::string threshold(double v) {
        Quoted q;
        q.kind = Quoted::Kind::Threshold;
        q.value = v;
        q.shown = fmt::format("{}", v);  // shortest exact form: "1.2", "2", "10"
        values_.push_back(q);
        return q.shown;
    }

    // Files the sentence; every number in it must have been quoted through this object.
    void add(std::vector<Finding>& out, std::string text) {
        std::set<std::string> shown;
        for (const Quoted& q : values_) shown.insert(q.shown);
        for (const std::string& n : numbers_in(text))
            if (!shown.count(n)) fail("report: internal error: a finding quotes {} without its source: {}", n, text);
        out.push_back({experiment_, std::move(text), std::move(values_)});
        values_.clear();
    }

private:
    std::string quote(const Table& t, size_t row, std::string_view column, double scale) {
        Quoted q;
        q.kind = Quoted::Kind::Cell;
        q.cell = ref(t, row, column);
        q.value = q.cell.value;
        q.scale = scale;
        q.shown = format_number(q.value / scale);
        values_.push_back(q);
        return q.shown;
    }
    std::string derived(const std::string& op, double v, std::vector<CellRef> args) {
        if (!std::isfinite(v)) return "n/a";  // a zero denominator: nothing to quote
        Quoted q;
        q.kind = Quoted::Kind::Derived;
        q.op = op;
        q.args = std::move(args);
        q.value = v;
        q.shown = format_number(v);
        values_.push_back(q);
        return q.shown;
    }

    std::string experiment_;
    std::vector<Quoted> values_;
};

// Rows of one configuration: the table split by the `config` columns that vary over `rows`.
struct Group {
    std::vector<size_t> rows;
    std::vector<std::string> varying;  // the columns that tell the groups apart (empty: one group)
};

std::vector<Group> config_groups(const Table& t, const std::vector<size_t>& rows, const std::vector<std::string>& config) {
    std::vector<std::string> varying;
    for (const std::string& c : config)
        if (t.has(c) && t.distinct(rows, c).size() > 1) varying.push_back(c);
    std::vector<std::pair<std::vector<std::string>, Group>> groups;
    for (size_t r : rows) {
        std::vector<std::string> key;
        for (const std::string& c : varying) key.push_back(t.cell(r, c));
        auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
        if (it == groups.end()) {
            groups.push_back({key, Group{{}, varying}});
            it = groups.end() - 1;
        }
        it->second.rows.push_back(r);
    }
    std::vector<Group> out;
    for (auto& [k, g] : groups) out.push_back(std::move(g));
    return out;
}

// "batch_size 4, dtype fp16: " naming the group a sentence is about; "" when there is one group.
std::string prefix(Say& say, const Table& t, const Group& g) {
    if (g.varying.empty() || g.rows.empty()) return "";
    std::string s;
    for (const std::string& c : g.varying) {
        double v;
        std::string value = parse_number(t.cell(g.rows[0], c), &v) ? say.cell(t, g.rows[0], c) : t.cell(g.rows[0], c);
        s += (s.empty() ? "" : ", ") + c + " " + value;
    }
    return s + ": ";
}

std::string capitalize(std::string s) {
    if (!s.empty()) s[0] = char(std::toupper(static_cast<unsigned char>(s[0])));
    return s;
}

// A sentence after its group prefix: capitalized when it opens the sentence itself.
std::string lead(const std::string& prefix, const std::string& rest) {
    return prefix.empty() ? capitalize(rest) : prefix + rest;
}

// The first row of `rows` whose `column` has the same value as row `like`'s.
std::optional<size_t> same(const Table& t, const std::vector<size_t>& rows, std::string_view column, size_t like) {
    for (size_t r : rows)
        if (t.cell(r, column) == t.cell(like, column)) return r;
    return std::nullopt;
}

// One row per distinct value of `x`, in numeric order of x (the first row wins on duplicates).
std::vector<size_t> one_per(const Table& t, const std::vector<size_t>& rows, std::string_view x) {
    std::vector<size_t> out;
    for (size_t r : t.sorted_by(rows, x))
        if (out.empty() || t.cell(out.back(), x) != t.cell(r, x)) out.push_back(r);
    return out;
}

// ---- per experiment -------------------------------------------------------------------------

void cache_findings(const Table& t, std::vector<Finding>& out) {
    for (const Group& g : config_groups(t, t.all_rows(), {"batch_size", "prompt_len", "dtype", "kv_dtype", "threads"})) {
        std::vector<size_t> on = one_per(t, t.where(g.rows, "use_cache", "1"), "max_new_tokens");
        std::vector<size_t> off_rows = t.where(g.rows, "use_cache", "0");
        std::vector<std::pair<size_t, size_t>> pairs;  // (on, off) at the same length
        for (size_t r : on)
            if (auto o = same(t, off_rows, "max_new_tokens", r)) pairs.emplace_back(r, *o);
        if (pairs.empty()) continue;

        Say say("cache");
        std::string p = prefix(say, t, g), list;
        for (auto [r, o] : pairs)
            list += fmt::format("{}{}x at {}", list.empty() ? "" : ", ", say.cell(t, r, "speedup"),
                                say.cell(t, r, "max_new_tokens"));
        say.add(out, lead(p, fmt::format("the KV cache shortens whole generations (speedup = cache-off / cache-on "
                                    "total_ms_median) by {} new tokens.", list)));

        p = prefix(say, t, g);
        auto first = std::find_if(pairs.begin(), pairs.end(), [&](auto pr) { return t.num(pr.first, "speedup") >= kSpeedupMark; });
        bool grows = true;
        for (size_t i = 1; i < pairs.size(); ++i)
            grows = grows && t.num(pairs[i].first, "speedup") >= t.num(pairs[i - 1].first, "speedup");
        std::string trend = pairs.size() < 3 ? "" : grows ? ", and it grows with every longer generation" : ", though it does not grow monotonically with length";
        if (first != pairs.end()) {
            say.add(out, lead(p, fmt::format("the speedup first reaches {}x at {} new tokens ({}x){}.", say.threshold(kSpeedupMark), say.cell(t, first->first, "max_new_tokens"),
                                                say.cell(t, first->first, "speedup"), trend)));
        } else {
            auto best = *std::max_element(pairs.begin(), pairs.end(), [&](auto a, auto b) {
                return t.num(a.first, "speedup") < t.num(b.first, "speedup");
            });
            say.add(out, lead(p, fmt::format("the speedup stays below {}x at every length measured (largest: {}x at {} new tokens){}.", say.threshold(kSpeedupMark), say.cell(t, best.first, "speedup"),
                                                say.cell(t, best.first, "max_new_tokens"), trend)));
        }

        auto [ron, roff] = pairs.back();
        p = prefix(say, t, g);
        say.add(out, lead(p, fmt::format(
                         "at {} new tokens the deepest decode step (decode_ms_last) takes {} ms with the cache and {} ms "
                         "without ({}x): with the cache a step attends over stored keys and values, without it the whole "
                         "sequence is recomputed.",
                         say.cell(t, ron, "max_new_tokens"), say.cell(t, ron, "decode_ms_last"),
                         say.cell(t, roff, "decode_ms_last"), say.ratio(t, roff, "decode_ms_last", ron, "decode_ms_last"))));

        p = prefix(say, t, g);
        std::string kv = t.num(ron, "kv_bytes") > 0 ? fmt::format("; the cache itself holds {} MiB (kv_bytes)", say.mib(t, ron, "kv_bytes")) : "";
        say.add(out, lead(p, fmt::format("at {} new tokens the throughput is {} tokens/s with the cache and {} without{}.", say.cell(t, ron, "max_new_tokens"), say.cell(t, ron, "tokens_per_s"),
                                            say.cell(t, roff, "tokens_per_s"), kv)));
    }
}

void cache_tokens_findings(const Table& t, std::vector<Finding>& out) {
    std::vector<size_t> on = t.sorted_by(t.where(t.all_rows(), "use_cache", "1"), "step");
    std::vector<size_t> off = t.sorted_by(t.where(t.all_rows(), "use_cache", "0"), "step");
    // Decode steps: from the first one after the prefill (step 0) to the last.
    auto span = [&](const std::vector<size_t>& rows) -> std::optional<std::pair<size_t, size_t>> {
        std::vector<size_t> dec;
        for (size_t r : rows)
            if (t.num(r, "step") > 0) dec.push_back(r);
        if (dec.size() < 2) return std::nullopt;
        return std::make_pair(dec.front(), dec.back());
    };
    auto s_on = span(on), s_off = span(off);
    if (s_off && s_on) {
        Say say("cache_tokens");
        auto [a0, a1] = *s_off;
        auto [b0, b1] = *s_on;
        say.add(out, fmt::format("Without the cache a step costs {} ms at step {} and {} ms at step {} ({}x); with the cache "
                                 "{} ms at step {} and {} ms at step {} ({}x).",
                                 say.cell(t, a0, "token_ms"), say.cell(t, a0, "step"), say.cell(t, a1, "token_ms"),
                                 say.cell(t, a1, "step"), say.ratio(t, a1, "token_ms", a0, "token_ms"), say.cell(t, b0, "token_ms"),
                                 say.cell(t, b0, "step"), say.cell(t, b1, "token_ms"), say.cell(t, b1, "step"),
                                 say.ratio(t, b1, "token_ms", b0, "token_ms")));
    }
    if (!on.empty() && !off.empty()) {
        // Cumulative time at the deepest step both runs reached.
        size_t last_on = on.back(), last_off = off.back();
        if (t.num(last_on, "step") > t.num(last_off, "step")) {
            if (auto r = same(t, on, "step", last_off)) last_on = *r;
        } else if (auto r = same(t, off, "step", last_on)) {
            last_off = *r;
        }
        if (t.cell(last_on, "step") == t.cell(last_off, "step")) {
            Say say("cache_tokens");
            say.add(out, fmt::format("By step {} the cumulative time is {} ms with the cache and {} ms without ({}x).",
                                     say.cell(t, last_on, "step"), say.cell(t, last_on, "cumulative_ms"),
                                     say.cell(t, last_off, "cumulative_ms"),
                                     say.ratio(t, last_off, "cumulative_ms", last_on, "cumulative_ms")));
        }
        auto p_on = same(t, on, "step", on.front()), p_off = same(t, off, "step", on.front());
        if (p_on && p_off && t.num(*p_on, "step") == 0) {
            Say say("cache_tokens");
            say.add(out, fmt::format("The first token (step {}, the prompt's prefill) takes {} ms with the cache and {} ms "
                                     "without: both modes process the whole prompt once.",
                                     say.cell(t, *p_on, "step"), say.cell(t, *p_on, "token_ms"), say.cell(t, *p_off, "token_ms")));
        }
    }
}

void batch_findings(const Table& t, std::vector<Finding>& out) {
    for (const Group& g :
         config_groups(t, t.all_rows(), {"padding", "dtype", "kv_dtype", "use_cache", "max_new_tokens", "threads"})) {
        std::vector<size_t> rows = one_per(t, g.rows, "batch_size");
        if (rows.size() < 2) continue;
        Say say("batch");
        std::string p = prefix(say, t, g), list;
        for (size_t i = 0; i < rows.size(); ++i)
            list += fmt::format("{}{}{} at {}", i ? ", " : "", say.cell(t, rows[i], "decode_tok_s"), i ? "" : " tokens/s",
                                i ? say.cell(t, rows[i], "batch_size") : "batch " + say.cell(t, rows[i], "batch_size"));
        say.add(out, lead(p, fmt::format("aggregate decode throughput (decode_tok_s): {}.", list)));

        p = prefix(say, t, g);
        list.clear();
        std::optional<size_t> stop;  // index into rows of the first batch size that gained < kScalingMark
        for (size_t i = 1; i < rows.size(); ++i) {
            double gain = std::pow(t.num(rows[i], "decode_tok_s") / t.num(rows[i - 1], "decode_tok_s"),
                                   1.0 / std::log2(t.num(rows[i], "batch_size") / t.num(rows[i - 1], "batch_size")));
            if (!stop && gain < kScalingMark) stop = i;
            list += fmt::format("{}{}x from {} to {}", list.empty() ? "" : ", ",
                                say.per_doubling(t, rows[i], rows[i - 1], "decode_tok_s", "batch_size"),
                                say.cell(t, rows[i - 1], "batch_size"), say.cell(t, rows[i], "batch_size"));
        }
        say.add(out, lead(p, fmt::format("throughput gain per doubling of the batch: {}.", list)));

        p = prefix(say, t, g);
        if (stop) {
            size_t i = *stop;
            say.add(out, lead(p, fmt::format("throughput stops scaling at batch {}: from batch {} it gains only {}x per "
                                    "doubling (below {}x).", say.cell(t, rows[i], "batch_size"), say.cell(t, rows[i - 1], "batch_size"),
                                                say.per_doubling(t, rows[i], rows[i - 1], "decode_tok_s", "batch_size"),
                                                say.threshold(kScalingMark))));
        } else {
            size_t n = rows.size() - 1;
            say.add(out, lead(p, fmt::format("throughput still scales at the largest batch, {}: {}x per doubling from batch {} "
                                    "(at least {}x).", say.cell(t, rows[n], "batch_size"),
                                                say.per_doubling(t, rows[n], rows[n - 1], "decode_tok_s", "batch_size"),
                                                say.cell(t, rows[n - 1], "batch_size"), say.threshold(kScalingMark))));
        }

        size_t a = rows.front(), b = rows.back();
        p = prefix(say, t, g);
        bool faster = t.num(b, "decode_tok_s") > t.num(a, "decode_tok_s");
        say.add(out, lead(p, fmt::format(
                         "per-sequence step latency goes from p50 {} ms / p95 {} ms at batch {} to p50 {} ms / p95 {} ms at "
                         "batch {} ({}x at p50): {}.",
                         say.cell(t, a, "seq_latency_ms_p50"), say.cell(t, a, "seq_latency_ms_p95"), say.cell(t, a, "batch_size"),
                         say.cell(t, b, "seq_latency_ms_p50"), say.cell(t, b, "seq_latency_ms_p95"), say.cell(t, b, "batch_size"),
                         say.ratio(t, b, "seq_latency_ms_p50", a, "seq_latency_ms_p50"),
                         faster ? "each sequence waits longer per token while the batch as a whole goes faster"
                                : "the batch as a whole is not faster either")));

        p = prefix(say, t, g);
        std::string growth = t.num(a, "kv_bytes") > 0
                                 ? fmt::format(" ({}x batch {}'s)", say.ratio(t, b, "kv_bytes", a, "kv_bytes"), say.cell(t, a, "batch_size"))
                                 : "";
        say.add(out, lead(p, fmt::format("at batch {} the KV cache takes {} MiB{} and the process peaked at {} MiB resident "
                                    "(peak_rss_bytes).", say.cell(t, b, "batch_size"), say.mib(t, b, "kv_bytes"), growth,
                                            say.mib(t, b, "peak_rss_bytes"))));
    }
}

std::string precision_label(const Table& t, size_t r) {
    return t.cell(r, "dtype") + " weights + " + t.cell(r, "kv_dtype") + " KV";
}

void precision_findings(const Table& t, std::vector<Finding>& out) {
    std::vector<size_t> rows = t.all_rows();
    std::optional<size_t> ref_row;
    for (size_t r : rows)
        if (t.cell(r, "dtype") == "fp32" && t.cell(r, "kv_dtype") == "fp32") {
            ref_row = r;
            break;
        }
    std::vector<size_t> others;
    for (size_t r : rows)
        if (!ref_row || r != *ref_row) others.push_back(r);
    for (size_t r : others) {
        Say say("precision");
        std::string speed = ref_row ? fmt::format(", {}x the fp32/fp32 speed", say.ratio(t, r, "decode_tok_s", *ref_row, "decode_tok_s")) : "";
        say.add(out, fmt::format("{}: KL mean {} nats (max {}), top1 agreement {}, greedy match {}, max |logit diff| {}; "
                                 "decode {} tokens/s{}.",
                                 precision_label(t, r), say.cell(t, r, "kl_mean"), say.cell(t, r, "kl_max"),
                                 say.cell(t, r, "top1_agreement"), say.cell(t, r, "greedy_match"),
                                 say.cell(t, r, "max_abs_logit_diff"), say.cell(t, r, "decode_tok_s"), speed));
    }
    if (others.size() >= 2) {
        auto by = [&](std::string_view c) {
            return [&t, c](size_t a, size_t b) { return t.num(a, c) < t.num(b, c); };
        };
        size_t best = *std::min_element(others.begin(), others.end(), by("kl_mean"));
        size_t worst = *std::max_element(others.begin(), others.end(), by("kl_mean"));
        size_t fast = *std::max_element(rows.begin(), rows.end(), by("decode_tok_s"));
        Say say("precision");
        say.add(out, fmt::format("Of the reduced precisions, {} costs least in accuracy (KL mean {} nats) and {} most (KL mean "
                                 "{} nats, top1 agreement {}); the fastest configuration is {} at {} tokens/s.",
                                 precision_label(t, best), say.cell(t, best, "kl_mean"), precision_label(t, worst),
                                 say.cell(t, worst, "kl_mean"), say.cell(t, worst, "top1_agreement"), precision_label(t, fast),
                                 say.cell(t, fast, "decode_tok_s")));
    }
}

// Measured RSS growth vs predicted KV bytes: at the deepest context of `rows` (cache rows of
// group g, by context), then which contexts agree.
void rss_vs_theory(const std::string& experiment, const Table& t, const Group& g, const std::vector<size_t>& rows,
                   std::vector<Finding>& out) {
    auto pct_apart = [&](size_t r) {
        double th = t.num(r, "kv_bytes_theory");
        return 100.0 * std::fabs(t.num(r, "kv_rss_delta_bytes") - th) / th;
    };
    std::vector<size_t> agree, disagree;
    for (size_t r : rows)
        if (t.num(r, "kv_bytes_theory") > 0) (pct_apart(r) <= kAgreePct ? agree : disagree).push_back(r);
    if (agree.empty() && disagree.empty()) return;
    size_t r = rows.back();
    if (t.num(r, "kv_bytes_theory") > 0) {
        Say say(experiment);
        std::string p = prefix(say, t, g);
        say.add(out, lead(p, fmt::format("at context {} resident memory grew by {} MiB when the cache was allocated and "
                                         "touched (kv_rss_delta_bytes), against {} MiB predicted: {}% apart, so {} "
                                         "(criterion: within {}%).",
                                         say.cell(t, r, "context"), say.mib(t, r, "kv_rss_delta_bytes"),
                                         say.mib(t, r, "kv_bytes_theory"),
                                         say.pct_diff(t, r, "kv_rss_delta_bytes", r, "kv_bytes_theory"),
                                         pct_apart(r) <= kAgreePct ? "they agree" : "they do not agree",
                                         say.threshold(kAgreePct))));
    }
    if (!agree.empty() && !disagree.empty()) {
        Say say(experiment);
        std::string p = prefix(say, t, g);
        auto list = [&](const std::vector<size_t>& rs) {
            std::string s;
            for (size_t x : rs) s += (s.empty() ? "" : ", ") + say.cell(t, x, "context");
            return s;
        };
        say.add(out, lead(p, fmt::format("RSS growth agrees with the formula within {}% at context {} and not at {}: "
                                         "page granularity, allocator reuse and untouched pages blur small caches.",
                                         say.threshold(kAgreePct), list(agree), list(disagree))));
    }
}

// kv_bytes vs kv_bytes_theory over `rows` of group g: equal everywhere, or the first mismatch.
void formula_check(const std::string& experiment, const Table& t, const Group& g, const std::vector<size_t>& rows,
                   std::vector<Finding>& out) {
    Say say(experiment);
    std::string p = prefix(say, t, g);
    for (size_t r : rows)
        if (t.cell(r, "kv_bytes") != t.cell(r, "kv_bytes_theory")) {
            say.add(out, lead(p, fmt::format("the allocated KV cache differs from the formula at context {}: {} MiB "
                                             "allocated (kv_bytes) vs {} MiB predicted (kv_bytes_theory).",
                                             say.cell(t, r, "context"), say.mib(t, r, "kv_bytes"),
                                             say.mib(t, r, "kv_bytes_theory"))));
            return;
        }
    size_t r = rows.back();
    say.add(out, lead(p, fmt::format("the allocated KV cache (kv_bytes) equals the formula (kv_bytes_theory) at every "
                                     "context, e.g. {} MiB at context {}.",
                                     say.mib(t, r, "kv_bytes"), say.cell(t, r, "context"))));
}

void seqlen_findings(const Table& t, std::vector<Finding>& out) {
    for (const Group& g : config_groups(t, t.all_rows(), {"batch_size", "dtype", "kv_dtype", "threads"})) {
        std::vector<size_t> on = one_per(t, t.where(g.rows, "use_cache", "1"), "context");
        std::vector<size_t> off = one_per(t, t.where(g.rows, "use_cache", "0"), "context");
        for (auto [rows, mode] : {std::pair{&on, "with the cache"}, std::pair{&off, "without it"}}) {
            if (rows->size() < 2) continue;
            Say say("seqlen");
            std::string p = prefix(say, t, g);
            size_t a = rows->front(), b = rows->back();
            say.add(out, lead(p, fmt::format("{}, a decode step takes {} ms at context {} and {} ms at context {} ({}x).", mode, say.cell(t, a, "decode_ms_median"), say.cell(t, a, "context"),
                                                say.cell(t, b, "decode_ms_median"), say.cell(t, b, "context"),
                                                say.ratio(t, b, "decode_ms_median", a, "decode_ms_median"))));
        }
        std::optional<std::pair<size_t, size_t>> deepest;
        for (size_t r : on)
            if (auto o = same(t, off, "context", r)) deepest = std::make_pair(r, *o);
        if (deepest) {
            Say say("seqlen");
            std::string p = prefix(say, t, g);
            auto [r, o] = *deepest;
            say.add(out, lead(p, fmt::format("at context {} the cache makes a decode step {}x cheaper ({} ms vs {} ms).", say.cell(t, r, "context"),
                                                say.ratio(t, o, "decode_ms_median", r, "decode_ms_median"),
                                                say.cell(t, r, "decode_ms_median"), say.cell(t, o, "decode_ms_median"))));
        }
        std::vector<size_t> mem;
        for (size_t r : on)
            if (t.num(r, "kv_bytes_theory") > 0) mem.push_back(r);
        if (!mem.empty()) {
            formula_check("seqlen", t, g, mem, out);
            rss_vs_theory("seqlen", t, g, mem, out);
        }
    }
}

void memory_findings(const Table& t, std::vector<Finding>& out) {
    std::vector<size_t> bad;
    for (size_t r : t.all_rows())
        if (t.num(r, "kv_formula_matches") != 1) bad.push_back(r);
    if (bad.empty()) {
        Say say("memory");
        say.add(out, "The allocated KV cache (kv_bytes) equals the formula (kv_bytes_theory) in every row of memory.csv "
                     "(kv_formula_matches is set throughout).");
    }
    for (const Group& g : config_groups(t, t.all_rows(), {"kv_dtype", "batch_size", "dtype", "use_cache", "threads"})) {
        std::vector<size_t> rows = one_per(t, g.rows, "context");
        if (!bad.empty()) formula_check("memory", t, g, rows, out);
        rss_vs_theory("memory", t, g, rows, out);
    }
}

void roofline_findings(const Table& t, std::vector<Finding>& out) {
    std::vector<size_t> rows = t.all_rows();
    std::stable_sort(rows.begin(), rows.end(), [&](size_t a, size_t b) {
        auto k = [&](size_t r) { return std::tuple(t.cell(r, "phase") != "prefill", t.num(r, "batch_size"), t.num(r, "context")); };
        return k(a) < k(b);
    });
    for (size_t r : rows) {
        Say say("roofline");
        bool memory = t.num(r, "intensity") < t.num(r, "ridge");
        std::string verdict = memory ? "memory" : "compute";
        std::string achieved = memory ? fmt::format("{} GB/s = {}% of peak bandwidth", say.cell(t, r, "gbs"), say.cell(t, r, "pct_peak_bw"))
                                      : fmt::format("{} GFLOP/s = {}% of peak FLOP/s", say.cell(t, r, "gflops"),
                                                    say.cell(t, r, "pct_peak_flops"));
        std::string note = t.cell(r, "bound") == verdict ? "" : fmt::format(" (the CSV's bound column says {})", t.cell(r, "bound"));
        say.add(out, capitalize(fmt::format("{} at batch {}, context {}: {} flop/byte {} the ridge of {}, so {}-bound{}; it achieved "
                                            "{} and {}% of the {} tokens/s its roofline allows.",
                                            t.cell(r, "phase"), say.cell(t, r, "batch_size"), say.cell(t, r, "context"),
                                            say.cell(t, r, "intensity"), memory ? "is below" : "reaches", say.cell(t, r, "ridge"),
                                            verdict, note, achieved, say.cell(t, r, "pct_roofline"), say.cell(t, r, "roofline_tok_s"))));
    }
    std::vector<size_t> dec = one_per(t, t.where(t.all_rows(), "phase", "decode"), "batch_size");
    if (dec.size() >= 2) {
        Say say("roofline");
        size_t a = dec.front(), b = dec.back();
        auto cross = std::find_if(dec.begin(), dec.end(), [&](size_t r) { return t.num(r, "intensity") >= t.num(r, "ridge"); });
        std::string tail = cross == dec.end()
                               ? fmt::format("it stays below the ridge ({} flop/byte), so decoding is memory-bound at every "
                                             "batch measured: batching raises throughput by reusing each weight byte read",
                                             say.cell(t, b, "ridge"))
                               : fmt::format("it reaches the ridge ({} flop/byte) at batch {}, where decoding turns compute-bound",
                                             say.cell(t, *cross, "ridge"), say.cell(t, *cross, "batch_size"));
        say.add(out, fmt::format("Decode arithmetic intensity goes from {} flop/byte at batch {} to {} at batch {}; {}.",
                                 say.cell(t, a, "intensity"), say.cell(t, a, "batch_size"), say.cell(t, b, "intensity"),
                                 say.cell(t, b, "batch_size"), tail));
    }
}

json ref_json(const CellRef& c) {
    json row = json::object();
    for (const auto& [k, v] : c.row) row[k] = v;
    return {{"file", c.file}, {"row", row}, {"column", c.column}, {"value", c.value}};
}

}  // namespace

std::string format_number(double v) {
    if (!std::isfinite(v)) return "n/a";
    if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{:.0f}", v);
    double a = std::fabs(v);
    if (a >= 100) return fmt::format("{:.1f}", v);
    if (a >= 0.001) {
        int decimals = 2 - int(std::floor(std::log10(a)));
        return fmt::format("{:.{}f}", v, decimals);
    }
    return fmt::format("{:.2e}", v);
}

std::vector<std::string> numbers_in(std::string_view s) {
    std::vector<std::string> out;
    auto digit = [&](size_t i) { return i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])); };
    for (size_t i = 0; i < s.size();) {
        if (!digit(i)) {
            ++i;
            continue;
        }
        char prev = i ? s[i - 1] : ' ';
        bool word = std::isalnum(static_cast<unsigned char>(prev)) || prev == '_' || prev == '.' || prev == '-';
        size_t j = i;
        while (digit(j)) ++j;
        if (j + 1 < s.size() && s[j] == '.' && digit(j + 1)) {
            ++j;
            while (digit(j)) ++j;
        }
        if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
            size_t k = j + 1;
            if (k < s.size() && (s[k] == '-' || s[k] == '+')) ++k;
            if (digit(k)) {
                j = k;
                while (digit(j)) ++j;
            }
        }
        if (!word) out.emplace_back(s.substr(i, j - i));
        i = j;
    }
    return out;
}

// Per KV scheme at the longest context: bytes, speed against fp32 and against its floor, and
// accuracy; then the smallest scheme whose perplexity stays within kPplMarkPct of fp32's.
void quant_findings(const Table& t, std::vector<Finding>& out) {
    const std::vector<size_t> all = t.all_rows();
    double deepest = 0;
    for (size_t r : all) deepest = std::max(deepest, t.num(r, "context"));
    std::vector<size_t> rows;
    std::optional<size_t> ref_row;
    for (size_t r : all)
        if (t.num(r, "context") == deepest) {
            rows.push_back(r);
            if (t.cell(r, "kv_dtype") == "fp32") ref_row = r;
        }
    for (size_t r : rows) {
        if (ref_row && r == *ref_row) continue;
        Say say("quant");
        const std::string vs_fp32 =
            ref_row ? fmt::format(" ({}x fewer than fp32), decode {} ms per step at context {} against {} ms for fp32 ({}x)",
                                  say.ratio(t, *ref_row, "kv_bytes_per_token", r, "kv_bytes_per_token"),
                                  say.cell(t, r, "decode_ms_median"), say.cell(t, r, "context"),
                                  say.cell(t, *ref_row, "decode_ms_median"),
                                  say.ratio(t, *ref_row, "decode_ms_median", r, "decode_ms_median"))
                    : fmt::format(", decode {} ms per step at context {}", say.cell(t, r, "decode_ms_median"),
                                  say.cell(t, r, "context"));
        // The cache's own time: the step less the weights' (same batch, a 2-token prompt).
        const std::string kv_time =
            t.has("kv_ms") && t.has("kv_ms_vs_fp16") && t.num(r, "kv_ms_vs_fp16") > 0
                ? fmt::format(" (the cache's share {} ms past the weights' {} ms, {}x fp16's)", say.cell(t, r, "kv_ms"),
                              say.cell(t, r, "weights_ms"), say.cell(t, r, "kv_ms_vs_fp16"))
                : std::string();
        say.add(out, fmt::format("{}: {} bytes per token{}{}, {}x its bandwidth floor; KL mean {} nats, top-1 agreement {}, "
                                 "max |logit diff| {}, perplexity {} against {} ({}% change).",
                                 t.cell(r, "kv_dtype"), say.cell(t, r, "kv_bytes_per_token"), vs_fp32, kv_time,
                                 say.cell(t, r, "decode_over_floor"), say.cell(t, r, "kl_mean"),
                                 say.cell(t, r, "top1_agreement"), say.cell(t, r, "max_abs_logit_diff"), say.cell(t, r, "ppl"),
                                 say.cell(t, r, "ppl_ref"), say.cell(t, r, "ppl_delta_pct")));
    }
    std::optional<size_t> smallest;
    for (size_t r : rows)
        if (std::fabs(t.num(r, "ppl_delta_pct")) <= kPplMarkPct &&
            (!smallest || t.num(r, "kv_bytes_per_token") < t.num(*smallest, "kv_bytes_per_token")))
            smallest = r;
    if (smallest) {
        Say say("quant");
        say.add(out, fmt::format("The smallest scheme within {}% of the fp32 cache's perplexity is {} at {} bytes per token "
                                 "(perplexity change {}%).",
                                 say.threshold(kPplMarkPct), t.cell(*smallest, "kv_dtype"),
                                 say.cell(t, *smallest, "kv_bytes_per_token"), say.cell(t, *smallest, "ppl_delta_pct")));
    }
}

// Per policy: the KV memory it reserved against what held tokens, the concurrency and
// throughput that bought at the busiest rate, the highest rate each sustains at one p99 TTFT,
// and what prefix sharing saved of the time to first token.
void serving_findings(const Table& t, std::vector<Finding>& out) {
    const std::vector<size_t> all = t.all_rows();
    auto of = [&](const char* policy) { return t.sorted_by(t.where(all, "policy", policy), "rate_req_s"); };
    const std::vector<size_t> st = of("static"), pg = of("paged"), px = of("prefix");
    if (!st.empty() && !pg.empty()) {
        const size_t s = st.back(), p = pg.back();
        Say say("serving");
        say.add(out, fmt::format("At {} req/s, static reservation ({} slots per request, so at most {} requests at once) "
                                 "left {}% of the KV slots it reserved without a token (time-weighted over the run); paged "
                                 "blocks left {}% and ran up to {} requests at once, for {} requests/s against {} ({}x).",
                                 say.cell(t, s, "rate_req_s"), say.cell(t, s, "max_len"), say.cell(t, s, "lanes"),
                                 say.cell(t, s, "waste_pct"), say.cell(t, p, "waste_pct"), say.cell(t, p, "max_running"),
                                 say.cell(t, p, "throughput_req_s"), say.cell(t, s, "throughput_req_s"),
                                 say.ratio(t, p, "throughput_req_s", s, "throughput_req_s")));
        // One latency target for all: kSloMult x paged's p99 TTFT at its lowest rate.
        const size_t base = pg.front();
        const double slo = kSloMult * t.num(base, "ttft_ms_p99");
        auto sustained = [&](const std::vector<size_t>& rows) {
            std::optional<size_t> best;
            for (size_t r : rows)
                if (t.num(r, "ttft_ms_p99") <= slo) best = r;
            return best;
        };
        Say s2("serving");
        auto rate_of = [&](const std::vector<size_t>& rows) {
            const std::optional<size_t> r = sustained(rows);
            return r ? s2.cell(t, *r, "rate_req_s") + " req/s" : std::string("none of the rates tried");
        };
        const std::string thr = s2.threshold(kSloMult);
        const std::string base_ms = s2.cell(t, base, "ttft_ms_p99");
        const std::string sr = rate_of(st), pr = rate_of(pg);
        s2.add(out, fmt::format("Holding p99 TTFT within {}x paged's at its lowest rate ({} ms), static reservation "
                                "sustained {} and paged {}.",
                                thr, base_ms, sr, pr));
    }
    if (!pg.empty() && !px.empty() && t.num(px.front(), "system_prompt") > 0) {
        const size_t p = pg.front(), x = px.front();
        Say say("serving");
        say.add(out, fmt::format("Every request starts with the same {}-token system prompt: at {} req/s prefix sharing cut "
                                 "the median TTFT from {} ms to {} ms ({} ms less; the system prompt's own prefill takes "
                                 "{} ms) and reused {} prompt tokens from cached blocks.",
                                 say.cell(t, x, "system_prompt"), say.cell(t, x, "rate_req_s"), say.cell(t, p, "ttft_ms_p50"),
                                 say.cell(t, x, "ttft_ms_p50"), say.diff(t, p, "ttft_ms_p50", x, "ttft_ms_p50"),
                                 say.cell(t, x, "system_prompt_prefill_ms"), say.cell(t, x, "prefix_tokens_reused")));
    }
}

// Per policy (fp32 rows): the smallest budget whose perplexity stays within kPplMarkPct of the
// full cache's, and the change at the smallest budget; the codec combinations against the same
// policy in fp32; the recall probe at the smallest budget.
void evict_findings(const Table& t, std::vector<Finding>& out) {
    const std::vector<size_t> all = t.all_rows();
    std::optional<size_t> full;
    for (size_t r : all)
        if (t.cell(r, "policy") == "full") full = r;
    for (const std::string& p : t.distinct(all, "policy")) {
        if (p == "full") continue;
        const std::vector<size_t> rows = t.sorted_by(t.where(t.where(all, "policy", p), "kv_dtype", "fp32"), "budget_frac");
        if (rows.empty()) continue;
        std::optional<size_t> within;
        for (size_t r : rows)
            if (std::fabs(t.num(r, "ppl_delta_pct")) <= kPplMarkPct) {
                within = r;
                break;
            }
        Say say("evict");
        const size_t lo = rows.front();
        const std::string first =
            within ? fmt::format("stays within {}% of the full cache's perplexity from a budget of {} of the stream ({} tokens, "
                                 "perplexity change {}%)",
                                 say.threshold(kPplMarkPct), say.cell(t, *within, "budget_frac"), say.cell(t, *within, "kv_budget"),
                                 say.cell(t, *within, "ppl_delta_pct"))
                   : fmt::format("stays more than {}% from the full cache's perplexity at every budget tried",
                                 say.threshold(kPplMarkPct));
        say.add(out, fmt::format("{} {}; at {} of the stream ({} tokens) perplexity changes by {}%, top-1 agreement {}, KL mean {} "
                                 "nats per step.",
                                 p, first,
                                 say.cell(t, lo, "budget_frac"), say.cell(t, lo, "kv_budget"), say.cell(t, lo, "ppl_delta_pct"),
                                 say.cell(t, lo, "top1_agreement"), say.cell(t, lo, "kl_mean")));
        // The same policy with a quantized codec, at the same budget.
        for (size_t r : t.where(all, "policy", p)) {
            if (t.cell(r, "kv_dtype") == "fp32" || t.num(r, "budget_frac") != t.num(lo, "budget_frac")) continue;
            Say s2("evict");
            s2.add(out, fmt::format("{} with {} KV at {} of the stream: perplexity change {}% against {}% in fp32, in a cache of "
                                    "{} MiB against {} MiB.",
                                    p, t.cell(r, "kv_dtype"), s2.cell(t, r, "budget_frac"), s2.cell(t, r, "ppl_delta_pct"),
                                    s2.cell(t, lo, "ppl_delta_pct"), s2.mib(t, r, "kv_bytes"), s2.mib(t, lo, "kv_bytes")));
        }
    }
    if (full && t.num(*full, "recall_prob") > 0) {
        double smallest = 2;
        for (size_t r : all)
            if (t.cell(r, "policy") != "full") smallest = std::min(smallest, t.num(r, "budget_frac"));
        std::string kept;
        Say say("evict");
        for (size_t r : all)
            if (t.cell(r, "policy") != "full" && t.cell(r, "kv_dtype") == "fp32" && t.num(r, "budget_frac") == smallest)
                kept += fmt::format("{}{} {} (rank {})", kept.empty() ? "" : ", ", t.cell(r, "policy"), say.cell(t, r, "recall_prob"),
                                    say.cell(t, r, "recall_rank"));
        if (!kept.empty())
            say.add(out, fmt::format("Recall probe: with the whole prompt cached the answer has probability {} (rank {}); with "
                                     "the prompt cut to the smallest budget: {}.",
                                     say.cell(t, *full, "recall_prob"), say.cell(t, *full, "recall_rank"), kept));
    }
}

// Past the window: each policy's perplexity against the sliding-window recompute, and whether
// its decode time per token stayed flat.
void evict_long_findings(const Table& t, std::vector<Finding>& out) {
    const std::vector<size_t> all = t.all_rows();
    std::optional<size_t> rec;
    for (size_t r : all)
        if (t.cell(r, "method") == "recompute") rec = r;
    if (!rec) return;
    for (size_t r : all) {
        if (r == *rec) continue;
        Say say("evict_long");
        say.add(out, fmt::format("{} at a budget of {} over {} tokens: perplexity {} against {} for the sliding-window "
                                 "recompute ({}% apart), {} past the window; {} ms per token just after the cache filled and {} "
                                 "at the end (the recompute: {} ms).",
                                 t.cell(r, "method"), say.cell(t, r, "budget"), say.cell(t, r, "stream_len"), say.cell(t, r, "ppl"), say.cell(t, *rec, "ppl"),
                                 say.pct_diff(t, r, "ppl", *rec, "ppl"), say.cell(t, r, "ppl_past_window"),
                                 say.cell(t, r, "ms_per_token_early"), say.cell(t, r, "ms_per_token_late"),
                                 say.cell(t, *rec, "ms_per_token")));
    }
}

std::vector<Finding> compute_findings(const Results& res) {
    std::vector<Finding> out;
    if (const Table* t = res.table("cache")) cache_findings(*t, out);
    if (const Table* t = res.table("cache_tokens")) cache_tokens_findings(*t, out);
    if (const Table* t = res.table("batch")) batch_findings(*t, out);
    if (const Table* t = res.table("precision")) precision_findings(*t, out);
    if (const Table* t = res.table("seqlen")) seqlen_findings(*t, out);
    if (const Table* t = res.table("memory")) memory_findings(*t, out);
    if (const Table* t = res.table("roofline")) roofline_findings(*t, out);
    if (const Table* t = res.table("serving")) serving_findings(*t, out);
    if (const Table* t = res.table("quant")) quant_findings(*t, out);
    if (const Table* t = res.table("evict")) evict_findings(*t, out);
    if (const Table* t = res.table("evict_long")) evict_long_findings(*t, out);
    return out;
}

json findings_to_json(const std::vector<Finding>& findings) {
    json list = json::array();
    for (const Finding& f : findings) {
        json values = json::array();
        for (const Quoted& q : f.values) {
            json v;
            switch (q.kind) {
                case Quoted::Kind::Cell:
                    v = {{"kind", "cell"}};
                    v.update(ref_json(q.cell));
                    break;
                case Quoted::Kind::Derived: {
                    json args = json::array();
                    for (const CellRef& a : q.args) args.push_back(ref_json(a));
                    v = {{"kind", "derived"}, {"op", q.op}, {"args", args}, {"value", q.value}};
                    break;
                }
                case Quoted::Kind::Threshold:
                    v = {{"kind", "threshold"}, {"value", q.value}};
                    break;
            }
            v["shown"] = q.shown;
            v["scale"] = q.scale;
            values.push_back(v);
        }
        list.push_back({{"experiment", f.experiment}, {"text", f.text}, {"values", values}});
    }
    return list;
}

}  // namespace kvscope::report
