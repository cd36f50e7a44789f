// The small value types that op signatures use: devices, feature maps, update
// rules, algorithms, shapes and optimizer step settings.
#pragma once

#include <cstdint>

namespace fwp {

enum class Device { Cpu, Cuda };

enum class FeatureMap { Elu, Favor, Dpfp };
enum class UpdateRule { Sum, Delta };
enum class Algorithm { Auto, Recurrent, Chunked };

// Shape of a feature map phi: R^d_in -> R^d_out().
struct FeatureMapSpec {
  FeatureMap kind = FeatureMap::Elu;
  int64_t d_in = 0;
  int64_t nu = 1;  // DPFP order
  int64_t m = 0;   // FAVOR+ random features (rows of the projection)
  int64_t d_out() const {
    switch (kind) {
      case FeatureMap::Elu: return d_in;
      case FeatureMap::Favor: return 2 * m;
      case FeatureMap::Dpfp: return 2 * d_in * nu;
    }
    return 0;
  }
};

// Shape of a fast-weight recurrence: `streams` independent sequences of
// `steps` tokens, keys/queries of width d_key (= d_dot, after phi), values of
// width d_value. The state of one stream is W, [d_value][d_key].
struct FastWeightShape {
  int64_t streams = 0;
  int64_t steps = 0;
  int64_t d_key = 0;
  int64_t d_value = 0;
};

// Hyperparameters of one optimizer step, as the optimizer ops take them.
struct AdamStepParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // AdamW
  double bias_correction1 = 1.0;        // 1 - beta1^step
  double bias_correction2 = 1.0;        // 1 - beta2^step
  double grad_scale = 1.0;              // gradient clipping factor, applied before everything else
};

struct SgdStepParams {
  double lr = 1e-3;
  double momentum = 0.0;
  double weight_decay = 0.0;
  double grad_scale = 1.0;
};

}  // namespace fwp
