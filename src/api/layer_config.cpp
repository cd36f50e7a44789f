#include "api/layer_config.h"

#include "api/checks.h"
#include "core/error.h"

namespace fwp {
namespace api {

namespace {
std::string got(int64_t v) { return " (got " + std::to_string(v) + ")"; }
}  // namespace

FastWeightLayerConfig layer_config_to_internal(const fwp_layer_config& user, const char* name,
                                               const std::string& field) {
  const fwp_layer_config c = read_config(user, fwp_layer_config_init, name);
  const int feature_map = enum_value(c.feature_map);
  if (feature_map < FWP_FEATURE_MAP_ELU || feature_map > FWP_FEATURE_MAP_SOFTMAX)
    throw Error(FWP_ERR_OUT_OF_RANGE, field + "feature_map must be one of FWP_FEATURE_MAP_*" + got(feature_map));
  const int rule = enum_value(c.update_rule);
  if (rule < FWP_UPDATE_SUM || rule > FWP_UPDATE_DELTA)
    throw Error(FWP_ERR_OUT_OF_RANGE, field + "update_rule must be FWP_UPDATE_SUM or FWP_UPDATE_DELTA" + got(rule));
  const int algorithm = enum_value(c.algorithm);
  if (algorithm < FWP_ALGORITHM_AUTO || algorithm > FWP_ALGORITHM_CHUNKED)
    throw Error(FWP_ERR_OUT_OF_RANGE, field + "algorithm must be one of FWP_ALGORITHM_*" + got(algorithm));
  for (const auto& flag : {std::make_pair(c.favor_redraw, "favor_redraw"),
                           std::make_pair(c.sum_normalize, "sum_normalize"),
                           std::make_pair(c.attn_normalize, "attn_normalize"),
                           std::make_pair(c.scale_output, "scale_output"), std::make_pair(c.use_bias, "use_bias"),
                           std::make_pair(c.carry_state, "carry_state")}) {
    check_flag(flag.first, (field + flag.second).c_str());
  }

  FastWeightLayerConfig out;
  out.d_model = c.d_model;
  out.num_heads = c.num_heads;
  out.d_head = c.d_head;
  out.softmax = feature_map == FWP_FEATURE_MAP_SOFTMAX;
  out.feature_map = internal_feature_map(feature_map);
  out.dpfp_nu = c.dpfp_nu;
  out.favor_features = c.favor_features;
  out.favor_redraw = c.favor_redraw != 0;
  out.update_rule = internal_update_rule(rule);
  out.sum_normalize = c.sum_normalize != 0;
  out.attn_normalize = c.attn_normalize != 0;
  out.norm_eps = static_cast<double>(c.norm_eps);
  out.scale_output = c.scale_output != 0;
  out.use_bias = c.use_bias != 0;
  out.init_std = static_cast<double>(c.init_std);
  switch (c.algorithm) {
    case FWP_ALGORITHM_AUTO: out.algorithm = Algorithm::Auto; break;
    case FWP_ALGORITHM_RECURRENT: out.algorithm = Algorithm::Recurrent; break;
    case FWP_ALGORITHM_CHUNKED: out.algorithm = Algorithm::Chunked; break;
  }
  out.chunk_size = c.chunk_size;
  out.carry_state = c.carry_state != 0;
  return out;
}

fwp_layer_config layer_config_to_public(const FastWeightLayerConfig& c) {
  fwp_layer_config out;
  fwp_layer_config_init(&out);
  out.d_model = c.d_model;
  out.num_heads = c.num_heads;
  out.d_head = c.d_head;
  out.feature_map = public_feature_map(c.softmax, c.feature_map);
  out.dpfp_nu = c.dpfp_nu;
  out.favor_features = c.favor_features;
  out.favor_redraw = c.favor_redraw ? 1 : 0;
  out.update_rule = public_update_rule(c.update_rule);
  out.sum_normalize = c.sum_normalize ? 1 : 0;
  out.attn_normalize = c.attn_normalize ? 1 : 0;
  out.norm_eps = static_cast<float>(c.norm_eps);
  out.scale_output = c.scale_output ? 1 : 0;
  out.use_bias = c.use_bias ? 1 : 0;
  out.init_std = static_cast<float>(c.init_std);
  switch (c.algorithm) {
    case Algorithm::Auto: out.algorithm = FWP_ALGORITHM_AUTO; break;
    case Algorithm::Recurrent: out.algorithm = FWP_ALGORITHM_RECURRENT; break;
    case Algorithm::Chunked: out.algorithm = FWP_ALGORITHM_CHUNKED; break;
  }
  out.chunk_size = c.chunk_size;
  out.carry_state = c.carry_state ? 1 : 0;
  return out;
}

}  // namespace api
}  // namespace fwp
