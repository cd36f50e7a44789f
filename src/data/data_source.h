// The interface every data source shares (the retrieval generator now, token
// files and parallel text later), behind the C API's fwp_data handle.
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
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

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
};

}  // namespace fwp
