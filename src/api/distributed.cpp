// C API of data-parallel training (fwp/distributed.h): argument checks, the
// broken-group rule, and the model-level collectives (sync, gradient
// averaging in buckets over the flat gradient block, state gathering) on top
// of one Communicator (dist/communicator.h).
#include <cmath>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "core/error.h"
#include "dist/communicator.h"
#include "models/model.h"
#include "nn/attention_state.h"

namespace {

using fwp::Error;
using fwp::api::check_not_null;

constexpr int64_t kDefaultBucket = int64_t(1) << 22;  // 16 MiB of float gradients per all-reduce

std::string number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

fwp_dist& dist_impl(fwp_dist* dist) {
  check_not_null(dist, "dist");
  return *dist;
}

// Runs a collective unless the group is already broken; a failure breaks it.
template <typename F>
void collective(fwp_dist& d, F&& body) {
  if (!d.broken.empty()) throw Error(FWP_ERR_DISTRIBUTED, "the group is broken by an earlier failure: " + d.broken);
  try {
    body();
  } catch (const Error& e) {
    if (e.status() == FWP_ERR_DISTRIBUTED) d.broken = e.what();
    throw;
  }
}

fwp::Model& model_of(fwp_dist& d, fwp_model* model) {
  check_not_null(model, "model");
  if (model->context != d.context) {
    throw Error(FWP_ERR_CONTEXT_MISMATCH, "model was made in another context than the group's");
  }
  return *model->impl;
}

// Sums n floats of the model's backend memory over the ranks: in place when the
// engine takes that memory, else through a host copy.
void sum_block(fwp_dist& d, float* data, int64_t n, bool broadcast) {
  fwp::Backend<float>& backend = *d.context->backend();
  const bool device_memory = backend.device() != fwp::Device::Cpu;
  auto reduce = [&](float* p, int64_t count) {
    if (broadcast) {
      d.comm->broadcast_floats(p, count);
    } else {
      d.comm->sum_floats(p, count);
    }
  };
  if (!device_memory || d.comm->device_buffers()) {
    backend.synchronize();  // the engine reads what queued ops wrote
    for (int64_t offset = 0; offset < n; offset += d.bucket_elements) {
      reduce(data + offset, std::min(d.bucket_elements, n - offset));
    }
    return;
  }
  // A host engine with a GPU model: one staging buffer, bucket by bucket.
  d.host_staging.resize(static_cast<size_t>(std::min(d.bucket_elements, n)));
  for (int64_t offset = 0; offset < n; offset += d.bucket_elements) {
    const int64_t count = std::min(d.bucket_elements, n - offset);
    backend.download(d.host_staging.data(), data + offset, count);
    reduce(d.host_staging.data(), count);
    backend.upload(data + offset, d.host_staging.data(), count);
  }
  backend.synchronize();
}

// Every rank must hold a model of rank 0's sizes: rank 0's numbers go to all,
// each compares, and a sum of the mismatches tells every rank the same.
void check_same_on_every_rank(fwp_dist& d, const std::vector<double>& mine, const std::string& what) {
  std::vector<double> root = mine;
  d.comm->broadcast_doubles(root.data(), static_cast<int64_t>(root.size()));
  double mismatch = root == mine ? 0.0 : 1.0;
  d.comm->sum_doubles(&mismatch, 1);
  if (mismatch != 0) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, std::to_string(static_cast<int64_t>(mismatch)) + " of " +
                                            std::to_string(d.comm->world_size()) + " ranks hold " + what +
                                            " other than rank 0's");
  }
}

}  // namespace

extern "C" {

FWP_API void fwp_dist_config_init(fwp_dist_config* config) {
  if (!config) return;
  std::memset(static_cast<void*>(config), 0, sizeof(*config));
  config->struct_size = sizeof(fwp_dist_config);
  config->engine = FWP_DIST_MPI;
  config->bucket_elements = kDefaultBucket;
  config->timeout_seconds = 600.0;
}

FWP_API int fwp_dist_engine_available(fwp_dist_engine engine) {
  switch (fwp::api::enum_value(engine)) {
    case FWP_DIST_MPI: return fwp::mpi_engine_built() ? 1 : 0;
    case FWP_DIST_NCCL: return fwp::nccl_engine_built() ? 1 : 0;
    case FWP_DIST_CALLBACK: return 1;
    default: return 0;
  }
}

FWP_API fwp_status fwp_dist_create(fwp_context* ctx, const fwp_dist_config* config, fwp_dist** out) {
  if (out) *out = nullptr;
  return fwp::api::guard(__func__, [&] {
    check_not_null(ctx, "ctx");
    check_not_null(config, "config");
    check_not_null(out, "out");
    const fwp_dist_config c = fwp::api::read_config(*config, fwp_dist_config_init, "config");
    const int engine = fwp::api::enum_value(c.engine);
    if (engine != FWP_DIST_MPI && engine != FWP_DIST_NCCL && engine != FWP_DIST_CALLBACK) {
      throw Error(FWP_ERR_OUT_OF_RANGE, "config->engine must be FWP_DIST_MPI, FWP_DIST_NCCL or FWP_DIST_CALLBACK (got " +
                                            std::to_string(engine) + ")");
    }
    fwp::api::check_positive(c.bucket_elements, "config->bucket_elements");
    if (!(std::isfinite(c.timeout_seconds) && c.timeout_seconds >= 0)) {
      throw Error(FWP_ERR_INVALID_ARGUMENT,
                  "config->timeout_seconds must be finite and >= 0 (0 = wait forever) (got " + number(c.timeout_seconds) +
                      ")");
    }
    if (engine == FWP_DIST_CALLBACK) {
      if (!c.allreduce) throw Error(FWP_ERR_NULL_POINTER, "config->allreduce must not be NULL for FWP_DIST_CALLBACK");
      if (c.world_size < 1) {
        throw Error(FWP_ERR_INVALID_ARGUMENT,
                    "config->world_size must be >= 1 (got " + std::to_string(c.world_size) + ")");
      }
      if (c.rank < 0 || c.rank >= c.world_size) {
        throw Error(FWP_ERR_OUT_OF_RANGE, "config->rank must be in [0, world_size = " + std::to_string(c.world_size) +
                                              ") (got " + std::to_string(c.rank) + ")");
      }
      if (c.mpi_comm) throw Error(FWP_ERR_INVALID_ARGUMENT, "config->mpi_comm must be NULL for FWP_DIST_CALLBACK");
    } else {
      // MPI says who is who; fields meant for the callback would be ignored.
      const char* name = engine == FWP_DIST_MPI ? "FWP_DIST_MPI" : "FWP_DIST_NCCL";
      if (c.allreduce || c.user_data || c.rank != 0 || c.world_size != 0) {
        throw Error(FWP_ERR_INVALID_ARGUMENT, std::string("config->allreduce, user_data, rank and world_size are for "
                                                          "FWP_DIST_CALLBACK; they must be NULL / 0 for ") +
                                                  name + " (MPI gives the rank and size)");
      }
    }
    auto dist = std::make_unique<fwp_dist>();
    dist->context = ctx->impl;
    dist->bucket_elements = c.bucket_elements;
    switch (engine) {
      case FWP_DIST_MPI: dist->comm = fwp::make_mpi_communicator(c); break;
      case FWP_DIST_NCCL: dist->comm = fwp::make_nccl_communicator(c, *ctx->impl); break;
      default: dist->comm = fwp::make_callback_communicator(c); break;
    }
    *out = dist.release();
  });
}

FWP_API void fwp_dist_destroy(fwp_dist* dist) { delete dist; }

FWP_API fwp_status fwp_dist_get_rank(const fwp_dist* dist, int32_t* rank, int32_t* world_size) {
  return fwp::api::guard(__func__, [&] {
    check_not_null(dist, "dist");
    if (rank) *rank = dist->comm->rank();
    if (world_size) *world_size = dist->comm->world_size();
  });
}

FWP_API fwp_status fwp_dist_sync_model(fwp_dist* dist, fwp_model* model) {
  return fwp::api::guard(__func__, [&] {
    fwp_dist& d = dist_impl(dist);
    fwp::Model& m = model_of(d, model);
    fwp::ParameterList<float>& params = m.parameters();
    collective(d, [&] {
      check_same_on_every_rank(d,
                               {static_cast<double>(params.size()), static_cast<double>(params.block_size()),
                                static_cast<double>(params.trainable_size())},
                               "models with another number or size of parameters");
      if (params.block_size() > 0) sum_block(d, params.value_block(), params.block_size(), /*broadcast=*/true);
      // The random state (dropout seeds, FAVOR+ redraws) as 32-bit pieces, exact in doubles.
      const fwp::Rng::State state = m.rng_state();
      std::vector<double> pieces;
      for (uint64_t word : state) {
        pieces.push_back(static_cast<double>(word & 0xffffffffu));
        pieces.push_back(static_cast<double>(word >> 32));
      }
      d.comm->broadcast_doubles(pieces.data(), static_cast<int64_t>(pieces.size()));
      fwp::Rng::State root{};
      for (size_t i = 0; i < root.size(); ++i) {
        root[i] = static_cast<uint64_t>(pieces[2 * i]) | (static_cast<uint64_t>(pieces[2 * i + 1]) << 32);
      }
      m.set_rng_state(root);
    });
    m.set_dropout_stream(static_cast<uint64_t>(d.comm->rank()));
  });
}

FWP_API fwp_status fwp_dist_average_gradients(fwp_dist* dist, fwp_model* model, double weight, double* total_weight) {
  return fwp::api::guard(__func__, [&] {
    fwp_dist& d = dist_impl(dist);
    fwp::Model& m = model_of(d, model);
    if (!(std::isfinite(weight) && weight >= 0)) {
      throw Error(FWP_ERR_INVALID_ARGUMENT, "weight must be finite and >= 0 (got " + number(weight) + ")");
    }
    fwp::ParameterList<float>& params = m.parameters();
    collective(d, [&] {
      double total = weight;
      d.comm->sum_doubles(&total, 1);
      if (!(total > 0) || !std::isfinite(total)) {
        throw Error(FWP_ERR_INVALID_ARGUMENT, "the weights of the ranks sum to " + number(total) +
                                                  " (they must sum to a finite number > 0); the gradients are unchanged");
      }
      if (total_weight) *total_weight = total;
      const int64_t n = params.trainable_size();
      if (n == 0) return;
      // sum_r (w_r / W) g_r: each rank scales its own gradient, then one sum.
      const double scale = weight / total;
      if (scale != 1.0) d.context->backend()->scale(n, static_cast<float>(scale), params.grad_block());
      if (d.comm->world_size() > 1) sum_block(d, params.grad_block(), n, /*broadcast=*/false);
    });
  });
}

FWP_API fwp_status fwp_dist_sum(fwp_dist* dist, double* values, int64_t count) {
  return fwp::api::guard(__func__, [&] {
    fwp_dist& d = dist_impl(dist);
    check_not_null(values, "values");
    fwp::api::check_positive(count, "count");
    collective(d, [&] { d.comm->sum_doubles(values, count); });
  });
}

FWP_API fwp_status fwp_dist_gather_state(fwp_dist* dist, const fwp_state* local, fwp_state* global) {
  return fwp::api::guard(__func__, [&] {
    fwp_dist& d = dist_impl(dist);
    check_not_null(local, "local");
    check_not_null(global, "global");
    if (local->context != d.context || global->context != d.context) {
      throw Error(FWP_ERR_CONTEXT_MISMATCH, "the states must be of the group's context");
    }
    if (local->owner != global->owner || local->layers.size() != global->layers.size()) {
      throw Error(FWP_ERR_SHAPE_MISMATCH, "local and global are states of different models");
    }
    const int64_t world = d.comm->world_size();
    const int64_t b = local->layers.front().batch();
    if (global->layers.front().batch() != world * b) {
      throw Error(FWP_ERR_SHAPE_MISMATCH, "global must have batch world_size * local batch = " +
                                              std::to_string(world * b) + " (got " +
                                              std::to_string(global->layers.front().batch()) + ")");
    }
    for (size_t l = 0; l < local->layers.size(); ++l) {
      if (local->layers[l].is_softmax()) {
        throw Error(FWP_ERR_UNSUPPORTED, "layer " + std::to_string(l) +
                                             " is a softmax attention layer: key/value caches are not gathered");
      }
    }
    collective(d, [&] {
      // Every rank's rows at its place, zeros elsewhere: one sum assembles the whole.
      const int64_t rank = d.comm->rank();
      for (size_t l = 0; l < local->layers.size(); ++l) {
        const fwp::AttentionState<float>& mine = local->layers[l];
        const int64_t w_rows = mine.w_count(b), z_rows = mine.z_count(b);
        std::vector<float> w(static_cast<size_t>(w_rows)), z(static_cast<size_t>(z_rows));
        mine.get_host(w.data(), z.data());
        // [all ranks' W][all ranks' z] in host doubles (the engines' host sum; exact: one non-zero term each).
        std::vector<double> sums(static_cast<size_t>((w_rows + z_rows) * world), 0.0);
        std::copy(w.begin(), w.end(), sums.begin() + rank * w_rows);
        std::copy(z.begin(), z.end(), sums.begin() + world * w_rows + rank * z_rows);
        d.comm->sum_doubles(sums.data(), static_cast<int64_t>(sums.size()));
        const std::vector<float> all_w(sums.begin(), sums.begin() + world * w_rows);
        const std::vector<float> all_z(sums.begin() + world * w_rows, sums.end());
        fwp::AttentionState<float>& target = global->layers[l];
        const int64_t position = mine.position();
        target.set_host(world * b, all_w.data(), all_z.data());
        target.set_position(position);
      }
    });
  });
}

FWP_API fwp_status fwp_dist_barrier(fwp_dist* dist) {
  return fwp::api::guard(__func__, [&] {
    fwp_dist& d = dist_impl(dist);
    collective(d, [&] { d.comm->barrier(); });
  });
}

FWP_API void fwp_dist_abort(fwp_dist* dist, int code) {
  if (!dist) return;
  if (dist->broken.empty()) dist->broken = "fwp_dist_abort() was called";
  dist->comm->abort(code);
}

}  // extern "C"
