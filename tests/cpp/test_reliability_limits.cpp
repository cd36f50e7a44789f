// Size and number limits of issue 10: chunk_size is bounded by what the
// chunkwise algorithm can represent (it once overflowed steps + chunk - 1 and
// returned FWP_OK with gradients from unwritten memory), and epsilons must be
// normal floats (a subnormal one flushes to zero in the thread pool's workers,
// which set FTZ/DAZ, and the division it guards gives NaN).
#include <gtest/gtest.h>

#include <cfloat>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "core/limits.h"
#include "fwp/fwp.h"

namespace fwp {
namespace {

struct ContextHandle {
  fwp_context* ctx = nullptr;
  ContextHandle() {
    fwp_context_config cfg;
    fwp_context_config_init(&cfg);
    cfg.num_threads = 2;  // workers with FTZ/DAZ
    EXPECT_EQ(fwp_context_create(&cfg, &ctx), FWP_OK);
  }
  ~ContextHandle() { fwp_context_destroy(ctx); }
};

fwp_layer_config small_layer() {
  fwp_layer_config c;
  fwp_layer_config_init(&c);
  c.d_model = 8;
  c.num_heads = 2;
  c.d_head = 4;
  c.algorithm = FWP_ALGORITHM_CHUNKED;
  return c;
}

// fwp_layer_create's status, with the message checked to contain `part` on failure.
fwp_status create_layer(fwp_context* ctx, const fwp_layer_config& c, const std::string& part = "") {
  fwp_layer* layer = nullptr;
  const fwp_status st = fwp_layer_create(ctx, &c, &layer);
  if (st != FWP_OK && !part.empty()) {
    EXPECT_NE(std::string(fwp_last_error_message()).find(part), std::string::npos) << fwp_last_error_message();
  }
  fwp_layer_destroy(layer);
  return st;
}

TEST(FastWeightLimits, ChunkSizeBeyondTheLimitIsRefused) {
  ContextHandle h;
  const int64_t max = std::numeric_limits<int64_t>::max();
  for (int64_t chunk : {max, max - 1, max / 2, kMaxChunkSize + 1, int64_t(-1)}) {
    fwp_layer_config c = small_layer();
    c.chunk_size = chunk;
    EXPECT_EQ(create_layer(h.ctx, c, "chunk_size must be in [0, 65536]"), FWP_ERR_INVALID_ARGUMENT) << chunk;
  }
  // The largest chunk runs, and gives the gradients a one-chunk run gives.
  const int64_t B = 2, T = 5;
  std::vector<float> x(B * T * 8), dy(B * T * 8);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = 0.1f * static_cast<float>(i % 7) - 0.3f;
    dy[i] = 0.05f * static_cast<float>(i % 5) - 0.1f;
  }
  std::vector<std::vector<float>> dx_of;
  for (int64_t chunk : {kMaxChunkSize, T}) {
    ContextHandle same_seed;  // the same initial parameters for both
    fwp_layer_config c = small_layer();
    c.chunk_size = chunk;
    fwp_layer* layer = nullptr;
    ASSERT_EQ(fwp_layer_create(same_seed.ctx, &c, &layer), FWP_OK) << fwp_last_error_message();
    std::vector<float> y(x.size()), dx(x.size());
    ASSERT_EQ(fwp_layer_forward(layer, x.data(), B, T, y.data()), FWP_OK) << fwp_last_error_message();
    ASSERT_EQ(fwp_layer_backward(layer, dy.data(), B, T, dx.data()), FWP_OK) << fwp_last_error_message();
    dx_of.push_back(dx);
    fwp_layer_destroy(layer);
  }
  EXPECT_EQ(dx_of[0], dx_of[1]);
  // The backend checks too, whoever calls it.
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  Context ctx(cfg);
  FastWeightShape shape{};
  shape.streams = 1;
  shape.steps = 10;
  shape.d_key = 4;
  shape.d_value = 4;
  EXPECT_THROW(ctx.backend()->fast_weight_state_interval(shape, max), Error);
  EXPECT_EQ(ctx.backend()->fast_weight_state_interval(shape, 7), 7);
  EXPECT_EQ(ceil_div(max, max - 1), 2);
  EXPECT_EQ(ceil_div(10, 5), 2);
  EXPECT_EQ(ceil_div(0, 5), 0);
}

TEST(FastWeightLimits, SubnormalEpsilonsAreRefused) {
  ContextHandle h;
  const float subnormals[] = {1e-40f, FLT_MIN / 2, std::numeric_limits<float>::denorm_min()};
  for (float eps : subnormals) {
    fwp_layer_config c = small_layer();
    c.norm_eps = eps;
    EXPECT_EQ(create_layer(h.ctx, c, "norm_eps must be finite and >= FLT_MIN"), FWP_ERR_INVALID_ARGUMENT) << eps;

    fwp_retrieval_config rc;
    fwp_retrieval_config_init(&rc);
    rc.norm_eps = eps;
    fwp_model* model = nullptr;
    EXPECT_EQ(fwp_model_create_retrieval(h.ctx, &rc, &model), FWP_ERR_INVALID_ARGUMENT) << eps;
    EXPECT_NE(std::string(fwp_last_error_message()).find("norm_eps"), std::string::npos) << fwp_last_error_message();
    fwp_model_destroy(model);
  }
  fwp_layer_config c = small_layer();
  c.norm_eps = FLT_MIN;
  EXPECT_EQ(create_layer(h.ctx, c), FWP_OK) << "the smallest normal float is accepted";

  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  fwp_model* model = nullptr;
  ASSERT_EQ(fwp_model_create_retrieval(h.ctx, &rc, &model), FWP_OK);
  for (float eps : subnormals) {
    fwp_optimizer_config oc;
    fwp_optimizer_config_init(&oc);
    oc.eps = eps;
    fwp_optimizer* opt = nullptr;
    EXPECT_EQ(fwp_optimizer_create_for_model(model, &oc, &opt), FWP_ERR_INVALID_ARGUMENT) << eps;
    EXPECT_NE(std::string(fwp_last_error_message()).find("eps must be finite and >= FLT_MIN"), std::string::npos)
        << fwp_last_error_message();
    fwp_optimizer_destroy(opt);
  }
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.eps = FLT_MIN;
  fwp_optimizer* opt = nullptr;
  EXPECT_EQ(fwp_optimizer_create_for_model(model, &oc, &opt), FWP_OK);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(model);
  EXPECT_THROW(check_epsilon(std::numeric_limits<double>::quiet_NaN(), "eps"), Error);
  EXPECT_THROW(check_epsilon(0.0, "eps"), Error);
}

}  // namespace
}  // namespace fwp
