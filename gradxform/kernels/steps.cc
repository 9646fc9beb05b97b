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
// -ffp-contract=off so that no multiply-add is fused. XLA:CPU fuses some (a product added to a
// value, depending on how it fused the loops) and divides by a scalar as a multiplication by
// its inverse, so results agree with the plain step to float32 rounding, not always bit for
// bit. adam8.h writes out the fused multiply-adds of the one composition it replaces, because
// its codes depend on the last bit.
//
// gradxform_adam_step (gradxform.adam / adamw), with bc1 = 1 - b1^t, bc2 = 1 - b2^t:
//   m <- (1 - b1) g + b1 m          v <- (1 - b2) g^2 + b2 v
//   r  = (m (1 / bc1)) / (sqrt(v (1 / bc2) + eps_root) + eps) + wd p
//   p <- p + (-lr) r
//   (divided by the bias corrections as multiplications by their inverses, as XLA:CPU compiles
//   the composition: on small leaves, which stay in the cache, divisions bound the loop)
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
// gradxform_sm3_step (gradxform.sm3), for a matrix leaf with row accumulators r and column
// accumulators c (a vector leaf comes as one row, its accumulator as c, with r = +inf):
//   nu = cg g^2 + b2 min(r_i, c_j)      u = g (nu > 0 ? 1 / sqrt(nu + eps) : 0)
//   m <- (1 - b1) u + b1 m              p <- p + m (-lr)
//   r_i <- max_j nu                     c_j <- max_i nu        (max and min propagate NaN)
//   operands: f32[6] (cg, b2, eps, 1 - b1, b1, -lr), then L parameters, L gradients, L momenta
//   (rank 2 at most), L row accumulators, L column accumulators; results: L parameters, L momenta,
//   L row accumulators, L column accumulators. The reductions are taken in the same pass, so
//   the step reads the gradients once where XLA reads them three times.
//
// gradxform_adam8_step (gradxform.quantized_state(adam)): see adam8.h.
//
// gradxform_add_noise (gradxform.add_noise): y = g + s z, where z holds the leaf's standard
// normal samples, those of jax.random.normal for its key (noise.h).
//   operands: u32[2 L] (each leaf's key data), f32[1] (s), then L gradients; results: L arrays.
//
// gradxform_program_step (any other elementwise step, see _program.py): a small register
// program, run over blocks of kBlock elements that stay in the L1 cache, so that the step still
// reads and writes each array once however many operations it has.
//   operands: s32[P] program, f32[S] (shared) or f32[L * S] (per leaf) scalars, then for each
//   of the program's n_in inputs the L leaves' arrays; results: for each of its n_out outputs
//   the L leaves' arrays.
//   program: n_in, n_out, n_scalars, n_temps, n_code, then n_out output registers, then n_code
//   instructions of kWidth ints (opcode, destination, up to three operands). Registers
//   [0, n_in) are the inputs, then n_scalars scalars (broadcast), then n_temps temporaries;
//   only temporaries are written. Booleans are 0.0f and 1.0f. The program is checked before
//   anything runs.
//
// The caller aliases each result to the operand it replaces, so with donated buffers the
// step runs in place. Each element is read before it is written, at the same index, which
// is the only overlap the restrict-qualified loops below see.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "adam8.h"
#include "noise.h"
#include "ops.h"
#include "pool.h"
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
  const float inv_bc1 = 1.0f / bc1, inv_bc2 = 1.0f / bc2;
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = one_minus_b1 * gi + b1 * m[i];
    const float vi = one_minus_b2 * (gi * gi) + b2 * v[i];
    const float pi = p[i];
    const float r = (mi * inv_bc1) / (std::sqrt(vi * inv_bc2 + eps_root) + eps) + wd * pi;
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

// ---------------------------------------------------------------------------------------------
// The program interpreter. Each instruction runs over one block of at most kBlock elements, so
// the dispatch costs little per element and the compiler vectorizes every loop.

constexpr int64_t kBlock = 512;
constexpr int kHeader = 5;
constexpr int kWidth = 5;

using gradxform_ops::Apply;
using gradxform_ops::Arity;
using gradxform_ops::Max;
using gradxform_ops::Min;

// One instruction over n elements. Each case is a loop of its own that the compiler
// vectorizes; the arithmetic is ops.h's, as in the compiled loops.
__attribute__((noinline)) void Exec(int32_t op, float* __restrict__ d, const float* __restrict__ a,
                                    const float* __restrict__ b, const float* __restrict__ c,
                                    int64_t n) {
  switch (op) {
#define GX_CASE(code, name, arity, value)                                                   \
  case code:                                                                                \
    for (int64_t i = 0; i < n; ++i) {                                                       \
      d[i] = Apply<code>(a[i], (arity) > 1 ? b[i] : 0.0f, (arity) > 2 ? c[i] : 0.0f);        \
    }                                                                                       \
    return;
    GRADXFORM_OPS(GX_CASE)
#undef GX_CASE
    default:
      return;
  }
}

// A checked view of a program operand.
struct Program {
  int32_t n_in = 0, n_out = 0, n_scalars = 0, n_temps = 0, n_code = 0;
  const int32_t* outputs = nullptr;
  const int32_t* code = nullptr;

  int32_t registers() const { return n_in + n_scalars + n_temps; }

  // Returns an empty string when the program is well formed, else what is wrong.
  std::string Parse(const int32_t* p, int64_t size) {
    if (size < kHeader) return "program shorter than its header";
    n_in = p[0], n_out = p[1], n_scalars = p[2], n_temps = p[3], n_code = p[4];
    constexpr int32_t kMax = 1 << 20;
    if (n_in < 1 || n_out < 1 || n_scalars < 0 || n_temps < 0 || n_code < 0 || n_in > kMax ||
        n_out > kMax || n_scalars > kMax || n_temps > kMax || n_code > kMax) {
      return "bad program header";
    }
    if (size != kHeader + n_out + int64_t{n_code} * kWidth) return "program size does not match its header";
    outputs = p + kHeader;
    code = outputs + n_out;
    for (int32_t k = 0; k < n_out; ++k) {
      if (outputs[k] < 0 || outputs[k] >= registers()) return "output register out of range";
    }
    const int32_t first_temp = n_in + n_scalars;
    for (int32_t k = 0; k < n_code; ++k) {
      const int32_t* ins = code + k * kWidth;
      const int arity = Arity(ins[0]);
      if (arity == 0) return "unknown opcode " + std::to_string(ins[0]);
      if (ins[1] < first_temp || ins[1] >= registers()) return "destination is not a temporary";
      for (int j = 0; j < 3; ++j) {  // unused operand fields must still name a register
        if (ins[2 + j] < 0 || ins[2 + j] >= registers() || (j < arity && ins[2 + j] == ins[1])) {
          return "operand register out of range or equal to the destination";
        }
      }
    }
    return "";
  }
};

// A thread's working memory: the program's scalar and temporary blocks, and its registers.
struct Scratch {
  std::vector<float> blocks;
  std::vector<float> staged;  // outputs that are inputs, copied before any output is written
  std::vector<const float*> reg;
};

// What one call runs over a leaf's elements [lo, hi).
struct Body {
  virtual ~Body() = default;
  virtual void Run(size_t leaf, const float* const* in, float* const* out, int64_t lo, int64_t hi,
                   Scratch& scratch) const = 0;
};

struct RangeBody : Body {
  Range range;
  const float* scalars;
  RangeBody(Range r, const float* s) : range(r), scalars(s) {}
  void Run(size_t, const float* const* in, float* const* out, int64_t lo, int64_t hi,
           Scratch&) const override {
    range(scalars, in, out, lo, hi);
  }
};

// Programs compiled to one loop each (by _program.py, with the machine's compiler), keyed by
// the program's int32s. The interpreter is only used for a program that has none: the loop
// keeps every intermediate in registers, where the interpreter moves each through memory.
std::mutex& CompiledLock() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}
std::unordered_map<std::string, Range>& Compiled() {
  static auto* table = new std::unordered_map<std::string, Range>;
  return *table;
}

Range FindCompiled(const int32_t* code, int64_t size) {
  const std::string key(reinterpret_cast<const char*>(code), sizeof(int32_t) * size);
  std::lock_guard<std::mutex> hold(CompiledLock());
  auto it = Compiled().find(key);
  return it == Compiled().end() ? nullptr : it->second;
}

struct ProgramBody : Body {
  Program program;
  Range compiled = nullptr;
  const float* scalars;
  int64_t scalar_stride;  // 0 when every leaf shares the scalars

  void Run(size_t leaf, const float* const* in, float* const* out, int64_t lo, int64_t hi,
           Scratch& scratch) const override {
    if (compiled != nullptr) {
      compiled(scalars + leaf * scalar_stride, in, out, lo, hi);
      return;
    }
    const Program& p = program;
    scratch.blocks.resize(static_cast<size_t>(p.n_scalars + p.n_temps) * kBlock);
    scratch.reg.resize(p.registers());
    scratch.staged.resize(static_cast<size_t>(p.n_out) * kBlock);
    float* blocks = scratch.blocks.data();
    const float** reg = scratch.reg.data();
    const float* s = scalars + leaf * scalar_stride;
    const int64_t fill = std::min(kBlock, hi - lo);
    for (int32_t k = 0; k < p.n_scalars; ++k) {
      float* block = blocks + static_cast<int64_t>(k) * kBlock;
      std::fill(block, block + fill, s[k]);
      reg[p.n_in + k] = block;
    }
    for (int32_t k = 0; k < p.n_temps; ++k) {
      reg[p.n_in + p.n_scalars + k] = blocks + static_cast<int64_t>(p.n_scalars + k) * kBlock;
    }
    for (int64_t at = lo; at < hi; at += kBlock) {
      const int64_t n = std::min(kBlock, hi - at);
      for (int32_t j = 0; j < p.n_in; ++j) reg[j] = in[j] + at;
      for (int32_t k = 0; k < p.n_code; ++k) {
        const int32_t* ins = p.code + k * kWidth;
        Exec(ins[0], const_cast<float*>(reg[ins[1]]), reg[ins[2]], reg[ins[3]], reg[ins[4]], n);
      }
      // Results are written only after every operand of this block has been read, so a
      // result aliased to an operand is safe. A result that is an input itself is copied
      // aside first, since another result may be aliased to that input.
      for (int32_t k = 0; k < p.n_out; ++k) {
        if (p.outputs[k] < p.n_in) {
          float* aside = scratch.staged.data() + static_cast<int64_t>(k) * kBlock;
          std::memcpy(aside, reg[p.outputs[k]], sizeof(float) * n);
        }
      }
      for (int32_t k = 0; k < p.n_out; ++k) {
        const float* from = p.outputs[k] < p.n_in
                                ? scratch.staged.data() + static_cast<int64_t>(k) * kBlock
                                : reg[p.outputs[k]];
        std::memmove(out[k] + at, from, sizeof(float) * n);
      }
    }
  }
};

// A step over every leaf of a call. Operand j of leaf i is in[i * n_in + j], result j is
// out[i * n_out + j].
struct Step {
  std::unique_ptr<Body> body;
  size_t n_in = 0, n_out = 0;
  std::vector<const float*> in;
  std::vector<float*> out;
  std::vector<int64_t> starts;  // starts[i]: offset of leaf i in the concatenation; back() = total
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  // Chunk k covers [k * kChunk, (k + 1) * kChunk) of the leaves laid end to end, so large
  // leaves are split and small ones are grouped, without copying anything.
  void run_chunk(int64_t k, Scratch& scratch) const {
    const int64_t lo = k * kChunk;
    const int64_t hi = std::min(lo + kChunk, starts.back());
    size_t i = std::upper_bound(starts.begin(), starts.end(), lo) - starts.begin() - 1;
    for (int64_t at = lo; at < hi; ++i) {
      const int64_t end = std::min(hi, starts[i + 1]);
      if (end > at) {
        body->Run(i, &in[i * n_in], &out[i * n_out], at - starts[i], end - starts[i], scratch);
      }
      at = std::max(at, end);
    }
  }

  // Takes chunks until none is left. The caller runs this too, so the step finishes even
  // when no pool thread is free; a pool task that starts late finds nothing and returns.
  void work() {
    Scratch scratch;
    for (;;) {
      const int64_t k = next.fetch_add(1, std::memory_order_relaxed);
      if (k >= chunks) return;
      run_chunk(k, scratch);
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// Decodes n_in operands and n_out results per leaf (operands from `first` on), checks them,
// and runs `body` over all of them on the caller's thread and XLA's intra-op thread pool.
ffi::Error RunStep(const char* name, std::unique_ptr<Body> body, size_t n_in, size_t n_out,
                   size_t first, ffi::ThreadPool& pool, ffi::RemainingArgs& args,
                   ffi::RemainingRets& rets) {
  const size_t n_args = args.size() - first;
  const size_t n_leaves = n_args / n_in;
  if (n_args % n_in != 0 || rets.size() != n_leaves * n_out) {
    return ffi::Error::InvalidArgument(std::string(name) + ": expected " + std::to_string(n_in) +
                                       " operands and " + std::to_string(n_out) +
                                       " results per parameter leaf");
  }
  auto step = std::make_shared<Step>();
  step->body = std::move(body);
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
        auto buf = args.get<ffi::AnyBuffer>(first + j * n_leaves + i);
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
  gradxform_pool::RunShared(pool, step, step->chunks);
  return ffi::Error::Success();
}

// The hand-written steps: a scalar operand, then the leaves' arrays.
ffi::Error RunFixed(const char* name, size_t n_scalars, size_t n_in, size_t n_out, Range range,
                    ffi::ThreadPool& pool, ffi::RemainingArgs& args, ffi::RemainingRets& rets) {
  auto scalars = args.get<ffi::Buffer<ffi::F32>>(0);
  if (!scalars.has_value()) return scalars.error();
  if (scalars->element_count() != n_scalars) {
    return ffi::Error::InvalidArgument(std::string(name) + ": expected " +
                                       std::to_string(n_scalars) + " scalars");
  }
  return RunStep(name, std::make_unique<RangeBody>(range, scalars->typed_data()), n_in, n_out, 1,
                 pool, args, rets);
}

ffi::Error AdamStep(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  return RunFixed("gradxform_adam_step", 8, 4, 3, adam_range, pool, args, rets);
}

ffi::Error SgdStep(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  return RunFixed("gradxform_sgd_step", 3, 3, 2, sgd_range, pool, args, rets);
}

ffi::Error ProgramStep(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  constexpr const char* name = "gradxform_program_step";
  auto code = args.get<ffi::Buffer<ffi::S32>>(0);
  if (!code.has_value()) return code.error();
  auto scalars = args.get<ffi::Buffer<ffi::F32>>(1);
  if (!scalars.has_value()) return scalars.error();
  auto body = std::make_unique<ProgramBody>();
  const std::string bad = body->program.Parse(code->typed_data(), code->element_count());
  if (!bad.empty()) return ffi::Error::InvalidArgument(std::string(name) + ": " + bad);
  const size_t n_in = body->program.n_in, n_out = body->program.n_out;
  const int64_t n_scalars = body->program.n_scalars;
  const int64_t n_leaves = args.size() >= 2 ? static_cast<int64_t>(args.size() - 2) / n_in : 0;
  const int64_t count = scalars->element_count();
  if (count != n_scalars && count != n_scalars * n_leaves) {
    return ffi::Error::InvalidArgument(std::string(name) + ": expected " +
                                       std::to_string(n_scalars) + " scalars, shared or per leaf");
  }
  body->scalars = scalars->typed_data();
  body->scalar_stride = count == n_scalars ? 0 : n_scalars;
  body->compiled = FindCompiled(code->typed_data(), code->element_count());
  return RunStep(name, std::move(body), n_in, n_out, 2, pool, args, rets);
}

// ---------------------------------------------------------------------------------------------
// Gaussian noise, sampled where it is added, so the samples never go through memory.

__attribute__((noinline)) void noise_loop(uint32_t k0, uint32_t k1, float s,
                                          const float* __restrict__ g, float* __restrict__ y,
                                          int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; ++i) {
    y[i] = g[i] + s * gradxform_noise::Normal(k0, k1, static_cast<uint64_t>(i));
  }
}

struct NoiseBody : Body {
  const uint32_t* keys = nullptr;
  float scale = 0.0f;
  void Run(size_t leaf, const float* const* in, float* const* out, int64_t lo, int64_t hi,
           Scratch&) const override {
    noise_loop(keys[2 * leaf], keys[2 * leaf + 1], scale, in[0], out[0], lo, hi);
  }
};

ffi::Error NoiseStep(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  constexpr const char* name = "gradxform_add_noise";
  auto keys = args.get<ffi::Buffer<ffi::U32>>(0);
  if (!keys.has_value()) return keys.error();
  auto scale = args.get<ffi::Buffer<ffi::F32>>(1);
  if (!scale.has_value()) return scale.error();
  if (scale->element_count() != 1 || keys->element_count() != 2 * (args.size() - 2)) {
    return ffi::Error::InvalidArgument(std::string(name) +
                                       ": expected two key words per leaf and one scale");
  }
  auto body = std::make_unique<NoiseBody>();
  body->keys = keys->typed_data();
  body->scale = scale->typed_data()[0];
  return RunStep(name, std::move(body), 1, 1, 2, pool, args, rets);
}

// ---------------------------------------------------------------------------------------------
// SM3. Work is split into blocks of whole rows of one leaf; each block takes its rows' maxima
// directly and folds its column maxima into the leaf's shared column maxima (under a lock),
// which are written out once every block is done, since the blocks still read the old
// column accumulators.

struct Sm3Leaf {
  const float *p, *g, *m, *r, *c;
  float *p_out, *m_out, *r_out, *c_out;
  int64_t rows = 0, cols = 0;
  std::vector<float> col_max;  // the maxima over the finished blocks' rows
};

struct Sm3Block {
  size_t leaf;
  int64_t lo, hi;  // rows
};

__attribute__((noinline)) void sm3_rows(const float* s, const Sm3Leaf& x, int64_t lo, int64_t hi,
                                        float* __restrict__ col_max) {
  const float cg = s[0], b2 = s[1], eps = s[2], one_minus_b1 = s[3], b1 = s[4], neg_lr = s[5];
  const int64_t n = x.cols;
  constexpr int64_t kLanes = 16;  // the row's maximum is kept per lane, so it vectorizes
  float nu[kBlock + kLanes];
  for (int64_t i = lo; i < hi; ++i) {
    const float ri = x.r[i];
    float lanes[kLanes];
    std::fill(lanes, lanes + kLanes, -INFINITY);
    for (int64_t at = 0; at < n; at += kBlock) {
      const int64_t len = std::min(kBlock, n - at);
      const int64_t o = i * n + at;
      const float* __restrict__ g = x.g + o;
      const float* __restrict__ c = x.c + at;
      for (int64_t j = 0; j < len; ++j) {
        nu[j] = cg * (g[j] * g[j]) + b2 * Min(ri, c[j]);
      }
      const float* __restrict__ p = x.p + o;
      const float* __restrict__ m = x.m + o;
      float* __restrict__ p_out = x.p_out + o;
      float* __restrict__ m_out = x.m_out + o;
      for (int64_t j = 0; j < len; ++j) {
        const float v = nu[j];
        const float root = 1.0f / std::sqrt(v + eps);  // computed either way: no branch
        const float inv = v > 0.0f ? root : 0.0f;
        const float mj = one_minus_b1 * (g[j] * inv) + b1 * m[j];
        m_out[j] = mj;
        p_out[j] = p[j] + mj * neg_lr;
      }
      float* __restrict__ cm = col_max + at;
      for (int64_t j = 0; j < len; ++j) cm[j] = Max(cm[j], nu[j]);
      // Padding the block to whole lanes with -inf changes no maximum.
      const int64_t padded = (len + kLanes - 1) / kLanes * kLanes;
      std::fill(nu + len, nu + padded, -INFINITY);
      for (int64_t j = 0; j < padded; j += kLanes) {
        for (int64_t k = 0; k < kLanes; ++k) lanes[k] = Max(lanes[k], nu[j + k]);
      }
    }
    float row_max = -INFINITY;
    for (int64_t k = 0; k < kLanes; ++k) row_max = Max(row_max, lanes[k]);
    x.r_out[i] = row_max;
  }
}

struct Sm3Work {
  const float* s = nullptr;
  std::vector<Sm3Leaf> leaves;
  std::vector<Sm3Block> blocks;
  std::mutex lock;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void work() {
    std::vector<float> part;
    for (;;) {
      const int64_t k = next.fetch_add(1, std::memory_order_relaxed);
      if (k >= static_cast<int64_t>(blocks.size())) return;
      const Sm3Block& b = blocks[k];
      Sm3Leaf& x = leaves[b.leaf];
      part.assign(x.cols, -INFINITY);
      sm3_rows(s, x, b.lo, b.hi, part.data());
      {
        std::lock_guard<std::mutex> hold(lock);
        for (int64_t j = 0; j < x.cols; ++j) x.col_max[j] = Max(x.col_max[j], part[j]);
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error Sm3Step(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  const std::string name = "gradxform_sm3_step";
  auto scalars = args.get<ffi::Buffer<ffi::F32>>(0);
  if (!scalars.has_value()) return scalars.error();
  if (scalars->element_count() != 6) return ffi::Error::InvalidArgument(name + ": expected 6 scalars");
  const size_t n_leaves = (args.size() - 1) / 5;
  if ((args.size() - 1) % 5 != 0 || rets.size() != 4 * n_leaves) {
    return ffi::Error::InvalidArgument(name + ": expected 5 operands and 4 results per parameter leaf");
  }
  auto step = std::make_shared<Sm3Work>();
  step->s = scalars->typed_data();
  step->leaves.resize(n_leaves);
  for (size_t i = 0; i < n_leaves; ++i) {
    Sm3Leaf& x = step->leaves[i];
    const float** ins[5] = {&x.p, &x.g, &x.m, &x.r, &x.c};
    int64_t counts[5];
    for (size_t j = 0; j < 5; ++j) {
      auto buf = args.get<ffi::AnyBuffer>(1 + j * n_leaves + i);
      if (!buf.has_value()) return buf.error();
      if (buf->element_type() != ffi::DataType::F32) {
        return ffi::Error::InvalidArgument(name + ": every operand must be float32");
      }
      if (j == 0) {  // a vector or a scalar is one row
        const auto dims = buf->dimensions();
        if (dims.size() > 2) return ffi::Error::InvalidArgument(name + ": parameters must have rank 2 at most");
        x.rows = dims.size() == 2 ? dims[0] : 1;
        x.cols = dims.size() == 2 ? dims[1] : static_cast<int64_t>(buf->element_count());
      }
      *ins[j] = static_cast<const float*>(buf->untyped_data());
      counts[j] = static_cast<int64_t>(buf->element_count());
    }
    float** outs[4] = {&x.p_out, &x.m_out, &x.r_out, &x.c_out};
    for (size_t j = 0; j < 4; ++j) {
      auto buf = rets.get<ffi::AnyBuffer>(j * n_leaves + i);
      if (!buf.has_value()) return buf.error();
      if ((*buf)->element_type() != ffi::DataType::F32) {
        return ffi::Error::InvalidArgument(name + ": every result must be float32");
      }
      const int64_t want = j < 2 ? counts[0] : j == 2 ? x.rows : x.cols;
      if (static_cast<int64_t>((*buf)->element_count()) != want) {
        return ffi::Error::InvalidArgument(name + ": leaf " + std::to_string(i) + " has a result of the wrong size");
      }
      *outs[j] = static_cast<float*>((*buf)->untyped_data());
    }
    const int64_t size = x.rows * x.cols;
    if (counts[1] != size || counts[2] != size || counts[3] != x.rows || counts[4] != x.cols) {
      return ffi::Error::InvalidArgument(name + ": leaf " + std::to_string(i) +
                                         " needs a gradient and a momentum of its shape and one accumulator per row and per column");
    }
    x.col_max.assign(x.cols, -INFINITY);
    const int64_t per = std::max<int64_t>(1, kChunk / std::max<int64_t>(1, x.cols));
    for (int64_t lo = 0; lo < x.rows; lo += per) {
      step->blocks.push_back({i, lo, std::min(x.rows, lo + per)});
    }
  }
  gradxform_pool::RunShared(pool, step, static_cast<int64_t>(step->blocks.size()));
  std::lock_guard<std::mutex> hold(step->lock);
  for (Sm3Leaf& x : step->leaves) {
    std::copy(x.col_max.begin(), x.col_max.end(), x.c_out);
  }
  return ffi::Error::Success();
}

}  // namespace

// Every step binds the same way: XLA's thread pool, then its operands and results.
#define GRADXFORM_STEP_HANDLER(symbol, impl) \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(symbol, impl, \
                                ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().RemainingArgs().RemainingRets())

GRADXFORM_STEP_HANDLER(GradxformAdamStep, AdamStep);
GRADXFORM_STEP_HANDLER(GradxformSgdStep, SgdStep);
GRADXFORM_STEP_HANDLER(GradxformProgramStep, ProgramStep);
GRADXFORM_STEP_HANDLER(GradxformSm3Step, Sm3Step);
GRADXFORM_STEP_HANDLER(GradxformAddNoise, NoiseStep);
GRADXFORM_STEP_HANDLER(GradxformAdam8Step, gradxform_adam8::Step);

// Registers `loop` as the compiled form of the program `code` (`size` int32s). Called from
// Python (ctypes) once the loop's library is loaded; the library stays loaded.
extern "C" __attribute__((visibility("default"))) void GradxformRegisterProgram(
    const int32_t* code, int64_t size, Range loop) {
  const std::string key(reinterpret_cast<const char*>(code), sizeof(int32_t) * size);
  std::lock_guard<std::mutex> hold(CompiledLock());
  Compiled()[key] = loop;
}
