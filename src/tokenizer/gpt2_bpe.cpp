#include "tokenizer/gpt2_bpe.h"

#include <algorithm>
#include <array>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/unicode_tables.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using unicode::CharClass;
using MergeList = std::vector<std::pair<std::string, std::string>>;
using Vocab = std::unordered_map<std::string, int32_t>;

constexpr int32_t kMaxId = 1 << 24;        // bounds the id -> bytes table a bad file can ask for
constexpr char32_t kInvalid = 0xFFFFFFFF;  // a byte that does not start valid UTF-8

// GPT-2 stores tokens as text in which every byte is one printable code point: printable
// Latin-1 bytes stand for themselves, the other 68 bytes for U+0100.. in order.
struct ByteUnicode {
    std::array<char32_t, 256> to_cp{};
    std::array<int16_t, 0x144> to_byte{};  // -1: not in the alphabet

    ByteUnicode() {
        to_byte.fill(-1);
        char32_t next = 256;
        for (int b = 0; b < 256; ++b) {
            const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            to_cp[b] = printable ? char32_t(b) : next++;
            to_byte[to_cp[b]] = int16_t(b);
        }
    }
};

const ByteUnicode& byte_unicode() {
    static const ByteUnicode table;
    return table;
}

// Strict decoding (no overlongs, surrogates or truncation), so that any byte string has one
// split into code points and invalid bytes, and the split never reads past the end.
char32_t decode_utf8(std::string_view s, size_t i, size_t& len) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    len = 1;
    if (b0 < 0x80) return b0;
    size_t n;
    char32_t cp, min;
    // clang-format off
    if ((b0 & 0xE0) == 0xC0) { n = 2; cp = b0 & 0x1F; min = 0x80; }
    else if ((b0 & 0xF0) == 0xE0) { n = 3; cp = b0 & 0x0F; min = 0x800; }
    else if ((b0 & 0xF8) == 0xF0) { n = 4; cp = b0 & 0x07; min = 0x10000; }
    else return kInvalid;
    // clang-format on
    if (i + n > s.size()) return kInvalid;
    for (size_t k = 1; k < n; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) return kInvalid;
        cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalid;
    len = n;
    return cp;
}

void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out += char(cp);
    } else if (cp < 0x800) {
        out += char(0xC0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3F));
    } else {  // the byte alphabet needs no more than two bytes; three covers the BMP anyway
        out += char(0xE0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3F));
        out += char(0x80 | (cp & 0x3F));
    }
}

// A vocabulary string in the byte alphabet -> the raw bytes it stands for; false if some
// character is outside the alphabet (added tokens such as "<pad>" with a real space).
bool alphabet_to_bytes(std::string_view token, std::string& bytes) {
    const auto& bu = byte_unicode();
    bytes.clear();
    for (size_t i = 0, len; i < token.size(); i += len) {
        const char32_t cp = decode_utf8(token, i, len);
        if (cp >= bu.to_byte.size() || bu.to_byte[cp] < 0) return false;
        bytes += char(bu.to_byte[cp]);
    }
    return true;
}

CharClass char_class(char32_t cp) {
    static const auto ascii = [] {
        std::array<CharClass, 128> t{};
        for (char32_t c = 0; c < 128; ++c) t[c] = unicode::classify(c);
        return t;
    }();
    if (cp < 128) return ascii[cp];
    return cp == kInvalid ? CharClass::Other : unicode::classify(cp);
}

size_t contraction_len(std::string_view rest) {
    for (std::string_view c : {"s", "t", "re", "ve", "m", "ll", "d"})
        if (rest.starts_with(c)) return c.size();
    return 0;
}

// GPT-2's pre-tokenizer, the regex
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// by hand: alternatives are tried in order and each is greedy. Invalid bytes count as \S.
template <typename Emit>
void pre_tokenize(std::string_view text, Emit&& emit) {
    std::vector<uint32_t> pos;   // [n_cp + 1] byte offset of each code point
    std::vector<CharClass> cls;  // [n_cp]
    for (size_t i = 0, len; i < text.size(); i += len) {
        pos.push_back(uint32_t(i));
        cls.push_back(char_class(decode_utf8(text, i, len)));
    }
    const size_t n = cls.size();
    pos.push_back(uint32_t(text.size()));
    auto run_end = [&](size_t i, CharClass c) {
        while (i < n && cls[i] == c) ++i;
        return i;
    };

    for (size_t i = 0, end; i < n; i = end) {
        const char c0 = text[pos[i]];
        if (size_t len = c0 == '\'' ? contraction_len(text.substr(pos[i] + 1)) : 0; len > 0) {
            end = i + 1 + len;  // ASCII: one code point per byte
        } else if (size_t j = c0 == ' ' && i + 1 < n && cls[i + 1] != CharClass::Space ? i + 1 : i;
                   cls[j] != CharClass::Space) {
            end = run_end(j, cls[j]);
        } else {
            end = run_end(i, CharClass::Space);
            // \s+(?!\S): a space run followed by a word leaves its last character to that word.
            if (end < n && end - i > 1) --end;
        }
        emit(text.substr(pos[i], pos[end] - pos[i]));
    }
}

uint64_t pair_key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

std::string read_text(const fs::path& path, std::string_view role) {
    std::ifstream f(path, std::ios::binary);
    if (!fs::is_regular_file(path) || !f)
        fail("{}: {}: file not found or not readable", role, path.string());
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

json read_json(const fs::path& path, std::string_view role) {
    const std::string text = read_text(path, role);
    // No tokenizer file nests deeply; copying or dumping a value that does overflows the stack.
    constexpr int kMaxDepth = 64;
    const auto limit_depth = [&](int depth, json::parse_event_t, json&) {
        if (depth > kMaxDepth)
            fail("{}: {}: JSON nested deeper than {} levels", role, path.string(), kMaxDepth);
        return true;
    };
    try {
        return json::parse(text, limit_depth);
    } catch (const json::exception& e) {  // parse_error, or out_of_range for numbers like 1e999
        fail("{}: {}: malformed JSON ({})", role, path.string(), e.what());
    }
}

int32_t checked_id(const json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= kMaxId) return -1;
    return v.get<int32_t>();
}

Vocab vocab_from_json(const json& j, const std::string& src) {
    if (!j.is_object()) fail("{}: expected a JSON object mapping token strings to ids", src);
    Vocab vocab;
    vocab.reserve(j.size());
    for (const auto& [token, v] : j.items()) {
        const int32_t id = checked_id(v);
        if (id < 0)
            fail("{}: expected a JSON object mapping token strings to ids, \"{}\" maps to {}", src,
                 token, v.dump());
        vocab.emplace(token, id);
    }
    return vocab;
}

// "a b" -> {a, b}; false unless exactly two non-empty parts separated by one space.
bool split_merge(std::string_view line, std::pair<std::string, std::string>& merge) {
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string_view::npos)
        return false;
    merge = {std::string(line.substr(0, sp)), std::string(line.substr(sp + 1))};
    return true;
}

}  // namespace

struct Gpt2Tokenizer::WordCache {
    struct Hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> ids;
};

Gpt2Tokenizer Gpt2Tokenizer::from_files(const fs::path& vocab_json, const fs::path& merges_txt) {
    const std::string vocab_src = fmt::format("vocab.json: {}", vocab_json.string());
    const std::string merges_src = fmt::format("merges.txt: {}", merges_txt.string());
    const Vocab vocab = vocab_from_json(read_json(vocab_json, "vocab.json"), vocab_src);

    MergeList merges;
    std::istringstream in(read_text(merges_txt, "merges.txt"));
    std::string line;
    for (size_t line_no = 1; std::getline(in, line); ++line_no) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
        if (!split_merge(line, merges.emplace_back()))
            fail("{}:{}: expected two tokens separated by one space, got \"{}\"", merges_src,
                 line_no, line);
    }

    Gpt2Tokenizer tok;
    tok.build(vocab, merges, vocab_src, merges_src);
    return tok;
}

Gpt2Tokenizer Gpt2Tokenizer::from_tokenizer_json(const fs::path& path) {
    const std::string src = fmt::format("tokenizer.json: {}", path.string());
    const json j = read_json(path, "tokenizer.json");
    try {
        return parse_tokenizer_json(j, src);
    } catch (const json::exception& e) {  // a field of the wrong JSON type
        fail("{}: unexpected JSON structure ({})", src, e.what());
    }
}

Gpt2Tokenizer Gpt2Tokenizer::parse_tokenizer_json(const json& j, const std::string& src) {
    if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
        fail("{}: expected a JSON object with a \"model\" object", src);
    const json& model = j["model"];
    if (model.value("type", json()) != "BPE")
        fail("{}: expected model.type \"BPE\", got {}", src, model.value("type", json()).dump());

    // Other pre-tokenizers (Llama 3's or Qwen's regex, Metaspace) split text differently:
    // refuse them rather than produce plausible but wrong ids.
    const json pre = j.value("pre_tokenizer", json());
    if (!pre.is_object() || pre.value("type", json()) != "ByteLevel" ||
        !pre.value("use_regex", true))
        fail("{}: expected pre_tokenizer {{\"type\": \"ByteLevel\"}} (GPT-2's regex), got {}", src,
             pre.dump());

    const Vocab vocab = vocab_from_json(model.value("vocab", json()), src + ": model.vocab");
    const json merges_json = model.value("merges", json());
    if (!merges_json.is_array()) fail("{}: expected model.merges to be an array", src);
    MergeList merges;
    merges.reserve(merges_json.size());
    for (const json& m : merges_json) {
        auto& merge = merges.emplace_back();
        const bool pair = m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string();
        if (pair) merge = {m[0].get<std::string>(), m[1].get<std::string>()};
        if (!pair && !(m.is_string() && split_merge(m.get<std::string>(), merge)))
            fail("{}: model.merges[{}]: expected \"a b\" or [\"a\", \"b\"], got {}", src,
                 merges.size() - 1, m.dump());
    }

    Gpt2Tokenizer tok;
    tok.add_prefix_space_ = pre.value("add_prefix_space", false);
    tok.build(vocab, merges, src, src);
    for (const json& a : j.value("added_tokens", json::array())) {
        const json content = a.is_object() ? a.value("content", json()) : json();
        const int32_t id = a.is_object() ? checked_id(a.value("id", json())) : -1;
        if (id < 0 || !content.is_string() || content.get<std::string>().empty())
            fail("{}: expected added_tokens entries {{\"id\": n, \"content\": s}}, got {}", src,
                 a.dump());
        tok.add_token(
            {content.get<std::string>(), id, a.value("lstrip", false), a.value("rstrip", false)});
    }
    return tok;
}

Gpt2Tokenizer Gpt2Tokenizer::load_dir(const fs::path& dir) {
    if (fs::is_regular_file(dir / "tokenizer.json"))
        return from_tokenizer_json(dir / "tokenizer.json");
    if (fs::is_regular_file(dir / "vocab.json") && fs::is_regular_file(dir / "merges.txt"))
        return from_files(dir / "vocab.json", dir / "merges.txt");
    fail("{}: expected a model directory with tokenizer.json, or vocab.json and merges.txt",
         dir.string());
}

void Gpt2Tokenizer::build(const Vocab& vocab, const MergeList& merges, const std::string& vocab_src,
                          const std::string& merges_src) {
    int32_t max_id = -1;
    for (const auto& [token, id] : vocab) max_id = std::max(max_id, id);
    token_bytes_.assign(size_t(max_id + 1), {});
    std::vector<bool> seen(token_bytes_.size());
    std::string bytes;
    for (const auto& [token, id] : vocab) {
        if (seen[id]) fail("{}: expected unique ids, {} is used twice", vocab_src, id);
        seen[id] = true;
        token_bytes_[id] = alphabet_to_bytes(token, bytes) ? bytes : token;
    }

    const auto& bu = byte_unicode();
    for (int b = 0; b < 256; ++b) {
        std::string key;
        append_utf8(key, bu.to_cp[b]);
        const auto it = vocab.find(key);
        if (it == vocab.end())
            fail("{}: expected a token for every byte, byte 0x{:02X} (\"{}\") has none", vocab_src,
                 b, key);
        byte_id_[b] = it->second;
    }

    merges_.reserve(merges.size());
    for (size_t r = 0; r < merges.size(); ++r) {
        const auto& [a, b] = merges[r];
        for (const std::string& part : {a, b, a + b})
            if (!vocab.contains(part))
                fail("{}: merge {} (\"{} {}\"): \"{}\" is not in the vocabulary", merges_src, r + 1,
                     a, b, part);
        // Only the first occurrence of a pair counts, like Hugging Face tokenizers.
        merges_.try_emplace(pair_key(vocab.at(a), vocab.at(b)), Merge{int32_t(r), vocab.at(a + b)});
    }

    if (const auto it = vocab.find("<|endoftext|>"); it != vocab.end())
        add_token({"<|endoftext|>", it->second, false, false});
}

void Gpt2Tokenizer::add_token(const AddedToken& tok) {
    if (size_t(tok.id) >= token_bytes_.size()) token_bytes_.resize(size_t(tok.id) + 1);
    // Added tokens decode to their text, not through the byte alphabet.
    token_bytes_[tok.id] = tok.content;
    if (tok.content == "<|endoftext|>") eos_id_ = tok.id;
    auto same = std::find_if(added_.begin(), added_.end(),
                             [&](const AddedToken& t) { return t.content == tok.content; });
    if (same != added_.end())
        *same = tok;
    else
        added_.push_back(tok);
}

std::vector<int32_t> Gpt2Tokenizer::encode(std::string_view text) const {
    std::vector<int32_t> out;
    WordCache cache;
    auto encode_text = [&](std::string_view seg) {
        if (seg.empty()) return;
        if (add_prefix_space_ && seg[0] != ' ') {
            std::string prefixed(seg.size() + 1, ' ');
            seg.copy(prefixed.data() + 1, seg.size());
            encode_segment(prefixed, out, cache);
        } else {
            encode_segment(seg, out, cache);
        }
    };
    auto is_space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };

    // Added tokens are cut out first (leftmost, then longest); the text between them is encoded
    // on its own. next_at caches each token's next occurrence so the scan stays linear.
    constexpr size_t npos = std::string_view::npos;
    std::vector<size_t> next_at(added_.size());
    for (size_t t = 0; t < added_.size(); ++t) next_at[t] = text.find(added_[t].content);
    for (size_t pos = 0;;) {
        const AddedToken* best = nullptr;
        size_t best_at = npos;
        for (size_t t = 0; t < added_.size(); ++t) {
            if (next_at[t] != npos && next_at[t] < pos)
                next_at[t] = text.find(added_[t].content, pos);
            if (next_at[t] < best_at || (next_at[t] == best_at && best_at != npos &&
                                         added_[t].content.size() > best->content.size())) {
                best = &added_[t];
                best_at = next_at[t];
            }
        }
        if (best == nullptr) {
            encode_text(text.substr(pos));
            return out;
        }
        size_t seg_end = best_at, next = best_at + best->content.size();
        if (best->lstrip)
            while (seg_end > pos && is_space(text[seg_end - 1])) --seg_end;
        if (best->rstrip)
            while (next < text.size() && is_space(text[next])) ++next;
        encode_text(text.substr(pos, seg_end - pos));
        out.push_back(best->id);
        pos = next;
    }
}

void Gpt2Tokenizer::encode_segment(std::string_view text, std::vector<int32_t>& out,
                                   WordCache& cache) const {
    pre_tokenize(text, [&](std::string_view word) {
        if (word.size() == 1) {
            out.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
            return;
        }
        auto it = cache.ids.find(word);
        if (it == cache.ids.end()) {
            std::vector<int32_t> ids;
            bpe(word, ids);
            it = cache.ids.emplace(std::string(word), std::move(ids)).first;
        }
        out.insert(out.end(), it->second.begin(), it->second.end());
    });
}

// encoder.py's loop (merge every occurrence of the lowest-ranked pair, left to right; repeat)
// with a heap instead of rescanning the word, so long words cost O(n log n), not O(n^2).
void Gpt2Tokenizer::bpe(std::string_view word, std::vector<int32_t>& out) const {
    struct Sym {
        int32_t id, prev, next;  // id -1: merged into its left neighbour
    };
    struct Cand {
        int32_t rank, left, left_id, right_id, merged_id;
        bool operator>(const Cand& o) const {
            return rank != o.rank ? rank > o.rank : left > o.left;
        }
    };
    const int32_t n = int32_t(word.size());
    std::vector<Sym> sym(static_cast<size_t>(n));
    for (int32_t k = 0; k < n; ++k)
        sym[k] = {byte_id_[static_cast<unsigned char>(word[k])], k - 1, k + 1 < n ? k + 1 : -1};

    std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
    auto push = [&](int32_t left) {
        if (left < 0 || sym[left].next < 0) return;
        const int32_t left_id = sym[left].id, right_id = sym[sym[left].next].id;
        if (const auto it = merges_.find(pair_key(left_id, right_id)); it != merges_.end())
            heap.push({it->second.rank, left, left_id, right_id, it->second.id});
    };
    for (int32_t k = 0; k + 1 < n; ++k) push(k);

    std::vector<int32_t> merged;
    while (!heap.empty()) {
        // All occurrences of one pair go in one pass; the pairs they create are queued after,
        // so a new pair never jumps ahead of an occurrence further right (as in encoder.py).
        const int32_t rank = heap.top().rank;
        merged.clear();
        while (!heap.empty() && heap.top().rank == rank) {
            const Cand c = heap.top();
            heap.pop();
            Sym& l = sym[c.left];
            if (l.id != c.left_id || l.next < 0 || sym[l.next].id != c.right_id) continue;  // stale
            Sym& r = sym[l.next];
            l.id = c.merged_id;
            l.next = r.next;
            if (r.next >= 0) sym[r.next].prev = c.left;
            r.id = -1;
            merged.push_back(c.left);
        }
        for (int32_t s : merged) {
            push(sym[s].prev);
            push(s);
        }
    }
    // sym[0] is never merged away, so the list starts there.
    for (int32_t k = 0; k >= 0; k = sym[k].next) out.push_back(sym[k].id);
}

std::string Gpt2Tokenizer::decode(std::span<const int32_t> ids) const {
    std::string text;
    for (int32_t id : ids) text += decode_token(id);
    return text;
}

std::string Gpt2Tokenizer::decode_token(int32_t id) const {
    if (id < 0 || id >= vocab_size())
        fail("decode: token id {} is outside the vocabulary [0, {})", id, vocab_size());
    return token_bytes_[id];
}

}  // namespace kvscope
