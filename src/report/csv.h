// CSV rows: quoting, and appending to a file without ever leaving a partial row (the new
// content goes to a temporary file renamed over the old one).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kvscope {

std::string csv_escape(const std::string& field);
std::string csv_line(const std::vector<std::string>& fields);
// Appends `row` to `path`, writing `header` first when the file is new or empty. An existing
// file whose first line differs from the header is an error (naming the flag and file).
void append_csv_row(const std::filesystem::path& path, const std::vector<std::string>& header,
                    const std::vector<std::string>& row, const std::string& flag);
// Replaces `path` with header + rows, atomically.
void write_csv(const std::filesystem::path& path, const std::vector<std::string>& header,
               const std::vector<std::vector<std::string>>& rows);
// Parses a CSV written by write_csv (quoted fields, no embedded newlines): header + rows.
std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path);
// The same over text in memory: one vector of fields per line (a line 1-based is index + 1).
std::vector<std::vector<std::string>> parse_csv(const std::string& text);

}  // namespace kvscope
