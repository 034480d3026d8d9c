// Accuracy of one configuration's next-token distributions against a reference on the same
// tokens (teacher forcing): KL divergence, top-1 agreement, the largest logit error, and the
// negative log-likelihood of the tokens that actually follow (for perplexity).
#pragma once

#include <cstdint>
#include <vector>

namespace kvscope::exp {

struct Accuracy {
    int64_t rows = 0;
    double max_abs = 0;            // largest |logit difference|
    double kl_sum = 0, kl_max = 0; // KL(reference || configuration) per row, nats
    int64_t top1_agree = 0;        // rows whose argmax agrees
    double nll_ref = 0, nll = 0;   // summed -log p(next token), reference and configuration
    int64_t nll_rows = 0;

    double kl_mean() const { return rows ? kl_sum / double(rows) : 0; }
    double top1() const { return rows ? double(top1_agree) / double(rows) : 1; }
    double ppl_ref() const;
    double ppl() const;
    void add(const Accuracy& o);  // pools rows of several streams
};

// ref, got: rows of n_vocab logits. next[i], when given, is the token that followed row i.
Accuracy compare_logits(const std::vector<float>& ref, const std::vector<float>& got, int n_vocab,
                        const std::vector<int32_t>& next = {});

}  // namespace kvscope::exp
