// Running a kernel's units of work on the caller's thread and XLA's intra-op thread pool.

#ifndef GRADXFORM_POOL_H_
#define GRADXFORM_POOL_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace gradxform_pool {

// Runs `work->work()` on the caller and on as many pool threads as there are units to share,
// then waits until `work->done` counts all `units`. The caller works too, so the step finishes
// even when no pool thread is free; a pool task that starts late finds nothing and returns.
template <typename Work>
void RunShared(xla::ffi::ThreadPool& pool, const std::shared_ptr<Work>& work, int64_t units) {
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, units - 1);
  for (int64_t t = 0; t < helpers; ++t) {
    pool.Schedule([work] { work->work(); });
  }
  work->work();
  while (work->done.load(std::memory_order_acquire) < units) {
    std::this_thread::yield();
  }
}

}  // namespace gradxform_pool

#endif  // GRADXFORM_POOL_H_
