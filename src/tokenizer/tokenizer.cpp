#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "tokenizer/gpt2_bpe.h"
#include "tokenizer/hf_bpe.h"
#include "tokenizer/llama2c_tok.h"
#include "tokenizer/sentencepiece_tok.h"

namespace kvscope {

namespace fs = std::filesystem;

std::vector<int32_t> Tokenizer::encode_prompt(std::string_view utf8) const {
    std::vector<int32_t> ids;
    if (adds_bos() && bos_id() >= 0) ids.push_back(bos_id());
    std::vector<int32_t> rest = encode(utf8);
    ids.insert(ids.end(), rest.begin(), rest.end());
    return ids;
}

namespace {

std::unique_ptr<Tokenizer> tokenizer_json(const fs::path& p) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_file(p));
    } catch (const nlohmann::json::exception& e) {
        fail("{}: malformed JSON ({})", p.string(), e.what());
    }
    if (HfBpeTokenizer::handles(j)) return std::make_unique<HfBpeTokenizer>(HfBpeTokenizer::load(p));
    return std::make_unique<Gpt2Tokenizer>(Gpt2Tokenizer::from_tokenizer_json(p));
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& file, int n_vocab) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) fail("--tokenizer {}: no such file", file.string());
    const std::string name = file.filename().string();
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0) return tokenizer_json(file);
    if (name.size() > 6 && name.compare(name.size() - 6, 6, ".model") == 0) return SentencePieceTokenizer::load(file);
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".bin") == 0)
        return std::make_unique<Llama2cTokenizer>(Llama2cTokenizer::load(file, n_vocab));
    fail("--tokenizer {}: unknown format (expected tokenizer.model, tokenizer.json or a llama2.c tokenizer .bin)",
         file.string());
}

std::unique_ptr<Tokenizer> find_tokenizer(const fs::path& dir, int n_vocab) {
    std::error_code ec;
    // SentencePiece's own model first where a folder has both (Llama 2, Mistral): the library is the reference.
    if (fs::is_regular_file(dir / "tokenizer.model", ec)) return SentencePieceTokenizer::load(dir / "tokenizer.model");
    if (fs::is_regular_file(dir / "tokenizer.json", ec)) return tokenizer_json(dir / "tokenizer.json");
    if (fs::is_regular_file(dir / "vocab.json", ec) && fs::is_regular_file(dir / "merges.txt", ec))
        return std::make_unique<Gpt2Tokenizer>(Gpt2Tokenizer::from_files(dir / "vocab.json", dir / "merges.txt"));
    // llama2.c names its tokenizers tokenizer.bin (Llama 2's 32000) or tok<vocab>.bin.
    for (const fs::path& p : {dir / ("tok" + std::to_string(n_vocab) + ".bin"), dir / "tokenizer.bin"})
        if (fs::is_regular_file(p, ec)) return std::make_unique<Llama2cTokenizer>(Llama2cTokenizer::load(p, n_vocab));
    return nullptr;
}

}  // namespace kvscope
