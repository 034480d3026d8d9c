// GPT-2 byte-level BPE: text -> pre-tokenizer regex -> bytes -> BPE merges -> ids, and back.
// Behaves like OpenAI's encoder.py (checked against the npm package gpt-3-encoder), plus
// Hugging Face's added tokens ("<|endoftext|>" is one id, not "<|", "endoftext", "|>").
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/tokenizer.h"

namespace kvscope {

class Gpt2Tokenizer : public Tokenizer {
public:
    // HF layout: vocab.json (token string -> id) + merges.txt (first line "#version..." optional).
    static Gpt2Tokenizer from_files(const std::filesystem::path& vocab_json,
                                    const std::filesystem::path& merges_txt);
    // HF tokenizers' tokenizer.json with model.type == "BPE" (model.vocab, model.merges as
    // "a b" strings or [a, b] pairs), added_tokens honoured.
    static Gpt2Tokenizer from_tokenizer_json(const std::filesystem::path& path);
    // A model directory: tokenizer.json if present, else vocab.json + merges.txt.
    static Gpt2Tokenizer load_dir(const std::filesystem::path& dir);

    // Added/special tokens such as "<|endoftext|>" map to their id. Invalid UTF-8 is encoded
    // byte by byte, so decode(encode(s)) == s for every byte string s.
    std::vector<int32_t> encode(std::string_view utf8) const override;
    // Exact inverse of encode on the byte level; throws on an id outside [0, vocab_size()).
    std::string decode(std::span<const int32_t> ids) const override;
    // The bytes of one token: may be a partial UTF-8 sequence.
    std::string decode_token(int32_t id) const override;
    int32_t eos_id() const override { return eos_id_; }  // id of "<|endoftext|>", or -1
    int32_t vocab_size() const override { return static_cast<int32_t>(token_bytes_.size()); }
    std::string kind() const override { return "GPT-2 byte-level BPE"; }

private:
    struct AddedToken {
        std::string content;
        int32_t id;
        bool lstrip, rstrip;  // the token swallows whitespace on that side (HF semantics)
    };
    struct Merge {
        int32_t rank;
        int32_t id;  // id of the merged token
    };

    struct WordCache;  // per encode() call, so encode stays const and thread-safe

    Gpt2Tokenizer() = default;
    static Gpt2Tokenizer parse_tokenizer_json(const nlohmann::json& j, const std::string& src);
    // vocab: token strings in GPT-2's byte-to-unicode alphabet; merges in rank order.
    // `vocab_src` / `merges_src` name the inputs in errors ("vocab.json: /path").
    void build(const std::unordered_map<std::string, int32_t>& vocab,
               const std::vector<std::pair<std::string, std::string>>& merges,
               const std::string& vocab_src, const std::string& merges_src);
    void add_token(const AddedToken& tok);
    void encode_segment(std::string_view text, std::vector<int32_t>& out, WordCache& cache) const;
    void bpe(std::string_view word, std::vector<int32_t>& out) const;

    std::vector<std::string> token_bytes_;        // id -> raw bytes
    std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
    int32_t byte_id_[256] = {};                   // single byte -> id
    std::vector<AddedToken> added_;
    int32_t eos_id_ = -1;
    bool add_prefix_space_ = false;
};

}  // namespace kvscope
