// llama2.c's tokenizer.bin (tok512.bin for stories260K): an int32 max_token_length, then per
// token a float score, an int32 length and the token's bytes. Encoding is run.c's: a dummy
// " " prefix, each UTF-8 character looked up (bytes <0x00>..<0xFF> at ids 3..258 when it is
// absent), then the best-scoring adjacent pair merged until none is in the vocabulary.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvscope {

class Llama2cTokenizer : public Tokenizer {
public:
    // Reads exactly n_vocab tokens; throws naming the file when it holds more or fewer.
    static Llama2cTokenizer load(const std::filesystem::path& path, int n_vocab);
    static Llama2cTokenizer parse(const uint8_t* data, size_t size, int n_vocab, const std::string& where);

    std::vector<int32_t> encode(std::string_view utf8) const override;
    // run.c's decode: a piece's leading space dropped after BOS, <0xXX> pieces as their byte,
    // single bytes that are neither printable nor space skipped (its safe_printf).
    std::string decode(std::span<const int32_t> ids) const override;
    std::string decode_token(int32_t id) const override;
    int32_t vocab_size() const override { return int32_t(pieces_.size()); }
    int32_t bos_id() const override { return 1; }
    int32_t eos_id() const override { return 2; }
    bool adds_bos() const override { return true; }
    std::string kind() const override { return "llama2.c BPE (tokenizer.bin)"; }

private:
    std::string piece_text(int32_t prev, int32_t id) const;  // run.c decode(prev, id)

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::unordered_map<std::string, int32_t> ids_;
};

}  // namespace kvscope
