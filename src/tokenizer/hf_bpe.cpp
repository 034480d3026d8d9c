#include "tokenizer/hf_bpe.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"

namespace kvscope {

using json = nlohmann::json;

namespace {

const std::string kSpace = "\xE2\x96\x81";  // U+2581 "▁"

size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1; }

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        if (!from.empty() && s.compare(i, from.size(), from) == 0) {
            out += to;
            i += from.size();
        } else {
            out += s[i++];
        }
    }
    return out;
}

// Whether a normalizer or pre-tokenizer (possibly a Sequence) contains a step of `type`.
const json* find_step(const json& j, const char* key, const char* type) {
    if (!j.is_object()) return nullptr;
    if (j.value("type", json()) == type) return &j;
    auto it = j.find(key);
    if (it != j.end() && it->is_array())
        for (const json& s : *it)
            if (const json* f = find_step(s, key, type)) return f;
    return nullptr;
}

}  // namespace

bool HfBpeTokenizer::handles(const json& j) {
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) return false;
    const json& m = j["model"];
    if (m.value("type", json()) != "BPE") return false;
    if (m.value("byte_fallback", false)) return true;
    const json norm = j.value("normalizer", json()), pre = j.value("pre_tokenizer", json());
    return find_step(norm, "normalizers", "Replace") != nullptr || find_step(pre, "pretokenizers", "Metaspace") != nullptr;
}

HfBpeTokenizer HfBpeTokenizer::load(const std::filesystem::path& path) { return parse_bytes(read_file(path), path.string()); }

HfBpeTokenizer HfBpeTokenizer::parse_bytes(std::string_view bytes, const std::string& where) {
    json j;
    // No tokenizer file nests deeply; a value that does would overflow the stack when copied.
    const auto limit_depth = [&](int depth, json::parse_event_t, json&) {
        if (depth > 64) fail("{}: JSON nested deeper than 64 levels", where);
        return true;
    };
    try {
        j = json::parse(bytes.begin(), bytes.end(), limit_depth);
    } catch (const json::exception& e) {
        fail("{}: malformed JSON ({})", where, e.what());
    }
    try {
        return parse(j, where);
    } catch (const json::exception& e) {
        fail("{}: unexpected JSON structure ({})", where, e.what());
    }
}

HfBpeTokenizer HfBpeTokenizer::parse(const json& j, const std::string& where) {
    if (!handles(j)) fail("{}: expected model.type \"BPE\" with byte_fallback (a SentencePiece-style tokenizer.json)", where);
    const json& m = j["model"];
    HfBpeTokenizer t;
    const json& vocab = m.at("vocab");
    if (!vocab.is_object() || vocab.empty()) fail("{}: model.vocab must be a non-empty object", where);
    constexpr int64_t kMaxId = 1 << 22;
    for (const auto& [piece, v] : vocab.items()) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxId)
            fail("{}: model.vocab[\"{}\"] = {} is not a token id", where, piece, v.dump());
        const size_t id = size_t(v.get<int64_t>());
        if (id >= t.pieces_.size()) t.pieces_.resize(id + 1);
        t.pieces_[id] = piece;
        t.ids_[piece] = int32_t(id);
    }
    for (const json& a : j.value("added_tokens", json::array())) {
        if (!a.is_object() || !a.value("content", json()).is_string() || !a.value("id", json()).is_number_integer() ||
            a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() >= kMaxId)
            fail("{}: expected added_tokens entries {{\"id\": n, \"content\": s}}, got {}", where, a.dump());
        const std::string content = a["content"].get<std::string>();
        const size_t id = size_t(a["id"].get<int64_t>());
        if (content.empty()) fail("{}: an added token has empty content", where);
        if (id >= t.pieces_.size()) t.pieces_.resize(id + 1);
        t.pieces_[id] = content;
        t.ids_[content] = int32_t(id);
        t.added_.push_back({content, int32_t(id), a.value("special", false)});
    }
    // Longest first, so that one added token never hides a longer one that starts with it.
    std::sort(t.added_.begin(), t.added_.end(), [](const Added& a, const Added& b) { return a.content.size() > b.content.size(); });
    const json merges = m.value("merges", json::array());
    if (!merges.is_array()) fail("{}: model.merges must be an array", where);
    for (size_t r = 0; r < merges.size(); r++) {
        const json& e = merges[r];
        std::string a, b;
        if (e.is_string()) {
            const std::string s = e.get<std::string>();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size())
                fail("{}: model.merges[{}]: expected \"a b\", got {}", where, r, e.dump());
            a = s.substr(0, sp);
            b = s.substr(sp + 1);
        } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
            a = e[0].get<std::string>();
            b = e[1].get<std::string>();
        } else {
            fail("{}: model.merges[{}]: expected \"a b\" or [\"a\", \"b\"], got {}", where, r, e.dump());
        }
        auto ia = t.ids_.find(a), ib = t.ids_.find(b), im = t.ids_.find(a + b);
        if (ia == t.ids_.end() || ib == t.ids_.end() || im == t.ids_.end())
            fail("{}: model.merges[{}] \"{} {}\" names a piece that is not in model.vocab", where, r, a, b);
        const uint64_t key = uint64_t(uint32_t(ia->second)) << 32 | uint32_t(ib->second);
        t.merges_.emplace(key, std::make_pair(int32_t(r), im->second));
    }
    t.byte_fallback_ = m.value("byte_fallback", false);
    std::fill(std::begin(t.byte_id_), std::end(t.byte_id_), -1);
    t.byte_of_.assign(t.pieces_.size(), -1);
    for (int b = 0; b < 256; b++) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        if (auto it = t.ids_.find(name); it != t.ids_.end()) {
            t.byte_id_[b] = it->second;
            t.byte_of_[size_t(it->second)] = int16_t(b);
        }
    }
    if (m.contains("unk_token") && m["unk_token"].is_string())
        if (auto it = t.ids_.find(m["unk_token"].get<std::string>()); it != t.ids_.end()) t.unk_ = it->second;
    // A space prepended by the normalizer (Prepend "▁") or by a Metaspace pre-tokenizer.
    const json norm = j.value("normalizer", json()), pre = j.value("pre_tokenizer", json());
    const json* meta = find_step(pre, "pretokenizers", "Metaspace");
    t.prepend_ = find_step(norm, "normalizers", "Prepend") != nullptr ||
                 (meta && meta->value("prepend_scheme", std::string(meta->value("add_prefix_space", true) ? "always" : "never")) != "never");
    t.prepend_always_ = meta && meta->value("prepend_scheme", std::string("always")) == "always";
    if (auto it = t.ids_.find("<s>"); it != t.ids_.end()) t.bos_ = it->second;
    if (auto it = t.ids_.find("</s>"); it != t.ids_.end()) t.eos_ = it->second;
    // TemplateProcessing that starts a single sequence with a special token: that is BOS.
    const json post = j.value("post_processor", json());
    if (const json* tp = find_step(post, "processors", "TemplateProcessing")) {
        const json single = tp->value("single", json::array());
        if (single.is_array() && !single.empty() && single[0].contains("SpecialToken")) {
            const std::string id = single[0]["SpecialToken"].value("id", std::string());
            if (auto it = t.ids_.find(id); it != t.ids_.end()) {
                t.bos_ = it->second;
                t.add_bos_ = true;
            }
        }
    }
    for (size_t i = 0; i < t.pieces_.size(); i++)
        if (t.pieces_[i].empty()) fail("{}: token id {} has no piece (ids must be 0..{} without gaps)", where, i, t.pieces_.size() - 1);
    return t;
}

void HfBpeTokenizer::encode_text(std::string_view text, bool first, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    std::string s = replace_all(text, " ", kSpace);
    if (prepend_ && (first || prepend_always_)) s = kSpace + s;
    // Symbols: one per UTF-8 character, or its bytes when the character is not a piece.
    std::vector<int32_t> sym;
    for (size_t i = 0; i < s.size();) {
        const size_t n = std::min(utf8_len(static_cast<unsigned char>(s[i])), s.size() - i);
        auto it = ids_.find(s.substr(i, n));
        if (it != ids_.end()) {
            sym.push_back(it->second);
        } else if (byte_fallback_) {
            for (size_t k = 0; k < n; k++) {
                const int32_t b = byte_id_[static_cast<unsigned char>(s[i + k])];
                if (b < 0) fail("tokenizer.json has no piece <0x{:02X}> for byte fallback", static_cast<unsigned char>(s[i + k]));
                sym.push_back(b);
            }
        } else if (unk_ >= 0) {
            sym.push_back(unk_);
        } else {
            fail("text has a character this tokenizer cannot encode (no byte fallback, no unk_token)");
        }
        i += n;
    }
    // Merge the lowest-ranked adjacent pair until none is a merge.
    for (;;) {
        int32_t best_rank = INT32_MAX, best_id = -1;
        size_t best_at = 0;
        for (size_t i = 0; i + 1 < sym.size(); i++) {
            auto it = merges_.find(uint64_t(uint32_t(sym[i])) << 32 | uint32_t(sym[i + 1]));
            if (it != merges_.end() && it->second.first < best_rank) {
                best_rank = it->second.first;
                best_id = it->second.second;
                best_at = i;
            }
        }
        if (best_id < 0) break;
        sym[best_at] = best_id;
        sym.erase(sym.begin() + long(best_at) + 1);
    }
    out.insert(out.end(), sym.begin(), sym.end());
}

std::vector<int32_t> HfBpeTokenizer::encode(std::string_view text) const {
    std::vector<int32_t> out;
    bool first = true;
    size_t pos = 0;
    while (pos <= text.size()) {
        // The next added token (leftmost; longest at the same place: added_ is sorted by length).
        size_t at = std::string_view::npos;
        const Added* hit = nullptr;
        for (const Added& a : added_) {
            const size_t f = text.find(a.content, pos);
            if (f < at) {
                at = f;
                hit = &a;
            }
        }
        encode_text(text.substr(pos, hit ? at - pos : std::string_view::npos), first, out);
        if (!hit) break;
        if (at > pos) first = false;
        out.push_back(hit->id);
        pos = at + hit->content.size();
        first = false;
    }
    return out;
}

std::string HfBpeTokenizer::decode_token(int32_t id) const {
    if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary (0..{})", id, vocab_size() - 1);
    if (byte_of_[size_t(id)] >= 0) return std::string(1, char(byte_of_[size_t(id)]));
    return replace_all(pieces_[size_t(id)], kSpace, " ");
}

std::string HfBpeTokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    for (int32_t id : ids) {
        if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary (0..{})", id, vocab_size() - 1);
        bool special = false;
        for (const Added& a : added_) special |= a.special && a.id == id;
        if (special) continue;
        out += decode_token(id);
    }
    if (prepend_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
}

}  // namespace kvscope
