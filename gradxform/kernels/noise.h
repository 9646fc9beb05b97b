// Standard normal samples, element for element those of jax.random.normal(key, shape, float32)
// with the default Threefry-2x32 key and partitionable random bits, computed in one vectorized
// pass. XLA:CPU lowers Threefry as a loop over whole arrays (each of its five iterations reads
// and writes the counters), about 11 ns an element on a 2-core machine; here every element's
// sample stays in registers.
//
// Element i (row-major) of a leaf draws, from the leaf's key (k0, k1):
//   (a, b) = threefry2x32((k0, k1), (i >> 32, i & 0xffffffff))     bits = a ^ b
//   f = bitcast<float>((bits >> 9) | 0x3f800000) - 1                   in [0, 1)
//   x = max(lo, f (1 - lo) + lo), lo = nextafter(-1, 0)               in (-1, 1)
//   z = sqrt(2) erfinv(x)
// erfinv is Giles's single-precision polynomial in w = -log1p(-x^2), as XLA evaluates it; log1p
// is computed here without libm (whose scalar calls would not vectorize), so a sample may
// differ from XLA's in the last bits.
//
// References: Salmon, Moraes, Dror & Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3",
// SC 2011 (Threefry); Giles, "Approximating the erfinv function", GPU Computing Gems, 2011.

#ifndef GRADXFORM_NOISE_H_
#define GRADXFORM_NOISE_H_

#include <cmath>
#include <cstdint>
#include <cstring>

namespace gradxform_noise {

template <int r>
inline uint32_t Rotl(uint32_t x) {
  return (x << r) | (x >> (32 - r));
}

// Four Threefry rounds with rotations r0..r3, then the key injection of round group s.
template <int r0, int r1, int r2, int r3>
inline void Rounds(uint32_t& a, uint32_t& b) {
  a += b; b = Rotl<r0>(b); b ^= a;
  a += b; b = Rotl<r1>(b); b ^= a;
  a += b; b = Rotl<r2>(b); b ^= a;
  a += b; b = Rotl<r3>(b); b ^= a;
}

// Threefry-2x32 with 20 rounds, as jax.random evaluates it; returns a ^ b.
inline uint32_t ThreefryBits(uint32_t k0, uint32_t k1, uint32_t hi, uint32_t lo) {
  const uint32_t k2 = k0 ^ k1 ^ 0x1BD11BDAu;
  uint32_t a = hi + k0, b = lo + k1;
  Rounds<13, 15, 26, 6>(a, b); a += k1; b += k2 + 1u;
  Rounds<17, 29, 16, 24>(a, b); a += k2; b += k0 + 2u;
  Rounds<13, 15, 26, 6>(a, b); a += k0; b += k1 + 3u;
  Rounds<17, 29, 16, 24>(a, b); a += k1; b += k2 + 4u;
  Rounds<13, 15, 26, 6>(a, b); a += k2; b += k0 + 5u;
  return a ^ b;
}

inline float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint32_t ToBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// log(y) for a positive, finite, normal y: y = m 2^e with m in [sqrt(1/2), sqrt(2)), then a
// degree-9 minimax polynomial in m - 1 (Cephes's single-precision coefficients), branch-free.
inline float Log(float y) {
  const uint32_t bits = ToBits(y);
  // Exponent taken so that the mantissa lands in [sqrt(1/2), sqrt(2)).
  const uint32_t shifted = bits - 0x3f3504f3u;  // bits of sqrt(1/2)
  const int32_t e = static_cast<int32_t>(shifted) >> 23;
  const float m = FromBits((shifted & 0x007fffffu) + 0x3f3504f3u);
  const float x = m - 1.0f;
  const float z = x * x;
  float p = 7.0376836292e-2f;
  p = p * x - 1.1514610310e-1f;
  p = p * x + 1.1676998740e-1f;
  p = p * x - 1.2420140846e-1f;
  p = p * x + 1.4249322787e-1f;
  p = p * x - 1.6668057665e-1f;
  p = p * x + 2.0000714765e-1f;
  p = p * x - 2.4999993993e-1f;
  p = p * x + 3.3333331174e-1f;
  const float fe = static_cast<float>(e);
  float r = p * x * z;
  r += -2.12194440e-4f * fe;
  r += -0.5f * z;
  return (x + r) + 0.693359375f * fe;
}

// log1p(t) for t in (-1, 0]: log(1 + t) corrected for the rounding of 1 + t.
// Both sides of each select below are computed, so that the loop has no branch to stop it
// from being vectorized.
inline float Log1p(float t) {
  const float u = 1.0f + t;
  const float d = u - 1.0f;
  const float corrected = Log(u) * (t / (d == 0.0f ? 1.0f : d));
  return d == 0.0f ? t : corrected;
}

// Giles's erfinv, with XLA's evaluation order and its +-inf at +-1.
inline float ErfInv(float x) {
  const float w0 = -Log1p(x * -x);
  const bool central = w0 < 5.0f;
  const float tail = std::sqrt(w0) - 3.0f;
  const float w = central ? w0 - 2.5f : tail;
  float p = central ? 2.81022636e-08f : -0.000200214257f;
  p = (central ? 3.43273939e-07f : 0.000100950558f) + p * w;
  p = (central ? -3.5233877e-06f : 0.00134934322f) + p * w;
  p = (central ? -4.39150654e-06f : -0.00367342844f) + p * w;
  p = (central ? 0.00021858087f : 0.00573950773f) + p * w;
  p = (central ? -0.00125372503f : -0.0076224613f) + p * w;
  p = (central ? -0.00417768164f : 0.00943887047f) + p * w;
  p = (central ? 0.246640727f : 1.00167406f) + p * w;
  p = (central ? 1.50140941f : 2.83297682f) + p * w;
  return std::fabs(x) == 1.0f ? x * INFINITY : p * x;
}

// Sample `index` of the leaf whose key is (k0, k1).
inline float Normal(uint32_t k0, uint32_t k1, uint64_t index) {
  const uint32_t bits = ThreefryBits(k0, k1, static_cast<uint32_t>(index >> 32),
                                     static_cast<uint32_t>(index));
  const float f = FromBits((bits >> 9) | 0x3f800000u) - 1.0f;
  constexpr float lo = -0.99999994f;  // nextafter(-1, 0)
  constexpr float span = 1.0f - lo;   // rounds to 2, as jax computes it in float32
  const float x = f * span + lo;
  return 1.41421356f * ErfInv(x < lo ? lo : x);
}

}  // namespace gradxform_noise

#endif  // GRADXFORM_NOISE_H_
