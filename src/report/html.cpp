// report.html: one file that opens offline from the file system. No scripts, no fonts or
// styles from elsewhere; every plot is its SVG inlined as a data: URI.
#include <fmt/format.h>

#include "core/error.h"
#include "core/fs.h"
#include "report/document.h"

namespace kvscope::report {

namespace {

std::string esc(const std::string& s) {
    std::string o;
    o.reserve(s.size());
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            default: o += c;
        }
    }
    return o;
}

// Escapes, then turns `code` and **bold** into tags (paragraphs only).
std::string inline_markup(const std::string& s) {
    std::string e = esc(s), o;
    bool code = false, bold = false;
    for (size_t i = 0; i < e.size(); ++i) {
        if (e[i] == '`') {
            o += code ? "</code>" : "<code>";
            code = !code;
        } else if (!code && e.compare(i, 2, "**") == 0) {
            o += bold ? "</strong>" : "<strong>";
            bold = !bold;
            ++i;
        } else {
            o += e[i];
        }
    }
    if (code) o += "</code>";
    if (bold) o += "</strong>";
    return o;
}

std::string base64(const std::string& in) {
    static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
        out += {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], tbl[v & 63]};
    }
    if (i + 1 == in.size()) {
        unsigned v = (unsigned char)in[i] << 16;
        out += {tbl[v >> 18], tbl[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        unsigned v = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
        out += {tbl[v >> 18], tbl[(v >> 12) & 63], tbl[(v >> 6) & 63], '='};
    }
    return out;
}

constexpr const char* kTocMark = "<!--kvscope-toc-->";

const char* kCss = R"(
body { font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1d1d1f; margin: 0; background: #f4f5f7; }
main { max-width: 1080px; margin: 0 auto; padding: 24px 32px 64px; background: #ffffff; }
h1 { font-size: 1.8em; margin: 0.4em 0 0.6em; }
h2 { font-size: 1.35em; margin-top: 2em; padding-bottom: 0.25em; border-bottom: 2px solid #e3e5e8; }
h3 { font-size: 1.1em; margin-top: 1.4em; }
p, li { line-height: 1.5; }
li { margin: 0.25em 0; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 0.92em; background: #f0f1f3; padding: 0 3px; border-radius: 3px; }
.note { border-left: 6px solid #e0a800; background: #fff8e1; padding: 12px 16px; margin: 1em 0; font-size: 1.05em; }
pre.sample { background: #f6f8fa; border: 1px solid #d0d7de; padding: 12px 16px; white-space: pre-wrap; word-break: break-word; font-size: 0.95em; }
table { border-collapse: collapse; margin: 0.8em 0 1.2em; font-size: 0.88em; }
th, td { border: 1px solid #d9dce1; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #eef0f3; white-space: normal; vertical-align: bottom; }
table.kv td { text-align: left; white-space: normal; }
td:first-child, th:first-child { text-align: left; }
tbody tr:nth-child(even) { background: #f8f9fa; }
.scroll { overflow-x: auto; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e5e8; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.4em; }
nav ul { columns: 2; }
)";

}  // namespace

std::string render_html(const Document& doc, const std::filesystem::path& plots_dir) {
    std::string title, body, toc;
    for (const Block& b : doc) {
        switch (b.kind) {
            case Block::Kind::Title:
                title = b.text;
                body += "<h1>" + esc(b.text) + "</h1>\n";
                break;
            case Block::Kind::Section:
                if (toc.empty()) body += kTocMark;  // the contents go before the first section
                body += fmt::format("<h2 id=\"{}\">{}</h2>\n", esc(b.anchor), esc(b.text));
                toc += fmt::format("<li><a href=\"#{}\">{}</a></li>", esc(b.anchor), esc(b.text));
                break;
            case Block::Kind::Subsection: body += "<h3>" + esc(b.text) + "</h3>\n"; break;
            case Block::Kind::Para: body += "<p>" + inline_markup(b.text) + "</p>\n"; break;
            case Block::Kind::Code: body += "<pre class=\"sample\">" + esc(b.text) + "</pre>\n"; break;
            case Block::Kind::Note: body += "<div class=\"note\"><strong>Note.</strong> " + inline_markup(b.text) + "</div>\n"; break;
            case Block::Kind::List:
                body += "<ul>\n";
                for (const std::string& item : b.items) body += "<li>" + esc(item) + "</li>\n";
                body += "</ul>\n";
                break;
            case Block::Kind::Table:
                body += b.key_value ? "<div class=\"scroll\"><table class=\"kv\">\n<thead><tr>" : "<div class=\"scroll\"><table>\n<thead><tr>";
                for (const std::string& h : b.header) body += "<th>" + esc(h) + "</th>";
                body += "</tr></thead>\n<tbody>\n";
                for (const auto& row : b.rows) {
                    body += "<tr>";
                    for (const std::string& c : row) body += "<td>" + esc(c) + "</td>";
                    body += "</tr>\n";
                }
                body += "</tbody></table></div>\n";
                break;
            case Block::Kind::Figure: {
                std::filesystem::path svg = plots_dir / (b.plot + ".svg");
                body += fmt::format("<figure><img src=\"data:image/svg+xml;base64,{}\" alt=\"{}\" width=\"1000\" height=\"620\">"
                                    "<figcaption><strong>{}.</strong> {} Files: <code>plots/{}.png</code>, <code>plots/{}.svg</code>, "
                                    "<code>plots/{}.gp</code>.</figcaption></figure>\n",
                                    base64(read_file(svg)), esc(b.text), esc(b.text), esc(b.caption), esc(b.plot), esc(b.plot),
                                    esc(b.plot));
                break;
            }
        }
    }
    size_t mark = body.find(kTocMark);
    if (mark != std::string::npos)
        body.replace(mark, std::string_view(kTocMark).size(), "<nav><strong>Contents</strong><ul>" + toc + "</ul></nav>\n");
    return fmt::format("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                       "<link rel=\"icon\" href=\"data:,\">\n<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n"
                       "{}</main>\n</body>\n</html>\n",
                       esc(title), kCss, body);
}

}  // namespace kvscope::report
