// Frozen copies of the public config structs as earlier releases declared
// them. A caller built against an older header passes one of these (its
// struct_size says which); read_config/write_config (api/checks.h) copy only
// the fields that release had. Never edit a struct here: add a new one for
// each release that appends fields, and pass its layout where the config is read.
#pragma once

#include <cstdint>

#include "api/checks.h"
#include "fwp/fwp.h"

namespace fwp::api {

// fwp_optimizer_config of 0.1.0 (before the learning-rate schedule fields).
struct fwp_optimizer_config_v0_1 {
  uint32_t struct_size;
  fwp_optimizer_kind kind;
  float learning_rate;
  float beta1;
  float beta2;
  float eps;
  float weight_decay;
  float momentum;
  float clip_grad_norm;
};
static_assert(sizeof(fwp_optimizer_config_v0_1) == 36, "the 0.1.0 optimizer config was 36 bytes");

}  // namespace fwp::api
