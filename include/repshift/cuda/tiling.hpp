#pragma once
// Launch geometry and lane arithmetic of the CUDA kernels, as plain
// REPSHIFT_HD / constexpr code with no CUDA headers, so the host test suite
// checks it on machines without a GPU (tests/test_cuda_tiling.cpp).

#include <cstdint>
#include <initializer_list>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace repshift {
namespace cuda_detail {

constexpr int kWarp = 32;

// Score kernel: one warp per token, kScoreWarps tokens per CTA, 16-byte
// loads (4 floats or 8 halves) when every row start is 16-byte aligned.
struct ScoreTiling {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * kWarp;
  static constexpr int kLoadBytes = 16;
};

template <class T>
inline constexpr int kVectorElems = ScoreTiling::kLoadBytes / int(sizeof(T));

// A pointer's address, to OR with others: the OR is a multiple of a power
// of two iff every address is (null adds nothing).
inline std::uintptr_t address_bits(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// True when rows of `channels` elements starting at base + row * stride are
// all 16-byte aligned: the vector path then needs no tail or peel.
template <class T>
inline bool rows_vectorisable(std::uintptr_t base_address, std::int64_t channels, std::int64_t batch_stride,
                                   std::int64_t token_stride) {
  constexpr std::int64_t v = kVectorElems<T>;
  return base_address % ScoreTiling::kLoadBytes == 0 && channels % v == 0 && batch_stride % v == 0 &&
         token_stride % v == 0;
}

// Row kernels that hold a whole row in registers (cuda/warp_row.cuh): one
// warp per row, lane l keeping the row's 16-byte vectors l, l + 32, ...
// widened to f32, at most kWarpRowFloats floats a lane: rows of up to 1024
// channels in every storage type (DeiT-T/S/B, ViT-L, UMT-L; Vim). Wider or
// unaligned rows take the scalar kernels.
constexpr int kWarpRowFloats = 32;

template <class T>
inline constexpr int kWarpRowSlots = kWarpRowFloats / kVectorElems<T>;  // vectors a lane holds

constexpr std::int64_t kWarpRowMaxChannels = std::int64_t(kWarp) * kWarpRowFloats;

// Whether rows of `channels` fit the register-row kernels, every operand
// given as (address | stride in elements) OR-ed together as for
// rows_vectorisable: all 16-byte aligned and channels a whole number of
// vectors.
template <class T>
inline bool warp_row_fits(std::int64_t channels, std::uintptr_t addresses, std::int64_t strides) {
  return channels > 0 && channels <= kWarpRowMaxChannels &&
         rows_vectorisable<T>(addresses, channels, 0, strides);
}

// Blocks of per_block items that cover n.
inline std::int64_t blocks_needed(std::int64_t n, std::int64_t per_block) { return (n + per_block - 1) / per_block; }

// The x extent of a launch over n items, per_block to a block; refused,
// naming `what` and its value, beyond one grid (2^31 - 1 blocks).
inline unsigned grid_blocks(const char* where, const char* what, std::int64_t n, std::int64_t per_block) {
  const std::int64_t blocks = blocks_needed(n, per_block);
  if (blocks > 0x7fffffff) {
    detail::fail(where, "{} = {} needs more blocks than one CUDA grid holds", what, n);
  }
  return unsigned(blocks);
}

// One warp per row, ScoreTiling::kWarps rows per CTA (the row kernels).
inline unsigned row_grid(const char* where, std::int64_t rows) {
  return grid_blocks(where, "rows", rows, ScoreTiling::kWarps);
}

// Selection: one CTA of kSelectThreads per sample; each thread holds
// `items` consecutive tokens (blocked arrangement). The smallest power of
// two that covers the tokens keeps shared memory and registers low.
// Per-pixel channel reductions of NCHW maps (the CnnRows residual + shift
// and the line scores): a CTA is kPixels consecutive pixels (coalesced
// reads within a channel plane) x kSlices channel slices, and the grid's y
// splits the channels into chunks whose partial Metric sums a second pass
// combines, so small late-stage maps (7x7 at ResNet's stage 4) still fill
// the GPU: about kTargetBlocks CTAs, at least kMinChunkChannels channels a
// chunk, at most kMaxChunks chunks.
struct PixelTiling {
  static constexpr int kPixels = 32;
  static constexpr int kSlices = 8;
  static constexpr int kThreads = kPixels * kSlices;
  static constexpr std::int64_t kTargetBlocks = 1024;
  static constexpr std::int64_t kMinChunkChannels = 64;
  static constexpr std::int64_t kMaxChunks = 16;

  static std::int64_t tiles(std::int64_t pixels) { return blocks_needed(pixels, kPixels); }
  static std::int64_t chunks(std::int64_t pixels, std::int64_t channels) {
    const std::int64_t want = blocks_needed(kTargetBlocks, tiles(pixels));
    const std::int64_t most = channels / kMinChunkChannels;
    std::int64_t c = want < most ? want : most;
    c = c < 1 ? 1 : (c > kMaxChunks ? kMaxChunks : c);
    return blocks_needed(channels, blocks_needed(channels, c));  // equal chunks, none empty
  }
  // At least chunks(p, channels) * p for every p <= pixels, and growing
  // with pixels, so scratch reserved for a map serves every smaller one.
  // 0 where one chunk is all there can be. More than one chunk is wanted
  // only below kTargetBlocks tiles, which holds the product under
  // 2 kTargetBlocks kPixels.
  static std::int64_t partials_bound(std::int64_t pixels, std::int64_t channels) {
    const std::int64_t most = channels / kMinChunkChannels < kMaxChunks ? channels / kMinChunkChannels : kMaxChunks;
    if (most <= 1) return 0;
    const std::int64_t cap = 2 * kTargetBlocks * kPixels;
    return most * pixels < cap ? most * pixels : cap;
  }
  // Channels of one chunk (the last may hold fewer).
  static std::int64_t chunk_channels(std::int64_t pixels, std::int64_t channels) {
    return blocks_needed(channels, chunks(pixels, channels));
  }
};

struct SelectTiling {
  static constexpr int kThreads = 256;
  static constexpr int kMaxItems = 16;
  static constexpr int kMaxTokens = kThreads * kMaxItems;  // 4096
};

inline int select_items_per_thread(std::int64_t tokens) {
  int items = 1;
  while (std::int64_t(items) * SelectTiling::kThreads < tokens) items *= 2;
  return items;
}

// The smallest of the ascending compiled sizes that holds a runtime size
// of at least 1; 0 when none does.
inline int compiled_bucket(std::int64_t size, std::initializer_list<int> buckets) {
  for (int bucket : buckets) {
    if (size >= 1 && size <= bucket) return bucket;
  }
  return 0;
}

// The selective scan keeps a channel's states in registers, which needs
// their count at compile time: a runtime state runs in the smallest
// compiled bucket that holds it (8, 16, 32, 64 = SelectiveScanParams::
// kMaxState), the slots past it idle. 0: out of range.
inline int scan_state_bucket(std::int64_t state) { return compiled_bucket(state, {8, 16, 32, 64}); }

// Butterfly (xor-shuffle) combination of 32 lane accumulators, the
// pattern of the warp reduction, with the shuffle supplied by the caller:
// on the device __shfl_xor_sync, on the host an array lookup. After it
// every lane holds the combination of all 32.
template <class Metric, class Shuffle>
REPSHIFT_HD typename Metric::Accum butterfly_combine(typename Metric::Accum acc, Shuffle&& shuffle_xor) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) acc = Metric::combine(acc, shuffle_xor(acc, offset));
  return acc;
}

}  // namespace cuda_detail
}  // namespace repshift
