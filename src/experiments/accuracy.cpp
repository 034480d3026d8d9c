#include "experiments/accuracy.h"

#include <algorithm>
#include <cmath>

namespace kvscope::exp {

namespace {

// log-softmax of one row, in double.
std::vector<double> log_softmax(const float* x, int n) {
    double mx = x[0];
    for (int i = 1; i < n; i++) mx = std::max(mx, double(x[i]));
    double s = 0;
    for (int i = 0; i < n; i++) s += std::exp(double(x[i]) - mx);
    const double lse = mx + std::log(s);
    std::vector<double> o(static_cast<size_t>(n));
    for (int i = 0; i < n; i++) o[size_t(i)] = double(x[i]) - lse;
    return o;
}

}  // namespace

double Accuracy::ppl_ref() const { return nll_rows ? std::exp(nll_ref / double(nll_rows)) : 0; }
double Accuracy::ppl() const { return nll_rows ? std::exp(nll / double(nll_rows)) : 0; }

void Accuracy::add(const Accuracy& o) {
    rows += o.rows;
    max_abs = std::max(max_abs, o.max_abs);
    kl_sum += o.kl_sum;
    kl_max = std::max(kl_max, o.kl_max);
    top1_agree += o.top1_agree;
    nll_ref += o.nll_ref;
    nll += o.nll;
    nll_rows += o.nll_rows;
}

Accuracy compare_logits(const std::vector<float>& ref, const std::vector<float>& got, int V,
                        const std::vector<int32_t>& next) {
    Accuracy a;
    const size_t rows = std::min(ref.size(), got.size()) / size_t(V);
    for (size_t r = 0; r < rows; r++) {
        const float* x = ref.data() + r * size_t(V);
        const float* y = got.data() + r * size_t(V);
        const auto lp = log_softmax(x, V), lq = log_softmax(y, V);
        double kl = 0;
        int ax = 0, ay = 0;
        for (int i = 0; i < V; i++) {
            kl += std::exp(lp[size_t(i)]) * (lp[size_t(i)] - lq[size_t(i)]);
            a.max_abs = std::max(a.max_abs, double(std::abs(x[i] - y[i])));
            if (x[i] > x[ax]) ax = i;
            if (y[i] > y[ay]) ay = i;
        }
        kl = std::max(0.0, kl);
        a.kl_sum += kl;
        a.kl_max = std::max(a.kl_max, kl);
        a.top1_agree += ax == ay;
        a.rows++;
        if (r < next.size() && next[r] >= 0 && next[r] < V) {
            a.nll_ref -= lp[size_t(next[r])];
            a.nll -= lq[size_t(next[r])];
            a.nll_rows++;
        }
    }
    return a;
}

}  // namespace kvscope::exp
