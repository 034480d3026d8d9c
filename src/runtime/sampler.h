// Next-token choice from a row of logits: greedy (temperature 0) or sampled with
// temperature, top-k and top-p from a seeded generator. Scratch is sized once at setup.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace kvscope {

struct SamplingParams {
    float temperature = 0.0f;  // 0: greedy
    int top_k = 0;             // 0: no limit
    float top_p = 1.0f;        // 1: no nucleus cut
    uint64_t seed = 0;
};

class Sampler {
public:
    Sampler(int n_vocab, const SamplingParams& p);
    int32_t sample(const float* logits, std::mt19937_64& rng);
    static int32_t argmax(const float* logits, int n);
    const SamplingParams& params() const { return p_; }

private:
    int n_vocab_;
    SamplingParams p_;
    std::vector<int32_t> idx_;
    std::vector<float> prob_;
};

}  // namespace kvscope
