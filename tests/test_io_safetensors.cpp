// The safetensors reader: dtypes, and a clear FormatError for every kind
// of malformed file.

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include <repshift/io/safetensors.hpp>

namespace rs = repshift;

namespace {

std::string write_file(const std::string& name, const std::string& header, const std::string& data,
                       long long header_len_override = -1) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream out(path, std::ios::binary);
  const unsigned long long len = header_len_override >= 0 ? (unsigned long long)header_len_override : header.size();
  for (int i = 0; i < 8; ++i) out.put(char((len >> (8 * i)) & 0xff));
  out << header << data;
  return path;
}

std::string bytes_of(std::initializer_list<unsigned> b) {
  std::string s;
  for (unsigned x : b) s.push_back(char(x));
  return s;
}

void expect_format_error(const std::string& path, const char* fragment) {
  try {
    rs::io::SafeTensorsFile f(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const rs::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "names the file: " << e.what();
  }
}

}  // namespace

TEST(Safetensors, ReadsF32F16Bf16) {
  // F32 1.5 = 0x3fc00000; F16 -2.0 = 0xc000; BF16 3.0 = 0x4040.
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"F16","shape":[1,1],"data_offsets":[4,6]},)"
      R"("c":{"dtype":"BF16","shape":[],"data_offsets":[6,8]},"__metadata__":{"format":"pt"}})";
  const auto path = write_file("ok.safetensors", header, bytes_of({0, 0, 0xc0, 0x3f, 0x00, 0xc0, 0x40, 0x40}));
  rs::io::SafeTensorsFile f(path);
  EXPECT_EQ(f.load_f32("a", {1}), std::vector<float>{1.5f});
  EXPECT_EQ(f.load_f32("b", {1, 1}), std::vector<float>{-2.0f});
  EXPECT_EQ(f.load_f32("c", {}), std::vector<float>{3.0f});
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_THROW(f.load_f32("a", {2}), rs::FormatError);  // wrong expected shape
  EXPECT_THROW(f.info("missing"), rs::FormatError);
}

TEST(Safetensors, MalformedFilesAreRefusedWithReasons) {
  expect_format_error(write_file("empty.safetensors", "", ""), "not valid JSON");
  {
    const auto p = ::testing::TempDir() + "tiny.safetensors";
    std::ofstream(p) << "abc";
    expect_format_error(p, "shorter than the 8-byte header length");
  }
  expect_format_error(write_file("trunc.safetensors", "{}", "", 100), "exceeds");
  {  // a 100 MB + 1 header (of spaces) is over the format's cap, before any parsing
    const std::string big(100'000'001, ' ');
    const auto p = write_file("huge_header.safetensors", big, "");
    expect_format_error(p, "header length 100000001 exceeds the format's limit of 100000000 bytes");
    std::remove(p.c_str());
  }
  expect_format_error(write_file("json.safetensors", "{\"a\":", ""), "not valid JSON");
  expect_format_error(write_file("fields.safetensors", R"({"a":{"dtype":"F32"}})", ""), "needs dtype, shape and data_offsets");
  expect_format_error(write_file("dtype.safetensors", R"({"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", "x"),
                      "unknown dtype F8");
  {
    // The reference writer's float8 (torch.float8_e4m3fn): the file opens,
    // and only loading that tensor as float is refused.
    const auto p = write_file("f8.safetensors", R"({"x":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab");
    const rs::io::SafeTensorsFile f(p);
    EXPECT_EQ(f.info("x").shape, (std::vector<std::int64_t>{2}));
    try {
      (void)f.load_f32("x", {2});
      ADD_FAILURE() << "an F8 tensor loaded as float";
    } catch (const rs::FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("has dtype F8_E4M3; only F32, F16 and BF16 load as float"), std::string::npos)
          << e.what();
    }
    std::remove(p.c_str());
  }
  expect_format_error(write_file("range.safetensors", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"),
                      "fall outside");
  expect_format_error(write_file("count.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                 "12345678"),
                      "needs 12");
  expect_format_error(write_file("overlap.safetensors",
                                 R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                                 "123456"),
                      "overlap");
  expect_format_error(write_file("neg.safetensors", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})", ""),
                      "tensor 'a': shape extent -1 is not an integer in [0, 2^63)");
  expect_format_error(write_file("offsets.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", ""),
                      "data_offsets [0,-4] must be two non-negative integers");
  // shape x dtype overflows 64 bits: refused as such (computing the byte
  // count for the message must not overflow either).
  expect_format_error(write_file("bytes.safetensors",
                                 R"({"t":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})", ""),
                      "shape [4611686018427387904] x F32 overflows a 64-bit byte count");
  // The reference implementation's layout rules: one entry per name, and
  // tensors that tile the data section from its first byte to its last.
  expect_format_error(write_file("twice.safetensors",
                                 R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                 "12345678"),
                      "tensor 'a' is named twice");
  expect_format_error(write_file("gap.safetensors",
                                 R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[6,10]}})",
                                 "1234567890"),
                      "tensor 'b' begins at byte 6, but 'a' ends at byte 4: tensors must not leave gaps");
  expect_format_error(write_file("late.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", "123456"),
                      "tensor 'a' begins at byte 2: the first tensor must begin at byte 0");
  expect_format_error(write_file("tail.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "123456"),
                      "the tensors end at byte 4 of the 6-byte data section");
  expect_format_error(write_file("meta.safetensors", R"({"__metadata__":[1,2]})", ""), "__metadata__ must be a map of strings, not a JSON array");
  expect_format_error(write_file("meta2.safetensors", R"({"__metadata__":{"format":3}})", ""),
                      "__metadata__['format'] must be a string, not a JSON number");
  const auto ints = write_file("int.safetensors", R"({"a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", "1234");
  rs::io::SafeTensorsFile f(ints);
  try {
    f.load_f32("a", {1});
    ADD_FAILURE();
  } catch (const rs::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("dtype I32"), std::string::npos) << e.what();
  }
  expect_format_error("/nonexistent/x.safetensors",
                      "cannot open '/nonexistent/x.safetensors': No such file or directory");
}

// Empty tensors load as empty vectors (no memcpy from or to a null
// pointer), from a mapped file and from memory alike; the mapping outlives
// copies of the reader.
TEST(Safetensors, EmptyTensorsAndInMemoryImages) {
  const std::string header =
      R"({"empty":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},)"
      R"("half_empty":{"dtype":"F16","shape":[2,0],"data_offsets":[0,0]},)"
      R"("x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const std::string data = bytes_of({0, 0, 0xc0, 0x3f});
  const auto path = write_file("empty.safetensors", header, data);
  std::vector<rs::io::SafeTensorsFile> readers;
  {
    rs::io::SafeTensorsFile mapped(path);
    readers.push_back(mapped);  // shares the mapping
  }
  std::ifstream in(path, std::ios::binary);
  std::vector<unsigned char> image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  readers.push_back(rs::io::SafeTensorsFile::from_bytes(image, "image"));
  for (const auto& f : readers) {
    EXPECT_TRUE(f.load_f32("empty", {0, 3}).empty());
    EXPECT_TRUE(f.load_f32("half_empty", {2, 0}).empty());
    EXPECT_EQ(f.load_f32("x", {1}), std::vector<float>{1.5f});
  }
  // Saving an empty tensor round-trips too.
  const std::string out = ::testing::TempDir() + "empty_out.safetensors";
  rs::io::save_safetensors(out, {{"none", {0}, nullptr}, {"one", {1}, readers[0].load_f32("x", {1}).data()}});
  EXPECT_TRUE(rs::io::SafeTensorsFile(out).load_f32("none", {0}).empty());
  std::remove(out.c_str());
  std::remove(path.c_str());
  try {
    rs::io::SafeTensorsFile::from_bytes({1, 2, 3}, "three bytes");
    ADD_FAILURE();
  } catch (const rs::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("'three bytes': file is 3 bytes"), std::string::npos) << e.what();
  }
}
