// gradxform_adam8_step (gradxform.quantized_state(gradxform.adam / adamw)): Adam with both
// moments kept in 8 bits, block by block, in one pass. XLA decodes each moment into a float32
// array, runs Adam, then encodes the new moments (a block maximum and minimum, and a code per
// value), which moves every moment through memory several times. Here each block of
// `block_size` values is decoded, stepped and encoded while it sits in the L1 cache.
//
// The arithmetic is quantized.py's, operation for operation (its dequantize, Adam as in
// steps.cc, its _encode and _uniform), so the codes are the ones XLA would write:
//   decode   x = table[code + (nonneg ? 256 : 0)] * absmax
//   encode   absmax = max |x|, nonneg = min x >= 0 over the block (padding counts as 0, a NaN
//            does not);
//            a = |x| / (absmax > 0 ? absmax : 1); r = level(nonneg ? sqrt(a) : a, u);
//            code = r | (x < 0 and not nonneg ? 128 : 0)
//   u        0.5 (nearest), or a hash of the value's index in the padded array and the seed.
//   operands: f32[8 + 512 + 1] (Adam's eight scalars as in gradxform_adam_step, the decode
//   table, 1 for stochastic rounding or 0), then per leaf, column by column: parameters,
//   gradients, m's codes (u8[blocks, block_size]), m's block maxima (f32[blocks]), m's
//   unsigned-map flags (pred[blocks]), the same three for v, and u32[2] (m's and v's seeds);
//   results: parameters, then m's and v's codes, maxima and flags, each in place.
//
// Reference: Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
// Quantization", ICLR 2022.

#ifndef GRADXFORM_ADAM8_H_
#define GRADXFORM_ADAM8_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "pool.h"
#include "xla/ffi/api/ffi.h"

namespace gradxform_adam8 {

namespace ffi = xla::ffi;

constexpr int kScalars = 8, kTable = 512;
constexpr int kColumns = 9, kResults = 7;

// The magnitude level of a in [0, 1] (quantized.py's _encode, in its float32 order). The map
// (unsigned or signed) is a template argument, so that the bounds are constants and the
// caller's loop vectorizes.
template <bool kUnsignedMap>
inline int32_t Level(float a, float u) {
  constexpr float top = kUnsignedMap ? 255.0f : 127.0f;
  // bounds[j] = 10^(j - d) as float32 constants, j = 1 .. 7, d = 7 (unsigned) or 6 (signed)
  constexpr float b1 = kUnsignedMap ? 1e-6f : 1e-5f, b2 = kUnsignedMap ? 1e-5f : 1e-4f;
  constexpr float b3 = kUnsignedMap ? 1e-4f : 1e-3f, b4 = kUnsignedMap ? 1e-3f : 1e-2f;
  constexpr float b5 = kUnsignedMap ? 1e-2f : 1e-1f, b6 = kUnsignedMap ? 1e-1f : 1e0f;
  constexpr float b7 = kUnsignedMap ? 1e0f : 1e1f;
  const float safe = std::max(a, 1e-30f);
  // The decade e counts the bounds reached (only d - 1 of them); width = 2^(e + 1) and low =
  // bounds[e + 1] follow. Everything is a float select (exact on these small integers),
  // which vectorizes where selects on integers and booleans do not.
  float low = b1, width = 2.0f;
  low = safe >= b1 ? b2 : low;
  width = safe >= b1 ? 4.0f : width;
  low = safe >= b2 ? b3 : low;
  width = safe >= b2 ? 8.0f : width;
  low = safe >= b3 ? b4 : low;
  width = safe >= b3 ? 16.0f : width;
  low = safe >= b4 ? b5 : low;
  width = safe >= b4 ? 32.0f : width;
  low = safe >= b5 ? b6 : low;
  width = safe >= b5 ? 64.0f : width;
  if (kUnsignedMap) {
    low = safe >= b6 ? b7 : low;
    width = safe >= b6 ? 128.0f : width;
  }
  const float frac = safe / low;
  // As XLA:CPU compiles it: (frac + -0.1) * (1 / 0.9), and the product with width fused
  // with the addition of -0.5.
  const float pos = std::fma((frac + -0.1f) * (1.0f / 0.9f), width, -0.5f);
  const float level = std::floor(pos + u);  // clipped to [0, width - 1], NaN to 0
  const float clipped = level >= 0.0f ? std::min(level, width - 1.0f) : 0.0f;
  float r = width - 1.0f + clipped;
  constexpr float smallest = 0.325f * b1;
  constexpr float largest = 1.0f - 0.45f / (kUnsignedMap ? 128.0f : 64.0f);
  r = a < 0.5f * smallest ? 0.0f : r;
  r = a > 0.5f * (largest + 1.0f) ? top : r;
  return static_cast<int32_t>(r);
}

// quantized.py's _uniform: a counter-based hash of (index, seed), in [0, 1).
inline float Uniform(uint32_t index, uint32_t seed) {
  uint32_t x = index * 0x9E3779B1u + seed * 0x85EBCA6Bu;
  x = (x ^ (x >> 16)) * 0x7FEB352Du;
  x = (x ^ (x >> 15)) * 0x846CA68Bu;
  x = x ^ (x >> 16);
  // x >> 8 < 2^24, so through int32 the conversion is exact, and it vectorizes.
  return static_cast<float>(static_cast<int32_t>(x >> 8)) * 5.9604644775390625e-8f;  // 2^-24
}

template <bool kUnsignedMap, bool kStochastic>
__attribute__((noinline)) void EncodeValues(const float* __restrict__ x, int64_t size, float scale,
                                            uint32_t first, uint32_t seed, uint8_t* __restrict__ codes) {
  const float inverse = 1.0f / scale;  // XLA divides by a block's scale this way
  for (int64_t j = 0; j < size; ++j) {
    const float a = std::fabs(x[j]) * inverse;
    const float u = kStochastic ? Uniform(first + static_cast<uint32_t>(j), seed) : 0.5f;
    const int32_t r = Level<kUnsignedMap>(kUnsignedMap ? std::sqrt(a) : a, u);
    // x < 0, from the sign bit (the comparison's mask kept the loop from vectorizing).
    uint32_t bits;
    std::memcpy(&bits, &x[j], sizeof bits);
    const int32_t negative = static_cast<int32_t>(bits >> 31) & int32_t{std::fabs(x[j]) > 0.0f};
    codes[j] = static_cast<uint8_t>(r | (kUnsignedMap ? 0 : negative << 7));
  }
}

// Encodes one block of `size` values (padding included), as quantize does: the block's
// largest magnitude and smallest value, then a code per value. A NaN is left out of the
// maximum and minimum, so one NaN gradient costs its own value and not the block's scale:
// the other values of the block still decode to numbers.
inline void EncodeBlock(const float* x, int64_t size, uint32_t first, bool stochastic, uint32_t seed,
                        uint8_t* codes, float* absmax, bool* nonneg) {
  // Kept per lane, so that the reductions vectorize.
  constexpr int64_t kLanes = 16;
  float tops[kLanes], bottoms[kLanes];
  for (int64_t k = 0; k < kLanes; ++k) {
    tops[k] = 0.0f;
    bottoms[k] = INFINITY;
  }
  const int64_t whole = size / kLanes * kLanes;
  for (int64_t j = 0; j < whole; j += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) {
      const float xj = x[j + k];
      const float aj = std::fabs(xj);
      tops[k] = aj > tops[k] ? aj : tops[k];
      bottoms[k] = xj < bottoms[k] ? xj : bottoms[k];
    }
  }
  float top = 0.0f, bottom = INFINITY;
  for (int64_t k = 0; k < kLanes; ++k) {
    top = tops[k] > top ? tops[k] : top;
    bottom = bottoms[k] < bottom ? bottoms[k] : bottom;
  }
  for (int64_t j = whole; j < size; ++j) {
    top = std::fabs(x[j]) > top ? std::fabs(x[j]) : top;
    bottom = x[j] < bottom ? x[j] : bottom;
  }
  const bool unsigned_map = bottom >= 0.0f;
  const float scale = top > 0.0f ? top : 1.0f;
  if (unsigned_map) {
    (stochastic ? EncodeValues<true, true> : EncodeValues<true, false>)(x, size, scale, first, seed, codes);
  } else {
    (stochastic ? EncodeValues<false, true> : EncodeValues<false, false>)(x, size, scale, first, seed, codes);
  }
  *absmax = top;
  *nonneg = unsigned_map;
}

// Decodes both moments of one block's values, takes Adam's step (the arithmetic of
// gradxform_adam_step) and keeps the new moments in m and v for encoding.
__attribute__((noinline)) void AdamDecoded(const float* s, const float* __restrict__ p,
                                           const float* __restrict__ g, const uint8_t* __restrict__ mc,
                                           const uint8_t* __restrict__ vc, const float* __restrict__ mt,
                                           const float* __restrict__ vt, float ma, float va,
                                           float* __restrict__ m, float* __restrict__ v,
                                           float* __restrict__ p_out, int64_t len) {
  const float lr = s[0], b1 = s[1], b2 = s[2], eps = s[3], eps_root = s[4], wd = s[5];
  // The arithmetic XLA:CPU compiles the composition to, which the codes depend on to the last
  // bit: divisions by the bias corrections become multiplications by their inverses, and a
  // product added to something becomes one fused multiply-add.
  const float inv_bc1 = 1.0f / s[6], inv_bc2 = 1.0f / s[7];
  const float one_minus_b1 = 1.0f - b1, one_minus_b2 = 1.0f - b2, neg_lr = -lr;
  for (int64_t j = 0; j < len; ++j) {
    const float gi = g[j], pi = p[j];
    const float mi = std::fma(one_minus_b1, gi, b1 * (mt[mc[j]] * ma));
    const float vi = std::fma(one_minus_b2, gi * gi, b2 * (vt[vc[j]] * va));
    const float ratio = (mi * inv_bc1) / (std::sqrt(std::fma(vi, inv_bc2, eps_root)) + eps);
    const float r = wd != 0.0f ? std::fma(wd, pi, ratio) : ratio;
    m[j] = mi;
    v[j] = vi;
    p_out[j] = std::fma(r, neg_lr, pi);
  }
}

struct Leaf {
  const float *p = nullptr, *g = nullptr;
  float* p_out = nullptr;
  const uint32_t* seeds = nullptr;
  // [0]: m, [1]: v
  const uint8_t* codes[2] = {};
  const float* absmax[2] = {};
  const bool* nonneg[2] = {};
  uint8_t* codes_out[2] = {};
  float* absmax_out[2] = {};
  bool* nonneg_out[2] = {};
  int64_t n = 0, block = 0, blocks = 0;
};

struct Unit {
  size_t leaf;
  int64_t lo, hi;  // blocks
};

struct Work {
  const float* s = nullptr;  // Adam's scalars, then the table, then the rounding flag
  std::vector<Leaf> leaves;
  std::vector<Unit> units;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void Block(const Leaf& x, int64_t b, float* m, float* v) const {
    const float* table = s + kScalars;
    const bool stochastic = s[kScalars + kTable] != 0.0f;
    const int64_t at = b * x.block, len = std::min(x.block, x.n - at);
    AdamDecoded(s, x.p + at, x.g + at, x.codes[0] + at, x.codes[1] + at, table + (x.nonneg[0][b] ? 256 : 0),
                table + (x.nonneg[1][b] ? 256 : 0), x.absmax[0][b], x.absmax[1][b], m, v, x.p_out + at, len);
    std::fill(m + len, m + x.block, 0.0f);
    std::fill(v + len, v + x.block, 0.0f);
    const uint32_t first = static_cast<uint32_t>(at);
    EncodeBlock(m, x.block, first, stochastic, x.seeds[0], x.codes_out[0] + at, x.absmax_out[0] + b,
                x.nonneg_out[0] + b);
    EncodeBlock(v, x.block, first, stochastic, x.seeds[1], x.codes_out[1] + at, x.absmax_out[1] + b,
                x.nonneg_out[1] + b);
  }

  void work() {
    std::vector<float> scratch;
    for (;;) {
      const int64_t k = next.fetch_add(1, std::memory_order_relaxed);
      if (k >= static_cast<int64_t>(units.size())) return;
      const Unit& unit = units[k];
      const Leaf& x = leaves[unit.leaf];
      scratch.resize(2 * x.block);
      for (int64_t b = unit.lo; b < unit.hi; ++b) Block(x, b, scratch.data(), scratch.data() + x.block);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

template <typename T>
ffi::Error Get(ffi::RemainingArgs& args, size_t k, ffi::DataType type, int64_t count, const T** out,
               const char* what, size_t leaf) {
  auto buf = args.get<ffi::AnyBuffer>(k);
  if (!buf.has_value()) return buf.error();
  if (buf->element_type() != type || static_cast<int64_t>(buf->element_count()) != count) {
    return ffi::Error::InvalidArgument("gradxform_adam8_step: leaf " + std::to_string(leaf) + ": " + what +
                                       " has the wrong dtype or size");
  }
  *out = static_cast<const T*>(buf->untyped_data());
  return ffi::Error::Success();
}

template <typename T>
ffi::Error Put(ffi::RemainingRets& rets, size_t k, ffi::DataType type, int64_t count, T** out,
               const char* what, size_t leaf) {
  auto buf = rets.get<ffi::AnyBuffer>(k);
  if (!buf.has_value()) return buf.error();
  if ((*buf)->element_type() != type || static_cast<int64_t>((*buf)->element_count()) != count) {
    return ffi::Error::InvalidArgument("gradxform_adam8_step: leaf " + std::to_string(leaf) + ": result " + what +
                                       " has the wrong dtype or size");
  }
  *out = static_cast<T*>((*buf)->untyped_data());
  return ffi::Error::Success();
}

// Blocks per unit of work: 32 blocks of 2,048 values is the size of the other kernels' chunks.
constexpr int64_t kBlocksPerUnit = 32;

inline ffi::Error Step(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  auto head = args.get<ffi::Buffer<ffi::F32>>(0);
  if (!head.has_value()) return head.error();
  if (head->element_count() != kScalars + kTable + 1) {
    return ffi::Error::InvalidArgument("gradxform_adam8_step: expected 521 scalars");
  }
  const size_t n_leaves = (args.size() - 1) / kColumns;
  if ((args.size() - 1) % kColumns != 0 || rets.size() != n_leaves * kResults) {
    return ffi::Error::InvalidArgument("gradxform_adam8_step: expected 9 operands and 7 results per leaf");
  }
  auto work = std::make_shared<Work>();
  work->s = head->typed_data();
  work->leaves.resize(n_leaves);
  const auto col = [n_leaves](size_t c, size_t i) { return 1 + c * n_leaves + i; };
  const auto res = [n_leaves](size_t c, size_t i) { return c * n_leaves + i; };
  for (size_t i = 0; i < n_leaves; ++i) {
    Leaf& x = work->leaves[i];
    auto p = args.get<ffi::AnyBuffer>(col(0, i));
    if (!p.has_value()) return p.error();
    auto codes = args.get<ffi::AnyBuffer>(col(2, i));
    if (!codes.has_value()) return codes.error();
    const auto dims = codes->dimensions();
    if (dims.size() != 2) return ffi::Error::InvalidArgument("gradxform_adam8_step: codes must be [blocks, block_size]");
    x.n = static_cast<int64_t>(p->element_count());
    x.blocks = dims[0];
    x.block = dims[1];
    if (x.block <= 0 || x.blocks * x.block < x.n || (x.blocks - 1) * x.block >= std::max<int64_t>(x.n, 1)) {
      return ffi::Error::InvalidArgument("gradxform_adam8_step: leaf " + std::to_string(i) +
                                         ": codes do not cover its values");
    }
    ffi::Error e = Get(args, col(0, i), ffi::DataType::F32, x.n, &x.p, "parameters", i);
    if (e.failure()) return e;
    if ((e = Get(args, col(1, i), ffi::DataType::F32, x.n, &x.g, "gradients", i)).failure()) return e;
    if ((e = Get(args, col(8, i), ffi::DataType::U32, 2, &x.seeds, "seeds", i)).failure()) return e;
    if ((e = Put(rets, res(0, i), ffi::DataType::F32, x.n, &x.p_out, "parameters", i)).failure()) return e;
    for (int k = 0; k < 2; ++k) {
      const int64_t values = x.blocks * x.block;
      if ((e = Get(args, col(2 + 3 * k, i), ffi::DataType::U8, values, &x.codes[k], "codes", i)).failure()) return e;
      if ((e = Get(args, col(3 + 3 * k, i), ffi::DataType::F32, x.blocks, &x.absmax[k], "maxima", i)).failure()) return e;
      if ((e = Get(args, col(4 + 3 * k, i), ffi::DataType::PRED, x.blocks, &x.nonneg[k], "flags", i)).failure()) return e;
      if ((e = Put(rets, res(1 + 3 * k, i), ffi::DataType::U8, values, &x.codes_out[k], "codes", i)).failure()) return e;
      if ((e = Put(rets, res(2 + 3 * k, i), ffi::DataType::F32, x.blocks, &x.absmax_out[k], "maxima", i)).failure()) return e;
      if ((e = Put(rets, res(3 + 3 * k, i), ffi::DataType::PRED, x.blocks, &x.nonneg_out[k], "flags", i)).failure()) return e;
    }
    for (int64_t lo = 0; lo < x.blocks; lo += kBlocksPerUnit) {
      work->units.push_back({i, lo, std::min(x.blocks, lo + kBlocksPerUnit)});
    }
  }
  gradxform_pool::RunShared(pool, work, static_cast<int64_t>(work->units.size()));
  return ffi::Error::Success();
}

}  // namespace gradxform_adam8

#endif  // GRADXFORM_ADAM8_H_
