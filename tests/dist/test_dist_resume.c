/* Resuming data-parallel training (mpirun -np 2): 2 ranks train 2K steps, rank 0 saving a checkpoint
 * (model, optimizer, data position) after step K; a fresh set of objects on both ranks loads it and
 * trains K more steps. Its parameters must be bitwise equal to the uninterrupted run's, on both ranks.
 * For elu + delta and for FAVOR+ redrawn at every forward (the generator travels in the checkpoint).
 * Usage: test_dist_resume WORK_DIR (created by rank 0; the checkpoint goes there). */
#include "dist_test.h"

enum { K = 3, GLOBAL_B = 4, T = 8 };


static fwp_optimizer* make_optimizer(fwp_model* m) {
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.learning_rate = 3e-3f;
  oc.clip_grad_norm = 0.5f;
  oc.lr_schedule = FWP_LR_WARMUP_COSINE;
  oc.warmup_steps = 1;
  oc.total_steps = 2 * K;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
  return opt;
}

static fwp_data* open_shard(const char* tokens) { return open_token_data(tokens, GLOBAL_B, T, g_rank, g_world); }

static void train(fwp_dist* dist, fwp_model* m, fwp_optimizer* opt, fwp_data* data, int steps) {
  const int64_t b = GLOBAL_B / g_world;
  int32_t in[GLOBAL_B * T], tg[GLOBAL_B * T];
  for (int s = 0; s < steps; ++s) {
    double loss = 0;
    CHECK_OK(fwp_token_data_next(data, in, tg, b * T));
    CHECK_OK(fwp_model_zero_grad(m));
    CHECK_OK(fwp_lm_forward(m, in, tg, b, T, NULL, &loss, NULL));
    CHECK_OK(fwp_model_backward(m));
    CHECK_OK(fwp_dist_average_gradients(dist, m, 1.0, NULL));
    CHECK_OK(fwp_optimizer_step(opt, NULL));
  }
}

static void resume(fwp_dist* dist, fwp_context* ctx, const char* dir, const char* tokens, const char* name,
                   fwp_feature_map map) {
  char ckpt[600];
  snprintf(ckpt, sizeof ckpt, "%s/%s.safetensors", dir, map == FWP_FEATURE_MAP_FAVOR ? "favor" : "elu");
  fwp_lm_config c;

  /* The uninterrupted run, with rank 0's checkpoint after step K. */
  tiny_lm_config(&c, map, FWP_UPDATE_DELTA, 5 + (uint64_t)g_rank);
  fwp_model* m = make_lm(ctx, &c);
  CHECK_OK(fwp_dist_sync_model(dist, m));
  fwp_optimizer* opt = make_optimizer(m);
  fwp_data* data = open_shard(tokens);
  train(dist, m, opt, data, K);
  if (g_rank == 0) CHECK_OK(fwp_checkpoint_save(ckpt, m, opt, data, "dist resume test"));
  CHECK_OK(fwp_dist_barrier(dist)); /* the file exists before anyone reads it */
  const double at_k = param_hash(m);
  train(dist, m, opt, data, K);
  int64_t n = 0;
  float* straight = snapshot(m, 0, &n);
  fwp_data_destroy(data);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(m);

  /* Fresh objects (other random parameters) on both ranks load the checkpoint and train K more steps. */
  tiny_lm_config(&c, map, FWP_UPDATE_DELTA, 1234 + (uint64_t)g_rank);
  m = make_lm(ctx, &c);
  opt = make_optimizer(m);
  data = open_shard(tokens);
  CHECK_OK(fwp_checkpoint_load(ckpt, m, opt, data));
  CHECK_OK(fwp_dist_sync_model(dist, m));
  REQUIRE(param_hash(m) == at_k, "%s: the loaded parameters are not those of step %d", name, K);
  int64_t steps = -1, segment = -1, index = -1, count = -1;
  CHECK_OK(fwp_optimizer_get_step(opt, &steps));
  CHECK_OK(fwp_token_data_position(data, &segment));
  CHECK_OK(fwp_data_get_shard(data, &index, &count));
  REQUIRE(steps == K && segment == K, "%s: loaded optimizer step %lld, data segment %lld", name, (long long)steps,
          (long long)segment);
  REQUIRE(index == g_rank && count == g_world, "%s: the load changed the shard to %lld of %lld", name,
          (long long)index, (long long)count);
  train(dist, m, opt, data, K);
  int64_t n2 = 0;
  float* resumed = snapshot(m, 0, &n2);
  REQUIRE(n == n2, "sizes");
  int64_t differ = 0, first = -1;
  for (int64_t i = 0; i < n; ++i)
    if (memcmp(&straight[i], &resumed[i], sizeof(float)) != 0) {
      if (first < 0) first = i;
      ++differ;
    }
  REQUIRE(differ == 0, "%s: %lld of %lld parameters differ from the uninterrupted run (first %lld: %.9g vs %.9g)",
          name, (long long)differ, (long long)n, (long long)first, resumed[first], straight[first]);
  REQUIRE(same_on_all_ranks(dist, hash_floats(resumed, n), g_world), "%s: the ranks' replicas differ", name);
  REQUIRE(hash_floats(resumed, n) != at_k, "%s: the last K steps changed nothing", name);
  if (g_rank == 0) printf("%s: resumed at step %d of %d, %lld floats bitwise equal\n", name, K, 2 * K, (long long)n);
  free(straight);
  free(resumed);
  fwp_data_destroy(data);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(m);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s WORK_DIR\n", argv[0]);
    return 2;
  }
  const char* dir = argv[1];
  fwp_context* ctx = make_context(42);
  fwp_dist_config cfg;
  fwp_dist_config_init(&cfg);
  cfg.timeout_seconds = 120;
  fwp_dist* dist = join_two_ranks(ctx, &cfg);
  if (g_rank == 0) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    REQUIRE(system(cmd) == 0, "%s", cmd);
  }
  CHECK_OK(fwp_dist_barrier(dist));
  /* Each rank its own copy of the token file (the same bytes), so that no rank reads a half-written one. */
  char tokens[512], name[32];
  snprintf(name, sizeof name, "tokens%d", g_rank);
  write_token_file(dir, name, tokens, sizeof tokens);

  resume(dist, ctx, dir, tokens, "elu + delta", FWP_FEATURE_MAP_ELU);
  resume(dist, ctx, dir, tokens, "favor + delta (redraw)", FWP_FEATURE_MAP_FAVOR);

  CHECK_OK(fwp_dist_barrier(dist));
  if (g_rank == 0) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    REQUIRE(system(cmd) == 0, "%s", cmd);
    printf("dist resume: all checks passed\n");
  }
  g_dist = NULL;
  fwp_dist_destroy(dist);
  fwp_context_destroy(ctx);
  return 0;
}
