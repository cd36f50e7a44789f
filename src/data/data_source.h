// The interface every data source shares (the retrieval generator, token
// files, parallel text), behind the C API's fwp_data handle.
//
// Sampling is kind-specific (each kind has its own sample function); what all
// kinds share is that checkpoints can store where a source stands and a
// resumed run continues from there. A checkpoint stores three things:
//   kind_name()    which kind of source wrote the state ("retrieval");
//   config_json()  what the source was created with (e.g. setting and S) and a
//                  source must match to take the state;
//   state_json()   where it stands (generator state, position in a file).
// Loading is two-phase so that a failed load changes nothing: the checkpoint
// compares kind and config and calls check_state() on everything before it
// calls restore_state() on anything.
//
// Shards (data-parallel training, fwp_data_set_shard()): process `index` of
// `count` takes its own part of every global batch. The shard is not part of
// the stored state: every shard walks the same global batches, so a
// checkpoint's position is the same for all of them and a run may resume with
// another count.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/error.h"
#include "fwp/data.h"

namespace fwp {

class DataSource {
 public:
  virtual ~DataSource() = default;

  virtual fwp_data_kind kind() const = 0;
  // The kind's name as checkpoints store it; fixed once released.
  virtual std::string kind_name() const = 0;

  // A JSON object of the settings a stored state depends on.
  virtual nlohmann::json config_json() const = 0;
  // A JSON object from which restore_state() resumes the exact sequence of batches.
  virtual nlohmann::json state_json() const = 0;

  // Throws Error(FWP_ERR_FORMAT) naming the problem unless `state` (written by
  // a source of this kind and config) can be restored here. Changes nothing.
  virtual void check_state(const nlohmann::json& state) const = 0;
  // Restores a state that check_state() accepted; does not throw then.
  virtual void restore_state(const nlohmann::json& state) = 0;

  // The one check of a shard: count >= 1, index in [0, count), and what the
  // kind needs (check_shard()); Error(FWP_ERR_INVALID_ARGUMENT) and nothing
  // changes otherwise.
  void set_shard(int64_t index, int64_t count) {
    require(count >= 1, FWP_ERR_INVALID_ARGUMENT, "count must be >= 1 (got " + std::to_string(count) + ")");
    require(index >= 0 && index < count, FWP_ERR_INVALID_ARGUMENT,
            "index must be in [0, count) = [0, " + std::to_string(count) + ") (got " + std::to_string(index) + ")");
    check_shard(count);
    shard_index_ = index;
    shard_count_ = count;
    shard_changed();
  }
  int64_t shard_index() const { return shard_index_; }
  int64_t shard_count() const { return shard_count_; }

 protected:
  // Throws Error(FWP_ERR_INVALID_ARGUMENT) where this kind cannot be cut into `count` shards.
  virtual void check_shard(int64_t count) const { (void)count; }
  // Called after the shard changed (e.g. to recompute sizes that depend on it); must not throw.
  virtual void shard_changed() {}

 private:
  int64_t shard_index_ = 0;
  int64_t shard_count_ = 1;
};

}  // namespace fwp
