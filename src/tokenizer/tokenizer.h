// What the engine needs of a tokenizer, whatever its format: GPT-2 byte-level BPE
// (gpt2_bpe.h), llama2.c's tokenizer.bin (llama2c_tok.h), SentencePiece's tokenizer.model
// (sentencepiece_tok.h) and Hugging Face tokenizer.json with byte fallback (hf_bpe.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvscope {

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    // Text to ids, without BOS or EOS.
    virtual std::vector<int32_t> encode(std::string_view utf8) const = 0;
    // Ids to text, as the format's decoder does (BOS/EOS and other control tokens dropped).
    virtual std::string decode(std::span<const int32_t> ids) const = 0;
    // The bytes of one token (may be a partial UTF-8 sequence).
    virtual std::string decode_token(int32_t id) const = 0;
    virtual int32_t vocab_size() const = 0;
    virtual int32_t bos_id() const { return -1; }
    virtual int32_t eos_id() const = 0;
    // True where the format starts every prompt with BOS (SentencePiece, llama2.c).
    virtual bool adds_bos() const { return false; }
    virtual std::string kind() const = 0;  // e.g. "GPT-2 byte-level BPE"

    // A prompt as a generation starts from it: BOS first where the format adds one.
    std::vector<int32_t> encode_prompt(std::string_view utf8) const;
};

// The tokenizer in a model folder, by the files it holds, in this order: tokenizer.model
// (SentencePiece), tokenizer.json, vocab.json + merges.txt, tokenizer.bin or tok<n_vocab>.bin (llama2.c).
// Null when there is none. `n_vocab` picks the llama2.c file and sizes its vocabulary.
std::unique_ptr<Tokenizer> find_tokenizer(const std::filesystem::path& dir, int n_vocab);

// A tokenizer file given explicitly (--tokenizer): its format from its name and contents.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& file, int n_vocab);

}  // namespace kvscope
