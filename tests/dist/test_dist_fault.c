/* Faults in data-parallel training; fault_test.sh runs the modes and times them.
 *   test_dist_fault die  DIR   (mpirun -np 2) rank 0 saves a checkpoint at step 2, then rank 1 kills itself
 *                              (SIGKILL) at step 3: the job must end (mpirun non-zero).
 *   test_dist_fault hang DIR   (mpirun -np 2) rank 1 sleeps 600 s at step 3: rank 0 (timeout_seconds 3)
 *                              gets FWP_ERR_DISTRIBUTED, prints it with the time it waited, and ends the
 *                              job with fwp_dist_abort(1).
 *   test_dist_fault load DIR   (one process) the checkpoint of `die` loads (fwp_model_load +
 *                              fwp_checkpoint_load with optimizer and data) and training goes on. */
#include <signal.h>
#include <unistd.h>

#include "dist_test.h"

enum { GLOBAL_B = 4, T = 8, SAVE_STEP = 2, FAULT_STEP = 3 };

static fwp_optimizer* make_optimizer(fwp_model* m) {
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.learning_rate = 1e-3f;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
  return opt;
}

static fwp_data* open_tokens(const char* path) { return open_token_data(path, GLOBAL_B, T, 0, 1); }

static int run_group(const char* mode, const char* dir) {
  const int die = strcmp(mode, "die") == 0;
  fwp_context* ctx = make_context(42);
  fwp_dist_config cfg;
  fwp_dist_config_init(&cfg);
  /* hang: the timeout under test; die: a backstop in case mpirun does not end the job itself. */
  cfg.timeout_seconds = die ? 20 : 3;
  fwp_dist* dist = join_two_ranks(ctx, &cfg);
  const int rank = g_rank, world = g_world;

  char tokens[512], name[32], ckpt[600];
  snprintf(name, sizeof name, "tokens%d", rank);
  write_token_file(dir, name, tokens, sizeof tokens);
  snprintf(ckpt, sizeof ckpt, "%s/step%d.safetensors", dir, SAVE_STEP);
  fwp_lm_config c;
  tiny_lm_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, 5);
  fwp_model* m = make_lm(ctx, &c);
  CHECK_OK(fwp_dist_sync_model(dist, m));
  fwp_optimizer* opt = make_optimizer(m);
  fwp_data* data = open_tokens(tokens);
  CHECK_OK(fwp_data_set_shard(data, rank, world));
  const int64_t b = GLOBAL_B / world;
  int32_t in[GLOBAL_B * T], tg[GLOBAL_B * T];
  for (int step = 1; step <= 5; ++step) {
    if (step == FAULT_STEP && rank == 1) {
      printf("fault-test: rank 1: %s at step %d\n", die ? "SIGKILL" : "sleeping 600 s", step);
      fflush(stdout);
      if (die) raise(SIGKILL);
      sleep(600);
    }
    double loss = 0;
    CHECK_OK(fwp_token_data_next(data, in, tg, b * T));
    CHECK_OK(fwp_model_zero_grad(m));
    CHECK_OK(fwp_lm_forward(m, in, tg, b, T, NULL, &loss, NULL));
    CHECK_OK(fwp_model_backward(m));
    const double t0 = now_seconds();
    fwp_clear_error();
    const fwp_status st = fwp_dist_average_gradients(dist, m, 1.0, NULL);
    if (st != FWP_OK) {
      const double waited = now_seconds() - t0;
      printf("fault-test: rank %d: step %d: status %d (%s) after %.2f s: %s\n", rank, step, (int)st,
             fwp_status_string(st), waited,
             fwp_last_error_message());
      /* The handle is broken now: every later collective fails the same way. */
      fwp_clear_error();
      double one = 1.0;
      const fwp_status again = fwp_dist_sum(dist, &one, 1);
      printf("fault-test: rank %d: then fwp_dist_sum: status %d (%s): %s\n", rank, (int)again, fwp_status_string(again),
             fwp_last_error_message());
      fflush(stdout);
      fwp_dist_abort(dist, 1);
      printf("fault-test: fwp_dist_abort returned\n");
      return 4;
    }
    CHECK_OK(fwp_optimizer_step(opt, NULL));
    if (step == SAVE_STEP) {
      if (rank == 0) {
        CHECK_OK(fwp_checkpoint_save(ckpt, m, opt, data, "fault test"));
        printf("fault-test: rank 0 saved %s\n", ckpt);
        fflush(stdout);
      }
      CHECK_OK(fwp_dist_barrier(dist)); /* saved before rank 1 fails */
    }
  }
  printf("fault-test: rank %d finished every step: the fault went unnoticed\n", rank);
  return 3;
}

static int load(const char* dir) {
  g_rank = 0; /* one process */
  char tokens[512], ckpt[600];
  write_token_file(dir, "tokens_load", tokens, sizeof tokens);
  snprintf(ckpt, sizeof ckpt, "%s/step%d.safetensors", dir, SAVE_STEP);
  fwp_context* ctx = make_context(42);
  fwp_model* m = NULL;
  CHECK_OK(fwp_model_load(ctx, ckpt, &m));
  fwp_optimizer* opt = make_optimizer(m);
  fwp_data* data = open_tokens(tokens); /* the whole batches: a checkpoint does not store the shard */
  CHECK_OK(fwp_checkpoint_load(ckpt, m, opt, data));
  int64_t steps = -1, segment = -1;
  CHECK_OK(fwp_optimizer_get_step(opt, &steps));
  CHECK_OK(fwp_token_data_position(data, &segment));
  REQUIRE(steps == SAVE_STEP && segment == SAVE_STEP, "loaded optimizer step %lld, data segment %lld",
          (long long)steps, (long long)segment);
  int32_t in[GLOBAL_B * T], tg[GLOBAL_B * T];
  double loss = 0;
  CHECK_OK(fwp_token_data_next(data, in, tg, GLOBAL_B * T));
  CHECK_OK(fwp_lm_forward(m, in, tg, GLOBAL_B, T, NULL, &loss, NULL));
  CHECK_OK(fwp_model_backward(m));
  CHECK_OK(fwp_optimizer_step(opt, NULL));
  REQUIRE(isfinite(loss), "loss %g", loss);
  printf("fault-test: the checkpoint of step %d loads (optimizer step %lld, segment %lld) and trains on\n",
         SAVE_STEP, (long long)steps, (long long)segment);
  fwp_data_destroy(data);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3 || (strcmp(argv[1], "die") != 0 && strcmp(argv[1], "hang") != 0 && strcmp(argv[1], "load") != 0)) {
    fprintf(stderr, "usage: %s die|hang|load DIR\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(argv[1], "load") == 0) return load(argv[2]);
  return run_group(argv[1], argv[2]);
}
