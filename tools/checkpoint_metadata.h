// Reads the caller's metadata back from a checkpoint. Checkpoints are
// safetensors files (see fwp.h); fwp_checkpoint_save() stores its
// user_metadata argument as the "user" entry of `__metadata__`, which the C API
// has no getter for, so the program reads the documented header itself.
#ifndef FWP_TOOLS_CHECKPOINT_METADATA_H
#define FWP_TOOLS_CHECKPOINT_METADATA_H

#include <string>

namespace fwp_cli {

/// The "user" metadata string of a safetensors checkpoint. Throws RunError if
/// the file cannot be read, is not a safetensors file or has no such entry.
std::string read_checkpoint_user_metadata(const std::string& path);

}  // namespace fwp_cli

#endif  // FWP_TOOLS_CHECKPOINT_METADATA_H
