// Findings: sentences computed from the result CSVs, each number in them traceable to the cell
// it came from (or to the cells a ratio was computed from), so a test can check every number a
// reader sees against the data. Written to findings.json; docs/REPORT.md describes the format.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "report/results.h"

namespace kvscope::report {

// One CSV cell: the file, a key that selects exactly one row, the column, the parsed value.
struct CellRef {
    std::string file;
    RowKey row;
    std::string column;
    double value = 0;
};

// A number as a sentence prints it. shown * scale == value, to the digits shown.
struct Quoted {
    enum class Kind { Cell, Derived, Threshold };
    Kind kind = Kind::Cell;
    std::string shown;
    double scale = 1;  // 1048576 when a byte count is shown in MiB
    double value = 0;
    CellRef cell;                // Kind::Cell
    std::string op;              // Kind::Derived: "ratio" a/b, "per_doubling" (a/b)^(1/log2(c/d)),
    std::vector<CellRef> args;   //   "pct_diff" 100*|a-b|/b
};

struct Finding {
    std::string experiment;  // the section it belongs to: "cache", "batch", ...
    std::string text;
    std::vector<Quoted> values;
};

// Every finding the present CSVs support, in report order.
std::vector<Finding> compute_findings(const Results& res);

// findings.json: a list of {"experiment", "text", "values": [...]}.
nlohmann::ordered_json findings_to_json(const std::vector<Finding>& findings);

// How the report prints a number: integers as integers, otherwise 3 significant digits (one
// decimal from 100 up), scientific below 0.001.
std::string format_number(double v);

// The numbers a sentence contains: a digit run (with a fraction and an exponent) that does not
// continue a word ("fp16", "p95", "top-1" are not numbers). Used to check that a finding quotes
// nothing it cannot trace.
std::vector<std::string> numbers_in(std::string_view text);

}  // namespace kvscope::report
