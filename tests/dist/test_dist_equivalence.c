/* Data-parallel training on 2 ranks (mpirun -np 2) through fwp's MPI engine:
 * - K steps of the language model on 2 ranks with global batch 4 (each rank its shard of 2 streams,
 *   gradients averaged, Adam with clipping and a warm-up + cosine schedule) end with the parameters of
 *   K steps on one process with batch 4, which every rank computes itself on a second model; and the
 *   ranks' replicas stay bitwise equal. For elu+delta, elu+sum with attention normalisation, dpfp+sum,
 *   favor (redrawn at every forward) and softmax.
 * - weighted averaging against the ranks' own gradients, total_weight, a rank of weight 0, weights summing
 *   to 0, bad weights, NULL pointers, a model of another context;
 * - sync_model (parameters, FAVOR+ draws; dropout streams of their own; models of other sizes),
 *   fwp_dist_sum, gather_state (rows in rank order), barrier, get_rank. */
#include <unistd.h>

#include "dist_test.h"

enum { K = 5, GLOBAL_B = 4, T = 8 };

static char g_tokens[512]; /* this rank's own copy of the token file */

/* ---- rank, sum, barrier ---------------------------------------------------------------------------- */

static void test_get_rank(fwp_dist* dist) {
  int32_t rank = -1, world = -1;
  CHECK_OK(fwp_dist_get_rank(dist, &rank, &world));
  REQUIRE(rank == g_rank && world == g_world, "rank %d of %d", rank, world);
  CHECK_OK(fwp_dist_get_rank(dist, NULL, &world));
  CHECK_OK(fwp_dist_get_rank(dist, &rank, NULL));
  EXPECT_STATUS(fwp_dist_get_rank(NULL, &rank, &world), FWP_ERR_NULL_POINTER, "dist");
  /* The ranks are 0 .. world - 1, each once. */
  double r = (double)rank, sum_sq[2] = {r, r * r};
  CHECK_OK(fwp_dist_sum(dist, sum_sq, 2));
  const double n = (double)world;
  REQUIRE(sum_sq[0] == n * (n - 1) / 2 && sum_sq[1] == (n - 1) * n * (2 * n - 1) / 6, "ranks sum to %g, %g",
          sum_sq[0], sum_sq[1]);
}

static void test_sum(fwp_dist* dist) {
  double v[3] = {g_rank + 1.0, 10.0 * (g_rank + 1), g_rank == 0 ? 0.25 : -1e300};
  CHECK_OK(fwp_dist_sum(dist, v, 3));
  REQUIRE(v[0] == 3.0 && v[1] == 30.0 && v[2] == 0.25 - 1e300, "sums %g %g %g", v[0], v[1], v[2]);
  double one = 1.5;
  CHECK_OK(fwp_dist_sum(dist, &one, 1));
  REQUIRE(one == 3.0, "sum of 1.5 over 2 ranks is %g", one);
  /* Argument checks (every rank makes the same bad call: nothing is sent). */
  EXPECT_STATUS(fwp_dist_sum(NULL, v, 3), FWP_ERR_NULL_POINTER, "dist");
  EXPECT_STATUS(fwp_dist_sum(dist, NULL, 3), FWP_ERR_NULL_POINTER, "values");
  EXPECT_STATUS(fwp_dist_sum(dist, v, 0), FWP_ERR_INVALID_ARGUMENT, "count");
  EXPECT_STATUS(fwp_dist_sum(dist, v, -2), FWP_ERR_INVALID_ARGUMENT, "count");
  /* The group still works after refused calls. */
  one = 2.0;
  CHECK_OK(fwp_dist_sum(dist, &one, 1));
  REQUIRE(one == 4.0, "sum %g", one);
}

static void test_barrier(fwp_dist* dist) {
  /* Rank 1 arrives 1 s late: rank 0 must wait for it. */
  CHECK_OK(fwp_dist_barrier(dist));
  if (g_rank == 1) usleep(1000 * 1000);
  const double t0 = now_seconds();
  CHECK_OK(fwp_dist_barrier(dist));
  const double waited = now_seconds() - t0;
  if (g_rank == 0) REQUIRE(waited > 0.5, "the barrier returned after %.3f s, before rank 1 arrived", waited);
  EXPECT_STATUS(fwp_dist_barrier(NULL), FWP_ERR_NULL_POINTER, "dist");
}

/* ---- sync_model --------------------------------------------------------------------------------------- */

static double training_loss(fwp_model* m) {
  int32_t in[2 * T], tg[2 * T];
  for (int i = 0; i < 2 * T; ++i) {
    in[i] = (i * 5 + 1) % TEST_VOCAB;
    tg[i] = (i * 7 + 2) % TEST_VOCAB;
  }
  double loss = 0;
  CHECK_OK(fwp_lm_forward(m, in, tg, 2, T, NULL, &loss, NULL));
  return loss;
}

static void test_sync_model(fwp_dist* dist, fwp_context* ctx) {
  /* Rank 1 starts from other random parameters; after the sync it holds rank 0's. */
  fwp_lm_config c;
  tiny_lm_config(&c, FWP_FEATURE_MAP_FAVOR, FWP_UPDATE_DELTA, g_rank == 0 ? 5 : 99);
  fwp_model* m = make_lm(ctx, &c);
  const double before = param_hash(m);
  double hashes[2];
  gather_values(dist, before, hashes, g_world);
  REQUIRE(hashes[0] != hashes[1], "the two ranks' models were equal before the sync");
  CHECK_OK(fwp_dist_sync_model(dist, m));
  const double after = param_hash(m);
  REQUIRE(same_on_all_ranks(dist, after, g_world), "parameters differ between ranks after fwp_dist_sync_model");
  REQUIRE(after == hashes[0], "rank 0's parameters changed in the sync");
  /* The random state too: the next FAVOR+ draw (training forward, no dropout) is the same on both. */
  const double loss = training_loss(m);
  REQUIRE(same_on_all_ranks(dist, loss, g_world), "FAVOR+ draws differ between ranks after the sync (loss %.9g)",
          loss);
  const double loss2 = training_loss(m);
  REQUIRE(loss2 != loss, "no redraw: the same loss twice (%.9g)", loss);
  REQUIRE(same_on_all_ranks(dist, loss2, g_world), "the second FAVOR+ draw differs between ranks");
  fwp_model_destroy(m);

  /* Dropout: every rank gets a stream of its own, so the same input gives different losses. */
  tiny_lm_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, 5);
  c.dropout = 0.5f;
  m = make_lm(ctx, &c);
  CHECK_OK(fwp_dist_sync_model(dist, m));
  REQUIRE(same_on_all_ranks(dist, param_hash(m), g_world), "parameters differ after the sync");
  const double d1 = training_loss(m), d2 = training_loss(m);
  const int same1 = same_on_all_ranks(dist, d1, g_world), same2 = same_on_all_ranks(dist, d2, g_world);
  REQUIRE(!same1 || !same2, "both ranks drew the same dropout masks twice");

  /* Argument checks. */
  EXPECT_STATUS(fwp_dist_sync_model(NULL, m), FWP_ERR_NULL_POINTER, "dist");
  EXPECT_STATUS(fwp_dist_sync_model(dist, NULL), FWP_ERR_NULL_POINTER, "model");
  fwp_context* other = make_context(7);
  fwp_model* foreign = make_lm(other, &c);
  EXPECT_STATUS(fwp_dist_sync_model(dist, foreign), FWP_ERR_CONTEXT_MISMATCH, "context");
  fwp_model_destroy(foreign);
  fwp_context_destroy(other);
  fwp_model_destroy(m);

  /* Ranks holding models of different sizes. */
  tiny_lm_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, 5);
  if (g_rank == 1) c.d_ff = 48;
  m = make_lm(ctx, &c);
  EXPECT_STATUS(fwp_dist_sync_model(dist, m), FWP_ERR_SHAPE_MISMATCH, "");
  fwp_model_destroy(m);
  /* ... and the group still works. */
  double one = 1.0;
  CHECK_OK(fwp_dist_sum(dist, &one, 1));
  REQUIRE(one == 2.0, "sum %g", one);
}

/* ---- 2 ranks x batch 2 == 1 process x batch 4 ---------------------------------------------------------- */

static fwp_optimizer* make_optimizer(fwp_model* m) {
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.kind = FWP_OPTIMIZER_ADAM;
  oc.learning_rate = 3e-3f;
  oc.clip_grad_norm = 0.5f; /* below the gradient norms of these steps: clipping acts every step */
  oc.lr_schedule = FWP_LR_WARMUP_COSINE;
  oc.warmup_steps = 2;
  oc.total_steps = K;
  oc.min_learning_rate = 1e-4f;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
  return opt;
}

static fwp_data* open_tokens(int64_t shard, int64_t shards) {
  return open_token_data(g_tokens, GLOBAL_B, T, shard, shards);
}

static void equivalence(fwp_dist* dist, fwp_context* ctx, const char* name, fwp_feature_map map,
                        fwp_update_rule rule, int attn_normalize) {
  fwp_lm_config c;
  /* The replica starts from other parameters on rank 1: the sync makes it rank 0's. */
  tiny_lm_config(&c, map, rule, g_rank == 0 ? 5 : 6);
  c.attention.attn_normalize = attn_normalize;
  fwp_model* replica = make_lm(ctx, &c);
  CHECK_OK(fwp_dist_sync_model(dist, replica));
  tiny_lm_config(&c, map, rule, 5);
  c.attention.attn_normalize = attn_normalize;
  fwp_model* ref = make_lm(ctx, &c); /* one process, whole batches, no communication */
  fwp_optimizer* opt = make_optimizer(replica);
  fwp_optimizer* ref_opt = make_optimizer(ref);
  fwp_data* shard = open_tokens(g_rank, g_world);
  fwp_data* whole = open_tokens(0, 1);
  const int local_b = GLOBAL_B / g_world;
  int32_t in[GLOBAL_B * T], tg[GLOBAL_B * T];
  int clipped = 0;
  for (int step = 0; step < K; ++step) {
    double loss = 0, ref_loss = 0, total = 0;
    float norm = 0, ref_norm = 0;
    CHECK_OK(fwp_token_data_next(shard, in, tg, (int64_t)local_b * T));
    CHECK_OK(fwp_model_zero_grad(replica));
    CHECK_OK(fwp_lm_forward(replica, in, tg, local_b, T, NULL, &loss, NULL));
    CHECK_OK(fwp_model_backward(replica));
    CHECK_OK(fwp_dist_average_gradients(dist, replica, 1.0, &total));
    REQUIRE(total == (double)g_world, "total_weight %g", total);
    CHECK_OK(fwp_optimizer_step(opt, &norm));

    CHECK_OK(fwp_token_data_next(whole, in, tg, (int64_t)GLOBAL_B * T));
    CHECK_OK(fwp_model_zero_grad(ref));
    CHECK_OK(fwp_lm_forward(ref, in, tg, GLOBAL_B, T, NULL, &ref_loss, NULL));
    CHECK_OK(fwp_model_backward(ref));
    CHECK_OK(fwp_optimizer_step(ref_opt, &ref_norm));

    /* The shards' mean loss is the whole batch's; the averaged gradient has the whole batch's norm. */
    double mean = loss;
    CHECK_OK(fwp_dist_sum(dist, &mean, 1));
    mean /= g_world;
    REQUIRE(fabs(mean - ref_loss) <= 1e-5 * fabs(ref_loss), "%s step %d: loss %.9g over the shards, %.9g whole",
            name, step, mean, ref_loss);
    REQUIRE(fabsf(norm - ref_norm) <= 1e-4f * ref_norm, "%s step %d: gradient norm %.9g, one process %.9g",
            name, step, norm, ref_norm);
    clipped += ref_norm > 0.5f;
  }
  REQUIRE(clipped > 0, "%s: the clipping never acted (make clip_grad_norm smaller)", name);

  /* Every parameter within a float32 tolerance of the one-process run. */
  int64_t n = 0, n_ref = 0;
  float* p = snapshot(replica, 0, &n);
  float* q = snapshot(ref, 0, &n_ref);
  REQUIRE(n == n_ref, "sizes %lld, %lld", (long long)n, (long long)n_ref);
  double worst = 0, worst_rel = 0;
  int64_t worst_at = 0, bad = 0, moved = 0;
  float* p0 = NULL;
  {
    fwp_model* init = make_lm(ctx, &c);
    p0 = snapshot(init, 0, NULL);
    fwp_model_destroy(init);
  }
  for (int64_t i = 0; i < n; ++i) {
    const double d = fabs((double)p[i] - (double)q[i]);
    if (d > 1e-6 + 1e-5 * fabs((double)q[i])) ++bad;
    if (d > worst) {
      worst = d;
      worst_at = i;
      worst_rel = d / (fabs((double)q[i]) > 0 ? fabs((double)q[i]) : 1.0);
    }
    moved += p0[i] != q[i];
  }
  if (g_rank == 0)
    printf("%-22s %lld floats, worst difference %.3g (relative %.3g) at %lld\n", name, (long long)n, worst,
           worst_rel, (long long)worst_at);
  REQUIRE(moved > n / 2, "%s: training moved only %lld of %lld parameters", name, (long long)moved, (long long)n);
  REQUIRE(bad == 0, "%s: %lld parameters differ from the one-process run (worst %.3g at %lld: %.9g vs %.9g)", name,
          (long long)bad, worst, (long long)worst_at, p[worst_at], q[worst_at]);
  /* The replicas are bitwise equal. */
  REQUIRE(same_on_all_ranks(dist, hash_floats(p, n), g_world), "%s: the ranks' replicas differ", name);
  free(p0);
  free(p);
  free(q);
  fwp_data_destroy(shard);
  fwp_data_destroy(whole);
  fwp_optimizer_destroy(opt);
  fwp_optimizer_destroy(ref_opt);
  fwp_model_destroy(ref);
  fwp_model_destroy(replica);
}

/* ---- weighted averaging -------------------------------------------------------------------------------- */

/* Forward and backward on this rank's own input (other on each rank); returns its gradients. */
static float* local_gradients(fwp_model* m, int64_t* n) {
  int32_t in[2 * T], tg[2 * T];
  for (int i = 0; i < 2 * T; ++i) {
    in[i] = (i * 3 + 5 * g_rank + 1) % TEST_VOCAB;
    tg[i] = (i * 7 + 3 * g_rank + 2) % TEST_VOCAB;
  }
  double loss = 0;
  CHECK_OK(fwp_model_zero_grad(m));
  CHECK_OK(fwp_lm_forward(m, in, tg, 2, T, NULL, &loss, NULL));
  CHECK_OK(fwp_model_backward(m));
  return snapshot(m, 1, n);
}

/* The averaged gradients against sum_r w_r g_r / sum_r w_r from every rank's g_r (gathered by fwp_dist_sum). */
static void check_weighted(fwp_dist* dist, fwp_model* m, const double* weights, int zero_grads) {
  int64_t n = 0;
  float* g = local_gradients(m, &n);
  if (zero_grads) { /* an empty shard: no gradient */
    CHECK_OK(fwp_model_zero_grad(m));
    memset(g, 0, (size_t)n * sizeof(float));
  }
  double* all = calloc((size_t)(n * g_world), sizeof(double));
  REQUIRE(all != NULL, "out of memory");
  for (int64_t i = 0; i < n; ++i) all[g_rank * n + i] = g[i];
  CHECK_OK(fwp_dist_sum(dist, all, n * g_world));
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) differ += all[i] != all[n + i];
  REQUIRE(zero_grads || differ > n / 4, "the ranks' gradients are (almost) equal: the check would prove nothing");

  double total = -1;
  CHECK_OK(fwp_dist_average_gradients(dist, m, weights[g_rank], &total));
  double want_total = 0;
  for (int r = 0; r < g_world; ++r) want_total += weights[r];
  REQUIRE(total == want_total, "total_weight %g, expected %g", total, want_total);
  int64_t n2 = 0;
  float* avg = snapshot(m, 1, &n2);
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    double want = 0;
    for (int r = 0; r < g_world; ++r) want += weights[r] * all[r * n + i];
    want /= want_total;
    const double d = fabs(avg[i] - want);
    if (d > worst) worst = d;
    REQUIRE(d <= 1e-7 + 1e-5 * fabs(want), "weights %g, %g: gradient %lld is %.9g, expected %.9g", weights[0],
            weights[1], (long long)i, avg[i], want);
  }
  REQUIRE(same_on_all_ranks(dist, hash_floats(avg, n), g_world), "the averaged gradients differ between ranks");
  if (g_rank == 0) printf("weights %g, %g%s: worst difference %.3g\n", weights[0], weights[1],
                          zero_grads ? " (rank 1 empty)" : "", worst);
  free(avg);
  free(all);
  free(g);
}

static void test_weighted_average(fwp_dist* dist, fwp_context* ctx) {
  fwp_lm_config c;
  tiny_lm_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, 5);
  fwp_model* m = make_lm(ctx, &c);
  CHECK_OK(fwp_dist_sync_model(dist, m));
  const double w13[2] = {1.0, 3.0}, w11[2] = {1.0, 1.0}, w10[2] = {1.0, 0.0};
  check_weighted(dist, m, w13, 0);
  check_weighted(dist, m, w11, 0);
  /* A rank with an empty shard: weight 0 and zero gradients; everyone gets rank 0's gradient. */
  check_weighted(dist, m, w10, g_rank == 1);
  /* total_weight may be NULL. */
  int64_t n = 0;
  float* g = local_gradients(m, &n);
  free(g);
  CHECK_OK(fwp_dist_average_gradients(dist, m, 2.0, NULL));

  /* Weights summing to 0: refused on every rank, the gradients unchanged. */
  g = local_gradients(m, &n);
  double total = -7;
  EXPECT_STATUS(fwp_dist_average_gradients(dist, m, 0.0, &total), FWP_ERR_INVALID_ARGUMENT, "weight");
  float* after = snapshot(m, 1, NULL);
  REQUIRE(memcmp(g, after, (size_t)n * sizeof(float)) == 0, "weights summing to 0 changed the gradients");
  free(after);
  /* Bad weights (every rank passes one: each refuses it without sending anything). */
  EXPECT_STATUS(fwp_dist_average_gradients(dist, m, -1.0, NULL), FWP_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_STATUS(fwp_dist_average_gradients(dist, m, NAN, NULL), FWP_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_STATUS(fwp_dist_average_gradients(dist, m, INFINITY, NULL), FWP_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_STATUS(fwp_dist_average_gradients(NULL, m, 1.0, NULL), FWP_ERR_NULL_POINTER, "dist");
  EXPECT_STATUS(fwp_dist_average_gradients(dist, NULL, 1.0, NULL), FWP_ERR_NULL_POINTER, "model");
  fwp_context* other = make_context(7);
  fwp_model* foreign = make_lm(other, &c);
  EXPECT_STATUS(fwp_dist_average_gradients(dist, foreign, 1.0, NULL), FWP_ERR_CONTEXT_MISMATCH, "context");
  fwp_model_destroy(foreign);
  fwp_context_destroy(other);
  after = snapshot(m, 1, NULL);
  REQUIRE(memcmp(g, after, (size_t)n * sizeof(float)) == 0, "a refused call changed the gradients");
  free(after);
  free(g);
  /* The group still works: a real average after the refusals. */
  check_weighted(dist, m, w13, 0);
  fwp_model_destroy(m);
}

/* ---- gather_state ------------------------------------------------------------------------------------------ */

static float state_value(int rank, int64_t k) { return (float)(rank * 100 + (int)(k % 50)) + 0.25f; }

static void test_gather_state(fwp_dist* dist, fwp_context* ctx) {
  fwp_lm_config c;
  tiny_lm_config(&c, FWP_FEATURE_MAP_DPFP, FWP_UPDATE_DELTA, 5);
  fwp_model* m = make_lm(ctx, &c);
  CHECK_OK(fwp_dist_sync_model(dist, m));
  const int64_t b = 2;
  fwp_state *local = NULL, *global = NULL;
  CHECK_OK(fwp_state_create(m, b, &local));
  CHECK_OK(fwp_state_create(m, b * g_world, &global));
  int64_t layers = 0;
  CHECK_OK(fwp_state_num_layers(local, &layers));
  REQUIRE(layers == 2, "%lld layers", (long long)layers);
  for (int64_t l = 0; l < layers; ++l) {
    int64_t wn = 0, zn = 0, gwn = 0, gzn = 0;
    CHECK_OK(fwp_state_size(local, l, &wn, &zn));
    CHECK_OK(fwp_state_size(global, l, &gwn, &gzn));
    REQUIRE(gwn == wn * g_world && gzn == zn * g_world, "global sizes");
    float* w = malloc((size_t)gwn * sizeof(float));
    float* z = malloc((size_t)gzn * sizeof(float));
    for (int64_t k = 0; k < wn; ++k) w[k] = state_value(g_rank, k + 7 * l);
    for (int64_t k = 0; k < zn; ++k) z[k] = -state_value(g_rank, k + 3 * l);
    CHECK_OK(fwp_state_set(local, l, w, wn, z, zn));
    for (int64_t k = 0; k < gwn; ++k) w[k] = 9.0f; /* the global state is overwritten */
    for (int64_t k = 0; k < gzn; ++k) z[k] = 9.0f;
    CHECK_OK(fwp_state_set(global, l, w, gwn, z, gzn));
    free(w);
    free(z);
  }
  CHECK_OK(fwp_dist_gather_state(dist, local, global));
  for (int64_t l = 0; l < layers; ++l) {
    int64_t wn = 0, zn = 0;
    CHECK_OK(fwp_state_size(local, l, &wn, &zn));
    float* w = malloc((size_t)(wn * g_world) * sizeof(float));
    float* z = malloc((size_t)(zn * g_world) * sizeof(float));
    CHECK_OK(fwp_state_get(global, l, w, wn * g_world, z, zn * g_world));
    /* Rows r b .. r b + b - 1 are rank r's rows 0 .. b - 1: rank r's whole block in rank order. */
    for (int r = 0; r < g_world; ++r) {
      for (int64_t k = 0; k < wn; ++k)
        REQUIRE(w[r * wn + k] == state_value(r, k + 7 * l), "layer %lld: W of rank %d element %lld is %g",
                (long long)l, r, (long long)k, w[r * wn + k]);
      for (int64_t k = 0; k < zn; ++k)
        REQUIRE(z[r * zn + k] == -state_value(r, k + 3 * l), "layer %lld: z of rank %d element %lld is %g",
                (long long)l, r, (long long)k, z[r * zn + k]);
    }
    free(w);
    free(z);
  }
  /* Argument checks. */
  fwp_state* three = NULL;
  CHECK_OK(fwp_state_create(m, 3, &three));
  EXPECT_STATUS(fwp_dist_gather_state(dist, local, three), FWP_ERR_SHAPE_MISMATCH, "");
  fwp_state_destroy(three);
  EXPECT_STATUS(fwp_dist_gather_state(NULL, local, global), FWP_ERR_NULL_POINTER, "dist");
  EXPECT_STATUS(fwp_dist_gather_state(dist, NULL, global), FWP_ERR_NULL_POINTER, "local");
  EXPECT_STATUS(fwp_dist_gather_state(dist, local, NULL), FWP_ERR_NULL_POINTER, "global");
  fwp_lm_config sc;
  tiny_lm_config(&sc, FWP_FEATURE_MAP_SOFTMAX, FWP_UPDATE_SUM, 5);
  fwp_model* soft = make_lm(ctx, &sc);
  fwp_state *soft_local = NULL, *soft_global = NULL;
  CHECK_OK(fwp_state_create(soft, b, &soft_local));
  CHECK_OK(fwp_state_create(soft, b * g_world, &soft_global));
  EXPECT_STATUS(fwp_dist_gather_state(dist, soft_local, soft_global), FWP_ERR_UNSUPPORTED, "");
  fwp_state_destroy(soft_local);
  fwp_state_destroy(soft_global);
  fwp_model_destroy(soft);
  fwp_context* other = make_context(7);
  fwp_model* foreign = make_lm(other, &c);
  fwp_state *f_local = NULL, *f_global = NULL;
  CHECK_OK(fwp_state_create(foreign, b, &f_local));
  CHECK_OK(fwp_state_create(foreign, b * g_world, &f_global));
  EXPECT_STATUS(fwp_dist_gather_state(dist, f_local, f_global), FWP_ERR_CONTEXT_MISMATCH, "context");
  fwp_state_destroy(f_local);
  fwp_state_destroy(f_global);
  fwp_model_destroy(foreign);
  fwp_context_destroy(other);
  fwp_state_destroy(local);
  fwp_state_destroy(global);
  fwp_model_destroy(m);
}

int main(void) {
  const double start = now_seconds();
  fwp_context* ctx = make_context(42);
  fwp_dist_config cfg;
  fwp_dist_config_init(&cfg);
  cfg.engine = FWP_DIST_MPI;
  cfg.timeout_seconds = 120; /* a hung partner fails the test instead of waiting for ctest */
  cfg.bucket_elements = 1000; /* several buckets per gradient block */
  fwp_dist* dist = join_two_ranks(ctx, &cfg);

  char dir[] = "/tmp/fwp_dist_equivalence_XXXXXX";
  REQUIRE(mkdtemp(dir) != NULL, "mkdtemp");
  write_token_file(dir, "corpus", g_tokens, sizeof g_tokens);

  test_get_rank(dist);
  test_sum(dist);
  test_barrier(dist);
  test_sync_model(dist, ctx);
  equivalence(dist, ctx, "elu + delta", FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, 0);
  equivalence(dist, ctx, "elu + sum + attn norm", FWP_FEATURE_MAP_ELU, FWP_UPDATE_SUM, 1);
  equivalence(dist, ctx, "dpfp + sum", FWP_FEATURE_MAP_DPFP, FWP_UPDATE_SUM, 0);
  equivalence(dist, ctx, "favor + delta (redraw)", FWP_FEATURE_MAP_FAVOR, FWP_UPDATE_DELTA, 0);
  equivalence(dist, ctx, "softmax", FWP_FEATURE_MAP_SOFTMAX, FWP_UPDATE_SUM, 0);
  test_weighted_average(dist, ctx);
  test_gather_state(dist, ctx);

  CHECK_OK(fwp_dist_barrier(dist));
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  REQUIRE(system(cmd) == 0, "%s", cmd);
  if (g_rank == 0) printf("dist equivalence: all checks passed in %.1f s\n", now_seconds() - start);
  g_dist = NULL;
  fwp_dist_destroy(dist);
  fwp_context_destroy(ctx);
  return 0;
}
