#pragma once
// Flash attention's two products on AMX tiles, in bfloat16 with float
// accumulation: what DenseMath::Bf16 runs on a CPU with AMX (Sapphire
// Rapids and later), where our float flash kernel was a fifth of a bf16
// DeiT-S forward (perf, Emerald Rapids) and PyTorch's autocast runs its
// attention in bf16 too.
//
// The schedule is flash_attention's (attention.hpp): one task per (sample,
// head), blocks of 16 queries (one tile's rows) over blocks of keys
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

// One task's scratch (bytes), laid out for the longest sample's `tokens`.
struct AmxScratch {
  std::int64_t head_dim, block_k;
  std::uint16_t* q;   // [tokens, rounded up to 16][Dh, rounded up to 32], scaled by scale x log2 e
  std::uint16_t* kt;  // [keys / 16][Dh / 32, rounded up] tiles of [16 channel pairs][16 keys][2]
  std::uint16_t* v;   // [keys / 32][Dh / 16] tiles of [16 key pairs][16 channels][2]
  std::uint16_t* p;   // [16][block_k]: probabilities, rounded
  float* s;           // [16][block_k]: scores
  float* o;           // [16][Dh]
  float* m;           // [16] running max
  float* l;           // [16] running sum
  float* alpha;       // [16] rescale of o at this key block
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
    s = take<float>(at, 16 * block_k);
    o = take<float>(at, 16 * dh);
    m = take<float>(at, 16);
    l = take<float>(at, 16);
    alpha = take<float>(at, 16);
    bias = take<float>(at, keys);
    q = take<std::uint16_t>(at, round_up(n, 16) * dq);
    kt = take<std::uint16_t>(at, keys * dq);
    v = take<std::uint16_t>(at, keys * dh);
    p = take<std::uint16_t>(at, 16 * block_k);
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

// 2^x for x <= 0: exp2_nonpositive's polynomial (kExp2Poly), the exponent
// applied by vscalefps; NaN stays NaN (vmaxps returns its second operand
// when either is NaN).
REPSHIFT_AMX_TARGET inline __m512 amx_exp2(__m512 x) {
  x = _mm512_maskz_max_ps(kAll, _mm512_set1_ps(-126.0f), x);
  const __m512 n = _mm512_maskz_roundscale_ps(kAll, x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(x, n);
  __m512 y = _mm512_set1_ps(kExp2Poly[0]);
  for (int i = 1; i < 7; ++i) y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExp2Poly[i]));
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

// One Q chunk's products into the score tiles, chunk's Q in tile `q_tile`:
// 4 key tiles (C in 0-3, K^T through 6 and 7) or 2 (C in 0-1, K^T in 2-3).
// Macros because GCC's tile intrinsics take tile numbers as literal tokens.
#define REPSHIFT_AMX_SCORES_X4(chunk, q_tile)      \
  do {                                             \
    _tile_loadd(6, kt_tile(tile, chunk), 64);      \
    _tile_dpbf16ps(0, q_tile, 6);                  \
    _tile_loadd(7, kt_tile(tile + 1, chunk), 64);  \
    _tile_dpbf16ps(1, q_tile, 7);                  \
    _tile_loadd(6, kt_tile(tile + 2, chunk), 64);  \
    _tile_dpbf16ps(2, q_tile, 6);                  \
    _tile_loadd(7, kt_tile(tile + 3, chunk), 64);  \
    _tile_dpbf16ps(3, q_tile, 7);                  \
  } while (0)
#define REPSHIFT_AMX_SCORES_X2(chunk, q_tile)      \
  do {                                             \
    _tile_loadd(2, kt_tile(tile, chunk), 64);      \
    _tile_loadd(3, kt_tile(tile + 1, chunk), 64);  \
    _tile_dpbf16ps(0, q_tile, 2);                  \
    _tile_dpbf16ps(1, q_tile, 3);                  \
  } while (0)

// One sample and head: Q, K^T and V rounded and packed, then every block of
// 16 queries over the key blocks.
REPSHIFT_AMX_TARGET inline void amx_flash_head(const AttentionParams& p, std::int64_t b, std::int64_t h,
                                               AmxScratch& w) {
  const std::int64_t dh = w.head_dim, bk = w.block_k, queries = p.queries(b), keys = p.keys(b);
  // Q and K^T in whole 32-channel chunks (zero past Dh), V in 16-channel tiles.
  const std::int64_t keys_padded = AmxScratch::keys_padded(keys), dq = round_up(dh, 32), chunks = dq / 32;
  const float* qb = qkv_bias_row(p, 0, h);
  const float* kb = qkv_bias_row(p, 1, h);
  const float* vb = qkv_bias_row(p, 2, h);

  // Rows kAhead tokens on are prefetched (prefetch_row).
  constexpr std::int64_t kAhead = 8;
  auto prefetch = [&](std::int64_t n, int part) { prefetch_row(qkv_row(p, b, n, part, h), dh * 4); };
  // Q rows, then zero rows up to a whole tile.
  for (std::int64_t n = 0; n < queries; ++n) {
    if (n + kAhead < queries) prefetch(n + kAhead, 0);
    amx_round_row(qkv_row(p, b, n, 0, h), qb, p.scale * kLog2e, dh, w.q + n * dq);
    std::fill(w.q + n * dq + dh, w.q + (n + 1) * dq, std::uint16_t(0));
  }
  std::fill(w.q + queries * dq, w.q + round_up(queries, 16) * dq, std::uint16_t(0));
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

  const std::int64_t ldq = dq * 2, lds = bk * 4, ldp = bk * 2, ldo = dh * 4;
  auto kt_tile = [&](std::int64_t key_tile, std::int64_t chunk) { return w.kt + (key_tile * chunks + chunk) * 512; };
  auto v_tile = [&](std::int64_t pair_tile, std::int64_t channels) {
    return w.v + (pair_tile * (dh / 16) + channels) * 512;
  };
  for (std::int64_t q0 = 0; q0 < queries; q0 += 16) {
    const int rows = int(std::min<std::int64_t>(16, queries - q0));
    const std::uint16_t* q = w.q + q0 * dq;
    _mm512_storeu_ps(w.m, _mm512_set1_ps(-INFINITY));
    _mm512_storeu_ps(w.l, _mm512_setzero_ps());
    // Q's chunks stay in tiles 4-7 for every key block.
    _tile_loadd(4, q, ldq);
    if (chunks > 1) _tile_loadd(5, q + 32, ldq);
    if (chunks > 2) _tile_loadd(6, q + 64, ldq);
    if (chunks > 3) _tile_loadd(7, q + 96, ldq);
    for (std::int64_t k0 = 0; k0 < keys_padded; k0 += bk) {
      const std::int64_t width = std::min(bk, keys_padded - k0), cols = std::min(bk, keys - k0);
      // S = Q K^T. Up to 64 channels, 64 keys (four C tiles, B in tiles 6
      // and 7) at a time: four independent accumulations, where two would
      // wait on each other; then, and for wider heads, 32 keys.
      std::int64_t t = 0;
      for (; chunks <= 2 && t + 4 <= width / 16; t += 4) {
        const std::int64_t tile = k0 / 16 + t;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        REPSHIFT_AMX_SCORES_X4(0, 4);
        if (chunks > 1) REPSHIFT_AMX_SCORES_X4(1, 5);
        _tile_stored(0, w.s + t * 16, lds);
        _tile_stored(1, w.s + t * 16 + 16, lds);
        _tile_stored(2, w.s + t * 16 + 32, lds);
        _tile_stored(3, w.s + t * 16 + 48, lds);
      }
      for (; t < width / 16; t += 2) {
        const std::int64_t tile = k0 / 16 + t;
        _tile_zero(0);
        _tile_zero(1);
        REPSHIFT_AMX_SCORES_X2(0, 4);
        if (chunks > 1) REPSHIFT_AMX_SCORES_X2(1, 5);
        if (chunks > 2) REPSHIFT_AMX_SCORES_X2(2, 6);
        if (chunks > 3) REPSHIFT_AMX_SCORES_X2(3, 7);
        _tile_stored(0, w.s + t * 16, lds);
        _tile_stored(1, w.s + t * 16 + 16, lds);
      }
      // The online softmax over this block, row by row; keys past the last get probability 0. The
      // scores plus key bias are formed twice (for the max, then the exponent) rather than stored.
      const float* bias = p.key_bias ? w.bias + k0 : nullptr;
      for (int r = 0; r < 16; ++r) {
        const float* srow = w.s + r * bk;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (std::int64_t c = 0; c < width; c += 16)
          mx = _mm512_mask_max_ps(mx, amx_valid(c, cols), mx, amx_logits(srow, bias, c));
        const float m_new = std::max(w.m[r], amx_hmax(mx));
        // A row that has seen only masked keys keeps m = -inf: its exponents are taken against 0.
        const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
        w.alpha[r] = k0 == 0 ? 0.0f : std::exp2(w.m[r] - m_ref);
        w.m[r] = m_new;
        const __m512 shift = _mm512_set1_ps(m_ref);
        __m512 sum = _mm512_setzero_ps();
        for (std::int64_t c = 0; c < width; c += 16) {
          const __m512 x = amx_logits(srow, bias, c);
          // -inf (a masked key's bias) and columns past the last key: 0; NaN stays NaN.
          const __mmask16 keep = amx_valid(c, cols) & _mm512_cmp_ps_mask(x, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);
          const __m256i e = amx_round(_mm512_maskz_mov_ps(keep, amx_exp2(_mm512_sub_ps(x, shift))));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(w.p + r * bk + c), e);
          sum = _mm512_add_ps(sum, amx_widen(e));
        }
        w.l[r] = w.l[r] * w.alpha[r] + amx_hsum(sum);
        if (k0 > 0) {
          for (std::int64_t d = 0; d < dh; d += 16) {
            _mm512_storeu_ps(w.o + r * dh + d,
                             _mm512_mul_ps(_mm512_loadu_ps(w.o + r * dh + d), _mm512_set1_ps(w.alpha[r])));
          }
        }
      }
      amx_memory_barrier();  // P and the rescaled O are written
      // O += P V, 64 channels (four C tiles) at a time; the first block starts from zero.
      for (std::int64_t c0 = 0; c0 < dh; c0 += 64) {
        const std::int64_t tiles = std::min<std::int64_t>(4, (dh - c0) / 16);
        float* o = w.o + c0;
        if (k0 == 0) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
        } else {
          _tile_loadd(0, o, ldo);
          if (tiles > 1) _tile_loadd(1, o + 16, ldo);
          if (tiles > 2) _tile_loadd(2, o + 32, ldo);
          if (tiles > 3) _tile_loadd(3, o + 48, ldo);
        }
        // The Q tiles 4-7 are reloaded after this block: 4 and 5 carry P and V here.
        for (std::int64_t t = 0; t < width / 32; ++t) {
          const std::int64_t pair_tile = k0 / 32 + t, channels = c0 / 16;
          _tile_loadd(4, w.p + t * 32, ldp);
          _tile_loadd(5, v_tile(pair_tile, channels), 64);
          _tile_dpbf16ps(0, 4, 5);
          if (tiles > 1) {
            _tile_loadd(5, v_tile(pair_tile, channels + 1), 64);
            _tile_dpbf16ps(1, 4, 5);
          }
          if (tiles > 2) {
            _tile_loadd(5, v_tile(pair_tile, channels + 2), 64);
            _tile_dpbf16ps(2, 4, 5);
          }
          if (tiles > 3) {
            _tile_loadd(5, v_tile(pair_tile, channels + 3), 64);
            _tile_dpbf16ps(3, 4, 5);
          }
        }
        _tile_stored(0, o, ldo);
        if (tiles > 1) _tile_stored(1, o + 16, ldo);
        if (tiles > 2) _tile_stored(2, o + 32, ldo);
        if (tiles > 3) _tile_stored(3, o + 48, ldo);
      }
      _tile_loadd(4, q, ldq);
      if (chunks > 1) _tile_loadd(5, q + 32, ldq);
    }
    float* out = p.out + p.out_offset(b) + q0 * p.out_token_stride + h * dh;
    for (int r = 0; r < rows; ++r) {
      // A query whose keys are all masked has no softmax: NaN, as on the map path.
      const float inv = w.m[r] == -INFINITY ? NAN : 1.0f / w.l[r];
      for (std::int64_t d = 0; d < dh; d += 16) {
        _mm512_storeu_ps(out + r * p.out_token_stride + d,
                         _mm512_mul_ps(_mm512_loadu_ps(w.o + r * dh + d), _mm512_set1_ps(inv)));
      }
    }
  }
  _tile_release();
}

#undef REPSHIFT_AMX_SCORES_X4
#undef REPSHIFT_AMX_SCORES_X2
#undef REPSHIFT_AMX_TARGET

}  // namespace detail

// flash_attention's entries for this kernel (attention.hpp): the scratch
// one task needs (bytes) and one (sample, head) task. tokens: the longest
// sample's, which sizes the scratch.
inline std::int64_t amx_flash_scratch_bytes(std::int64_t tokens, std::int64_t head_dim) {
  return detail::AmxScratch::bytes(tokens, head_dim);
}
inline void amx_flash_task(const AttentionParams& p, std::int64_t tokens, std::int64_t bh, void* scratch) {
  detail::AmxScratch w(scratch, tokens, p.head_dim);
  detail::amx_flash_head(p, bh / p.heads, bh % p.heads, w);
}

#endif  // REPSHIFT_AMX_KERNELS

}  // namespace cpu
}  // namespace repshift
