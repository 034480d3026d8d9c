#include "report/csv.h"

#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"

namespace kvscope {

std::string csv_escape(const std::string& f) {
    if (f.find_first_of(",\"\n\r") == std::string::npos) return f;
    std::string o = "\"";
    for (char c : f) {
        if (c == '"') o += '"';
        o += c;
    }
    return o + "\"";
}

std::string csv_line(const std::vector<std::string>& fields) {
    std::string s;
    for (size_t i = 0; i < fields.size(); i++) {
        if (i) s += ',';
        s += csv_escape(fields[i]);
    }
    s += '\n';
    return s;
}

void append_csv_row(const std::filesystem::path& path, const std::vector<std::string>& header,
                    const std::vector<std::string>& row, const std::string& flag) {
    std::string old;
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) old = read_file(path);
    std::string head = csv_line(header);
    if (!old.empty()) {
        std::string first = old.substr(0, old.find('\n') + 1);
        if (first != head)
            fail("{} {}: existing file has a different header (expected \"{}\"); use a new file", flag, path.string(),
                 head.substr(0, head.size() - 1));
        if (old.back() != '\n') old += '\n';
    } else {
        old = head;
    }
    write_file_atomic(path, old + csv_line(row));
}

void write_csv(const std::filesystem::path& path, const std::vector<std::string>& header,
               const std::vector<std::vector<std::string>>& rows) {
    std::string s = csv_line(header);
    for (const auto& r : rows) s += csv_line(r);
    write_file_atomic(path, s);
}

std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path) { return parse_csv(read_file(path)); }

std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> cur;
    std::string field;
    bool quoted = false, any = false;
    for (size_t i = 0; i < text.size(); i++) {
        char c = text[i];
        if (quoted) {
            if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') { field += '"'; i++; }
            else if (c == '"') quoted = false;
            else field += c;
        } else if (c == '"') {
            quoted = true;
            any = true;
        } else if (c == ',') {
            cur.push_back(field);
            field.clear();
        } else if (c == '\n') {
            cur.push_back(field);
            rows.push_back(cur);
            cur.clear();
            field.clear();
            any = false;
        } else if (c != '\r') {
            field += c;
            any = true;
        }
    }
    if (any || !field.empty() || !cur.empty()) {
        cur.push_back(field);
        rows.push_back(cur);
    }
    return rows;
}

}  // namespace kvscope
