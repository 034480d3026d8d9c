// A results directory as the report reads it: each experiment's CSV (docs/SCHEMA.md), checked
// once against the columns the report uses, and its JSON sidecar. Everything that can be wrong
// with the input is found here, before a single output file is touched.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/hw.h"

namespace kvscope::report {

// (column, value) pairs that select rows of a table, e.g. {{"use_cache", "1"}, {"max_new_tokens", "128"}}.
using RowKey = std::vector<std::pair<std::string, std::string>>;

// One result CSV: the header and rows of strings, every row as wide as the header.
class Table {
public:
    Table(std::filesystem::path path, std::vector<std::string> header, std::vector<std::vector<std::string>> rows);

    const std::filesystem::path& path() const { return path_; }
    std::string file() const { return path_.filename().string(); }  // "cache.csv": how findings name it
    size_t size() const { return rows_.size(); }
    const std::vector<std::string>& header() const { return header_; }
    bool has(std::string_view column) const { return index(column) >= 0; }

    const std::string& cell(size_t row, std::string_view column) const;  // fails when the column is absent
    double num(size_t row, std::string_view column) const;  // fails naming file, line and column if not a number

    std::vector<size_t> all_rows() const;
    std::vector<size_t> where(const RowKey& key) const;  // rows matching every pair
    std::vector<size_t> where(const std::vector<size_t>& rows, std::string_view column, std::string_view value) const;
    // Distinct values of `column` over `rows`, in numeric order when they are all numbers.
    std::vector<std::string> distinct(const std::vector<size_t>& rows, std::string_view column) const;
    // Rows sorted by the numeric value of `column` (stable).
    std::vector<size_t> sorted_by(std::vector<size_t> rows, std::string_view column) const;
    // The smallest key that selects `row` alone: the `preferred` columns, then any column that
    // tells it apart from the rows still matching.
    RowKey key_of(size_t row, const std::vector<std::string>& preferred) const;

private:
    int index(std::string_view column) const;
    std::filesystem::path path_;
    std::vector<std::string> header_;
    std::vector<std::vector<std::string>> rows_;
};

// The experiments the report knows, in report order. cache_tokens.csv is the per-step series of
// the cache experiment.
const std::vector<std::string>& experiment_names();

struct Results {
    std::filesystem::path dir;
    std::map<std::string, Table> tables;               // experiment -> its CSV, present ones only
    std::map<std::string, nlohmann::json> sidecars;     // experiment -> <experiment>.json, present ones only
    nlohmann::json model;                               // sidecar "model" of the first experiment that has one
    nlohmann::json sample;                              // sidecar "sample" (the model's greedy text), likewise
    std::optional<analysis::HwInfo> hw;                 // sidecar "hw", likewise
    std::string hw_source;                              // the sidecar it came from

    const Table* table(std::string_view experiment) const;
    // For titles: the model's name, whether its weights are synthetic, the CPU and threads.
    std::string model_name() const;
    bool synthetic() const;
    std::string cpu() const;
    std::string threads() const;  // "" when no table records it
};

// Reads and validates every known CSV and sidecar in `dir`. Fails with one line naming the file
// when `dir` does not exist or holds no result CSV, when a CSV has no rows, a row of the wrong
// width, a missing column the report reads, or a non-number where a number belongs, and when a
// sidecar is not valid JSON or its "hw" lacks a key of kvscope hw's JSON.
Results load_results(const std::filesystem::path& dir);

// Parses a whole cell as a finite double; false otherwise ("", "nan", "12ms").
bool parse_number(std::string_view s, double* out);

}  // namespace kvscope::report
