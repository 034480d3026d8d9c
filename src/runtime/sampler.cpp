#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

namespace kvscope {

Sampler::Sampler(int n_vocab, const SamplingParams& p) : n_vocab_(n_vocab), p_(p) {
    idx_.resize(size_t(n_vocab));
    prob_.resize(size_t(n_vocab));
}

int32_t Sampler::argmax(const float* logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int32_t Sampler::sample(const float* logits, std::mt19937_64& rng) {
    if (p_.temperature <= 0.0f) return argmax(logits, n_vocab_);
    // Candidates sorted by logit (ties by id, so the order never depends on the sort).
    int k = p_.top_k > 0 ? std::min(p_.top_k, n_vocab_) : n_vocab_;
    for (int i = 0; i < n_vocab_; i++) idx_[size_t(i)] = i;
    auto cmp = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(), cmp);
    const float mx = logits[idx_[0]];
    double sum = 0;
    for (int i = 0; i < k; i++) {
        prob_[size_t(i)] = std::exp((logits[idx_[size_t(i)]] - mx) / p_.temperature);
        sum += prob_[size_t(i)];
    }
    // Nucleus: the smallest prefix whose probability reaches top_p.
    int n = k;
    if (p_.top_p < 1.0f) {
        double acc = 0;
        for (int i = 0; i < k; i++) {
            acc += prob_[size_t(i)] / sum;
            if (acc >= p_.top_p) { n = i + 1; break; }
        }
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += prob_[size_t(i)];
    double r = std::uniform_real_distribution<double>(0.0, total)(rng);
    for (int i = 0; i < n; i++) {
        r -= prob_[size_t(i)];
        if (r < 0) return idx_[size_t(i)];
    }
    return idx_[size_t(n - 1)];
}

}  // namespace kvscope
