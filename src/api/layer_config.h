// The C layer config (fwp_layer_config) <-> the internal FastWeightLayerConfig,
// shared by fwp_layer_create() and the language model, whose config embeds a
// layer config for every attention layer.
#pragma once

#include <string>

#include "fwp/layer.h"
#include "nn/fast_weight_layer.h"

namespace fwp {
namespace api {

// Reads `user` at any released struct_size and checks its enums
// (FWP_ERR_OUT_OF_RANGE) and flags; sizes and consistency are left to the
// caller's validate(). `name` names the struct in messages ("config" or
// "config->attention"); `field` prefixes its fields ("config->" or
// "config->attention.").
FastWeightLayerConfig layer_config_to_internal(const fwp_layer_config& user, const char* name, const std::string& field);

fwp_layer_config layer_config_to_public(const FastWeightLayerConfig& c);

}  // namespace api
}  // namespace fwp
