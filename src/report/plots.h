// Plots of the result CSVs, drawn by gnuplot. For each plot the report writes, beside the
// images in DIR/plots/, the data it extracted from the CSV (NAME.dat) and the gnuplot script
// (NAME.gp) that draws it as NAME.png and NAME.svg, so a reader can restyle a figure with
// `cd DIR/plots && gnuplot NAME.gp`. A plot is redrawn when its script or data differ from the
// ones on disk (a changed CSV changes the data) or an image is missing; otherwise it is left
// alone. Images appear whole or not at all: gnuplot draws in a temporary directory.
#pragma once

#include <string>
#include <vector>

#include "report/results.h"

namespace kvscope::report {

struct PlotInfo {
    PlotInfo(std::string n, std::string e, std::string h, std::string c)
        : name(std::move(n)), experiment(std::move(e)), heading(std::move(h)), caption(std::move(c)) {}
    std::string name;        // file stem in plots/: "cache_ms_per_token"
    std::string experiment;  // the section it belongs to
    std::string heading;     // what it shows, one line ("Time per generated token, KV cache on vs off")
    std::string caption;     // how to read it
    bool redrawn = false;    // false: the images on disk were already up to date
};

struct Skipped {
    std::string experiment;
    std::string plots;   // "cache_ms_per_token, cache_speedup"
    std::string reason;  // "cache.csv is absent"
};

struct PlotSet {
    std::vector<PlotInfo> plots;
    std::vector<Skipped> skipped;
};

// Draws every plot the present CSVs support into res.dir / "plots". Fails (one line) when
// gnuplot is not installed or rejects a script.
PlotSet render_plots(const Results& res);

// The plots each experiment draws when its CSV is present, in report order.
const std::vector<std::pair<std::string, std::vector<std::string>>>& plot_names();

}  // namespace kvscope::report
