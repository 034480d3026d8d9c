// Reading memory with no arithmetic on it: the floor under a memory-bound step. `kvscope
// bench` reads a decode step's bytes (every weight, then the KV a step at some depth reads)
// this way, in the forward pass's order, to show what this machine charges for those bytes
// alone (docs/PERFORMANCE.md, "Decode at depth and the read floor").
#pragma once

#include <cstdint>

namespace kvscope::ops {

// Wrapping sum of the little-endian 32-bit words of [p, p + bytes), plus each of the last
// bytes % 4 bytes as a value. Read as two streams (the two halves side by side, the count
// `kvscope hw` finds fastest on the Intel VM) with AVX2 integer adds: no byte pattern (NaN,
// subnormal) can slow them.
uint32_t read_words(const void* p, int64_t bytes);

// Thread t of nt's share of [p, p + bytes), cut at 64-byte offsets: the shares' sums add
// up (wrapping) to read_words(p, bytes).
uint32_t read_share(const void* p, int64_t bytes, int t, int nt);

}  // namespace kvscope::ops
