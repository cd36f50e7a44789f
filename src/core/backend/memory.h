// Memory of a backend: allocation, host<->device copies, fills, synchronisation. Counts are in
// elements. Every backend must implement all of these (they are pure virtual).
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class MemoryOps : public virtual BackendFamily {
 public:
  // allocate throws Error(FWP_ERR_OUT_OF_MEMORY) on failure; n == 0 may return nullptr.
  virtual T* allocate(int64_t n) = 0;
  virtual void deallocate(T* p) noexcept = 0;
  virtual int32_t* allocate_int(int64_t n) = 0;
  virtual void deallocate_int(int32_t* p) noexcept = 0;
  virtual void upload(T* dst, const T* host_src, int64_t n) = 0;
  virtual void download(T* host_dst, const T* src, int64_t n) = 0;
  virtual void upload_int(int32_t* dst, const int32_t* host_src, int64_t n) = 0;
  virtual void copy(T* dst, const T* src, int64_t n) = 0;

  virtual void fill(T* dst, T value, int64_t n) = 0;

  // Blocks until all queued work is done (no-op on the CPU).
  virtual void synchronize() = 0;
};

}  // namespace fwp
