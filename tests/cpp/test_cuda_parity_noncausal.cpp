// CUDA vs CPU for the non-causal attention module (nn/noncausal_attention.h) on
// right-padded batches: encoder self-attention and cross-attention, softmax and
// each feature map: outputs, input and parameter gradients, and incremental
// cross-attention steps. Built only with FWP_HAVE_CUDA; every test skips with a
// visible "no CUDA device" message when none is present (fails instead under
// FWP_REQUIRE_CUDA=1). Reference: the CPU backend in double.
#include "core/backend.h"

#if FWP_HAVE_CUDA

#include <gtest/gtest.h>

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "../../cuda/cuda_backend.h"
#include "core/buffer.h"
#include "core/rng.h"
#include "cuda_test_util.h"
#include "nn/noncausal_attention.h"

namespace fwp {
namespace {

using cudatest::close_rel;
using DVec = std::vector<double>;

struct ParityKind {
  const char* name;
  NonCausalAttentionConfig config;
};
void PrintTo(const ParityKind& kind, std::ostream* os) { *os << kind.name; }

std::vector<ParityKind> parity_kinds() {
  NonCausalAttentionConfig base;
  base.d_model = 40;
  base.num_heads = 3;
  base.d_head = 13;
  base.init_std = 0.2;
  base.use_bias = true;
  std::vector<ParityKind> out;
  NonCausalAttentionConfig c = base;
  c.softmax = true;
  c.attn_normalize = false;
  out.push_back({"softmax", c});
  c = base;
  c.feature_map = FeatureMap::Elu;
  out.push_back({"elu", c});
  c = base;
  c.feature_map = FeatureMap::Favor;
  c.favor_features = 11;
  c.sum_normalize = true;
  out.push_back({"favor", c});
  c = base;
  c.feature_map = FeatureMap::Dpfp;
  c.dpfp_nu = 2;
  c.sum_normalize = true;
  out.push_back({"dpfp", c});
  return out;
}

// Cross-attention forward + backward, then begin + one step, on backend `be`; every result as doubles.
template <typename T>
std::vector<DVec> run_kind(const std::shared_ptr<Backend<T>>& be, const NonCausalAttentionConfig& c, bool self) {
  ParameterList<T> params;
  NonCausalAttention<T> attn(params, be, "", c);
  params.allocate(be);
  Rng rng(5);
  attn.init(params, rng);
  const int64_t B = 3, Tq = 9, Tk = self ? 9 : 17, D = c.d_model;
  const std::vector<int64_t> xl{9, 4, 1}, ml = self ? xl : std::vector<int64_t>{17, 5, 11};
  Rng data(6);
  auto host = [&](int64_t n) {
    std::vector<T> v(static_cast<size_t>(n));
    for (T& e : v) e = static_cast<T>(data.normal());
    return v;
  };
  auto dev = [&](const std::vector<T>& h) {
    Buffer<T> b(be, static_cast<int64_t>(h.size()));
    b.from_host(h.data(), static_cast<int64_t>(h.size()));
    return b;
  };
  Buffer<T> x = dev(host(B * Tq * D)), m = dev(host(B * Tk * D)), r = dev(host(B * Tq * D));
  Buffer<T> y(be, B * Tq * D), dx(be, B * Tq * D), dm(be, B * Tk * D);
  NonCausalAttentionWorkspace<T> ws;
  const Shape sx{B, Tq, D}, sm{B, Tk, D};
  params.zero_grad();
  if (self) {
    attn.forward_self(params, ConstView<T>(x.data(), sx), xl, TensorView<T>(y.data(), sx), ws);
    attn.backward_self(params, ConstView<T>(x.data(), sx), ConstView<T>(r.data(), sx), TensorView<T>(dx.data(), sx),
                       InputGrad::Overwrite, ws);
  } else {
    attn.forward(params, ConstView<T>(x.data(), sx), xl, ConstView<T>(m.data(), sm), ml, TensorView<T>(y.data(), sx),
                 ws);
    attn.backward(params, ConstView<T>(x.data(), sx), ConstView<T>(m.data(), sm), ConstView<T>(r.data(), sx),
                  TensorView<T>(dx.data(), sx), InputGrad::Overwrite, TensorView<T>(dm.data(), sm),
                  InputGrad::Overwrite, ws);
  }
  std::vector<DVec> out;
  auto add = [&](const std::vector<T>& v) { out.emplace_back(v.begin(), v.end()); };
  add(y.to_host());
  add(dx.to_host());
  if (!self) add(dm.to_host());
  for (int64_t i = 0; i < params.size(); ++i) add(params[i].grad.to_host());
  if (!self) {
    CrossAttentionState<T> state = attn.make_state();
    attn.begin(params, ConstView<T>(m.data(), sm), ml, state, ws);
    Buffer<T> q = dev(host(B * D)), yq(be, B * D);
    attn.step(params, ConstView<T>(q.data(), {B, D}), state, TensorView<T>(yq.data(), {B, D}), ws);
    add(yq.to_host());
  }
  return out;
}

class CudaParityNonCausal : public ::testing::TestWithParam<ParityKind> {
 public:
  void SetUp() override { FWP_SKIP_OR_FAIL_WITHOUT_CUDA_DEVICE("CudaParityNonCausal"); }
};

TEST_P(CudaParityNonCausal, PaddedSelfAndCrossAttentionMatchTheCpu) {
  const NonCausalAttentionConfig& c = GetParam().config;
  auto gpu = make_cuda_backend(0);
  auto cpu = make_cpu_backend<double>(2);
  for (const bool self : {false, true}) {
    SCOPED_TRACE(self ? "self-attention" : "cross-attention");
    const auto ref = run_kind<double>(cpu, c, self);
    const auto got = run_kind<float>(gpu, c, self);
    ASSERT_EQ(ref.size(), got.size());
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(close_rel(got[i], ref[i], 1e-4)) << "tensor " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CudaParityNonCausal, ::testing::ValuesIn(parity_kinds()),
                         [](const ::testing::TestParamInfo<ParityKind>& info) { return info.param.name; });

}  // namespace
}  // namespace fwp

#endif  // FWP_HAVE_CUDA
