#pragma once
// Flash attention's two products on AMX tiles, in bfloat16 with float
// accumulation: what DenseMath::Bf16 runs on a CPU with AMX (Sapphire
// Rapids and later), where our float flash kernel was a fifth of a bf16
// DeiT-S forward (perf, Emerald Rapids) and PyTorch's autocast runs its
// attention in bf16 too.
//
// The schedule is flash_attention's (attention.hpp): one task per (sample,
// head), blocks of 32 queries (two tiles' rows) over blocks of keys
// through an online softmax, memory O(N x head_dim). Q (scaled by
// scale x log2 e), K and V are rounded to bfloat16 as they are prepared;
// S = Q K^T and O += P V run as TDPBF16PS on 16 x 16 float tiles; the
// softmax, its running max and sum, and O stay in float. P is rounded to
// bfloat16 for the product and l sums the rounded values, so the weights
// that multiply V sum to 1. Up to kAmxWholeKeys keys are one block (one
// softmax pass, as an image's tokens); longer sequences take blocks of
// kAmxBlockK.
//
// Tiles want the product's reduction dimension in pairs: K^T is packed per
// 16 keys x 32 channels as [channel pair][key][2], V per 32 keys x 16
// channels as [key pair][channel][2]; Q and P are read row-major, Q and K^T
// padded with zeros to whole 32-channel chunks. Head dims that are
// multiples of 16 up to 128 (DeiT's and UMT's 64) run here; others keep the
// float kernel.
//
// The kernel is compiled for AMX with target attributes, so the library
// still builds for any x86-64; amx_bf16_usable() says whether this CPU and
// OS run it (CPUID, REPSHIFT_MAX_CPU_ISA not below avx512, and Linux's
// permission for the tile state, asked once per process).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../params/attention.hpp"
#include "cpu_isa.hpp"
#include "flash_head.hpp"

#if REPSHIFT_CPU_TARGETS && defined(__linux__) && defined(__x86_64__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define REPSHIFT_AMX_KERNELS 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define REPSHIFT_AMX_KERNELS 0
#endif

namespace repshift {
namespace cpu {

// Whether flash_attention_amx's kernel takes this head dim.
inline bool amx_attention_supports(std::int64_t head_dim) { return head_dim % 16 == 0 && head_dim <= 128; }

// Whether this CPU and OS run AMX bf16 tiles and REPSHIFT_MAX_CPU_ISA allows
// AVX-512 (read at each call; the CPU and OS once).
inline bool amx_bf16_usable() {
#if REPSHIFT_AMX_KERNELS
  static const bool runs = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || a < 1) return false;  // a: the last subleaf of leaf 7
    const bool tiles = (d >> 24) & 1u, amx_bf16 = (d >> 22) & 1u;
    const bool avx512_bw_vl_dq = ((b >> 30) & 1u) && ((b >> 31) & 1u) && ((b >> 17) & 1u);
    if (!tiles || !amx_bf16 || !avx512_bw_vl_dq) return false;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return false;
    const bool avx512_bf16 = (a >> 5) & 1u;
    if (!avx512_bf16 || detected_cpu_isa() < CpuIsa::Avx512) return false;
    constexpr long kReqXcompPerm = 0x1023, kXtileData = 18;  // Linux's arch_prctl for the tile data state
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtileData) == 0;
  }();
  return runs && cpu_isa_limit() >= CpuIsa::Avx512;
#else
  return false;
#endif
}

#if REPSHIFT_AMX_KERNELS

constexpr int kAmxWholeKeys = 512;
constexpr int kAmxBlockK = 256;

namespace detail {

#define REPSHIFT_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16")))

// One task's scratch (bytes), laid out for its own sample's `n` tokens.
struct AmxScratch {
  std::int64_t head_dim, block_k;
  std::uint16_t* q;   // [tokens, rounded up to 32][Dh, rounded up to 32], scaled by scale x log2 e
  std::uint16_t* kt;  // [keys / 16][Dh / 32, rounded up] tiles of [16 channel pairs][16 keys][2]
  std::uint16_t* v;   // [keys / 32][Dh / 16] tiles of [16 key pairs][16 channels][2]
  std::uint16_t* p;   // [32][block_k]: probabilities, rounded
  float* s;           // [32][block_k]: scores
  float* o;           // [32][Dh]
  float* m;           // [32] running max
  float* l;           // [32] running sum
  float* alpha;       // [32] rescale of o at this key block
  float* bias;        // [keys]: key_bias x log2 e, 0 past the last key

  std::int64_t bytes_used = 0;  // the whole layout's size

  static std::int64_t keys_padded(std::int64_t n) { return round_up(std::max<std::int64_t>(n, 1), 32); }
  static std::int64_t block_of(std::int64_t n) {
    return keys_padded(n) <= kAmxWholeKeys ? keys_padded(n) : std::int64_t(kAmxBlockK);
  }
  // The bytes one task needs: the layout below, measured without memory.
  static std::int64_t bytes(std::int64_t n, std::int64_t dh) { return AmxScratch(nullptr, n, dh).bytes_used; }

  // base null: only bytes_used is set.
  AmxScratch(void* base, std::int64_t n, std::int64_t dh) : head_dim(dh), block_k(block_of(n)) {
    const std::int64_t keys = round_up(keys_padded(n), block_k), dq = round_up(dh, 32);
    auto* at = static_cast<unsigned char*>(base);
    s = take<float>(at, 32 * block_k);
    o = take<float>(at, 32 * dh);
    m = take<float>(at, 32);
    l = take<float>(at, 32);
    alpha = take<float>(at, 32);
    bias = take<float>(at, keys);
    q = take<std::uint16_t>(at, round_up(n, 32) * dq);
    kt = take<std::uint16_t>(at, keys * dq);
    v = take<std::uint16_t>(at, keys * dh);
    p = take<std::uint16_t>(at, 32 * block_k);
  }

 private:
  template <class T>
  T* take(unsigned char* base, std::int64_t count) {
    T* here = base ? reinterpret_cast<T*>(base + bytes_used) : nullptr;
    bytes_used += count * std::int64_t(sizeof(T));
    return here;
  }
};

// Palette 1, every tile 16 rows of 64 bytes (32 bf16 of A or B, 16 floats
// of C): bytes 16-31 hold the 8 tiles' row bytes (16-bit), 48-55 their rows.
struct AmxTileConfig {
  alignas(64) unsigned char bytes[64];
};
constexpr AmxTileConfig amx_tile_config() {
  AmxTileConfig c{};
  c.bytes[0] = 1;
  for (int t = 0; t < 8; ++t) {
    c.bytes[16 + 2 * t] = 64;
    c.bytes[48 + t] = 16;
  }
  return c;
}
inline constexpr AmxTileConfig kAmxTileConfig = amx_tile_config();

// GCC's tileloadd (before GCC 14) is an asm that names no memory it reads:
// without a barrier the compiler may still hold back stores the tiles are
// about to load (packed Q, K^T, V; P and rescaled O).
inline void amx_memory_barrier() { asm volatile("" ::: "memory"); }

// Full masks: GCC 12's unmasked forms of these intrinsics pass an
// undefined vector through, which -Wmaybe-uninitialized reports here.
constexpr __mmask16 kAll = 0xffff;

REPSHIFT_AMX_TARGET inline float amx_hmax(__m512 x) {
  const __m256 half = _mm256_max_ps(_mm512_maskz_extractf32x8_ps(0xff, x, 0), _mm512_maskz_extractf32x8_ps(0xff, x, 1));
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_max_ss(q, _mm_shuffle_ps(q, q, 1)));
}
REPSHIFT_AMX_TARGET inline float amx_hsum(__m512 x) {
  const __m256 half = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xff, x, 0), _mm512_maskz_extractf32x8_ps(0xff, x, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
}

// 16 floats to bfloat16, rounded to nearest even (NaN stays NaN).
REPSHIFT_AMX_TARGET inline __m256i amx_round(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }
REPSHIFT_AMX_TARGET inline __m512 amx_widen(__m256i x) {
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, _mm512_maskz_cvtepu16_epi32(kAll, x), 16));
}

// 2^x for x <= 0 with `poly` on the fraction (highest degree first), the
// exponent applied by vscalefps; NaN stays NaN (vmaxps returns its second
// operand when either is NaN). P is rounded to bfloat16 (relative step
// 2^-8), so its exponents take kExp2PolyBf16, degree 3 (relative error
// 7.5e-5, fitted here); alpha, which rescales float O, takes
// exp2_nonpositive's kExp2Poly, degree 6.
inline constexpr float kExp2PolyBf16[] = {5.51716685e-2f, 2.42611155e-1f, 6.93260968e-1f, 9.99928057e-1f};
template <std::size_t N>
REPSHIFT_AMX_TARGET inline __m512 amx_exp2(__m512 x, const float (&poly)[N]) {
  x = _mm512_maskz_max_ps(kAll, _mm512_set1_ps(-126.0f), x);
  const __m512 n = _mm512_maskz_roundscale_ps(kAll, x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, n);
  __m512 y = _mm512_set1_ps(poly[0]);
  for (std::size_t i = 1; i < N; ++i) y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(poly[i]));
  return _mm512_maskz_scalef_ps(kAll, y, n);
}

// Scores c..c+15 of a row plus the keys' bias (null: none); amx_valid:
// which of them are keys (column < cols).
REPSHIFT_AMX_TARGET inline __m512 amx_logits(const float* row, const float* bias, std::int64_t c) {
  const __m512 x = _mm512_loadu_ps(row + c);
  return bias ? _mm512_add_ps(x, _mm512_loadu_ps(bias + c)) : x;
}
inline __mmask16 amx_valid(std::int64_t c, std::int64_t cols) {
  return c >= cols ? 0 : c + 16 <= cols ? 0xffff : __mmask16((1u << (cols - c)) - 1);
}
// acc, raised to the logits c..c+15 that are keys.
REPSHIFT_AMX_TARGET inline __m512 amx_max_logits(__m512 acc, const float* row, const float* bias, std::int64_t c,
                                                 std::int64_t cols) {
  return _mm512_mask_max_ps(acc, amx_valid(c, cols), acc, amx_logits(row, bias, c));
}
// P's c..c+15 of a row, 2^(logit - shift) rounded to bfloat16, stored at
// p_row + c; returned widened back to float, as l sums them. -inf (a
// masked key's bias) and columns past the last key give 0; NaN stays NaN.
REPSHIFT_AMX_TARGET inline __m512 amx_probabilities(const float* row, const float* bias, std::int64_t c,
                                                    std::int64_t cols, __m512 shift, std::uint16_t* p_row) {
  const __m512 x = amx_logits(row, bias, c);
  const __mmask16 keep = amx_valid(c, cols) & _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);
  const __m256i e = amx_round(_mm512_maskz_mov_ps(keep, amx_exp2(_mm512_sub_ps(x, shift), kExp2PolyBf16)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p_row + c), e);
  return amx_widen(e);
}

// Token n's part (q, k or v) of head h plus its bias, times `scale`, as
// Dh / 16 vectors of bfloat16 at dst.
REPSHIFT_AMX_TARGET inline void amx_round_row(const float* src, const float* bias, float scale, std::int64_t dh,
                                              std::uint16_t* dst) {
  for (std::int64_t d = 0; d < dh; d += 16) {
    __m512 x = _mm512_loadu_ps(src + d);
    if (bias) x = _mm512_add_ps(x, _mm512_loadu_ps(bias + d));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + d), amx_round(_mm512_mul_ps(x, _mm512_set1_ps(scale))));
  }
}

// One (sample, head)'s packed operands, as the query blocks read them.
struct AmxHead {
  std::int64_t b, h, dh, dq, chunks, keys, keys_padded;  // dq: Dh rounded up to 32; chunks = dq / 32
  const std::uint16_t* kt;
  const std::uint16_t* v;
  // K^T tile (16 keys, 32 channels) of key tile `key_tile`, channel chunk `chunk`.
  const std::uint16_t* kt_tile(std::int64_t key_tile, std::int64_t chunk) const {
    return kt + (key_tile * chunks + chunk) * 512;
  }
  // V tile (32 keys, 16 channels) of key pair tile `pair_tile`, channel tile `channels`.
  const std::uint16_t* v_tile(std::int64_t pair_tile, std::int64_t channels) const {
    return v + (pair_tile * (dh / 16) + channels) * 512;
  }
};

// One block of 16 x RowTiles queries (rows q0.. of the packed Q) over
// every key block: S = Q K^T, the online softmax, O = alpha O + P V; then
// its `rows` outputs. Tiles: C (float) in 0-3, A in 4-5, B in 6-7. Each
// product step is 2 x 2 tiles (32 queries x 32 keys, or x 32 channels):
// each B tile (K^T or V, streamed from L2) feeds two products and each A
// tile two. A last block of at most 16 queries takes RowTiles = 1 (one
// product per B tile), as do a head's last 16 channels when Dh / 16 is odd
// (one per A tile).
template <int RowTiles>
REPSHIFT_AMX_TARGET inline void amx_query_block(const AttentionParams& p, const AmxHead& head, AmxScratch& w,
                                                std::int64_t q0, int rows) {
  constexpr int kRows = 16 * RowTiles;
  const std::int64_t dh = head.dh, dq = head.dq, bk = w.block_k, keys = head.keys;
  const std::int64_t ldq = dq * 2, lds = bk * 4, ldp = bk * 2, ldo = dh * 4;
  const std::uint16_t* q = w.q + q0 * dq;
  for (int r = 0; r < kRows; ++r) {
    w.m[r] = -INFINITY;
    w.l[r] = 0.0f;
  }
  for (std::int64_t k0 = 0; k0 < head.keys_padded; k0 += bk) {
    const std::int64_t width = std::min(bk, head.keys_padded - k0), cols = std::min(bk, keys - k0);
    // S = Q K^T, 32 keys at a time over Q's 32-channel chunks.
    for (std::int64_t t = 0; t < width / 32; ++t) {
      const std::int64_t tile = k0 / 16 + 2 * t;
      _tile_zero(0);
      _tile_zero(1);
      if constexpr (RowTiles == 2) {
        _tile_zero(2);
        _tile_zero(3);
      }
      for (std::int64_t c = 0; c < head.chunks; ++c) {
        _tile_loadd(4, q + c * 32, ldq);
        _tile_loadd(6, head.kt_tile(tile, c), 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(7, head.kt_tile(tile + 1, c), 64);
        _tile_dpbf16ps(1, 4, 7);
        if constexpr (RowTiles == 2) {
          _tile_loadd(5, q + 16 * dq + c * 32, ldq);
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, w.s + t * 32, lds);
      _tile_stored(1, w.s + t * 32 + 16, lds);
      if constexpr (RowTiles == 2) {
        _tile_stored(2, w.s + 16 * bk + t * 32, lds);
        _tile_stored(3, w.s + 16 * bk + t * 32 + 16, lds);
      }
    }
    // The online softmax over this block; keys past the last get probability 0. The scores plus key
    // bias are formed twice (for the max, then the exponent) rather than stored. A row's max runs on
    // four accumulators and its sum on two (no long vmaxps / vaddps chain), and the running max and
    // alpha are updated 16 rows at a time, between the two passes.
    const float* bias = p.key_bias ? w.bias + k0 : nullptr;
    for (int r = 0; r < kRows; ++r) {  // width is whole 32s
      const float* srow = w.s + r * bk;
      const __m512 none = _mm512_set1_ps(-INFINITY);
      __m512 m0 = none, m1 = none, m2 = none, m3 = none;
      std::int64_t c = 0;
      for (; c + 64 <= width; c += 64) {
        m0 = amx_max_logits(m0, srow, bias, c, cols);
        m1 = amx_max_logits(m1, srow, bias, c + 16, cols);
        m2 = amx_max_logits(m2, srow, bias, c + 32, cols);
        m3 = amx_max_logits(m3, srow, bias, c + 48, cols);
      }
      if (c < width) {
        m0 = amx_max_logits(m0, srow, bias, c, cols);
        m1 = amx_max_logits(m1, srow, bias, c + 16, cols);
      }
      // The block's max, for now.
      w.alpha[r] = amx_hmax(
          _mm512_maskz_max_ps(kAll, _mm512_maskz_max_ps(kAll, m0, m1), _mm512_maskz_max_ps(kAll, m2, m3)));
    }
    for (int r = 0; r < kRows; r += 16) {
      const __m512 none = _mm512_set1_ps(-INFINITY), m_old = _mm512_loadu_ps(w.m + r);
      const __m512 m_new = _mm512_maskz_max_ps(kAll, m_old, _mm512_loadu_ps(w.alpha + r));
      // A row that has seen only masked keys keeps m = -inf: its exponents are taken against 0, and
      // its alpha (like the first block's) is 0.
      const __m512 m_ref = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(m_new, none, _CMP_NEQ_UQ), m_new);
      const __mmask16 seen = k0 == 0 ? 0 : _mm512_cmp_ps_mask(m_old, none, _CMP_NEQ_UQ);
      _mm512_storeu_ps(w.alpha + r, _mm512_maskz_mov_ps(seen, amx_exp2(_mm512_sub_ps(m_old, m_ref), kExp2Poly)));
      _mm512_storeu_ps(w.m + r, m_new);
    }
    for (int r = 0; r < kRows; ++r) {
      const float* srow = w.s + r * bk;
      const __m512 shift = _mm512_set1_ps(w.m[r] == -INFINITY ? 0.0f : w.m[r]);
      __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
      for (std::int64_t c = 0; c < width; c += 32) {
        sum0 = _mm512_add_ps(sum0, amx_probabilities(srow, bias, c, cols, shift, w.p + r * bk));
        sum1 = _mm512_add_ps(sum1, amx_probabilities(srow, bias, c + 16, cols, shift, w.p + r * bk));
      }
      w.l[r] = w.l[r] * w.alpha[r] + amx_hsum(_mm512_add_ps(sum0, sum1));
      if (k0 > 0) {
        for (std::int64_t d = 0; d < dh; d += 16) {
          _mm512_storeu_ps(w.o + r * dh + d,
                           _mm512_mul_ps(_mm512_loadu_ps(w.o + r * dh + d), _mm512_set1_ps(w.alpha[r])));
        }
      }
    }
    amx_memory_barrier();  // P and the rescaled O are written
    // O += P V, 32 channels (two V tiles) at a time; the first block starts from zero.
    for (std::int64_t c0 = 0; c0 < dh; c0 += 32) {
      const bool pair = c0 + 16 < dh;  // a second 16-channel tile
      float* o = w.o + c0;
      if (k0 == 0) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      } else {
        _tile_loadd(0, o, ldo);
        if (pair) _tile_loadd(1, o + 16, ldo);
        if constexpr (RowTiles == 2) {
          _tile_loadd(2, o + 16 * dh, ldo);
          if (pair) _tile_loadd(3, o + 16 * dh + 16, ldo);
        }
      }
      for (std::int64_t t = 0; t < width / 32; ++t) {
        const std::int64_t pair_tile = k0 / 32 + t, channels = c0 / 16;
        _tile_loadd(4, w.p + t * 32, ldp);
        _tile_loadd(6, head.v_tile(pair_tile, channels), 64);
        _tile_dpbf16ps(0, 4, 6);
        if (pair) {
          _tile_loadd(7, head.v_tile(pair_tile, channels + 1), 64);
          _tile_dpbf16ps(1, 4, 7);
        }
        if constexpr (RowTiles == 2) {
          _tile_loadd(5, w.p + 16 * bk + t * 32, ldp);
          _tile_dpbf16ps(2, 5, 6);
          if (pair) _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, o, ldo);
      if (pair) _tile_stored(1, o + 16, ldo);
      if constexpr (RowTiles == 2) {
        _tile_stored(2, o + 16 * dh, ldo);
        if (pair) _tile_stored(3, o + 16 * dh + 16, ldo);
      }
    }
  }
  float* out = p.out + p.out_offset(head.b) + q0 * p.out_token_stride + head.h * dh;
  for (int r = 0; r < rows; ++r) {
    // A query whose keys are all masked has no softmax: NaN, as on the map path.
    const float inv = w.m[r] == -INFINITY ? NAN : 1.0f / w.l[r];
    for (std::int64_t d = 0; d < dh; d += 16) {
      _mm512_storeu_ps(out + r * p.out_token_stride + d,
                       _mm512_mul_ps(_mm512_loadu_ps(w.o + r * dh + d), _mm512_set1_ps(inv)));
    }
  }
}

// One sample and head: Q, K^T and V rounded and packed, then every block of
// 32 queries (a last one of up to 16: 16) over the key blocks.
REPSHIFT_AMX_TARGET inline void amx_flash_head(const AttentionParams& p, std::int64_t b, std::int64_t h,
                                               AmxScratch& w) {
  const std::int64_t dh = w.head_dim, queries = p.queries(b), keys = p.keys(b);
  // Q and K^T in whole 32-channel chunks (zero past Dh), V in 16-channel tiles.
  const std::int64_t keys_padded = AmxScratch::keys_padded(keys), dq = round_up(dh, 32), chunks = dq / 32;
  const float* qb = qkv_bias_row(p, 0, h);
  const float* kb = qkv_bias_row(p, 1, h);
  const float* vb = qkv_bias_row(p, 2, h);

  // Rows kAhead tokens on are prefetched (prefetch_row).
  constexpr std::int64_t kAhead = 8;
  auto prefetch = [&](std::int64_t n, int part) { prefetch_row(qkv_row(p, b, n, part, h), dh * 4); };
  // Q rows, then zero rows up to a whole 32-query block.
  for (std::int64_t n = 0; n < queries; ++n) {
    if (n + kAhead < queries) prefetch(n + kAhead, 0);
    amx_round_row(qkv_row(p, b, n, 0, h), qb, p.scale * kLog2e, dh, w.q + n * dq);
    std::fill(w.q + n * dq + dh, w.q + (n + 1) * dq, std::uint16_t(0));
  }
  std::fill(w.q + queries * dq, w.q + round_up(queries, 32) * dq, std::uint16_t(0));
  // 32 keys at a time, rounded into `staged` (zero past the last key), then
  // packed: K^T tile (key tile t, chunk c) row j holds channel pair 16 c + j
  // of its 16 keys, gathered; V tile (pair tile, channels c..c+15) row i
  // interleaves keys 2i and 2i + 1 of the 32.
  alignas(64) std::uint16_t k_staged[32 * 128], v_staged[32 * 128];
  const __m512i key_offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32(int(dq / 2)));
  const __m512i interleave = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38,
                                              6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  for (std::int64_t n0 = 0; n0 < keys_padded; n0 += 32) {
    for (std::int64_t i = 0; i < 32; ++i) {
      const std::int64_t key = n0 + i;
      if (key + kAhead < keys) {
        prefetch(key + kAhead, 1);
        prefetch(key + kAhead, 2);
      }
      if (key < keys) {
        amx_round_row(qkv_row(p, b, key, 1, h), kb, 1.0f, dh, k_staged + i * dq);
        std::fill(k_staged + i * dq + dh, k_staged + (i + 1) * dq, std::uint16_t(0));
        amx_round_row(qkv_row(p, b, key, 2, h), vb, 1.0f, dh, v_staged + i * dh);
      } else {
        std::fill(k_staged + i * dq, k_staged + (i + 1) * dq, std::uint16_t(0));
        std::fill(v_staged + i * dh, v_staged + (i + 1) * dh, std::uint16_t(0));
      }
    }
    for (std::int64_t t = 0; t < 2; ++t) {
      const std::int64_t key_tile = n0 / 16 + t;
      for (std::int64_t pair = 0; pair < dq / 2; ++pair) {
        const __m512i column = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), kAll, key_offsets,
                                                           k_staged + t * 16 * dq + 2 * pair, 4);
        _mm512_storeu_si512(w.kt + ((key_tile * chunks + pair / 16) * 16 + pair % 16) * 32, column);
      }
    }
    for (std::int64_t i = 0; i < 16; ++i) {
      for (std::int64_t c = 0; c < dh; c += 16) {
        const __m512i first = _mm512_maskz_loadu_epi16(0xffff, v_staged + 2 * i * dh + c);
        const __m512i second = _mm512_maskz_loadu_epi16(0xffff, v_staged + (2 * i + 1) * dh + c);
        std::uint16_t* row = w.v + (((n0 / 32) * (dh / 16) + c / 16) * 16 + i) * 32;
        _mm512_storeu_si512(row, _mm512_permutex2var_epi16(first, interleave, second));
      }
    }
  }
  if (p.key_bias) {
    for (std::int64_t n = 0; n < keys_padded; ++n) w.bias[n] = n < keys ? p.key_bias[p.key_bias_offset(b) + n] * kLog2e : 0.0f;
  }

  _tile_loadconfig(kAmxTileConfig.bytes);
  amx_memory_barrier();  // Q, K^T and V are packed
  const AmxHead head{b, h, dh, dq, chunks, keys, keys_padded, w.kt, w.v};
  std::int64_t q0 = 0;
  for (; q0 + 16 < queries; q0 += 32) amx_query_block<2>(p, head, w, q0, int(std::min<std::int64_t>(32, queries - q0)));
  if (q0 < queries) amx_query_block<1>(p, head, w, q0, int(queries - q0));
  _tile_release();
}

#undef REPSHIFT_AMX_TARGET

}  // namespace detail

// flash_attention's entries for this kernel (attention.hpp): the scratch
// one task needs (bytes) and one (sample, head) task. tokens: the longest
// sample's, which bounds the scratch; each task lays it out for its own
// sample (its key blocks, and so its rounding, are those it has alone).
inline std::int64_t amx_flash_scratch_bytes(std::int64_t tokens, std::int64_t head_dim) {
  return detail::scratch_bound([head_dim](std::int64_t n) { return detail::AmxScratch::bytes(n, head_dim); },
                               tokens, kAmxWholeKeys);
}
inline void amx_flash_task(const AttentionParams& p, std::int64_t bh, void* scratch) {
  const std::int64_t b = bh / p.heads;
  detail::AmxScratch w(scratch, std::max(p.queries(b), p.keys(b)), p.head_dim);
  detail::amx_flash_head(p, b, bh % p.heads, w);
}

#endif  // REPSHIFT_AMX_KERNELS

}  // namespace cpu
}  // namespace repshift
