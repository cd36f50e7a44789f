#include "distributed.h"

#include "../cli_support.h"
#include "interrupt.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <exception>
#include <memory>
#include <numeric>
#include <vector>

namespace fwp_cli {
namespace train {

const char* const kDistHelp =
    "Data-parallel training over several processes started by mpirun (or srun): mpi (host buffers) or nccl "
    "(GPU, with --device cuda); none (default): one process. Each process trains on its share of every global "
    "batch and the gradients are averaged, so N processes follow the run of one; the batch flags give the global "
    "batch. Only rank 0 prints, logs and saves checkpoints; a checkpoint resumes with any number of processes";

namespace {

struct StateDeleter {
  void operator()(fwp_state* p) const { fwp_state_destroy(p); }
};

fwp_dist_engine engine_of(const std::string& name) { return name == kDistNccl ? FWP_DIST_NCCL : FWP_DIST_MPI; }

}  // namespace

std::string group_command(const std::string& command, const std::string& engine, double timeout_seconds) {
  if (engine.empty() || engine == kDistNone) return command;
  std::string line = fmt::format("mpirun -np N {} --dist {}", command, engine);
  if (timeout_seconds != kDistTimeoutSeconds) line += fmt::format(" --dist-timeout {}", timeout_seconds);
  return line;
}

void add_dist_options(CLI::App& app, std::string& engine, double& timeout_seconds, const std::string& batch_note) {
  app.add_option("--dist", engine, std::string(kDistHelp) + " (" + batch_note + ")")
      ->check(CLI::IsMember({kDistNone, kDistMpi, kDistNccl}));
  app.add_option("--dist-timeout", timeout_seconds,
                 "With --dist: seconds any exchange between the processes may take before the run stops with an "
                 "error (a process died or hangs); 0 = wait forever (MPI then uses its faster blocking all-reduce)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            double v = -1.0;
            if (!CLI::detail::lexical_cast(text, v) || !(v >= 0) || v > 1e9) {
              return "must be a number of seconds in [0, 1e9] (got '" + text + "')";
            }
            return std::string();
          },
          "SECONDS"))
      ->capture_default_str();
}

Distributed::Distributed(const std::string& engine, double timeout_seconds)
    : engine_(engine.empty() ? kDistNone : engine), timeout_seconds_(timeout_seconds) {
  if (engine_ == kDistNone) return;
  if (engine_ != kDistMpi && engine_ != kDistNccl) {
    throw UsageError(fmt::format("--dist: unknown engine '{}' (none, mpi or nccl)", engine_));
  }
  if (fwp_dist_engine_available(engine_of(engine_)) == 0) {
    throw RunError(fmt::format("--dist {}: this build of fwp has no {} support (rebuild with it, or leave out --dist)",
                               engine_, engine_ == kDistNccl ? "NCCL" : "MPI"));
  }
}

Distributed::~Distributed() { leave(); }

void Distributed::join(fwp_context* context) {
  if (!requested()) return;
  leave();
  fwp_dist_config config;
  fwp_dist_config_init(&config);
  config.engine = engine_of(engine_);
  config.timeout_seconds = timeout_seconds_;
  fwp_dist* handle = nullptr;
  check_status(fwp_dist_create(context, &config, &handle), fmt::format("joining the --dist {} group", engine_).c_str());
  handle_ = handle;
  int32_t rank = 0, world = 1;
  check_status(fwp_dist_get_rank(handle_, &rank, &world), "reading the rank");
  rank_ = rank;
  world_size_ = world;
}

void Distributed::leave() {
  fwp_dist_destroy(handle_);
  handle_ = nullptr;
}

void Distributed::shard(fwp_data* data) const {
  if (!active()) return;
  check_status(fwp_data_set_shard(data, rank_, world_size_), "sharding the training data");
}

int64_t Distributed::local_batch(const char* flag, int64_t global) const {
  if (global % world_size_ != 0) {
    throw UsageError(fmt::format("{} {} is the global batch of {} processes: it must be a multiple of {}", flag,
                                 global, world_size_, world_size_));
  }
  return global / world_size_;
}

double Distributed::reduce_step(double loss_sum, double weight, double tokens) {
  if (!active()) {
    step_tokens_ = tokens;
    return loss_sum / weight;
  }
  // Ctrl-C as two counts, so every rank learns which signal some rank saw.
  const int seen = interrupt_signal();
  double values[5] = {loss_sum, weight, tokens, seen == SIGTERM ? 1.0 : 0.0, seen != 0 && seen != SIGTERM ? 1.0 : 0.0};
  check_status(fwp_dist_sum(handle_, values, 5), "summing the step's loss over the processes");
  step_tokens_ = values[2];
  if (values[3] > 0) {
    agreed_signal_ = SIGTERM;
  } else if (values[4] > 0) {
    agreed_signal_ = SIGINT;
  }
  return values[0] / values[1];
}

void Distributed::average_gradients(fwp_model* model, double weight) {
  if (!active()) return;
  check_status(fwp_dist_average_gradients(handle_, model, weight, nullptr), "averaging the gradients");
}

double Distributed::from_root(double value) {
  if (!active()) return value;
  double values[1] = {is_root() ? value : 0.0};  // x + 0 + ... + 0 is x, NaN and infinity included
  check_status(fwp_dist_sum(handle_, values, 1), "agreeing on the evaluation");
  return values[0];
}

int Distributed::guard(const std::function<int()>& body) {
  // An error before the group was joined is every rank's own (each exits); one
  // process has no one waiting for it: main() reports those as always.
  auto fail = [this](const std::exception& e, int code) {
    std::fprintf(stderr, "fwp: rank %d: error: %s\n", rank_, one_line(e.what()).c_str());
    std::fflush(stderr);
    fwp_dist_abort(handle_, code);  // does not return for MPI and NCCL
    return code;
  };
  try {
    return body();
  } catch (const UsageError& e) {
    if (active() && world_size_ > 1) return fail(e, kExitUsage);
    throw;
  } catch (const std::exception& e) {
    if (active() && world_size_ > 1) return fail(e, kExitFailure);
    throw;
  }
}

nlohmann::json dist_json(const Distributed* dist) {
  if (dist == nullptr) return {{"dist", kDistNone}, {"world_size", 1}};
  return {{"dist", dist->engine()}, {"world_size", dist->world_size()}};
}

void start_replicas(Distributed& dist, const TrainingObjects& objects, const std::string& path,
                    const SavedRun& saved) {
  if (!path.empty()) {
    if (dist.active() && objects.state != nullptr) {
      // The checkpoint holds the carried state of the global batch (save_group_checkpoint()):
      // read it whole, then keep this rank's rows, as fwp_dist_gather_state() laid them out.
      int64_t local = 0;
      check_status(fwp_state_batch(objects.state, &local), "reading the carried state's batch");
      const int64_t global = local * dist.world_size();
      fwp_state* raw = nullptr;
      check_status(fwp_state_create(objects.model, global, &raw), "creating the carried state of the global batch");
      const std::unique_ptr<fwp_state, StateDeleter> whole(raw);
      TrainingObjects with_whole = objects;
      with_whole.state = whole.get();
      load_checkpoint(path, with_whole, saved);
      std::vector<int64_t> rows(static_cast<size_t>(local));
      std::iota(rows.begin(), rows.end(), static_cast<int64_t>(dist.rank()) * local);
      check_status(fwp_state_reorder(whole.get(), rows.data(), local), "keeping this process's rows of the state");
      check_status(fwp_state_copy(objects.state, whole.get()), "restoring the carried state");
    } else {
      load_checkpoint(path, objects, saved);
    }
  }
  if (dist.active()) check_status(fwp_dist_sync_model(dist.handle(), objects.model), "making the replicas equal");
}

void save_group_checkpoint(Distributed* dist, const std::string& path, const TrainingObjects& objects,
                           const CheckpointFormat& format, const nlohmann::json& config, const TrainState& state) {
  const nlohmann::json run = dist_json(dist);
  if (dist == nullptr || !dist->active()) {
    save_checkpoint(path, objects, format, config, state, run);
    return;
  }
  std::unique_ptr<fwp_state, StateDeleter> whole;
  TrainingObjects saved = objects;
  if (objects.state != nullptr) {
    int64_t local = 0;
    check_status(fwp_state_batch(objects.state, &local), "reading the carried state's batch");
    fwp_state* raw = nullptr;
    check_status(fwp_state_create(objects.model, local * dist->world_size(), &raw),
                 "creating the carried state of the global batch");
    whole.reset(raw);
    check_status(fwp_dist_gather_state(dist->handle(), objects.state, whole.get()), "gathering the carried state");
    saved.state = whole.get();
  }
  if (dist->is_root()) save_checkpoint(path, saved, format, config, state, run);
}

}  // namespace train
}  // namespace fwp_cli
