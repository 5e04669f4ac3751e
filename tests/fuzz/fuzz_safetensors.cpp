// libFuzzer target: the safetensors reader and the model loaders on
// arbitrary bytes. Every input must either load or throw FormatError /
// InvalidArgument: no crash, no leak, no undefined behaviour (built with
// -fsanitize=fuzzer,address,undefined; tests/fuzz/run_fuzz.sh).

#include <cstddef>
#include <cstdint>
#include <vector>

#include <repshift/io/safetensors.hpp>
#include <repshift/models/vit.hpp>

namespace rs = repshift;

namespace {

// A ViT small enough that a fuzzed file can hold all of its tensors.
rs::ViTConfig fuzz_vit() { return {4, 2, 1, 4, 1, 2, 8, 2, 1e-6f}; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto file = rs::io::SafeTensorsFile::from_bytes(std::vector<unsigned char>(data, data + size), "fuzz");
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
