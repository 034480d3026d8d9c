#include "analysis/stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvscope {

double percentile(std::vector<double> v, double p) {
    if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
    std::sort(v.begin(), v.end());
    double k = (double(v.size()) - 1.0) * p / 100.0;
    size_t f = size_t(std::floor(k)), c = size_t(std::ceil(k));
    if (f == c) return v[f];
    return v[f] + (v[c] - v[f]) * (k - double(f));
}

Summary summarize(const std::vector<double>& v) {
    Summary s;
    s.n = int(v.size());
    if (v.empty()) {
        double nan = std::numeric_limits<double>::quiet_NaN();
        s.mean = s.median = s.p95 = s.min = s.max = s.stddev = nan;
        return s;
    }
    double sum = 0;
    for (double x : v) sum += x;
    s.mean = sum / double(v.size());
    double q = 0;
    for (double x : v) q += (x - s.mean) * (x - s.mean);
    s.stddev = v.size() > 1 ? std::sqrt(q / double(v.size() - 1)) : 0.0;
    s.median = percentile(v, 50);
    s.p95 = percentile(v, 95);
    s.min = *std::min_element(v.begin(), v.end());
    s.max = *std::max_element(v.begin(), v.end());
    return s;
}

}  // namespace kvscope
