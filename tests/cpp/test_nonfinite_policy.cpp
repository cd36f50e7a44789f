// The NaN/Inf policy stated in fwp.h, through the C API: compute functions
// propagate non-finite values with FWP_OK; setters, the optimizer step and
// checkpoint saves refuse them and change nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "fwp/fwp.h"
#include "temp_files.h"

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

class NonFinitePolicy : public ::testing::Test {
 protected:
  void SetUp() override {
    fwp_context_config cc;
    fwp_context_config_init(&cc);
    cc.num_threads = 1;
    ASSERT_EQ(fwp_context_create(&cc, &ctx_), FWP_OK);
    fwp_layer_config lc;
    fwp_layer_config_init(&lc);
    lc.d_model = 8;
    lc.num_heads = 2;
    lc.d_head = 4;
    ASSERT_EQ(fwp_layer_create(ctx_, &lc, &layer_), FWP_OK);
  }
  void TearDown() override {
    fwp_layer_destroy(layer_);
    fwp_context_destroy(ctx_);
  }
  std::string last_error() const { return fwp_last_error_message(); }

  fwp_context* ctx_ = nullptr;
  fwp_layer* layer_ = nullptr;
};

TEST_F(NonFinitePolicy, ForwardAndBackwardPropagateLikeBlas) {
  const int64_t batch = 1, steps = 3, width = 8;
  std::vector<float> x(batch * steps * width, 0.25f), y(x.size()), dx(x.size());
  x[width + 2] = kNaN;  // step 1 of 3
  ASSERT_EQ(fwp_layer_forward(layer_, x.data(), batch, steps, y.data()), FWP_OK);
  bool any_nan = false;
  for (float v : y) any_nan = any_nan || std::isnan(v);
  EXPECT_TRUE(any_nan);
  // Step 0 comes before the NaN in a causal layer: still finite.
  for (int64_t i = 0; i < width; ++i) EXPECT_TRUE(std::isfinite(y[i])) << i;

  std::vector<float> dy(x.size(), 1.0f);
  dy[0] = kInf;
  ASSERT_EQ(fwp_layer_forward(layer_, std::vector<float>(x.size(), 0.25f).data(), batch, steps, y.data()), FWP_OK);
  EXPECT_EQ(fwp_layer_backward(layer_, dy.data(), batch, steps, dx.data()), FWP_OK);
  bool any_non_finite = false;
  for (float v : dx) any_non_finite = any_non_finite || !std::isfinite(v);
  EXPECT_TRUE(any_non_finite);
}

TEST_F(NonFinitePolicy, SettersRefuseAndChangeNothing) {
  fwp_param_info info{};
  ASSERT_EQ(fwp_layer_param_info(layer_, 0, &info), FWP_OK);
  std::vector<float> before(static_cast<size_t>(info.numel)), after(before.size());
  ASSERT_EQ(fwp_layer_get_param(layer_, 0, before.data(), info.numel), FWP_OK);
  std::vector<float> bad = before;
  bad.back() = kInf;
  EXPECT_EQ(fwp_layer_set_param(layer_, 0, bad.data(), info.numel), FWP_ERR_INVALID_ARGUMENT);
  ASSERT_EQ(fwp_layer_get_param(layer_, 0, after.data(), info.numel), FWP_OK);
  EXPECT_EQ(before, after);

  // fwp_layer_set_state accepted NaN before the policy was stated.
  const int64_t batch = 2;
  int64_t w_count = 0, z_count = 0;
  ASSERT_EQ(fwp_layer_state_size(layer_, batch, &w_count, &z_count), FWP_OK);
  std::vector<float> w(static_cast<size_t>(w_count), 0.5f), z(static_cast<size_t>(z_count), 0.5f);
  ASSERT_EQ(fwp_layer_set_state(layer_, batch, w.data(), w_count, z.data(), z_count), FWP_OK);
  std::vector<float> bad_w = w;
  bad_w[3] = kNaN;
  EXPECT_EQ(fwp_layer_set_state(layer_, batch, bad_w.data(), w_count, z.data(), z_count), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("w[3] is not finite"), std::string::npos) << last_error();
  std::vector<float> bad_z = z;
  bad_z[1] = -kInf;
  EXPECT_EQ(fwp_layer_set_state(layer_, batch, w.data(), w_count, bad_z.data(), z_count), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("z[1] is not finite"), std::string::npos) << last_error();
  // The state set before is kept.
  int64_t got_batch = 0;
  std::vector<float> w_out(w.size()), z_out(z.size());
  ASSERT_EQ(fwp_layer_get_state(layer_, &got_batch, w_out.data(), w_count, z_out.data(), z_count), FWP_OK);
  EXPECT_EQ(got_batch, batch);
  EXPECT_EQ(w_out, w);
  EXPECT_EQ(z_out, z);
}

TEST_F(NonFinitePolicy, OptimizerRefusesANonFiniteGradientNamingTheParameter) {
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  fwp_optimizer* opt = nullptr;
  ASSERT_EQ(fwp_optimizer_create_for_layer(layer_, &oc, &opt), FWP_OK);
  const int64_t batch = 1, steps = 2, width = 8;
  std::vector<float> x(batch * steps * width, 0.5f), y(x.size()), dy(x.size(), 1.0f);
  dy[1] = kNaN;
  ASSERT_EQ(fwp_layer_forward(layer_, x.data(), batch, steps, y.data()), FWP_OK);
  ASSERT_EQ(fwp_layer_backward(layer_, dy.data(), batch, steps, nullptr), FWP_OK);
  fwp_param_info info{};
  ASSERT_EQ(fwp_layer_param_info(layer_, 0, &info), FWP_OK);
  std::vector<float> before(static_cast<size_t>(info.numel)), after(before.size());
  ASSERT_EQ(fwp_layer_get_param(layer_, 0, before.data(), info.numel), FWP_OK);
  float norm = 0.0f;
  EXPECT_EQ(fwp_optimizer_step(opt, &norm), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("the gradient of '"), std::string::npos) << last_error();
  EXPECT_NE(last_error().find("' is not finite"), std::string::npos) << last_error();
  int64_t taken = -1;
  ASSERT_EQ(fwp_optimizer_get_step(opt, &taken), FWP_OK);
  EXPECT_EQ(taken, 0);
  ASSERT_EQ(fwp_layer_get_param(layer_, 0, after.data(), info.numel), FWP_OK);
  EXPECT_EQ(before, after);
  fwp_optimizer_destroy(opt);
}

// An update with a huge learning rate overflows parameters to infinity; a save
// of them would write a file that every load refuses, so the save refuses
// instead and keeps the previous file.
TEST(NonFinitePolicyCheckpoint, SaveRefusesNonFiniteValuesAndKeepsThePreviousFile) {
  fwp::test::TempDir dir("fwp_nonfinite_save");
  const std::string path = dir.file("run.ckpt");
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 1;
  fwp_context* ctx = nullptr;
  ASSERT_EQ(fwp_context_create(&cc, &ctx), FWP_OK);
  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  rc.num_keys = 6;
  fwp_model* model = nullptr;
  ASSERT_EQ(fwp_model_create_retrieval(ctx, &rc, &model), FWP_OK);
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.kind = FWP_OPTIMIZER_SGD;
  oc.learning_rate = 3e38f;
  oc.weight_decay = 3e38f;  // lr * weight_decay * p overflows whatever the gradients are
  fwp_optimizer* opt = nullptr;
  ASSERT_EQ(fwp_optimizer_create_for_model(model, &oc, &opt), FWP_OK);
  ASSERT_EQ(fwp_checkpoint_save(path.c_str(), model, opt, nullptr, nullptr), FWP_OK);
  const fwp::test::Bytes good = fwp::test::read_bytes(path);

  fwp_retrieval_data* data = nullptr;
  ASSERT_EQ(fwp_retrieval_data_create(1, 6, 3, &data), FWP_OK);
  int64_t seq_len = 0;
  ASSERT_EQ(fwp_retrieval_data_seq_len(data, &seq_len), FWP_OK);
  const int64_t batch = 4;
  std::vector<int32_t> keys(batch * seq_len), values(keys.size()), queries(batch), targets(batch);
  ASSERT_EQ(fwp_retrieval_data_sample(data, batch, 1, keys.data(), values.data(), queries.data(), targets.data()),
            FWP_OK);
  const fwp_retrieval_batch b{batch, seq_len, 1, keys.data(), values.data(), queries.data(), targets.data()};
  float loss = 0.0f;
  ASSERT_EQ(fwp_retrieval_forward(model, &b, &loss, nullptr, 0), FWP_OK);
  ASSERT_EQ(fwp_model_backward(model), FWP_OK);
  ASSERT_EQ(fwp_optimizer_step(opt, nullptr), FWP_OK);  // finite gradients, overflowing update

  bool overflowed = false;
  int64_t count = 0;
  ASSERT_EQ(fwp_model_num_params(model, &count), FWP_OK);
  for (int64_t i = 0; i < count; ++i) {
    fwp_param_info info{};
    ASSERT_EQ(fwp_model_param_info(model, i, &info), FWP_OK);
    std::vector<float> value(static_cast<size_t>(info.numel));
    ASSERT_EQ(fwp_model_get_param(model, i, value.data(), info.numel), FWP_OK);
    for (float v : value) overflowed = overflowed || !std::isfinite(v);
  }
  ASSERT_TRUE(overflowed) << "lr and weight decay 3e38 did not overflow a parameter; the test needs another way";

  EXPECT_EQ(fwp_checkpoint_save(path.c_str(), model, opt, nullptr, nullptr), FWP_ERR_INVALID_ARGUMENT);
  const std::string message = fwp_last_error_message();
  EXPECT_NE(message.find("non-finite value"), std::string::npos) << message;
  EXPECT_EQ(fwp::test::read_bytes(path), good);
  EXPECT_EQ(fwp::test::list_dir(dir.path()), std::vector<std::string>{"run.ckpt"});

  fwp_retrieval_data_destroy(data);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
}

}  // namespace
