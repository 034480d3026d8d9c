// SentencePiece's tokenizer.model (Llama 1/2, Mistral, TinyLlama), through Debian's
// libsentencepiece: encoding and decoding are the library's own.
#pragma once

#include <memory>

#include "tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace kvscope {

class SentencePieceTokenizer : public Tokenizer {
public:
    // Throws naming the file when the library cannot load it.
    static std::unique_ptr<SentencePieceTokenizer> load(const std::filesystem::path& path);
    ~SentencePieceTokenizer() override;

    std::vector<int32_t> encode(std::string_view utf8) const override;
    std::string decode(std::span<const int32_t> ids) const override;
    std::string decode_token(int32_t id) const override;
    int32_t vocab_size() const override;
    int32_t bos_id() const override;
    int32_t eos_id() const override;
    bool adds_bos() const override { return bos_id() >= 0; }
    std::string kind() const override { return "SentencePiece (tokenizer.model)"; }

private:
    SentencePieceTokenizer();
    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

}  // namespace kvscope
