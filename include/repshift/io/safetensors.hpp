#pragma once
// Safetensors reader and writer (https://github.com/huggingface/safetensors
// format): 8-byte little-endian header length, a JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {...}}
// and the tensor bytes. Every inconsistency (truncated file, bad JSON, a
// name given twice, offsets outside the data, a byte count that does not
// match shape x dtype, tensors that overlap or leave a gap, bytes past the
// last tensor, a __metadata__ that is not a map of strings, a header over
// 100 MB) throws FormatError naming the file and the tensor: the reference
// implementation's rules, so a file it refuses is refused here too.
// F32, F16 and BF16 tensors load as float.
//
// The file is memory-mapped read-only, not copied: opening a model costs
// its header, and each load reads only its tensor's pages. from_bytes()
// reads a buffer the same way (tests, fuzzing, weights held in memory).

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "../core/dtype.hpp"
#include "../core/error.hpp"

namespace repshift {
namespace io {

// Elements of a tensor of `shape` (the reader checks it for overflow first).
inline std::int64_t shape_numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

struct TensorInfo {
  std::string dtype;                // "F32", "F16", "BF16", ... as in the file
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte offsets into the data section

  std::int64_t numel() const { return shape_numel(shape); }
};

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) fmt::format_to(std::back_inserter(s), "{}{}", i ? ", " : "", shape[i]);
  return s + "]";
}

// Bytes per element of a safetensors dtype, 0 for an unknown one.
inline std::int64_t dtype_bytes(const std::string& dtype) {
  static const std::map<std::string, std::int64_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"F8_E8M0", 1},
      {"C64", 8}, {"I64", 8}, {"I32", 4}, {"I16", 2},  {"I8", 1},      {"U64", 8},     {"U32", 4},
      {"U16", 2}, {"U8", 1},  {"BOOL", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// The bytes of a safetensors file: a read-only memory map of the file, or
// a buffer it owns.
class FileBytes {
 public:
  static std::shared_ptr<const FileBytes> map(const std::string& path) {
    auto bytes = std::shared_ptr<FileBytes>(new FileBytes());
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw FormatError(fmt::format("safetensors: cannot open '{}': {}", path, std::strerror(errno)));
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      throw FormatError(fmt::format("safetensors: '{}' is not a regular file", path));
    }
    bytes->size_ = std::size_t(st.st_size);
    if (bytes->size_ > 0) {
      void* p = ::mmap(nullptr, bytes->size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        throw FormatError(fmt::format("safetensors: cannot map '{}' ({} bytes)", path, bytes->size_));
      }
      bytes->map_ = p;
      bytes->data_ = static_cast<const unsigned char*>(p);
    }
    ::close(fd);  // the mapping stays valid
    return bytes;
  }
  static std::shared_ptr<const FileBytes> own(std::vector<unsigned char> buffer) {
    auto bytes = std::shared_ptr<FileBytes>(new FileBytes());
    bytes->owned_ = std::move(buffer);
    bytes->data_ = bytes->owned_.data();
    bytes->size_ = bytes->owned_.size();
    return bytes;
  }
  ~FileBytes() {
    if (map_) ::munmap(map_, size_);
  }
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  const unsigned char* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  FileBytes() = default;
  void* map_ = nullptr;
  std::vector<unsigned char> owned_;
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
};

class SafeTensorsFile {
 public:
  explicit SafeTensorsFile(std::string path) : SafeTensorsFile(path, FileBytes::map(path)) {}

  // A safetensors image already in memory; `name` stands for the path in messages.
  static SafeTensorsFile from_bytes(std::vector<unsigned char> bytes, std::string name = "<memory>") {
    return SafeTensorsFile(std::move(name), FileBytes::own(std::move(bytes)));
  }

  const std::string& path() const { return path_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const auto& kv : tensors_) n.push_back(kv.first);
    return n;
  }

  const TensorInfo& info(const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("no tensor named '{}'", name);
    return it->second;
  }

  // Refuses a tensor named prefix + i + "..." with i >= count (e.g.
  // "blocks.12.norm1.weight" against a 12-block config): a file of a deeper
  // model would otherwise load with its last layers silently dropped (named
  // as such before anything loads; require_read catches the rest).
  void require_no_layer_past(const std::string& prefix, std::int64_t count, const char* count_name) const {
    for (const auto& [name, info] : tensors_) {
      (void)info;
      if (name.compare(0, prefix.size(), prefix) != 0) continue;
      std::size_t end = prefix.size();
      std::int64_t index = 0;  // capped at count: no overflow on a long run of digits
      for (; end < name.size() && name[end] >= '0' && name[end] <= '9'; ++end) {
        index = std::min<std::int64_t>(index * 10 + (name[end] - '0'), count);
      }
      if (end == prefix.size() || end == name.size() || name[end] != '.' || index < count) continue;
      fail("tensor '{}' is layer {} of '{}', but {} = {}: the file holds a deeper model", name,
           name.substr(prefix.size(), end - prefix.size()), prefix, count_name, count);
    }
  }

  // After a model's load, given the names it read: refuses any other tensor
  // under one of `prefixes` (its layers', and the modules that decide its
  // output). A file of a model that computes more (LayerScale, QK norm, a
  // pre-norm, extra tokens, relative positions, a learned table where the
  // config computes one) would otherwise load and give other outputs.
  // Buffers that never matter (BatchNorm's num_batches_tracked, BERT's
  // position_ids) and names outside the prefixes (a pooler, a pretraining
  // head) are left alone.
  void require_read(const std::set<std::string>& read, std::initializer_list<const char*> prefixes) const {
    auto ends_with = [](const std::string& s, const char* tail) {
      const std::size_t n = std::strlen(tail);
      return s.size() >= n && s.compare(s.size() - n, n, tail) == 0;
    };
    for (const auto& [name, info] : tensors_) {
      (void)info;
      if (read.count(name) || ends_with(name, "num_batches_tracked") || ends_with(name, "position_ids")) continue;
      for (const char* prefix : prefixes) {
        if (name.compare(0, std::strlen(prefix), prefix) != 0) continue;
        fail("tensor '{}' (under '{}') is not read by this model: the file's model has a part this config does "
             "not compute (e.g. timm's LayerScale or QK norm, extra tokens, BERT's relative positions, a "
             "squeeze-excite block, a learned table where the config computes one), so loading it would give "
             "other outputs",
             name, prefix);
      }
    }
  }

  // Loads `name` as float, checking its shape against `expected`.
  std::vector<float> load_f32(const std::string& name, const std::vector<std::int64_t>& expected) const {
    const TensorInfo& t = info(name);
    if (t.shape != expected) {
      fail("tensor '{}' has shape {}, expected {}", name, shape_string(t.shape), shape_string(expected));
    }
    std::vector<float> out(std::size_t(t.numel()));
    const unsigned char* src = bytes_->data() + data_offset_ + t.begin;
    if (out.empty()) {
      // An empty tensor: nothing to copy (and memcpy must not see a null pointer).
    } else if (t.dtype == "F32") {
      std::memcpy(out.data(), src, out.size() * sizeof(float));
    } else if (t.dtype == "F16" || t.dtype == "BF16") {
      const bool is_half = t.dtype == "F16";
      for (std::size_t i = 0; i < out.size(); ++i) {
        const std::uint16_t b = std::uint16_t(src[2 * i] | (src[2 * i + 1] << 8));
        out[i] = is_half ? half::to_float(b) : bf16::to_float(b);
      }
    } else {
      fail("tensor '{}' has dtype {}; only F32, F16 and BF16 load as float", name, t.dtype);
    }
    return out;
  }

 private:
  SafeTensorsFile(std::string path, std::shared_ptr<const FileBytes> bytes)
      : path_(std::move(path)), bytes_(std::move(bytes)) {
    const std::uint64_t size = bytes_->size();
    const unsigned char* data = bytes_->data();
    if (size < 8) fail("file is {} bytes, shorter than the 8-byte header length", size);

    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
    if (header_len > size - 8) {
      fail("header length {} exceeds the {} bytes after it (truncated file?)", header_len, size - 8);
    }
    // The reference implementation's cap: a header is a few KB per
    // thousand tensors, and no file should make us parse 100 MB of JSON.
    constexpr std::uint64_t kMaxHeader = 100'000'000;
    if (header_len > kMaxHeader) fail("header length {} exceeds the format's limit of {} bytes", header_len, kMaxHeader);
    data_offset_ = 8 + header_len;
    const std::uint64_t data_size = size - data_offset_;

    nlohmann::json header;
    std::set<std::string> top_keys;  // a JSON object would keep only the last of two equal names
    const auto refuse_duplicates = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string() &&
          !top_keys.insert(parsed.get<std::string>()).second) {
        fail("tensor '{}' is named twice in the header", parsed.get<std::string>());
      }
      return true;
    };
    try {
      header = nlohmann::json::parse(data + 8, data + data_offset_, refuse_duplicates);
    } catch (const nlohmann::json::exception& e) {
      fail("header is not valid JSON: {}", e.what());
    }
    if (!header.is_object()) fail("header is not a JSON object");

    struct Span {
      std::uint64_t begin, end;
      const std::string* name;
      bool operator<(const Span& o) const { return begin != o.begin ? begin < o.begin : end < o.end; }
    };
    std::vector<Span> spans;
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        check_metadata(it.value());
        continue;
      }
      const auto entry = tensors_.emplace(it.key(), parse_entry(it.key(), it.value(), data_size)).first;
      spans.push_back({entry->second.begin, entry->second.end, &entry->first});
    }
    // The tensors tile the data section: in offset order, each begins where
    // the one before ends, the first at 0 and the last at the section's end.
    std::sort(spans.begin(), spans.end());
    std::uint64_t at = 0;
    const std::string* previous = nullptr;
    for (const Span& span : spans) {
      if (span.begin != at && !previous) {
        fail("tensor '{}' begins at byte {}: the first tensor must begin at byte 0", *span.name, span.begin);
      }
      if (span.begin != at) {
        fail("tensor '{}' begins at byte {}, but '{}' ends at byte {}: tensors must not {}", *span.name, span.begin,
             *previous, at, span.begin < at ? "overlap" : "leave gaps");
      }
      at = span.end;
      previous = span.name;
    }
    if (at != data_size) fail("the tensors end at byte {} of the {}-byte data section: the rest is unused", at, data_size);
  }

  void check_metadata(const nlohmann::json& m) const {
    if (!m.is_object()) fail("__metadata__ must be a map of strings, not a JSON {}", m.type_name());
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (!it.value().is_string()) fail("__metadata__['{}'] must be a string, not a JSON {}", it.key(), it.value().type_name());
    }
  }

  // A JSON value for a message, cut short: the file may hold anything there.
  static std::string excerpt(const nlohmann::json& v) {
    std::string text = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return text.size() <= 64 ? text : text.substr(0, 61) + "...";
  }

  // A literal format string, as detail::fail: names and paths from the file
  // go in as arguments.
  template <class... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> what, Args&&... args) const {
    throw FormatError(fmt::format("safetensors '{}': {}", path_, fmt::format(what, std::forward<Args>(args)...)));
  }

  TensorInfo parse_entry(const std::string& name, const nlohmann::json& e, std::uint64_t data_size) const {
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) {
      fail("tensor '{}': entry needs dtype, shape and data_offsets", name);
    }
    TensorInfo t;
    if (!e["dtype"].is_string()) fail("tensor '{}': dtype is not a string", name);
    t.dtype = e["dtype"].get<std::string>();
    const std::int64_t elem = dtype_bytes(t.dtype);
    if (elem == 0) fail("tensor '{}': unknown dtype {}", name, t.dtype);
    if (!e["shape"].is_array()) fail("tensor '{}': shape is not an array", name);
    std::int64_t count = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned() || d.get<std::uint64_t>() > std::uint64_t(std::numeric_limits<std::int64_t>::max())) {
        fail("tensor '{}': shape extent {} is not an integer in [0, 2^63)", name, excerpt(d));
      }
      t.shape.push_back(d.get<std::int64_t>());
      if (__builtin_mul_overflow(count, t.shape.back(), &count)) {
        fail("tensor '{}': shape {} overflows a 64-bit element count", name, excerpt(e["shape"]));
      }
    }
    const auto& off = e["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
      fail("tensor '{}': data_offsets {} must be two non-negative integers", name, excerpt(off));
    }
    t.begin = off[0].get<std::uint64_t>();
    t.end = off[1].get<std::uint64_t>();
    if (t.begin > t.end || t.end > data_size) {
      fail("tensor '{}': data_offsets [{}, {}] fall outside the {}-byte data section", name, t.begin, t.end, data_size);
    }
    std::int64_t bytes = 0;
    if (__builtin_mul_overflow(count, elem, &bytes)) {
      fail("tensor '{}': shape {} x {} overflows a 64-bit byte count", name, shape_string(t.shape), t.dtype);
    }
    if (std::uint64_t(bytes) != t.end - t.begin) {
      fail("tensor '{}': holds {} bytes but shape {} x {} needs {}", name, t.end - t.begin, shape_string(t.shape),
           t.dtype, bytes);
    }
    return t;
  }

  std::string path_;
  std::shared_ptr<const FileBytes> bytes_;
  std::uint64_t data_offset_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

struct NamedTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  const float* data;
};

// Writes float tensors as F32, in the given order.
inline void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    const std::int64_t n = shape_numel(t.shape);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + std::uint64_t(n) * 4}}};
    offset += std::uint64_t(n) * 4;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section, as the reference writer does
  std::ofstream out(path, std::ios::binary);
  if (!out) throw FormatError(fmt::format("safetensors: cannot write '{}'", path));
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((std::uint64_t(text.size()) >> (8 * i)) & 0xff);
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& t : tensors) {
    const std::int64_t n = shape_numel(t.shape);
    if (n > 0) out.write(reinterpret_cast<const char*>(t.data), std::streamsize(n * 4));
  }
  if (!out) throw FormatError(fmt::format("safetensors: write error on '{}'", path));
}

// A model's loads from one file, each name recorded, so that at the end
// require_all_read(prefixes) refuses what the model left unread there
// (SafeTensorsFile::require_read).
class TensorReader {
 public:
  explicit TensorReader(const SafeTensorsFile& file) : file_(file) {}
  std::vector<float> load_f32(const std::string& name, const std::vector<std::int64_t>& expected) {
    read_.insert(name);
    return file_.load_f32(name, expected);
  }
  void require_all_read(std::initializer_list<const char*> prefixes) const { file_.require_read(read_, prefixes); }

 private:
  const SafeTensorsFile& file_;
  std::set<std::string> read_;
};

// Weights types that list their tensors through for_each_tensor(fn), fn
// seeing (name, shape, std::vector<float>&), load and save with these.
// load_tensors refuses a file holding more under `prefixes` (TensorReader).
template <class Weights>
void load_tensors(Weights& w, const SafeTensorsFile& file, std::initializer_list<const char*> prefixes) {
  TensorReader reader(file);
  w.for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape, std::vector<float>& v) {
    v = reader.load_f32(name, shape);
  });
  reader.require_all_read(prefixes);
}

template <class Weights>
void save_tensors(const Weights& w, const std::string& path) {
  std::vector<NamedTensor> list;
  w.for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<float>& v) {
    list.push_back({name, shape, v.data()});
  });
  save_safetensors(path, list);
}

}  // namespace io
}  // namespace repshift
