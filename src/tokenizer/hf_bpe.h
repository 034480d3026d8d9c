// Hugging Face tokenizer.json for SentencePiece-style BPE (Llama 2, Mistral, TinyLlama:
// model.type "BPE" with byte_fallback): spaces become "▁" (with one prepended, by the
// normalizer or a Metaspace pre-tokenizer), the text's characters are merged by rank, and a
// character outside the vocabulary becomes its UTF-8 bytes <0xXX>. Added tokens (<s>, </s>)
// are cut out first. Decoding reverses it: <0xXX> to bytes, "▁" to spaces, the prepended
// space dropped.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/tokenizer.h"

namespace kvscope {

class HfBpeTokenizer : public Tokenizer {
public:
    static HfBpeTokenizer load(const std::filesystem::path& path);
    // The bytes of a tokenizer.json; every failure is a kvscope::Error naming `where`.
    static HfBpeTokenizer parse_bytes(std::string_view bytes, const std::string& where);
    static HfBpeTokenizer parse(const nlohmann::json& j, const std::string& where);
    // True for a tokenizer.json this class reads (BPE with byte_fallback or a "▁" normalizer).
    static bool handles(const nlohmann::json& j);

    std::vector<int32_t> encode(std::string_view utf8) const override;
    std::string decode(std::span<const int32_t> ids) const override;
    std::string decode_token(int32_t id) const override;
    int32_t vocab_size() const override { return int32_t(pieces_.size()); }
    int32_t bos_id() const override { return bos_; }
    int32_t eos_id() const override { return eos_; }
    bool adds_bos() const override { return add_bos_; }
    std::string kind() const override { return "Hugging Face BPE with byte fallback (tokenizer.json)"; }

private:
    void encode_text(std::string_view text, bool first, std::vector<int32_t>& out) const;

    std::vector<std::string> pieces_;               // id -> piece ("▁the", "<0x0A>")
    std::unordered_map<std::string, int32_t> ids_;  // piece -> id
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left << 32 | right) -> (rank, merged id)
    std::vector<int16_t> byte_of_;                  // id -> byte value of a <0xXX> piece, or -1
    int32_t byte_id_[256];                          // byte -> id of <0xXX>, or -1
    struct Added {
        std::string content;
        int32_t id;
        bool special;
    };
    std::vector<Added> added_;
    bool byte_fallback_ = true, prepend_ = true, prepend_always_ = false;
    int32_t unk_ = -1, bos_ = -1, eos_ = -1;
    bool add_bos_ = false;
};

}  // namespace kvscope
