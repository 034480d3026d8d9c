// The tensors of one checkpoint by name, whatever files hold them: a safetensors file, the
// shards a model.safetensors.index.json names, or a llama2.c .bin whose flat arrays the
// reader names as Hugging Face would. Weights classes read tensors through this one table.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/aligned.h"
#include "core/mapped_file.h"
#include "model/safetensors.h"

namespace kvscope {

class Checkpoint {
public:
    // A Hugging Face model directory: model.safetensors, else the shards of
    // model.safetensors.index.json (every shard it names must exist and hold its tensors).
    static Checkpoint open_hf_dir(const std::filesystem::path& dir);
    static Checkpoint from_safetensors(SafetensorsFile f);

    Checkpoint() = default;
    Checkpoint(Checkpoint&&) noexcept = default;
    Checkpoint& operator=(Checkpoint&&) noexcept = default;

    const StTensor* find(const std::string& name) const;
    // Drops the file pages of a tensor once it was converted into another buffer.
    void release(const StTensor& t) const;
    // The file or folder named in errors about the checkpoint as a whole.
    const std::string& path() const { return path_; }
    // The file that holds tensor `name` (for errors about one tensor).
    std::string file_of(const std::string& name) const;
    // String entries of the (first) safetensors header's __metadata__.
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    // For readers of other formats (llama2.c): the file mapping the tensors point into, tensors
    // inside it or inside a buffer the checkpoint adopts.
    void set_path(std::string p) { path_ = std::move(p); }
    void adopt(std::unique_ptr<MappedFile> f);
    const uint8_t* adopt(AlignedArray<uint8_t> buf);
    void add(StTensor t, bool in_mapping);

private:
    struct Entry {
        StTensor t;
        int file = -1;  // index into files_, or -1: in raw_ (in_mapping) / an owned buffer
        bool in_mapping = false;
    };
    void add_file(SafetensorsFile f);

    std::string path_;
    std::vector<SafetensorsFile> files_;
    std::unique_ptr<MappedFile> raw_;
    std::vector<AlignedArray<uint8_t>> owned_;
    std::map<std::string, Entry> tensors_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace kvscope
