// The report as a list of blocks, built once and rendered twice: as Markdown (report.md) and
// as a self-contained HTML page (report.html, plots embedded as data: URIs).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kvscope::report {

// Paragraph text may use `code` and **bold**; list items and table cells are plain text.
struct Block {
    enum class Kind { Title, Section, Subsection, Para, Note, Code, Table, Figure, List };  // Code: preformatted text, verbatim
    Block() = default;
    Block(Kind k, std::string t = "") : kind(k), text(std::move(t)) {}
    Kind kind = Kind::Para;
    std::string text;                            // Title, Section, Subsection, Para, Note; Figure: heading
    std::string anchor;                          // Section: id for the table of contents
    std::vector<std::string> header;             // Table
    std::vector<std::vector<std::string>> rows;  // Table
    bool key_value = false;                      // Table: a two-column "name | value" description
    std::vector<std::string> items;              // List
    std::string plot, caption;                   // Figure: file stem in plots/, and how to read it
};

using Document = std::vector<Block>;

std::string render_markdown(const Document& doc);
// Figures are read from plots_dir/<plot>.svg and embedded; a missing file is an error.
std::string render_html(const Document& doc, const std::filesystem::path& plots_dir);

}  // namespace kvscope::report
