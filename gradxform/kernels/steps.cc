// One pass over memory for a whole optimizer step, for XLA:CPU through jax.ffi.
//
// XLA:CPU has no multi-output fusion, so a jitted Adam step (new first moment, new second
// moment, new parameters) compiles to three loops and moves 40 bytes per parameter; SGD with
// momentum compiles to two loops and 24 bytes. These kernels read every array once and write
// every updated array once: 28 bytes per parameter for Adam, 20 for SGD with momentum. All
// the leaves of a parameter tree (up to the caller's group size) go to one call, so many
// small leaves cost one call instead of a few loops each.
//
// The arithmetic is the composition's, operation for operation, and the library is built with
// -ffp-contract=off so that no multiply-add is fused and the rounding matches XLA's.
//
// gradxform_adam_step (gradxform.adam / adamw), with bc1 = 1 - b1^t, bc2 = 1 - b2^t:
//   m <- (1 - b1) g + b1 m          v <- (1 - b2) g^2 + b2 v
//   r  = (m / bc1) / (sqrt(v / bc2 + eps_root) + eps) + wd p
//   p <- p + (-lr) r
//   operands: f32[8] (lr, b1, b2, eps, eps_root, wd, bc1, bc2), then L parameters,
//   L gradients, L first moments, L second moments; results: L parameters, L first moments,
//   L second moments.
//
// gradxform_sgd_step (gradxform.sgd with momentum):
//   t <- g + mu t                   d = nesterov ? g + mu t : t
//   p <- p + d (-lr)
//   operands: f32[3] (lr, mu, nesterov as 0 or 1), then L parameters, L gradients,
//   L momentum buffers; results: L parameters, L momentum buffers.
//
// The caller aliases each result to the operand it replaces, so with donated buffers the
// step runs in place. Each element is read before it is written, at the same index, which
// is the only overlap the restrict-qualified loops below see.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Elements per unit of work: large enough that scheduling costs nothing, small enough that
// two threads share a 16M-parameter step evenly.
constexpr int64_t kChunk = int64_t{1} << 16;

// The scalars are read into locals once and the arrays are restrict pointers, so that the
// compiler keeps the scalars in registers and vectorizes the loops.
__attribute__((noinline)) void adam_loop(
    const float* s, const float* __restrict__ p, const float* __restrict__ g,
    const float* __restrict__ m, const float* __restrict__ v, float* __restrict__ p_out,
    float* __restrict__ m_out, float* __restrict__ v_out, const int64_t n) {
  const float lr = s[0], b1 = s[1], b2 = s[2], eps = s[3], eps_root = s[4], wd = s[5];
  const float bc1 = s[6], bc2 = s[7];
  const float one_minus_b1 = 1.0f - b1;
  const float one_minus_b2 = 1.0f - b2;
  const float neg_lr = -lr;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = one_minus_b1 * gi + b1 * m[i];
    const float vi = one_minus_b2 * (gi * gi) + b2 * v[i];
    const float pi = p[i];
    const float r = (mi / bc1) / (std::sqrt(vi / bc2 + eps_root) + eps) + wd * pi;
    m_out[i] = mi;
    v_out[i] = vi;
    p_out[i] = pi + neg_lr * r;
  }
}

__attribute__((noinline)) void sgd_loop(const float* s, const float* __restrict__ p,
                                        const float* __restrict__ g, const float* __restrict__ t,
                                        float* __restrict__ p_out, float* __restrict__ t_out,
                                        const int64_t n) {
  const float neg_lr = -s[0], mu = s[1];
  if (s[2] != 0.0f) {
    for (int64_t i = 0; i < n; ++i) {
      const float gi = g[i];
      const float ti = gi + mu * t[i];
      t_out[i] = ti;
      p_out[i] = p[i] + (gi + mu * ti) * neg_lr;
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float ti = g[i] + mu * t[i];
      t_out[i] = ti;
      p_out[i] = p[i] + ti * neg_lr;
    }
  }
}

// A kernel applied to elements [lo, hi) of one leaf, given that leaf's operand and result
// pointers (in the order of the operand and result lists above).
using Range = void (*)(const float* s, const float* const* in, float* const* out, int64_t lo,
                       int64_t hi);

void adam_range(const float* s, const float* const* in, float* const* out, int64_t lo,
                int64_t hi) {
  adam_loop(s, in[0] + lo, in[1] + lo, in[2] + lo, in[3] + lo, out[0] + lo, out[1] + lo,
            out[2] + lo, hi - lo);
}

void sgd_range(const float* s, const float* const* in, float* const* out, int64_t lo,
               int64_t hi) {
  sgd_loop(s, in[0] + lo, in[1] + lo, in[2] + lo, out[0] + lo, out[1] + lo, hi - lo);
}

// A step over every leaf of a call. Operand j of leaf i is in[i * n_in + j], result j is
// out[i * n_out + j].
struct Step {
  const float* scalars = nullptr;
  Range range = nullptr;
  size_t n_in = 0, n_out = 0;
  std::vector<const float*> in;
  std::vector<float*> out;
  std::vector<int64_t> starts;  // starts[i]: offset of leaf i in the concatenation; back() = total
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  // Chunk k covers [k * kChunk, (k + 1) * kChunk) of the leaves laid end to end, so large
  // leaves are split and small ones are grouped, without copying anything.
  void run_chunk(int64_t k) const {
    const int64_t lo = k * kChunk;
    const int64_t hi = std::min(lo + kChunk, starts.back());
    size_t i = std::upper_bound(starts.begin(), starts.end(), lo) - starts.begin() - 1;
    for (int64_t at = lo; at < hi; ++i) {
      const int64_t end = std::min(hi, starts[i + 1]);
      if (end > at) {
        range(scalars, &in[i * n_in], &out[i * n_out], at - starts[i], end - starts[i]);
      }
      at = std::max(at, end);
    }
  }

  // Takes chunks until none is left. The caller runs this too, so the step finishes even
  // when no pool thread is free; a pool task that starts late finds nothing and returns.
  void work() {
    for (;;) {
      const int64_t k = next.fetch_add(1, std::memory_order_relaxed);
      if (k >= chunks) return;
      run_chunk(k);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// Checks the scalars, decodes n_in operands and n_out results per leaf, checks them, and runs
// `range` over all of them on the caller's thread and XLA's intra-op thread pool.
ffi::Error RunStep(const char* name, size_t n_scalars, size_t n_in, size_t n_out, Range range,
                   ffi::ThreadPool& pool, ffi::Buffer<ffi::F32>& scalars,
                   ffi::RemainingArgs& args, ffi::RemainingRets& rets) {
  if (scalars.element_count() != n_scalars) {
    return ffi::Error::InvalidArgument(std::string(name) + ": expected " +
                                       std::to_string(n_scalars) + " scalars");
  }
  const size_t n_leaves = args.size() / n_in;
  if (args.size() % n_in != 0 || rets.size() != n_leaves * n_out) {
    return ffi::Error::InvalidArgument(std::string(name) + ": expected " + std::to_string(n_in) +
                                       " operands and " + std::to_string(n_out) +
                                       " results per parameter leaf");
  }
  auto step = std::make_shared<Step>();
  step->scalars = scalars.typed_data();
  step->range = range;
  step->n_in = n_in;
  step->n_out = n_out;
  step->in.resize(n_leaves * n_in);
  step->out.resize(n_leaves * n_out);
  step->starts.assign(1, 0);
  for (size_t i = 0; i < n_leaves; ++i) {
    int64_t count = -1;
    for (size_t j = 0; j < n_in + n_out; ++j) {
      void* data = nullptr;
      int64_t n = 0;
      if (j < n_in) {
        auto buf = args.get<ffi::AnyBuffer>(j * n_leaves + i);
        if (!buf.has_value()) return buf.error();
        if (buf->element_type() != ffi::DataType::F32) {
          return ffi::Error::InvalidArgument(std::string(name) + ": every operand must be float32");
        }
        data = buf->untyped_data();
        n = static_cast<int64_t>(buf->element_count());
      } else {
        auto buf = rets.get<ffi::AnyBuffer>((j - n_in) * n_leaves + i);
        if (!buf.has_value()) return buf.error();
        if ((*buf)->element_type() != ffi::DataType::F32) {
          return ffi::Error::InvalidArgument(std::string(name) + ": every result must be float32");
        }
        data = (*buf)->untyped_data();
        n = static_cast<int64_t>((*buf)->element_count());
      }
      if (count >= 0 && n != count) {
        return ffi::Error::InvalidArgument(std::string(name) + ": leaf " + std::to_string(i) +
                                           " has arrays of different sizes");
      }
      count = n;
      if (j < n_in) {
        step->in[i * n_in + j] = static_cast<const float*>(data);
      } else {
        step->out[i * n_out + (j - n_in)] = static_cast<float*>(data);
      }
    }
    step->starts.push_back(step->starts.back() + count);
  }

  step->chunks = (step->starts.back() + kChunk - 1) / kChunk;
  // The caller works too, so one pool thread fewer than the pool has keeps every core busy.
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, step->chunks - 1);
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([step] { step->work(); });
  }
  step->work();
  while (step->done.load(std::memory_order_acquire) < step->chunks) {
    std::this_thread::yield();
  }
  return ffi::Error::Success();
}

ffi::Error AdamStep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                    ffi::RemainingRets rets) {
  return RunStep("gradxform_adam_step", 8, 4, 3, adam_range, pool, scalars, args, rets);
}

ffi::Error SgdStep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars, ffi::RemainingArgs args,
                   ffi::RemainingRets rets) {
  return RunStep("gradxform_sgd_step", 3, 3, 2, sgd_range, pool, scalars, args, rets);
}

}  // namespace

// Every step binds the same way: XLA's thread pool, the scalars, then the leaves' arrays.
#define GRADXFORM_STEP_HANDLER(symbol, impl)                                            \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(symbol, impl,                                           \
                                ffi::Ffi::Bind()                                        \
                                    .Ctx<ffi::ThreadPool>()                             \
                                    .Arg<ffi::Buffer<ffi::F32>>()                       \
                                    .RemainingArgs()                                    \
                                    .RemainingRets())

GRADXFORM_STEP_HANDLER(GradxformAdamStep, AdamStep);
GRADXFORM_STEP_HANDLER(GradxformSgdStep, SgdStep);
