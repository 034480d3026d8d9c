#include "runtime/prompts.h"

#include <charconv>

#include "core/error.h"

namespace kvscope {

std::vector<int32_t> prompt_of_length(const Tokenizer* tok, int n_vocab, int len) {
    std::vector<int32_t> ids;
    if (tok && tok->vocab_size() <= n_vocab) {
        std::string text;
        while (int(ids.size()) < len) {
            text += "The quick brown fox jumps over the lazy dog. ";
            ids = tok->encode_prompt(text);
        }
        ids.resize(size_t(len));
        return ids;
    }
    uint64_t s = 12345;
    for (int i = 0; i < len; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids.push_back(int32_t((s >> 33) % uint64_t(n_vocab)));
    }
    return ids;
}

std::vector<int32_t> parse_ids(const std::string& s, int n_vocab, const std::string& flag) {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i <= s.size()) {
        size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        std::string part = s.substr(i, j - i);
        while (!part.empty() && part.front() == ' ') part.erase(part.begin());
        while (!part.empty() && part.back() == ' ') part.pop_back();
        long long v = 0;
        auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
        if (part.empty() || ec != std::errc() || p != part.data() + part.size())
            fail("{} \"{}\": expected comma-separated token ids like 1,2,3", flag, s);
        if (v < 0 || v >= n_vocab) fail("{}: token id {} is outside the vocabulary (0..{})", flag, v, n_vocab - 1);
        ids.push_back(int32_t(v));
        i = j + 1;
    }
    return ids;
}

}  // namespace kvscope
