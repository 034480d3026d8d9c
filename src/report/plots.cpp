#include "report/plots.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/paths.h"

extern char** environ;

namespace kvscope::report {

namespace fs = std::filesystem;

namespace {

constexpr double MiB = 1024.0 * 1024.0;

// ---- gnuplot text -----------------------------------------------------------------------------

// A gnuplot double-quoted string ("\n" is a line break in titles).
std::string q(std::string_view s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '\n') {
            o += "\\n";
            continue;
        }
        if (c == '\\' || c == '"') o += '\\';
        o += c;
    }
    return o + "\"";
}

std::string num(double v) { return fmt::format("{:.10g}", v); }

// Second title line of every plot: which model, which weights, which machine.
std::string context_line(const Results& res) {
    std::string s = res.model_name() + (res.synthetic() ? " (synthetic weights)" : " (pretrained weights)");
    s += "  |  " + res.cpu();
    if (!res.threads().empty()) s += ", " + res.threads() + (res.threads() == "1" ? " thread" : " threads");
    return s;
}

std::string title_cmd(const Results& res, const std::string& heading) {
    return "set title " + q(heading + "\n" + context_line(res)) + "\n";
}

// A log axis helps when the values span more than `span` and are all positive.
bool want_log(const std::vector<double>& v, double span) {
    if (v.empty()) return false;
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    return *lo > 0 && *hi / *lo >= span;
}

struct Series {
    std::string title;
    std::vector<std::pair<double, double>> pts;
    std::string style = "linespoints";  // the "with" clause
    int lt = 1;
};

struct Axes {
    Axes(std::string x, std::string y) : xlabel(std::move(x)), ylabel(std::move(y)) {}
    std::string xlabel, ylabel;
    std::optional<bool> logx, logy;  // unset: decided from the data
    std::string key = "top left";
    std::string extra;  // commands between the axes and the plot command
};

struct Job {
    PlotInfo info;
    std::string source;  // the CSV it was made from
    std::string data;    // NAME.dat
    std::string body;    // commands drawing one image, run once per terminal
};

// Each series becomes one block of NAME.dat (blocks are separated by two blank lines and
// selected with `index`); an empty series is left out.
std::optional<Job> xy_job(const Results& res, PlotInfo info, const std::string& source, const std::vector<Series>& series,
                          const Axes& ax) {
    Job job{std::move(info), source, "", ""};
    std::vector<double> xs, ys;
    std::vector<std::string> plots;
    int block = 0;
    for (const Series& s : series) {
        if (s.pts.empty()) continue;
        job.data += "# " + s.title + "\n";
        for (auto [x, y] : s.pts) {
            job.data += num(x) + " " + num(y) + "\n";
            xs.push_back(x);
            ys.push_back(y);
        }
        job.data += "\n\n";
        plots.push_back(fmt::format("'{}.dat' index {} using 1:2 with {} lt {} title {}", job.info.name, block++, s.style, s.lt,
                                    q(s.title)));
    }
    if (plots.empty()) return std::nullopt;
    bool logx = ax.logx.value_or(want_log(xs, 8)), logy = ax.logy.value_or(want_log(ys, 20));
    std::string& b = job.body;
    b += "reset\n" + title_cmd(res, job.info.heading);
    b += "set xlabel " + q(ax.xlabel) + "\nset ylabel " + q(ax.ylabel) + "\n";
    b += "set grid lc rgb '#dddddd'\nset key " + ax.key + " box opaque" + (plots.size() > 6 ? " font ',9' spacing 0.9" : "") + "\n";
    if (logx) b += "set logscale x 2\nset format x '%g'\n";
    if (logy) {
        // Tight to the data: gnuplot would otherwise widen a log axis to whole decades.
        std::vector<double> pos;
        for (double y : ys)
            if (y > 0) pos.push_back(y);
        auto [lo, hi] = std::minmax_element(pos.begin(), pos.end());
        b += fmt::format("set logscale y 10\nset format y '%g'\nset yrange [{}:{}]\n", num(*lo / 1.5), num(*hi * 1.5));
    }
    if (!logy) b += "set yrange [0:*]\n";
    if (logx) {
        auto [lo, hi] = std::minmax_element(xs.begin(), xs.end());
        b += fmt::format("set xrange [{}:{}]\n", num(*lo / 1.25), num(*hi * 1.25));
    } else {
        b += "set autoscale xfix\nset offsets graph 0.02, graph 0.02, 0, 0\n";
    }
    b += ax.extra;
    b += "plot ";
    for (size_t i = 0; i < plots.size(); ++i) b += (i ? ", \\\n     " : "") + plots[i];
    b += "\n";
    return job;
}

// ---- grouping rows into series ------------------------------------------------------------------

// The columns among `config` whose values differ over `rows`: they split the rows into series.
std::vector<std::string> varying(const Table& t, const std::vector<size_t>& rows, const std::vector<std::string>& config) {
    std::vector<std::string> out;
    for (const std::string& c : config)
        if (t.has(c) && t.distinct(rows, c).size() > 1) out.push_back(c);
    return out;
}

// Rows split by the values of `cols`, in first-seen order, each with a label "col=value, ...".
std::vector<std::pair<std::string, std::vector<size_t>>> split(const Table& t, const std::vector<size_t>& rows,
                                                               const std::vector<std::string>& cols) {
    std::vector<std::pair<std::string, std::vector<size_t>>> out;
    for (size_t r : rows) {
        std::string label;
        for (const std::string& c : cols) label += (label.empty() ? "" : ", ") + c + "=" + t.cell(r, c);
        auto it = std::find_if(out.begin(), out.end(), [&](const auto& g) { return g.first == label; });
        if (it == out.end()) {
            out.push_back({label, {}});
            it = out.end() - 1;
        }
        it->second.push_back(r);
    }
    return out;
}

std::string join_label(const std::string& a, const std::string& b) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    return a + " (" + b + ")";
}

// y over x for `rows`, one point per x (the first row wins), sorted by x; y = f(row).
template <typename F>
std::vector<std::pair<double, double>> points(const Table& t, const std::vector<size_t>& rows, std::string_view x, F y) {
    std::vector<std::pair<double, double>> pts;
    for (size_t r : t.sorted_by(rows, x)) {
        double xv = t.num(r, x);
        if (!pts.empty() && pts.back().first == xv) continue;
        pts.emplace_back(xv, y(r));
    }
    return pts;
}

std::string mode_name(const std::string& use_cache) {
    return use_cache == "1" ? "use_cache=1 (KV cache)" : use_cache == "0" ? "use_cache=0 (full recompute)" : "use_cache=" + use_cache;
}

int mode_lt(const std::string& use_cache, size_t group) { return int(group * 2 + (use_cache == "1" ? 1 : 2)); }

// ---- the plots ----------------------------------------------------------------------------------

void cache_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("cache");
    auto groups = split(t, t.all_rows(), varying(t, t.all_rows(), {"batch_size", "prompt_len", "dtype", "kv_dtype", "threads"}));
    std::vector<Series> per_token, speedup;
    for (size_t gi = 0; gi < groups.size(); ++gi) {
        const auto& [label, rows] = groups[gi];
        for (const std::string& mode : {std::string("1"), std::string("0")}) {
            std::vector<size_t> m = t.where(rows, "use_cache", mode);
            per_token.push_back({join_label(mode_name(mode), label),
                                 points(t, m, "max_new_tokens", [&](size_t r) { return 1000.0 / t.num(r, "tokens_per_s"); }),
                                 "linespoints", mode_lt(mode, gi)});
        }
        std::vector<size_t> on = t.where(rows, "use_cache", "1");
        speedup.push_back({join_label("speedup", label), points(t, on, "max_new_tokens", [&](size_t r) { return t.num(r, "speedup"); }),
                           "linespoints", int(gi + 3)});
    }
    Axes ax{"max_new_tokens (tokens generated per sequence)", "ms per generated token (1000 / tokens_per_s)"};
    if (auto j = xy_job(res,
                        {"cache_ms_per_token", "cache", "Time per generated token, KV cache on vs off",
                         "Whole-generation time divided by the tokens generated (the seed scripts' tokens_per_s, inverted), "
                         "median over repetitions. Without the cache every step recomputes the whole sequence, so the cost per "
                         "token grows with length; with it, it stays nearly flat."},
                        "cache.csv", per_token, ax))
        jobs.push_back(*j);
    Axes sx{"max_new_tokens (tokens generated per sequence)", "speedup (cache-off / cache-on total time, x)"};
    sx.logy = false;
    sx.extra = "set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb '#777777'\n"
               "set arrow 2 from graph 0, first 2 to graph 1, first 2 nohead dt 3 lc rgb '#777777'\n"
               "set label 1 '2x' at graph 0.01, first 2 offset 0,0.6 tc rgb '#555555'\n"
               "set label 2 'no gain (1x)' at graph 0.01, first 1 offset 0,0.6 tc rgb '#555555'\n";
    if (auto j = xy_job(res,
                        {"cache_speedup", "cache", "KV cache speedup vs generation length",
                         "Total time without the cache divided by total time with it (the speedup column), at each length. "
                         "The dashed lines mark no gain and 2x."},
                        "cache.csv", speedup, sx))
        jobs.push_back(*j);
}

void cache_tokens_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("cache_tokens");
    std::vector<Series> step, cum;
    for (const std::string& mode : {std::string("1"), std::string("0")}) {
        std::vector<size_t> m = t.where(t.all_rows(), "use_cache", mode);
        step.push_back({mode_name(mode), points(t, m, "step", [&](size_t r) { return t.num(r, "token_ms"); }), "lines", mode_lt(mode, 0)});
        cum.push_back({mode_name(mode), points(t, m, "step", [&](size_t r) { return t.num(r, "cumulative_ms"); }), "lines", mode_lt(mode, 0)});
    }
    Axes ax{"generation step (0 = prefill and first token)", "time for this token (ms)"};
    ax.logx = false;
    if (auto j = xy_job(res,
                        {"cache_tokens_latency", "cache_tokens", "Per-token generation time over one run",
                         "Latency of each generated token in one long run per mode. Step 0 includes the prompt's prefill. "
                         "Without the cache the per-step cost climbs with the sequence; with it, it stays close to flat."},
                        "cache_tokens.csv", step, ax))
        jobs.push_back(*j);
    Axes cx{"generation step (0 = prefill and first token)", "cumulative time (ms)"};
    cx.logx = false;
    cx.logy = false;
    if (auto j = xy_job(res,
                        {"cache_tokens_cumulative", "cache_tokens", "Cumulative generation time over one run",
                         "Running total of the per-token times above: linear with the cache, quadratic without it."},
                        "cache_tokens.csv", cum, cx))
        jobs.push_back(*j);
}

void batch_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("batch");
    auto groups = split(t, t.all_rows(), varying(t, t.all_rows(), {"padding", "dtype", "kv_dtype", "use_cache", "max_new_tokens", "threads"}));
    std::vector<Series> tput, lat, mem;
    for (size_t gi = 0; gi < groups.size(); ++gi) {
        const auto& [label, rows] = groups[gi];
        auto tp = points(t, rows, "batch_size", [&](size_t r) { return t.num(r, "decode_tok_s"); });
        tput.push_back({join_label("decode tokens/s (all sequences)", label), tp, "linespoints", int(gi * 2 + 1)});
        if (!tp.empty() && tp.front().first > 0) {
            std::vector<std::pair<double, double>> ideal;
            for (auto [b, y] : tp) ideal.emplace_back(b, tp.front().second * b / tp.front().first);
            tput.push_back({join_label("linear scaling from the smallest batch", label), ideal, "lines dt 2", int(gi * 2 + 1)});
        }
        lat.push_back({join_label("p50", label), points(t, rows, "batch_size", [&](size_t r) { return t.num(r, "seq_latency_ms_p50"); }),
                       "linespoints", int(gi * 2 + 1)});
        lat.push_back({join_label("p95", label), points(t, rows, "batch_size", [&](size_t r) { return t.num(r, "seq_latency_ms_p95"); }),
                       "linespoints dt 2", int(gi * 2 + 2)});
        mem.push_back({join_label("peak RSS (VmHWM)", label),
                       points(t, rows, "batch_size", [&](size_t r) { return t.num(r, "peak_rss_bytes") / MiB; }), "linespoints",
                       int(gi * 2 + 1)});
        mem.push_back({join_label("KV cache allocated (kv_bytes)", label),
                       points(t, rows, "batch_size", [&](size_t r) { return t.num(r, "kv_bytes") / MiB; }), "linespoints",
                       int(gi * 2 + 2)});
    }
    Axes ax{"batch size (sequences decoded together)", "aggregate decode throughput (tokens/s)"};
    ax.logy = true;  // log-log: linear scaling is a straight line, and where the curve bends is plain
    if (auto j = xy_job(res,
                        {"batch_throughput", "batch", "Aggregate decode throughput vs batch size",
                         "Decode tokens per second summed over the batch (decode_tok_s), on log-log axes. The dashed line is "
                         "perfect linear scaling from the smallest batch: where the measured curve bends away from it, a "
                         "larger batch stops paying."},
                        "batch.csv", tput, ax))
        jobs.push_back(*j);
    Axes lx{"batch size (sequences decoded together)", "per-sequence decode step latency (ms)"};
    lx.logy = false;
    if (auto j = xy_job(res,
                        {"batch_latency", "batch", "Per-sequence step latency vs batch size (p50, p95)",
                         "How long each sequence waits for its next token, median and 95th percentile over all decode steps."},
                        "batch.csv", lat, lx))
        jobs.push_back(*j);
    Axes mx{"batch size (sequences decoded together)", "memory (MiB)"};
    if (auto j = xy_job(res,
                        {"batch_memory", "batch", "Peak RSS and KV cache bytes vs batch size",
                         "KV bytes are counted exactly by the cache's allocator; peak RSS is the process high-water mark, which "
                         "also holds the weights, activations and whatever the allocator kept."},
                        "batch.csv", mem, mx))
        jobs.push_back(*j);
}

// Theoretical, allocated and resident KV memory vs context, one set of lines per group.
std::optional<Job> kv_memory_job(const Results& res, const Table& t, const std::vector<size_t>& rows, const std::vector<std::string>& config,
                                 PlotInfo info) {
    auto groups = split(t, rows, varying(t, rows, config));
    std::vector<Series> s;
    for (size_t gi = 0; gi < groups.size(); ++gi) {
        const auto& [label, g] = groups[gi];
        // One group: a colour per quantity. Several: a colour per group, a style per quantity.
        bool one = groups.size() == 1;
        int lt = int(gi) + 1;
        s.push_back({join_label("theory (kv_bytes_theory)", label),
                     points(t, g, "context", [&](size_t r) { return t.num(r, "kv_bytes_theory") / MiB; }), "lines lw 3",
                     one ? 1 : lt});
        s.push_back({join_label("allocated (kv_bytes)", label),
                     points(t, g, "context", [&](size_t r) { return t.num(r, "kv_bytes") / MiB; }), "points pt 4 ps 1.8",
                     one ? 2 : lt});
        s.push_back({join_label("RSS growth (kv_rss_delta_bytes)", label),
                     points(t, g, "context", [&](size_t r) { return t.num(r, "kv_rss_delta_bytes") / MiB; }),
                     "linespoints dt 2 pt 9", one ? 3 : lt});
    }
    Axes ax{"context S (tokens per sequence)", "KV cache memory (MiB)"};
    std::vector<double> positive;
    for (const Series& x : s)
        for (auto [a, y] : x.pts)
            if (y > 0) positive.push_back(y);
    ax.logy = want_log(positive, 20);
    if (*ax.logy) {
        // A log axis has no room for zero or negative RSS growth (allocator reuse): leave those out, and say so.
        bool dropped = false;
        for (Series& x : s) {
            auto keep = std::remove_if(x.pts.begin(), x.pts.end(), [](auto p) { return p.second <= 0; });
            dropped = dropped || keep != x.pts.end();
            x.pts.erase(keep, x.pts.end());
        }
        info.caption += " Log-log axes: the formula is a straight line.";
        if (dropped) info.caption += " Zero or negative RSS growth cannot be drawn on the log axis and is left out (see the table).";
    }
    return xy_job(res, std::move(info), t.file(), s, ax);
}

void seqlen_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("seqlen");
    auto groups = split(t, t.all_rows(), varying(t, t.all_rows(), {"batch_size", "dtype", "kv_dtype", "threads"}));
    std::vector<Series> dec;
    for (size_t gi = 0; gi < groups.size(); ++gi) {
        const auto& [label, rows] = groups[gi];
        for (const std::string& mode : {std::string("1"), std::string("0")})
            dec.push_back({join_label(mode_name(mode), label),
                           points(t, t.where(rows, "use_cache", mode), "context", [&](size_t r) { return t.num(r, "decode_ms_median"); }),
                           "linespoints", mode_lt(mode, gi)});
    }
    Axes ax{"context S (tokens already in the sequence)", "decode step time (ms, median)"};
    if (auto j = xy_job(res,
                        {"seqlen_decode", "seqlen", "Decode step time vs context, with and without the cache",
                         "Median time of one decode step at depth S. With the cache a step reads S cached keys and values; "
                         "without it, it recomputes all S positions."},
                        "seqlen.csv", dec, ax))
        jobs.push_back(*j);
    if (auto j = kv_memory_job(res, t, t.where(t.all_rows(), "use_cache", "1"), {"batch_size", "dtype", "kv_dtype", "threads"},
                               {"seqlen_kv_memory", "seqlen", "KV cache memory vs context: theory, allocated, resident",
                                "The formula 2 x batch x S x n_layer x n_kv_head x head_dim x bytes, the bytes the cache "
                                "allocated, and how much the process's resident memory grew when the cache was touched."}))
        jobs.push_back(*j);
}

void memory_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("memory");
    if (auto j = kv_memory_job(res, t, t.all_rows(), {"kv_dtype", "batch_size", "dtype", "use_cache", "threads"},
                               {"memory_kv", "memory", "KV cache memory vs context: theory, allocated, resident",
                                "Theory (kv_bytes_theory), the cache allocator's count (kv_bytes) and the growth of resident "
                                "memory when the cache was allocated and touched (kv_rss_delta_bytes)."}))
        jobs.push_back(*j);
}

// Grouped bars: one cluster per weight dtype, one bar per KV dtype; one block per metric.
std::optional<Job> bars_job(const Results& res, PlotInfo info, const Table& t,
                            const std::vector<std::pair<std::string, std::string>>& metrics) {
    std::vector<size_t> rows = t.all_rows();
    std::vector<std::string> wd = t.distinct(rows, "dtype"), kd = t.distinct(rows, "kv_dtype");
    Job job{std::move(info), t.file(), "", ""};
    for (const auto& [column, label] : metrics) {
        job.data += "# " + column + ": rows = weight dtype, columns = KV dtype (" ;
        for (const std::string& k : kd) job.data += " " + k;
        job.data += " )\n";
        for (const std::string& w : wd) {
            job.data += q(w);
            for (const std::string& k : kd) {
                std::vector<size_t> m = t.where({{"dtype", w}, {"kv_dtype", k}});
                job.data += " " + (m.empty() ? std::string("NaN") : num(t.num(m[0], column)));
            }
            job.data += "\n";
        }
        job.data += "\n\n";
    }
    std::string& b = job.body;
    b += "reset\nset datafile missing 'NaN'\n";
    b += "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n";
    b += "set grid ytics lc rgb '#dddddd'\nset yrange [0:*]\nset xlabel 'weight dtype'\n";
    b += "set key below horizontal title 'KV cache dtype'\n";
    bool multi = metrics.size() > 1;
    if (multi) b += fmt::format("set multiplot layout 1,{} title {}\n", metrics.size(), q(job.info.heading + "\n" + context_line(res)));
    else b += title_cmd(res, job.info.heading);
    for (size_t mi = 0; mi < metrics.size(); ++mi) {
        if (multi) b += "set title " + q(metrics[mi].second) + "\n";
        // Errors span orders of magnitude (fp16 vs bf16): a log axis shows both; zero (the reference) has no bar.
        std::vector<double> positive;
        for (size_t r : rows)
            if (t.num(r, metrics[mi].first) > 0) positive.push_back(t.num(r, metrics[mi].first));
        if (want_log(positive, 100))
            b += "set logscale y 10\nset format y '%g'\nset yrange [*:*]\n";
        else
            b += "unset logscale y\nset format y '%g'\nset yrange [0:*]\n";
        b += "set ylabel " + q(metrics[mi].second) + "\nplot ";
        for (size_t k = 0; k < kd.size(); ++k)
            b += fmt::format("{}'{}.dat' index {} using {}{} lt {} title {}", k ? ", " : "", job.info.name, mi, k + 2,
                             k ? "" : ":xtic(1)", k + 1, q(kd[k]));
        b += "\n";
    }
    if (multi) b += "unset multiplot\n";
    return job;
}

void precision_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("precision");
    if (auto j = bars_job(res,
                          {"precision_speed", "precision", "Decode throughput by weight and KV cache precision",
                           "Aggregate decode tokens/s for each weight dtype (cluster) and KV cache dtype (bar)."},
                          t, {{"decode_tok_s", "decode throughput (tokens/s)"}}))
        jobs.push_back(*j);
    if (auto j = bars_job(res,
                          {"precision_error", "precision", "Accuracy cost by weight and KV cache precision",
                           "Left: mean KL divergence of next-token distributions from the fp32/fp32 reference (nats). Right: "
                           "largest absolute logit difference. The reference is zero by definition (no bar on a log axis)."},
                          t, {{"kl_mean", "KL(reference || this), mean (nats)"}, {"max_abs_logit_diff", "max |logit difference|"}}))
        jobs.push_back(*j);
}

void roofline_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("roofline");
    double bw = t.num(0, "peak_gbs"), peak = t.num(0, "peak_gflops"), ridge = t.num(0, "ridge");
    if (bw <= 0 || peak <= 0) return;
    Job job{{"roofline", "roofline", "Roofline: achieved GFLOP/s vs arithmetic intensity",
             "The roof is min(peak bandwidth x intensity, peak FLOP/s), both measured by kvscope hw. Each point is one "
             "measured phase; left of the ridge a phase is limited by memory bandwidth, right of it by arithmetic."},
            "roofline.csv", "", ""};
    std::vector<std::string> phases = t.distinct(t.all_rows(), "phase");
    std::stable_sort(phases.begin(), phases.end(), [](const std::string& a, const std::string& b) { return a == "prefill" && b != "prefill"; });
    std::vector<double> xs = {ridge}, ys;
    std::string plot = "plot roof(x) with lines lt 8 lw 3 title 'roofline: min(peak_gbs x intensity, peak_gflops)'";
    // Labels alternate above and below their points, in order of intensity, so neighbours do not collide.
    std::vector<size_t> by_x = t.sorted_by(t.all_rows(), "intensity");
    auto slot = [&](size_t r) { return size_t(std::find(by_x.begin(), by_x.end(), r) - by_x.begin()) % 2; };
    for (size_t i = 0; i < phases.size(); ++i) {
        job.data += "# " + phases[i] + ": intensity (flop/byte), GFLOP/s, label, label below (1) or above (0)\n";
        for (size_t r : t.sorted_by(t.where(t.all_rows(), "phase", phases[i]), "intensity")) {
            std::string label = phases[i] == "prefill" ? fmt::format("prefill S={}", t.cell(r, "context"))
                                                       : fmt::format("{} b={} S={}", phases[i], t.cell(r, "batch_size"), t.cell(r, "context"));
            job.data += num(t.num(r, "intensity")) + " " + num(t.num(r, "gflops")) + " " + q(label) + " " + std::to_string(slot(r)) + "\n";
            xs.push_back(t.num(r, "intensity"));
            if (t.num(r, "gflops") > 0) ys.push_back(t.num(r, "gflops"));
        }
        job.data += "\n\n";
        plot += fmt::format(", \\\n     'roofline.dat' index {0} using 1:2 with points lt {1} pt {2} ps 1.8 title {3}"
                            ", \\\n     'roofline.dat' index {0} using 1:($4 == 0 ? $2 : NaN):3 with labels offset 0.9,0.9 left font ',9' tc lt {1} notitle"
                            ", \\\n     'roofline.dat' index {0} using 1:($4 == 1 ? $2 : NaN):3 with labels offset 0.9,-0.9 left font ',9' tc lt {1} notitle",
                            i, i + 1, i % 2 ? 5 : 7, q(phases[i]));
    }
    auto [xlo, xhi] = std::minmax_element(xs.begin(), xs.end());
    double ylo = ys.empty() ? peak / 1000 : *std::min_element(ys.begin(), ys.end());
    std::string& b = job.body;
    b += "reset\n" + title_cmd(res, job.info.heading);
    b += "set logscale xy 10\nset format x '%g'\nset format y '%g'\nset samples 500\n";
    b += "set grid lc rgb '#dddddd'\nset key top left box opaque\n";
    b += "set xlabel 'arithmetic intensity (FLOP/byte)'\nset ylabel 'achieved GFLOP/s'\n";
    b += fmt::format("set xrange [{}:{}]\nset yrange [{}:{}]\n", num(*xlo / 4), num(*xhi * 8), num(std::min(ylo, *xlo * bw) / 4), num(peak * 3));
    b += fmt::format("BW = {}\nPEAK = {}\nRIDGE = {}\nroof(x) = (x * BW < PEAK) ? x * BW : PEAK\n", num(bw), num(peak), num(ridge));
    b += "set arrow 1 from RIDGE, graph 0 to RIDGE, graph 1 nohead dt 3 lc rgb '#555555'\n";
    b += "set label 1 sprintf('ridge %.3g FLOP/byte', RIDGE) at RIDGE, graph 0.04 offset 0.6,0 left tc rgb '#555555'\n";
    b += "set label 2 sprintf('compute ceiling %.4g GFLOP/s', PEAK) at RIDGE, PEAK offset 1,0.8 left tc rgb '#555555'\n";
    // Above and left of the slope, so it crosses neither the roof nor the points under it.
    b += "set label 3 sprintf('bandwidth ceiling %.3g GB/s', BW) at RIDGE / 4, BW * RIDGE / 4 * 1.6 right tc rgb '#555555'\n";
    b += plot + "\n";
    jobs.push_back(std::move(job));
}

// ---- drawing ------------------------------------------------------------------------------------

const char* kStyle =
    "set encoding utf8\n"
    "set linetype 1 lc rgb '#1f77b4' lw 2 pt 7 ps 1.2\n"
    "set linetype 2 lc rgb '#d62728' lw 2 pt 5 ps 1.2\n"
    "set linetype 3 lc rgb '#2ca02c' lw 2 pt 9 ps 1.3\n"
    "set linetype 4 lc rgb '#ff7f0e' lw 2 pt 11 ps 1.3\n"
    "set linetype 5 lc rgb '#9467bd' lw 2 pt 13 ps 1.3\n"
    "set linetype 6 lc rgb '#8c564b' lw 2 pt 3 ps 1.3\n"
    "set linetype 7 lc rgb '#e377c2' lw 2 pt 15 ps 1.3\n"
    "set linetype 8 lc rgb '#444444' lw 2 pt 1 ps 1.3\n"
    "set linetype cycle 8\n";

std::string script_for(const Job& job) {
    const std::string& n = job.info.name;
    std::string s = fmt::format("# Drawn by `kvscope report` from ../{} (data extracted into {}.dat).\n"
                                "# Redraw with: cd into this directory, then gnuplot {}.gp\n",
                                job.source, n, n);
    s += kStyle;
    s += fmt::format("set terminal pngcairo size 1000,620 noenhanced font 'DejaVu Sans,11' background '#ffffff'\nset output '{}.png'\n", n);
    s += job.body;
    s += fmt::format("set terminal svg size 1000,620 fixed noenhanced font 'DejaVu Sans,13' background '#ffffff'\nset output '{}.svg'\n", n);
    s += job.body;
    s += "unset output\n";
    return s;
}

bool same_content(const fs::path& p, const std::string& content) {
    std::error_code ec;
    if (!fs::exists(p, ec)) return false;
    try {
        return read_file(p) == content;
    } catch (const Error&) {
        return false;
    }
}

bool nonempty(const fs::path& p) {
    std::error_code ec;
    return fs::exists(p, ec) && fs::file_size(p, ec) > 0;
}

// Runs `gnuplot -d script` in `dir` (-d: ignore the user's ~/.gnuplot, which could restyle the
// plots). Every path the child sees is absolute: it starts in `dir`, not in our folder.
void run_gnuplot(const fs::path& dir_in, const std::string& script, const fs::path& shown_as) {
    const fs::path gnuplot = find_on_path("gnuplot");
    if (gnuplot.empty())
        fail("gnuplot not found on PATH: install it with scripts/setup_report_deps.sh (apt-get install gnuplot-nox)");
    const fs::path dir = absolute_path(dir_in), err = dir / "gnuplot.stderr";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addchdir_np(&fa, dir.c_str());
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::string arg0 = "gnuplot", arg1 = "-d", arg2 = script;
    char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
    pid_t pid = 0;
    int rc = posix_spawn(&pid, gnuplot.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    // The program exists, so a failure here is the folder or the stderr file it was given.
    if (rc != 0)
        fail("cannot start {} in {} (stderr to {}) for {}: {}", gnuplot.string(), dir.string(), err.string(),
             shown_as.string(), std::strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    std::string msg;
    try {
        std::string text = read_file(err);
        // gnuplot echoes the offending line before the message; the last non-empty line says what is wrong.
        size_t end = text.find_last_not_of(" \n");
        if (end != std::string::npos) {
            size_t start = text.rfind('\n', end);
            msg = text.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
        }
    } catch (const Error&) {
    }
    fail("gnuplot failed on {}: {}", shown_as.string(), msg.empty() ? "no message" : msg);
}

void draw(const fs::path& plots_dir, Job& job) {
    const std::string& n = job.info.name;
    std::string script = script_for(job);
    fs::path gp = plots_dir / (n + ".gp"), dat = plots_dir / (n + ".dat");
    fs::path png = plots_dir / (n + ".png"), svg = plots_dir / (n + ".svg");
    if (nonempty(png) && nonempty(svg) && same_content(dat, job.data) && same_content(gp, script)) return;

    fs::path tmp = plots_dir / fmt::format(".tmp-{}-{}", n, ::getpid());
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) fail("{}: cannot create ({})", tmp.string(), ec.message());
    struct Cleanup {
        fs::path p;
        ~Cleanup() {
            std::error_code e;
            fs::remove_all(p, e);
        }
    } cleanup{tmp};
    write_file_atomic(tmp / (n + ".dat"), job.data);
    write_file_atomic(tmp / (n + ".gp"), script);
    run_gnuplot(tmp, n + ".gp", gp);
    for (const char* ext : {".png", ".svg"})
        if (!nonempty(tmp / (n + ext))) fail("gnuplot wrote no {} for {}", ext, gp.string());
    // The script goes last: it is what marks the images as up to date.
    for (const char* ext : {".png", ".svg", ".dat", ".gp"}) {
        fs::rename(tmp / (n + ext), plots_dir / (n + ext), ec);
        if (ec) fail("{}: cannot replace ({})", (plots_dir / (n + ext)).string(), ec.message());
    }
    job.info.redrawn = true;
}

void quant_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("quant");
    const std::vector<size_t> all = t.all_rows();
    const std::vector<std::string> schemes = t.distinct(all, "kv_dtype");
    // Accuracy against bytes: one point per scheme (accuracy does not depend on the context).
    std::vector<Series> acc, speed, floor;
    int lt = 1;
    for (const std::string& k : schemes) {
        const std::vector<size_t> rows = t.where(all, "kv_dtype", k);
        if (rows.empty()) continue;
        const size_t r = rows.front();
        if (t.num(r, "kl_mean") > 0)
            acc.push_back({k, {{t.num(r, "kv_bytes_per_token"), t.num(r, "kl_mean")}}, "points pt 7 ps 1.6", lt});
        speed.push_back({k, points(t, rows, "context", [&](size_t x) { return t.num(x, "decode_ms_median"); }), "linespoints", lt});
        floor.push_back({k + " floor", points(t, rows, "context", [&](size_t x) { return t.num(x, "floor_ms"); }), "lines dt 2", lt});
        lt++;
    }
    Axes ax{"KV cache bytes per token (all layers, K and V, scales included)", "KL divergence from the fp32 cache (nats per step, mean)"};
    ax.key = "top right";
    ax.logy = true;
    if (auto j = xy_job(res,
                        {"quant_accuracy", "quant", "Accuracy vs bytes per token, per KV scheme",
                         "Each scheme's mean KL divergence of the next-token distribution from the fp32 cache's, by "
                         "teacher forcing on the same token streams, against its bytes per token (scales included). "
                         "Schemes identical to fp32 (KL 0) have no point on the log axis."},
                        t.file(), acc, ax))
        jobs.push_back(*j);
    std::vector<Series> both = speed;
    both.insert(both.end(), floor.begin(), floor.end());
    Axes sx{"context S (tokens cached per sequence)", "decode step time (ms, median)"};
    if (auto j = xy_job(res,
                        {"quant_speed", "quant", "Decode step time vs context, per KV scheme",
                         "Median decode step at each context (batch as in the table), with each scheme's bandwidth floor "
                         "(dashed): the step's bytes (weights + the cache it reads) over the measured read bandwidth."},
                        t.file(), both, sx))
        jobs.push_back(*j);
}

// Latency and throughput against the offered rate, a line per policy; KV slots reserved and
// holding tokens over time at the highest rate, from serving_timeline.csv.
void serving_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("serving");
    const std::vector<size_t> all = t.all_rows();
    const std::vector<std::string> policies = t.distinct(all, "policy");
    std::vector<Series> ttft, served;
    int lt = 1;
    for (const std::string& p : policies) {
        const std::vector<size_t> rows = t.where(all, "policy", p);
        ttft.push_back({p + " p99", points(t, rows, "rate_req_s", [&](size_t r) { return t.num(r, "ttft_ms_p99"); }), "linespoints", lt});
        ttft.push_back({p + " p50", points(t, rows, "rate_req_s", [&](size_t r) { return t.num(r, "ttft_ms_p50"); }), "linespoints dt 2", lt});
        served.push_back({p, points(t, rows, "rate_req_s", [&](size_t r) { return t.num(r, "throughput_req_s"); }), "linespoints", lt});
        lt++;
    }
    Axes ax{"offered request rate (requests/s, Poisson arrivals)", "time to first token (ms)"};
    if (auto j = xy_job(res,
                        {"serving_latency", "serving", "Time to first token vs request rate, per KV policy",
                         "p99 (solid) and median (dashed) time from a request's arrival to its first token, for the same "
                         "trace at each offered rate. Where a policy runs out of KV memory, requests queue and the curve "
                         "turns up."},
                        t.file(), ttft, ax))
        jobs.push_back(*j);
    Axes sx{"offered request rate (requests/s)", "served requests/s (requests / makespan)"};
    sx.logx = false;
    sx.logy = false;
    if (auto j = xy_job(res,
                        {"serving_throughput", "serving", "Served vs offered request rate, per KV policy",
                         "Requests completed per second of the run against the rate they arrived at: a policy follows the "
                         "diagonal until its KV memory, or the machine, saturates."},
                        t.file(), served, sx))
        jobs.push_back(*j);
    const Table* tl = res.table("serving_timeline");
    if (!tl) return;
    const std::vector<size_t> tall = tl->all_rows();
    const std::vector<std::string> rates = tl->distinct(tall, "rate_req_s");
    if (rates.empty()) return;
    const std::vector<size_t> at = tl->where(tall, "rate_req_s", rates.back());
    std::vector<Series> mem;
    lt = 1;
    for (const std::string& p : policies) {
        const std::vector<size_t> rows = tl->where(at, "policy", p);
        auto pts = [&](const char* col) {
            std::vector<std::pair<double, double>> v;
            for (size_t r : rows) v.emplace_back(tl->num(r, "t_s"), tl->num(r, col));
            return v;
        };
        mem.push_back({p + " reserved", pts("reserved_tokens"), "steps", lt});
        mem.push_back({p + " holding tokens", pts("held_tokens"), "steps dt 2", lt});
        lt++;
    }
    Axes mx{"time since the first arrival (s)", "KV slots (tokens)"};
    mx.logx = false;
    mx.logy = false;
    mx.key = "top right";
    if (auto j = xy_job(res,
                        {"serving_memory", "serving", "KV memory reserved vs holding tokens over time, at " + rates.back() + " req/s",
                         "After every engine step: the KV slots the policy had reserved for running requests (solid) and "
                         "those that held a token (dashed). The gap is memory no other request could use."},
                        tl->file(), mem, mx))
        jobs.push_back(*j);
}

// Perplexity change and recall against the budget, a line per policy (and per codec combined
// with one); which positions each policy kept, by layer, from evict_kept.csv.
void evict_plots(const Results& res, std::vector<Job>& jobs) {
    const Table& t = *res.table("evict");
    const std::vector<size_t> all = t.all_rows();
    std::vector<Series> ppl, recall;
    int lt = 1;
    for (const std::string& p : t.distinct(all, "policy")) {
        if (p == "full") continue;
        const std::vector<size_t> rows = t.where(all, "policy", p);
        for (const std::string& kv : t.distinct(rows, "kv_dtype")) {
            const std::vector<size_t> r = t.where(rows, "kv_dtype", kv);
            const bool fp32 = kv == "fp32";
            const std::string title = fp32 ? p : p + " + " + kv;
            ppl.push_back({title, points(t, r, "budget_frac", [&](size_t x) { return std::max(1e-4, t.num(x, "ppl_delta_pct")); }),
                           fp32 ? "linespoints" : "linespoints dt 2", lt});
            if (fp32) recall.push_back({title, points(t, r, "budget_frac", [&](size_t x) { return t.num(x, "recall_prob"); }), "linespoints", lt});
        }
        lt++;
    }
    const std::vector<size_t> full = t.where(all, "policy", "full");
    Axes ax{"budget (fraction of the stream kept)", "perplexity change against the full cache (%)"};
    ax.logx = false;
    ax.logy = true;
    ax.key = "top right";
    if (auto j = xy_job(res,
                        {"evict_accuracy", "evict", "Perplexity change vs budget, per eviction policy",
                         "Perplexity over the teacher-forced streams with each policy, as a change from the full cache's, at "
                         "each budget (dashed: the policy with a quantized codec). Changes of 0.0001% or less (a budget that "
                         "evicts nothing) sit on the floor of the log axis."},
                        t.file(), ppl, ax))
        jobs.push_back(*j);
    if (!full.empty() && t.num(full.front(), "recall_prob") > 0) {
        recall.push_back({"full cache", {{0.0, t.num(full.front(), "recall_prob")}, {1.0, t.num(full.front(), "recall_prob")}},
                          "lines dt 3 lc rgb '#777777'", lt});
        Axes rx{"budget (fraction of the probe prompt kept)", "probability of the answer"};
        rx.logx = false;
        rx.logy = false;
        if (auto j = xy_job(res,
                            {"evict_recall", "evict", "Recall of a fact cut from the prompt, per eviction policy",
                             "The probability the model gives the fact's answer after the question, when the prompt holding "
                             "the fact was cut to each fraction of its length by the policy (dotted: the full cache)."},
                            t.file(), recall, rx))
            jobs.push_back(*j);
    }
    const Table* k = res.table("evict_kept");
    if (!k || k->size() == 0) return;
    const std::vector<size_t> kall = k->all_rows();
    const std::vector<std::string> pols = k->distinct(kall, "policy");
    Job job{PlotInfo("evict_kept", "evict", "Positions each policy kept, by layer, at the end of one stream",
                     "Each row of a panel is a layer, each column a position of the stream; the shade is the share of the "
                     "layer's KV heads that still held the position when the stream ended (white: evicted everywhere)."),
            k->file(), "", ""};
    double max_pos = 0, max_layer = 0;
    for (size_t r : kall) {
        max_pos = std::max(max_pos, k->num(r, "position"));
        max_layer = std::max(max_layer, k->num(r, "layer"));
    }
    std::string& b = job.body;
    b += "reset\nset multiplot layout " + std::to_string(pols.size()) + ",1 title " +
         q(job.info.heading + "\n" + context_line(res)) + "\n";
    b += "set palette defined (0 '#ffffff', 1 '#1f4e99')\nset cbrange [0:1]\nunset colorbox\n";
    b += fmt::format("set xrange [-0.5:{}]\nset yrange [-0.5:{}]\nset ytics 1\nset ylabel 'layer'\n", num(max_pos + 0.5),
                     num(max_layer + 0.5));
    int block = 0;
    for (size_t i = 0; i < pols.size(); i++) {
        const std::vector<size_t> rows = k->where(kall, "policy", pols[i]);
        job.data += "# " + pols[i] + "\n";
        for (size_t r : rows)
            job.data += num(k->num(r, "position")) + " " + num(k->num(r, "layer")) + " " + num(k->num(r, "kept_frac")) + "\n";
        job.data += "\n\n";
        b += (i + 1 == pols.size() ? "set xlabel 'position in the stream'\n" : "unset xlabel\n");
        b += fmt::format("set title {} offset 0,-0.8\nplot 'evict_kept.dat' index {} using 1:2:3 with image notitle\n",
                         q(pols[i] + " (budget " + k->cell(rows.front(), "kv_budget") + ")"), block++);
    }
    b += "unset multiplot\n";
    jobs.push_back(job);
}

}  // namespace

const std::vector<std::pair<std::string, std::vector<std::string>>>& plot_names() {
    static const std::vector<std::pair<std::string, std::vector<std::string>>> names = {
        {"cache", {"cache_ms_per_token", "cache_speedup"}},
        {"cache_tokens", {"cache_tokens_latency", "cache_tokens_cumulative"}},
        {"batch", {"batch_throughput", "batch_latency", "batch_memory"}},
        {"precision", {"precision_speed", "precision_error"}},
        {"seqlen", {"seqlen_decode", "seqlen_kv_memory"}},
        {"memory", {"memory_kv"}},
        {"roofline", {"roofline"}},
        {"serving", {"serving_latency", "serving_throughput", "serving_memory"}},
        {"quant", {"quant_accuracy", "quant_speed"}},
        {"evict", {"evict_accuracy", "evict_recall", "evict_kept"}},
    };
    return names;
}

PlotSet render_plots(const Results& res) {
    using Maker = void (*)(const Results&, std::vector<Job>&);
    const std::map<std::string, Maker> makers = {
        {"cache", cache_plots},       {"cache_tokens", cache_tokens_plots}, {"batch", batch_plots},
        {"precision", precision_plots}, {"seqlen", seqlen_plots},           {"memory", memory_plots},
        {"roofline", roofline_plots},    {"serving", serving_plots},         {"quant", quant_plots},
        {"evict", evict_plots},
    };
    PlotSet out;
    std::vector<Job> jobs;
    for (const auto& [experiment, names] : plot_names()) {
        std::string list;
        for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
        if (!res.table(experiment)) {
            if (experiment != "quant" && experiment != "evict")  // not in study
                out.skipped.push_back({experiment, list, experiment + ".csv is absent"});
            continue;
        }
        size_t before = jobs.size();
        makers.at(experiment)(res, jobs);
        std::string missing;
        for (const std::string& n : names)
            if (std::none_of(jobs.begin() + long(before), jobs.end(), [&](const Job& j) { return j.info.name == n; }))
                missing += (missing.empty() ? "" : ", ") + n;
        if (!missing.empty()) out.skipped.push_back({experiment, missing, experiment + ".csv has no rows these plots can use"});
    }
    fs::path plots_dir = res.dir / "plots";
    std::error_code ec;
    fs::create_directories(plots_dir, ec);
    if (ec) fail("{}: cannot create ({})", plots_dir.string(), ec.message());
    for (Job& j : jobs) {
        draw(plots_dir, j);
        out.plots.push_back(j.info);
    }
    return out;
}

}  // namespace kvscope::report
