// llama2.c checkpoints (.bin): the legacy format (7 int32 header: dim, hidden_dim, n_layers,
// n_heads, n_kv_heads, vocab_size (negative: the classifier is not shared), seq_len; then
// fp32 arrays in run.c's order) and export.py's versioned "ak42" format (256-byte header;
// version 1: fp32, version 2: q8_0 groups, dequantized here at load). The arrays become
// tensors with Hugging Face's Llama names, so one weights class reads both formats.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "model/checkpoint.h"
#include "model/config.h"

namespace kvscope {

// Sniffs a file: true when its first bytes are a plausible llama2.c header.
bool looks_like_llama2c(const std::filesystem::path& path);

// Parses and validates `size` bytes of a llama2.c file (sizes against the header, exactly);
// the tensors point into `data`, which must outlive the checkpoint. Throws naming `where`.
Checkpoint llama2c_checkpoint(const uint8_t* data, uint64_t size, const std::string& where, ModelConfig* cfg);

// Maps the file and parses it; the checkpoint keeps the mapping.
Checkpoint open_llama2c(const std::filesystem::path& path, ModelConfig* cfg);

}  // namespace kvscope
