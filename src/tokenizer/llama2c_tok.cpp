#include "tokenizer/llama2c_tok.h"

#include <cctype>
#include <cstring>

#include "core/error.h"
#include "core/fs.h"

namespace kvscope {

Llama2cTokenizer Llama2cTokenizer::load(const std::filesystem::path& path, int n_vocab) {
    const std::string bytes = read_file(path);
    return parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), n_vocab, path.string());
}

Llama2cTokenizer Llama2cTokenizer::parse(const uint8_t* data, size_t size, int n_vocab, const std::string& where) {
    if (size < 4) fail("{}: {} bytes: too short for a llama2.c tokenizer (expected max_token_length first)", where, size);
    if (n_vocab < 3 || n_vocab > (1 << 22)) fail("{}: the model's vocabulary size {} is out of range", where, n_vocab);
    int32_t max_len;
    std::memcpy(&max_len, data, 4);
    if (max_len < 1 || max_len > (1 << 16)) fail("{}: max_token_length {} is out of range", where, max_len);
    Llama2cTokenizer t;
    size_t at = 4;
    while (at < size) {
        if (size - at < 8) fail("{}: truncated at byte {} (a token's score and length)", where, at);
        float score;
        int32_t len;
        std::memcpy(&score, data + at, 4);
        std::memcpy(&len, data + at + 4, 4);
        at += 8;
        if (len < 0 || len > max_len || size_t(len) > size - at)
            fail("{}: token {} has length {} (max_token_length {}, {} bytes left)", where, t.pieces_.size(), len,
                 max_len, size - at);
        t.pieces_.emplace_back(reinterpret_cast<const char*>(data + at), size_t(len));
        t.scores_.push_back(score);
        at += size_t(len);
        if (int(t.pieces_.size()) > n_vocab) break;
    }
    if (int(t.pieces_.size()) != n_vocab)
        fail("{}: holds {}{} tokens but the model's vocabulary has {} (a tokenizer for another model?)", where,
             int(t.pieces_.size()) > n_vocab ? "more than " : "", int(t.pieces_.size()) > n_vocab ? n_vocab : int(t.pieces_.size()),
             n_vocab);
    for (int32_t i = 0; i < n_vocab; i++) t.ids_.emplace(t.pieces_[size_t(i)], i);  // first id of a duplicate wins
    return t;
}

std::vector<int32_t> Llama2cTokenizer::encode(std::string_view text) const {
    std::vector<int32_t> ids;
    if (text.empty()) return ids;
    auto lookup = [&](const std::string& s) {
        auto it = ids_.find(s);
        return it == ids_.end() ? -1 : it->second;
    };
    // The dummy prefix run.c adds (SentencePiece's add_dummy_prefix).
    if (int32_t sp = lookup(" "); sp >= 0) ids.push_back(sp);
    // UTF-8 characters (at most 4 bytes each) looked up whole, else byte by byte (+3: the ids
    // of <0x00>.. follow <unk>, <s>, </s>).
    std::string ch;
    for (size_t i = 0; i < text.size(); i++) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if ((c & 0xC0) != 0x80) ch.clear();
        ch += char(c);
        const bool more = i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
        if (more && ch.size() < 4) continue;
        if (int32_t id = lookup(ch); id >= 0) {
            ids.push_back(id);
        } else {
            for (unsigned char b : ch) {
                const int32_t bid = int32_t(b) + 3;
                if (bid >= vocab_size()) fail("text has byte 0x{:02X}, which this tokenizer's vocabulary cannot encode", b);
                ids.push_back(bid);
            }
        }
        ch.clear();
    }
    // Merge the best-scoring adjacent pair until no pair is a token.
    std::string pair;
    for (;;) {
        float best = -1e10f;
        int32_t best_id = -1;
        size_t best_at = 0;
        for (size_t i = 0; i + 1 < ids.size(); i++) {
            pair = pieces_[size_t(ids[i])];
            pair += pieces_[size_t(ids[i + 1])];
            const int32_t id = lookup(pair);
            if (id >= 0 && scores_[size_t(id)] > best) {
                best = scores_[size_t(id)];
                best_id = id;
                best_at = i;
            }
        }
        if (best_id < 0) break;
        ids[best_at] = best_id;
        ids.erase(ids.begin() + long(best_at) + 1);
    }
    return ids;
}

std::string Llama2cTokenizer::piece_text(int32_t prev, int32_t id) const {
    if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary (0..{})", id, vocab_size() - 1);
    std::string p = pieces_[size_t(id)];
    if (prev == bos_id() && !p.empty() && p[0] == ' ') p.erase(0, 1);
    unsigned int byte = 0;
    if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' && std::sscanf(p.c_str(), "<0x%02X>", &byte) == 1)
        p = std::string(1, char(byte));
    return p;
}

std::string Llama2cTokenizer::decode_token(int32_t id) const { return piece_text(-1, id); }

std::string Llama2cTokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    int32_t prev = -1;
    for (int32_t id : ids) {
        if (id == bos_id() || id == eos_id()) {
            if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary", id);
            prev = id;
            continue;
        }
        std::string p = piece_text(prev, id);
        prev = id;
        if (p.size() == 1 && !(std::isprint(static_cast<unsigned char>(p[0])) || std::isspace(static_cast<unsigned char>(p[0]))))
            continue;
        out += p;
    }
    return out;
}

}  // namespace kvscope
