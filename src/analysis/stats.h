// Summary statistics of repeated measurements: the definitions every row and report uses.
#pragma once

#include <vector>

namespace kvscope {

struct Summary {
    int n = 0;
    double mean = 0, median = 0, p95 = 0, min = 0, max = 0, stddev = 0;  // stddev: sample (n-1)
};

// Percentile with linear interpolation between closest ranks (numpy's default, the seeds' too).
double percentile(std::vector<double> v, double p);
Summary summarize(const std::vector<double>& v);

}  // namespace kvscope
