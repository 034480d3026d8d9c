// Where kvscope finds and keeps its data, independent of the source tree: one folder per
// user (synthetic models, the hardware probe's cache, GPT-2's vocabulary as setup installs
// it), and the files an installed kvscope ships beside its binary.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace kvscope {

// $KVSCOPE_CACHE, else $XDG_CACHE_HOME/kvscope (when absolute), else $HOME/.cache/kvscope.
std::filesystem::path data_dir();

// The folder holding the running kvscope binary (from /proc/self/exe).
std::filesystem::path executable_dir();

// Folders that hold files shipped with kvscope (tools/, gpt2/): <exe>/../share/kvscope after
// `cmake --install`, and <exe>/.. for a build folder inside the checkout.
std::vector<std::filesystem::path> shipped_dirs();

// The first `shipped_dirs() / rel` that exists, or an empty path.
std::filesystem::path find_shipped(const std::filesystem::path& rel);

// `p` made absolute against the current directory (for programs started in another folder).
std::filesystem::path absolute_path(const std::filesystem::path& p);

// The program `name` as found on $PATH (or `name` itself when it holds a '/'), or empty.
std::filesystem::path find_on_path(const std::string& name);

}  // namespace kvscope
