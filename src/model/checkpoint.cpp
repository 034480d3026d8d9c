#include "model/checkpoint.h"

#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"

namespace kvscope {

namespace fs = std::filesystem;

Checkpoint Checkpoint::from_safetensors(SafetensorsFile f) {
    Checkpoint c;
    c.path_ = f.path();
    c.metadata_ = f.metadata();
    c.add_file(std::move(f));
    return c;
}

Checkpoint Checkpoint::open_hf_dir(const fs::path& dir) {
    std::error_code ec;
    const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
    if (fs::exists(single, ec)) return from_safetensors(SafetensorsFile::open(single));
    if (!fs::exists(index, ec)) {
        if (fs::exists(dir / "pytorch_model.bin", ec))
            fail("{}: missing; this directory only has pytorch_model.bin, which kvscope does not read "
                 "(save it with safe_serialization=True)", single.string());
        fail("{}: missing (expected the model's weights in safetensors format, or model.safetensors.index.json)",
             single.string());
    }
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(read_file(index));
    } catch (const nlohmann::json::exception& e) {
        fail("{}: malformed JSON ({})", index.string(), e.what());
    }
    auto wm = j.is_object() ? j.find("weight_map") : j.end();
    if (!j.is_object() || wm == j.end() || !wm->is_object() || wm->empty())
        fail("{}: expected an object with a non-empty \"weight_map\" {{tensor: shard file}}", index.string());
    std::set<std::string> shards;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        if (!it->is_string()) fail("{}: weight_map[\"{}\"] must be a file name", index.string(), it.key());
        const std::string shard = it->get<std::string>();
        if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
            fail("{}: weight_map[\"{}\"] = \"{}\" is not a file name in this folder", index.string(), it.key(), shard);
        shards.insert(shard);
    }
    Checkpoint c;
    c.path_ = dir.string();
    for (const std::string& s : shards) {
        const fs::path p = dir / s;
        if (!fs::exists(p, ec)) fail("{}: missing shard named in {}", p.string(), index.string());
        SafetensorsFile f = SafetensorsFile::open(p);
        if (c.files_.empty()) c.metadata_ = f.metadata();
        c.add_file(std::move(f));
    }
    for (auto it = wm->begin(); it != wm->end(); ++it) {
        auto e = c.tensors_.find(it.key());
        if (e == c.tensors_.end() || c.files_[size_t(e->second.file)].path() != (dir / it->get<std::string>()).string())
            fail("{}: tensor \"{}\" is not in {}, where {} says it is", (dir / it->get<std::string>()).string(), it.key(),
                 it->get<std::string>(), index.filename().string());
    }
    return c;
}

void Checkpoint::add_file(SafetensorsFile f) {
    const int idx = int(files_.size());
    for (const auto& [name, t] : f.tensors()) {
        if (tensors_.count(name)) fail("{}: tensor \"{}\" is also in {}", f.path(), name, file_of(name));
        tensors_.emplace(name, Entry{t, idx, true});
    }
    files_.push_back(std::move(f));
}

void Checkpoint::adopt(std::unique_ptr<MappedFile> f) { raw_ = std::move(f); }

const uint8_t* Checkpoint::adopt(AlignedArray<uint8_t> buf) {
    owned_.push_back(std::move(buf));
    return owned_.back().get();
}

void Checkpoint::add(StTensor t, bool in_mapping) {
    std::string name = t.name;
    tensors_[name] = Entry{std::move(t), -1, in_mapping};
}

const StTensor* Checkpoint::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second.t;
}

void Checkpoint::release(const StTensor& t) const {
    auto it = tensors_.find(t.name);
    if (it == tensors_.end() || !it->second.in_mapping) return;  // an owned buffer stays
    if (it->second.file >= 0) files_[size_t(it->second.file)].release(t);
    else if (raw_) raw_->release(t.data, t.nbytes);
}

std::string Checkpoint::file_of(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end() || it->second.file < 0) return path_;
    return files_[size_t(it->second.file)].path();
}

}  // namespace kvscope
