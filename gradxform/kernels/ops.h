// The operations of gradxform's elementwise programs: opcode -> arithmetic, in one place.
//
// The interpreter in steps.cc and the loops that _program.py generates for each program both
// evaluate an instruction as gradxform_ops::Apply<opcode>(a, b, c), so the two cannot drift
// apart. The opcodes are the ones _program.py encodes (see its _OPCODES). Booleans are 0.0f and
// 1.0f; max and min propagate NaN from either side, as XLA's elementwise max and min do.
#pragma once

#include <cmath>

namespace gradxform_ops {

inline float Max(float a, float b) { return (a != a || a > b) ? a : b; }
inline float Min(float a, float b) { return (a != a || a < b) ? a : b; }
inline float B(bool x) { return x ? 1.0f : 0.0f; }
// pow(a, 0.5) and pow(a, -0.5) through sqrt, with pow's results at -0 and -inf.
inline float PowHalf(float a) { return a == -INFINITY ? INFINITY : std::sqrt(a + 0.0f); }
inline float PowMinusHalf(float a) { return 1.0f / PowHalf(a); }

// X(opcode, name, arity, value of the operands a, b, c)
#define GRADXFORM_OPS(X)                                                    \
  X(0, Copy, 1, a)                                                          \
  X(1, Neg, 1, -a)                                                          \
  X(2, Abs, 1, std::fabs(a))                                                \
  X(3, Sign, 1, a > 0.0f ? 1.0f : (a < 0.0f ? -1.0f : a))                   \
  X(4, Sqrt, 1, std::sqrt(a))                                               \
  X(5, Rsqrt, 1, 1.0f / std::sqrt(a))                                       \
  X(6, Exp, 1, std::exp(a))                                                 \
  X(7, Log, 1, std::log(a))                                                 \
  X(8, Log1p, 1, std::log1p(a))                                             \
  X(9, Expm1, 1, std::expm1(a))                                             \
  X(10, Tanh, 1, std::tanh(a))                                              \
  X(11, Logistic, 1, 1.0f / (1.0f + std::exp(-a)))                          \
  X(12, Floor, 1, std::floor(a))                                            \
  X(13, Ceil, 1, std::ceil(a))                                              \
  X(14, IsFinite, 1, B(std::isfinite(a)))                                   \
  X(15, Not, 1, B(a == 0.0f))                                               \
  X(16, RoundAway, 1, std::round(a))                                        \
  X(17, RoundEven, 1, std::nearbyint(a))                                    \
  X(18, Sin, 1, std::sin(a))                                                \
  X(19, Cos, 1, std::cos(a))                                                \
  X(20, Exp2, 1, std::exp2(a))                                              \
  X(21, Cbrt, 1, std::cbrt(a))                                              \
  X(22, PowHalf, 1, PowHalf(a))                                             \
  X(23, PowMinusHalf, 1, PowMinusHalf(a))                                   \
  X(32, Add, 2, a + b)                                                      \
  X(33, Sub, 2, a - b)                                                      \
  X(34, Mul, 2, a * b)                                                      \
  X(35, Div, 2, a / b)                                                      \
  X(36, Max, 2, Max(a, b))                                                  \
  X(37, Min, 2, Min(a, b))                                                  \
  X(38, Pow, 2, std::pow(a, b))                                             \
  X(39, Gt, 2, B(a > b))                                                    \
  X(40, Ge, 2, B(a >= b))                                                   \
  X(41, Lt, 2, B(a < b))                                                    \
  X(42, Le, 2, B(a <= b))                                                   \
  X(43, Eq, 2, B(a == b))                                                   \
  X(44, Ne, 2, B(a != b))                                                   \
  X(45, And, 2, B(a != 0.0f && b != 0.0f))                                  \
  X(46, Or, 2, B(a != 0.0f || b != 0.0f))                                   \
  X(47, Atan2, 2, std::atan2(a, b))                                         \
  X(48, Rem, 2, std::fmod(a, b))                                            \
  X(49, Xor, 2, B((a != 0.0f) != (b != 0.0f)))                              \
  X(64, Select, 3, a != 0.0f ? c : b) /* lax.select_n(pred, on_false, on_true) */ \
  X(65, Clamp, 3, Min(Max(b, a), c)) /* lax.clamp(lo, x, hi) */

template <int op>
float Apply(float a, float b, float c);

#define GRADXFORM_OPS_APPLY(code, name, arity, value)             \
  template <>                                                     \
  inline float Apply<code>(float a, float b, float c) {           \
    (void)b;                                                      \
    (void)c;                                                      \
    return (value);                                               \
  }
GRADXFORM_OPS(GRADXFORM_OPS_APPLY)
#undef GRADXFORM_OPS_APPLY

// The number of operands of `op`, 0 for an unknown opcode.
inline int Arity(int op) {
  switch (op) {
#define GRADXFORM_OPS_ARITY(code, name, arity, value) \
  case code:                                          \
    return arity;
    GRADXFORM_OPS(GRADXFORM_OPS_ARITY)
#undef GRADXFORM_OPS_ARITY
    default:
      return 0;
  }
}

}  // namespace gradxform_ops
