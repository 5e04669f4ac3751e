#pragma once
// A minimal PNG writer for the demos: 8-bit RGB, one zlib stream of stored
// (uncompressed) deflate blocks, so no zlib or libpng is needed. Files are
// larger than a compressing writer's, which does not matter for a demo
// figure.

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace demo {

struct RgbImage {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;  // row-major, 3 bytes per pixel

  RgbImage(int w, int h, std::uint8_t fill = 255) : width(w), height(h), rgb(std::size_t(w) * h * 3, fill) {}
  void set(int x, int y, std::array<std::uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    for (int k = 0; k < 3; ++k) rgb[(std::size_t(y) * width + x) * 3 + k] = c[k];
  }
};

namespace detail {

inline std::uint32_t crc32(const std::uint8_t* p, std::size_t n, std::uint32_t crc = 0) {
  crc = ~crc;
  for (std::size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

inline void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(std::uint8_t(v >> s));
}

inline void chunk(std::ofstream& f, const char* type, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> buf;
  put32(buf, std::uint32_t(data.size()));
  buf.insert(buf.end(), type, type + 4);
  buf.insert(buf.end(), data.begin(), data.end());
  put32(buf, crc32(buf.data() + 4, buf.size() - 4));
  f.write(reinterpret_cast<const char*>(buf.data()), std::streamsize(buf.size()));
}

}  // namespace detail

inline void write_png(const std::string& path, const RgbImage& img) {
  // Scanlines with filter byte 0.
  std::vector<std::uint8_t> raw;
  for (int y = 0; y < img.height; ++y) {
    raw.push_back(0);
    const auto row = img.rgb.begin() + std::ptrdiff_t(y) * img.width * 3;
    raw.insert(raw.end(), row, row + img.width * 3);
  }
  // zlib: header, stored blocks of at most 65535 bytes, Adler-32.
  std::vector<std::uint8_t> z{0x78, 0x01};
  for (std::size_t pos = 0; pos < raw.size() || pos == 0;) {
    const std::size_t n = std::min<std::size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);
    z.push_back(std::uint8_t(n & 0xff));
    z.push_back(std::uint8_t(n >> 8));
    z.push_back(std::uint8_t(~n & 0xff));
    z.push_back(std::uint8_t((~n >> 8) & 0xff));
    z.insert(z.end(), raw.begin() + std::ptrdiff_t(pos), raw.begin() + std::ptrdiff_t(pos + n));
    pos += n;
    if (last) break;
  }
  std::uint32_t a = 1, b = 0;
  for (std::uint8_t v : raw) {
    a = (a + v) % 65521;
    b = (b + a) % 65521;
  }
  detail::put32(z, (b << 16) | a);

  std::ofstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(fmt::format("cannot write {}", path));
  const std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  f.write(reinterpret_cast<const char*>(signature), 8);
  std::vector<std::uint8_t> header;
  detail::put32(header, std::uint32_t(img.width));
  detail::put32(header, std::uint32_t(img.height));
  header.insert(header.end(), {8, 2, 0, 0, 0});  // 8-bit RGB, deflate, no filter choice, no interlace
  detail::chunk(f, "IHDR", header);
  detail::chunk(f, "IDAT", z);
  detail::chunk(f, "IEND", {});
  if (!f) throw std::runtime_error(fmt::format("failed writing {}", path));
}

}  // namespace demo
