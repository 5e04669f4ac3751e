// libFuzzer target: the safetensors reader and the model loaders on
// arbitrary bytes. Every input must either load or throw FormatError /
// InvalidArgument: no crash, no leak, no undefined behaviour (built with
// -fsanitize=fuzzer,address,undefined,nullability; tests/fuzz/run_fuzz.sh).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <repshift/io/safetensors.hpp>
#include <repshift/models/vit.hpp>

namespace rs = repshift;

namespace {

// A ViT small enough that a fuzzed file can hold all of its tensors.
rs::ViTConfig fuzz_vit() { return {4, 2, 1, 4, 1, 2, 8, 2, 1e-6f}; }

// Two readings of an input. One starting with '{' is header text, a NUL,
// then the data section: the 8-byte length is written to match, so
// mutations reach the header's values (shapes, offsets, dtypes, names)
// instead of mostly breaking the length. Any other input is the file.
std::vector<unsigned char> file_of(const std::uint8_t* data, std::size_t size) {
  if (size == 0 || data[0] != '{') return {data, data + size};
  const std::uint8_t* nul = std::find(data, data + size, std::uint8_t(0));
  const auto header_len = std::uint64_t(nul - data);
  std::vector<unsigned char> file;
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<unsigned char>(header_len >> (8 * i)));
  file.insert(file.end(), data, nul);
  if (nul != data + size) file.insert(file.end(), nul + 1, data + size);
  return file;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto file = rs::io::SafeTensorsFile::from_bytes(file_of(data, size), "fuzz");
    for (const auto& name : file.names()) {
      const auto& info = file.info(name);
      try {
        (void)file.load_f32(name, info.shape);
      } catch (const rs::FormatError&) {
      }
    }
    (void)rs::ViTWeights::load(fuzz_vit(), file);
  } catch (const rs::FormatError&) {
  } catch (const rs::InvalidArgument&) {
  }
  return 0;
}
