// How a backend wants a sequence of ops over many independent items (usually
// sequences) to be run. Device backends take the whole range in one go (their
// kernels span it); the CPU cuts it into cache-sized blocks spread over its
// threads, so that what one op writes for a block is still in cache when the
// next op reads it, instead of every op streaming the whole batch through
// memory (whose bandwidth a second core barely adds to). CPU:
// src/ops/cpu_backend.cpp.
#pragma once

#include <cstdint>
#include <functional>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class ScheduleOps : public virtual BackendFamily {
 public:
  // Calls fn(begin, end) for ranges that together cover [0, items), each item
  // touching about bytes_per_item bytes. fn must only touch its items' data:
  // ranges may run concurrently, and ops called inside run on one thread there.
  // The default: one call for the whole range.
  virtual void for_each_block(int64_t items, int64_t bytes_per_item,
                              const std::function<void(int64_t, int64_t)>& fn) {
    (void)bytes_per_item;
    if (items > 0) fn(0, items);
  }
};

}  // namespace fwp
