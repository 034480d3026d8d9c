#include "report/results.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "core/error.h"
#include "core/fs.h"
#include "report/csv.h"

namespace kvscope::report {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// What each experiment's report section reads. Text columns first, then numeric ones (every
// cell of these must parse as a finite number). Columns not listed here are never read, so a
// CSV may carry more.
struct Columns {
    std::vector<std::string> text, numeric;
};

const std::vector<std::string> kDescribe = {"model", "weights", "cpu", "dtype", "kv_dtype"};
const std::vector<std::string> kCommonNum = {"threads", "batch_size", "prompt_len", "max_new_tokens", "use_cache",
                                             "reps", "warmup"};

Columns with_common(std::vector<std::string> text, std::vector<std::string> numeric) {
    Columns c{kDescribe, kCommonNum};
    c.text.insert(c.text.end(), text.begin(), text.end());
    c.numeric.insert(c.numeric.end(), numeric.begin(), numeric.end());
    return c;
}

const std::map<std::string, Columns>& required_columns() {
    static const std::map<std::string, Columns> m = {
        {"cache", with_common({}, {"prefill_ms_median", "decode_ms_median", "decode_ms_p95", "total_ms_median",
                                   "tokens_per_s", "kv_bytes", "peak_rss_bytes", "speedup", "decode_ms_last"})},
        {"cache_tokens", {{}, {"use_cache", "step", "token_ms", "cumulative_ms"}}},
        {"batch", with_common({"padding"}, {"decode_tok_s", "decode_ms_p50", "seq_latency_ms_p50",
                                            "seq_latency_ms_p95", "kv_bytes", "peak_rss_bytes", "tokens_per_s"})},
        {"precision", with_common({}, {"decode_tok_s", "weight_bytes", "kv_bytes", "max_abs_logit_diff", "kl_mean",
                                       "kl_max", "top1_agreement", "greedy_match"})},
        {"seqlen", with_common({}, {"context", "decode_ms_median", "decode_ms_p95", "kv_bytes", "kv_bytes_theory",
                                    "kv_rss_delta_bytes"})},
        {"memory", with_common({}, {"context", "kv_bytes", "kv_bytes_theory", "kv_rss_delta_bytes", "rss_bytes",
                                    "kv_formula_matches"})},
        {"quant", with_common({"k_codec", "v_codec"},
                              {"context", "decode_ms_median", "kv_bytes", "kv_bytes_per_token", "kv_bytes_mha_per_token",
                               "cache_bytes_at_context", "floor_ms", "decode_over_floor", "streams", "stream_tokens",
                               "kl_mean", "kl_max", "top1_agreement", "max_abs_logit_diff", "ppl_ref", "ppl",
                               "ppl_delta_pct"})},
        {"serving", with_common({"policy"},
                                {"rate_req_s", "requests", "kv_tokens", "max_len", "lanes", "system_prompt",
                                 "system_prompt_prefill_ms", "throughput_req_s", "output_tok_s", "ttft_ms_p50",
                                 "ttft_ms_p90", "ttft_ms_p99", "tpot_ms_p50", "tpot_ms_p99", "e2e_ms_p50", "e2e_ms_p99",
                                 "max_running", "mean_reserved_tokens", "mean_held_tokens", "waste_pct", "preemptions",
                                 "prefix_tokens_reused"})},
        {"serving_timeline", {{"policy"}, {"rate_req_s", "t_s", "running", "reserved_tokens", "held_tokens"}}},
        {"evict", with_common({"policy", "policy_label"},
                              {"kv_budget", "budget_frac", "stream_len", "streams", "stream_tokens", "kl_mean", "kl_max",
                               "top1_agreement", "max_abs_logit_diff", "ppl_ref", "ppl", "ppl_delta_pct",
                               "decode_ms_per_token", "kv_bytes", "recall_prob", "recall_rank"})},
        {"evict_long", {{"method", "label"},
                        {"budget", "stream_len", "ppl", "ppl_past_window", "ms_per_token", "ms_per_token_early",
                         "ms_per_token_late"}}},
        {"evict_kept", {{"policy"}, {"kv_budget", "layer", "position", "kept_frac"}}},
        {"roofline", with_common({"phase", "bound"},
                                 {"context", "flops", "bytes", "intensity", "ms", "gflops", "gbs", "peak_gflops",
                                  "peak_gbs", "ridge", "pct_peak_flops", "pct_peak_bw", "roofline_tok_s",
                                  "pct_roofline"})},
    };
    return m;
}

Table load_table(const fs::path& path, const Columns& need) {
    std::vector<std::vector<std::string>> lines = read_csv(path);
    if (lines.empty() || (lines.size() == 1 && lines[0].size() == 1 && lines[0][0].empty()))
        fail("{}: empty file (expected a header line and one row per configuration)", path.string());
    std::vector<std::string> header = lines[0];
    std::set<std::string> seen;
    for (const std::string& h : header)
        if (!seen.insert(h).second) fail("{}: column '{}' appears twice in the header", path.string(), h);
    std::vector<std::vector<std::string>> rows(lines.begin() + 1, lines.end());
    // A trailing blank line is not a row.
    while (!rows.empty() && rows.back().size() == 1 && rows.back()[0].empty()) rows.pop_back();
    if (rows.empty()) fail("{}: header but no rows", path.string());
    for (size_t i = 0; i < rows.size(); ++i)
        if (rows[i].size() != header.size())
            fail("{}: line {} has {} fields, the header has {}", path.string(), i + 2, rows[i].size(), header.size());
    Table t(path, header, rows);
    for (const auto* cols : {&need.text, &need.numeric})
        for (const std::string& c : *cols)
            if (!t.has(c)) fail("{}: missing column '{}' (see docs/SCHEMA.md)", path.string(), c);
    for (size_t r = 0; r < t.size(); ++r)
        for (const std::string& c : need.numeric) t.num(r, c);  // fails on the first bad cell
    return t;
}

json load_sidecar(const fs::path& path) {
    json j;
    try {
        j = json::parse(read_file(path));
    } catch (const json::exception& e) {
        fail("{}: not valid JSON ({})", path.string(), e.what());
    }
    if (!j.is_object()) fail("{}: expected a JSON object with \"model\" and \"hw\"", path.string());
    if (j.contains("model") && !j["model"].is_object()) fail("{}: \"model\" is not an object", path.string());
    return j;
}

}  // namespace

bool parse_number(std::string_view s, double* out) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (s.empty()) return false;
    if (s.front() == '+') s.remove_prefix(1);
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) return false;
    *out = v;
    return true;
}

// ---- Table ----------------------------------------------------------------------------------

Table::Table(fs::path path, std::vector<std::string> header, std::vector<std::vector<std::string>> rows)
    : path_(std::move(path)), header_(std::move(header)), rows_(std::move(rows)) {}

int Table::index(std::string_view column) const {
    auto it = std::find(header_.begin(), header_.end(), column);
    return it == header_.end() ? -1 : int(it - header_.begin());
}

const std::string& Table::cell(size_t row, std::string_view column) const {
    int i = index(column);
    if (i < 0) fail("{}: missing column '{}' (see docs/SCHEMA.md)", path_.string(), column);
    return rows_.at(row)[size_t(i)];
}

double Table::num(size_t row, std::string_view column) const {
    const std::string& s = cell(row, column);
    double v = 0;
    if (!parse_number(s, &v))
        fail("{}: line {}, column '{}': \"{}\" is not a number", path_.string(), row + 2, column, s);
    return v;
}

std::vector<size_t> Table::all_rows() const {
    std::vector<size_t> r(rows_.size());
    for (size_t i = 0; i < r.size(); ++i) r[i] = i;
    return r;
}

std::vector<size_t> Table::where(const RowKey& key) const {
    std::vector<size_t> out;
    for (size_t r = 0; r < rows_.size(); ++r) {
        bool ok = true;
        for (const auto& [c, v] : key) ok = ok && has(c) && cell(r, c) == v;
        if (ok) out.push_back(r);
    }
    return out;
}

std::vector<size_t> Table::where(const std::vector<size_t>& rows, std::string_view column, std::string_view value) const {
    std::vector<size_t> out;
    for (size_t r : rows)
        if (cell(r, column) == value) out.push_back(r);
    return out;
}

std::vector<std::string> Table::distinct(const std::vector<size_t>& rows, std::string_view column) const {
    std::vector<std::string> out;
    for (size_t r : rows)
        if (std::find(out.begin(), out.end(), cell(r, column)) == out.end()) out.push_back(cell(r, column));
    bool numeric = std::all_of(out.begin(), out.end(), [](const std::string& s) {
        double v;
        return parse_number(s, &v);
    });
    if (numeric)
        std::stable_sort(out.begin(), out.end(), [](const std::string& a, const std::string& b) {
            double x = 0, y = 0;
            parse_number(a, &x);
            parse_number(b, &y);
            return x < y;
        });
    return out;
}

std::vector<size_t> Table::sorted_by(std::vector<size_t> rows, std::string_view column) const {
    std::stable_sort(rows.begin(), rows.end(), [&](size_t a, size_t b) { return num(a, column) < num(b, column); });
    return rows;
}

RowKey Table::key_of(size_t row, const std::vector<std::string>& preferred) const {
    RowKey key;
    for (const std::string& c : preferred)
        if (has(c)) key.emplace_back(c, cell(row, c));
    for (const std::string& c : header_) {
        std::vector<size_t> m = where(key);
        if (m.size() <= 1) break;
        bool tells_apart = std::any_of(m.begin(), m.end(), [&](size_t r) { return cell(r, c) != cell(row, c); });
        if (tells_apart) key.emplace_back(c, cell(row, c));
    }
    return key;
}

// ---- Results --------------------------------------------------------------------------------

const std::vector<std::string>& experiment_names() {
    static const std::vector<std::string> names = {"cache",   "cache_tokens",     "batch", "precision", "seqlen",
                                                   "memory",  "roofline",         "serving", "serving_timeline", "quant",
                                                   "evict",   "evict_long",       "evict_kept"};
    return names;
}

const Table* Results::table(std::string_view experiment) const {
    auto it = tables.find(std::string(experiment));
    return it == tables.end() ? nullptr : &it->second;
}

std::string Results::model_name() const {
    if (model.contains("name") && model["name"].is_string()) return model["name"].get<std::string>();
    for (const auto& [name, t] : tables)
        if (t.has("model")) return t.cell(0, "model");
    return "unknown model";
}

bool Results::synthetic() const {
    if (model.contains("weights") && model["weights"] == "synthetic") return true;
    for (const auto& [name, t] : tables)
        if (t.has("weights"))
            for (size_t r = 0; r < t.size(); ++r)
                if (t.cell(r, "weights") == "synthetic") return true;
    return false;
}

std::string Results::cpu() const {
    for (const auto& [name, t] : tables)
        if (t.has("cpu")) return t.cell(0, "cpu");
    if (hw) return hw->cpu_model;
    return "unknown CPU";
}

std::string Results::threads() const {
    for (const auto& [name, t] : tables)
        if (t.has("threads")) return t.cell(0, "threads");
    return "";
}

Results load_results(const fs::path& dir) {
    std::error_code ec;
    if (!fs::exists(dir, ec)) fail("results directory {} does not exist (run kvscope study first)", dir.string());
    if (!fs::is_directory(dir, ec)) fail("{}: not a directory (--results wants the directory of the CSVs)", dir.string());
    Results res;
    res.dir = dir;
    for (const std::string& name : experiment_names()) {
        fs::path csv = dir / (name + ".csv"), side = dir / (name + ".json");
        if (fs::exists(csv, ec)) res.tables.emplace(name, load_table(csv, required_columns().at(name)));
        if (!fs::exists(side, ec)) continue;
        json j = load_sidecar(side);
        if (res.model.is_null() && j.contains("model")) res.model = j["model"];
        if (res.sample.is_null() && j.contains("sample") && j["sample"].is_object()) res.sample = j["sample"];
        if (!res.hw && j.contains("hw")) {
            try {
                res.hw = analysis::hw_from_json(j["hw"]);
            } catch (const std::exception& e) {
                fail("{}: \"hw\": {}", side.string(), e.what());
            }
            res.hw_source = side.filename().string();
        }
        res.sidecars.emplace(name, std::move(j));
    }
    if (res.tables.empty()) {
        std::string list;
        for (const std::string& n : experiment_names()) list += (list.empty() ? "" : ", ") + n + ".csv";
        fail("{}: no result CSV (expected one of {})", dir.string(), list);
    }
    return res;
}

}  // namespace kvscope::report
