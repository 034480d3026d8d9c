#include <fmt/format.h>

#include "report/document.h"

namespace kvscope::report {

namespace {

std::string cell(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '|') o += '\\';
        o += c;
    }
    return o.empty() ? " " : o;
}

}  // namespace

std::string render_markdown(const Document& doc) {
    std::string md;
    for (const Block& b : doc) {
        switch (b.kind) {
            case Block::Kind::Title: md += "# " + b.text + "\n\n"; break;
            case Block::Kind::Section: md += "## " + b.text + "\n\n"; break;
            case Block::Kind::Subsection: md += "### " + b.text + "\n\n"; break;
            case Block::Kind::Para: md += b.text + "\n\n"; break;
            case Block::Kind::Code: md += "```text\n" + b.text + "\n```\n\n"; break;
            case Block::Kind::Note: md += "> **Note.** " + b.text + "\n\n"; break;
            case Block::Kind::List:
                for (const std::string& item : b.items) md += "- " + item + "\n";
                md += "\n";
                break;
            case Block::Kind::Table: {
                std::string sep;
                md += "|";
                for (const std::string& h : b.header) {
                    md += " " + cell(h) + " |";
                    sep += " --- |";
                }
                md += "\n|" + sep + "\n";
                for (const auto& row : b.rows) {
                    md += "|";
                    for (const std::string& c : row) md += " " + cell(c) + " |";
                    md += "\n";
                }
                md += "\n";
                break;
            }
            case Block::Kind::Figure:
                md += fmt::format("![{0}](plots/{1}.png)\n\n*{0}.* {2} ([PNG](plots/{1}.png), [SVG](plots/{1}.svg), "
                                  "[gnuplot script](plots/{1}.gp))\n\n",
                                  b.text, b.plot, b.caption);
                break;
        }
    }
    return md;
}

}  // namespace kvscope::report
