// One pass over memory for a whole Adam or AdamW step, for XLA:CPU through jax.ffi.
//
// XLA:CPU has no multi-output fusion, so a jitted Adam step (new first moment, new second
// moment, new parameters) compiles to three loops and moves 40 bytes per parameter. This
// kernel reads the parameters, gradients and both moments once and writes the parameters and
// both moments once: 28 bytes per parameter. Every leaf of the parameter tree goes to one
// call, so a tree of many small leaves costs one call instead of three loops per leaf.
//
// The arithmetic is the composition's, operation for operation (gradxform.adam / adamw):
//   m <- (1 - b1) g + b1 m          v <- (1 - b2) g^2 + b2 v
//   r  = (m / bc1) / (sqrt(v / bc2 + eps_root) + eps) + wd p
//   p <- p + (-lr) r
// with bc1 = 1 - b1^t and bc2 = 1 - b2^t computed by the caller. Built with
// -ffp-contract=off so that no multiply-add is fused and the rounding matches XLA's.
//
// Operands: scalars f32[8] = (lr, b1, b2, eps, eps_root, wd, bc1, bc2), then L parameters,
// L gradients, L first moments, L second moments (all f32). Results: L parameters, L first
// moments, L second moments, aliased by the caller to the corresponding operands.

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

struct Leaf {
  const float* p;
  const float* g;
  const float* m;
  const float* v;
  float* p_out;
  float* m_out;
  float* v_out;
};

// The scalars come in by value and the arrays as restrict pointers, so that the compiler
// keeps the scalars in registers and vectorizes the loop.
__attribute__((noinline)) void adam_range(
    const float lr, const float b1, const float b2, const float eps, const float eps_root,
    const float wd, const float bc1, const float bc2, const float* __restrict__ p,
    const float* __restrict__ g, const float* __restrict__ m, const float* __restrict__ v,
    float* __restrict__ p_out, float* __restrict__ m_out, float* __restrict__ v_out,
    const int64_t n) {
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

struct Step {
  float lr, b1, b2, eps, eps_root, wd, bc1, bc2;
  std::vector<Leaf> leaves;
  std::vector<int64_t> starts;  // starts[i]: offset of leaf i in the concatenation; back() = total
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void run_range(const Leaf& leaf, int64_t lo, int64_t hi) const {
    adam_range(lr, b1, b2, eps, eps_root, wd, bc1, bc2, leaf.p + lo, leaf.g + lo, leaf.m + lo,
               leaf.v + lo, leaf.p_out + lo, leaf.m_out + lo, leaf.v_out + lo, hi - lo);
  }

  // Chunk k covers [k * kChunk, (k + 1) * kChunk) of the leaves laid end to end, so large
  // leaves are split and small ones are grouped, without copying anything.
  void run_chunk(int64_t k) const {
    const int64_t lo = k * kChunk;
    const int64_t hi = std::min(lo + kChunk, starts.back());
    size_t i = std::upper_bound(starts.begin(), starts.end(), lo) - starts.begin() - 1;
    for (int64_t at = lo; at < hi; ++i) {
      const int64_t end = std::min(hi, starts[i + 1]);
      if (end > at) run_range(leaves[i], at - starts[i], end - starts[i]);
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

ffi::Error AdamStepImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars,
                        ffi::RemainingArgs args, ffi::RemainingRets rets) {
  if (scalars.element_count() != 8) {
    return ffi::Error::InvalidArgument("gradxform_adam_step: expected 8 scalars");
  }
  const size_t n_args = args.size();
  if (n_args % 4 != 0 || rets.size() * 4 != n_args * 3) {
    return ffi::Error::InvalidArgument(
        "gradxform_adam_step: expected 4 operands and 3 results per parameter leaf");
  }
  const size_t n_leaves = n_args / 4;
  const float* s = scalars.typed_data();

  auto step = std::make_shared<Step>();
  step->lr = s[0];
  step->b1 = s[1];
  step->b2 = s[2];
  step->eps = s[3];
  step->eps_root = s[4];
  step->wd = s[5];
  step->bc1 = s[6];
  step->bc2 = s[7];
  step->leaves.reserve(n_leaves);
  step->starts.reserve(n_leaves + 1);
  step->starts.push_back(0);

  for (size_t i = 0; i < n_leaves; ++i) {
    const float* ptr_in[4];
    int64_t count = -1;
    for (size_t j = 0; j < 4; ++j) {
      auto buf = args.get<ffi::AnyBuffer>(j * n_leaves + i);
      if (!buf.has_value()) return buf.error();
      if (buf->element_type() != ffi::DataType::F32) {
        return ffi::Error::InvalidArgument("gradxform_adam_step: every operand must be float32");
      }
      const int64_t n = static_cast<int64_t>(buf->element_count());
      if (count >= 0 && n != count) {
        return ffi::Error::InvalidArgument(
            "gradxform_adam_step: leaf " + std::to_string(i) + " has operands of different sizes");
      }
      count = n;
      ptr_in[j] = static_cast<const float*>(buf->untyped_data());
    }
    float* ptr_out[3];
    for (size_t j = 0; j < 3; ++j) {
      auto buf = rets.get<ffi::AnyBuffer>(j * n_leaves + i);
      if (!buf.has_value()) return buf.error();
      ptr_out[j] = static_cast<float*>((*buf)->untyped_data());
    }
    step->leaves.push_back(
        Leaf{ptr_in[0], ptr_in[1], ptr_in[2], ptr_in[3], ptr_out[0], ptr_out[1], ptr_out[2]});
    step->starts.push_back(step->starts.back() + count);
  }

  step->chunks = (step->starts.back() + kChunk - 1) / kChunk;
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

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(GradxformAdamStep, AdamStepImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets());
