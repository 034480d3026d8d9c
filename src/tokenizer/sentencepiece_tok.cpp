#include "tokenizer/sentencepiece_tok.h"

#include <sentencepiece_processor.h>

#include "core/error.h"

namespace kvscope {

SentencePieceTokenizer::SentencePieceTokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::filesystem::path& path) {
    std::unique_ptr<SentencePieceTokenizer> t(new SentencePieceTokenizer());
    const auto st = t->sp_->Load(path.string());
    if (!st.ok()) fail("{}: not a SentencePiece model ({})", path.string(), st.ToString());
    return t;
}

std::vector<int32_t> SentencePieceTokenizer::encode(std::string_view text) const {
    std::vector<int> ids;
    const auto st = sp_->Encode(std::string(text), &ids);
    if (!st.ok()) fail("SentencePiece could not encode the text ({})", st.ToString());
    return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string SentencePieceTokenizer::decode(std::span<const int32_t> ids) const {
    std::vector<int> v;
    for (int32_t id : ids) {
        if (id < 0 || id >= vocab_size()) fail("token id {} is outside the vocabulary (0..{})", id, vocab_size() - 1);
        v.push_back(id);
    }
    std::string out;
    const auto st = sp_->Decode(v, &out);
    if (!st.ok()) fail("SentencePiece could not decode ({})", st.ToString());
    return out;
}

std::string SentencePieceTokenizer::decode_token(int32_t id) const {
    const int32_t one[1] = {id};
    return decode(one);
}

int32_t SentencePieceTokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int32_t SentencePieceTokenizer::bos_id() const { return sp_->bos_id(); }
int32_t SentencePieceTokenizer::eos_id() const { return sp_->eos_id(); }

}  // namespace kvscope
