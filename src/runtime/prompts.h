// Prompts of exact token lengths, built the way the seed scripts built theirs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvscope {

// "The quick brown fox jumps over the lazy dog. " repeated and cut to exactly `len` tokens.
// Without a tokenizer: a fixed pseudo-random id sequence (the model's synthetic-vocab case).
std::vector<int32_t> prompt_of_length(const Tokenizer* tok, int n_vocab, int len);
// "1,2,3" -> ids; throws naming `flag` on anything else or an id outside [0, n_vocab).
std::vector<int32_t> parse_ids(const std::string& s, int n_vocab, const std::string& flag);

}  // namespace kvscope
