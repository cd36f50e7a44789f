/* The callback engine (the caller's all-reduce), without MPI and without mpirun:
 * - fwp_dist_config_init defaults, fwp_dist_engine_available, NCCL on a CPU context, every config check;
 * - world size 1: every collective is the identity;
 * - a fake partner (the all-reduce doubles the buffer, as two identical ranks would): buckets of
 *   bucket_elements, user_data; an all-reduce that fails gives FWP_ERR_DISTRIBUTED and the handle stays
 *   broken; fwp_dist_abort marks it broken and returns;
 * - two ranks on two threads with a shared all-reduce: sync_model, weighted averaging against the ranks'
 *   own gradients, a training step that keeps the replicas bitwise equal, gather_state. */
#include <pthread.h>

#include "dist_test.h"

enum { T = 8 };

/* ---- config, engines ------------------------------------------------------------------------------- */

static int identity_calls = 0;

static int identity_allreduce(void* buffer, int64_t count, fwp_dist_dtype dtype, void* user_data) {
  (void)buffer;
  (void)count;
  (void)dtype;
  (void)user_data;
  ++identity_calls;
  return 0;
}

static void callback_config(fwp_dist_config* cfg, fwp_dist_allreduce_fn fn, void* user_data, int32_t rank,
                            int32_t world) {
  fwp_dist_config_init(cfg);
  cfg->engine = FWP_DIST_CALLBACK;
  cfg->allreduce = fn;
  cfg->user_data = user_data;
  cfg->rank = rank;
  cfg->world_size = world;
}

static void test_config_and_engines(void) {
  fwp_dist_config cfg;
  memset(&cfg, 0x5a, sizeof cfg);
  fwp_dist_config_init(&cfg);
  REQUIRE(cfg.struct_size == sizeof cfg, "struct_size %u", cfg.struct_size);
  REQUIRE(cfg.engine == FWP_DIST_MPI && cfg.bucket_elements == 4194304 && cfg.timeout_seconds == 600.0,
          "defaults: engine %d, bucket %lld, timeout %g", (int)cfg.engine, (long long)cfg.bucket_elements,
          cfg.timeout_seconds);
  REQUIRE(cfg.mpi_comm == NULL && cfg.allreduce == NULL && cfg.user_data == NULL && cfg.rank == 0 &&
              cfg.world_size == 0,
          "defaults of the pointers, rank and world_size");
  fwp_dist_config_init(NULL);
  fwp_dist_destroy(NULL);
  fwp_dist_abort(NULL, 1); /* no-op */

  REQUIRE(fwp_dist_engine_available(FWP_DIST_CALLBACK) == 1, "the callback engine is always there");
  REQUIRE(fwp_dist_engine_available(FWP_DIST_MPI) == FWP_TEST_HAVE_MPI, "MPI available: %d, built with MPI: %d",
          fwp_dist_engine_available(FWP_DIST_MPI), FWP_TEST_HAVE_MPI);
  REQUIRE(fwp_dist_engine_available(FWP_DIST_NCCL) == FWP_TEST_HAVE_NCCL, "NCCL available: %d, built with NCCL: %d",
          fwp_dist_engine_available(FWP_DIST_NCCL), FWP_TEST_HAVE_NCCL);
  if (!fwp_cuda_is_built()) REQUIRE(fwp_dist_engine_available(FWP_DIST_NCCL) == 0, "NCCL without CUDA");
  REQUIRE(fwp_dist_engine_available((fwp_dist_engine)3) == 0, "engine 3");
  REQUIRE(fwp_dist_engine_available((fwp_dist_engine)-1) == 0, "engine -1");

  fwp_context* ctx = make_context(1);
  fwp_dist* d = NULL;
  /* NCCL on a CPU context; MPI where this build lacks it. */
  fwp_dist_config_init(&cfg);
  cfg.engine = FWP_DIST_NCCL;
  EXPECT_STATUS(fwp_dist_create(ctx, &cfg, &d), FWP_ERR_UNSUPPORTED, "");
  if (!FWP_TEST_HAVE_MPI) {
    fwp_dist_config_init(&cfg);
    EXPECT_STATUS(fwp_dist_create(ctx, &cfg, &d), FWP_ERR_UNSUPPORTED, "MPI");
  }

  /* Every field. A valid callback config first. */
  callback_config(&cfg, identity_allreduce, NULL, 0, 1);
  CHECK_OK(fwp_dist_create(ctx, &cfg, &d));
  fwp_dist_destroy(d);
  EXPECT_STATUS(fwp_dist_create(NULL, &cfg, &d), FWP_ERR_NULL_POINTER, "ctx");
  EXPECT_STATUS(fwp_dist_create(ctx, NULL, &d), FWP_ERR_NULL_POINTER, "config");
  EXPECT_STATUS(fwp_dist_create(ctx, &cfg, NULL), FWP_ERR_NULL_POINTER, "out");
  fwp_dist_config bad = cfg;
  bad.struct_size = 3;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->struct_size");
  bad = cfg;
  bad.engine = (fwp_dist_engine)7; /* an enum out of range, as everywhere in fwp */
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_OUT_OF_RANGE, "config->engine");
  bad.engine = (fwp_dist_engine)-1;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_OUT_OF_RANGE, "config->engine");
  bad = cfg;
  bad.bucket_elements = 0;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->bucket_elements");
  bad.bucket_elements = -5;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->bucket_elements");
  bad = cfg;
  bad.timeout_seconds = -1.0;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->timeout_seconds");
  bad.timeout_seconds = NAN;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->timeout_seconds");
  bad.timeout_seconds = INFINITY;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->timeout_seconds");
  bad = cfg;
  bad.allreduce = NULL;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_NULL_POINTER, "config->allreduce");
  bad = cfg;
  int fake_comm = 0;
  bad.mpi_comm = &fake_comm;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->mpi_comm");
  bad = cfg;
  bad.world_size = 0;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->world_size");
  bad.world_size = -2;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_INVALID_ARGUMENT, "config->world_size");
  bad = cfg;
  bad.rank = 1; /* == world_size */
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_OUT_OF_RANGE, "config->rank");
  bad.rank = -1;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_OUT_OF_RANGE, "config->rank");
  bad.world_size = 4;
  bad.rank = 4;
  EXPECT_STATUS(fwp_dist_create(ctx, &bad, &d), FWP_ERR_OUT_OF_RANGE, "config->rank");
  /* The callback's fields on the MPI engine (refused before MPI is started). */
  if (FWP_TEST_HAVE_MPI) {
    fwp_dist_config mpi;
    fwp_dist_config_init(&mpi);
    mpi.allreduce = identity_allreduce;
    EXPECT_STATUS(fwp_dist_create(ctx, &mpi, &d), FWP_ERR_INVALID_ARGUMENT, "allreduce");
    fwp_dist_config_init(&mpi);
    mpi.rank = 1;
    EXPECT_STATUS(fwp_dist_create(ctx, &mpi, &d), FWP_ERR_INVALID_ARGUMENT, "rank");
    fwp_dist_config_init(&mpi);
    mpi.world_size = 2;
    EXPECT_STATUS(fwp_dist_create(ctx, &mpi, &d), FWP_ERR_INVALID_ARGUMENT, "world_size");
    fwp_dist_config_init(&mpi);
    mpi.bucket_elements = 0;
    EXPECT_STATUS(fwp_dist_create(ctx, &mpi, &d), FWP_ERR_INVALID_ARGUMENT, "config->bucket_elements");
    fwp_dist_config_init(&mpi);
    mpi.timeout_seconds = NAN;
    EXPECT_STATUS(fwp_dist_create(ctx, &mpi, &d), FWP_ERR_INVALID_ARGUMENT, "config->timeout_seconds");
  }
  fwp_context_destroy(ctx);
}

/* ---- world size 1 ----------------------------------------------------------------------------------- */

/* Forward and backward on an input that depends on `which`. */
static void some_gradients(fwp_model* m, int which) {
  int32_t in[2 * T], tg[2 * T];
  for (int i = 0; i < 2 * T; ++i) {
    in[i] = (i * 3 + 5 * which + 1) % TEST_VOCAB;
    tg[i] = (i * 7 + 3 * which + 2) % TEST_VOCAB;
  }
  double loss = 0;
  CHECK_OK(fwp_model_zero_grad(m));
  CHECK_OK(fwp_lm_forward(m, in, tg, 2, T, NULL, &loss, NULL));
  CHECK_OK(fwp_model_backward(m));
}

static void require_close(const float* got, const float* want, int64_t n, double rel, const char* what) {
  for (int64_t i = 0; i < n; ++i)
    REQUIRE(fabs((double)got[i] - want[i]) <= 1e-7 + rel * fabs((double)want[i]), "%s: element %lld is %.9g, want %.9g",
            what, (long long)i, got[i], want[i]);
}

static void test_world_size_one(void) {
  fwp_context* ctx = make_context(1);
  fwp_dist_config cfg;
  callback_config(&cfg, identity_allreduce, NULL, 0, 1);
  fwp_dist* d = NULL;
  CHECK_OK(fwp_dist_create(ctx, &cfg, &d));
  int32_t rank = -1, world = -1;
  CHECK_OK(fwp_dist_get_rank(d, &rank, &world));
  REQUIRE(rank == 0 && world == 1, "rank %d of %d", rank, world);
  fwp_lm_config c;
  tiny_lm_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, 5);
  fwp_model* m = make_lm(ctx, &c);
  const double h = param_hash(m);
  CHECK_OK(fwp_dist_sync_model(d, m));
  REQUIRE(param_hash(m) == h, "the sync of one rank changed the parameters");
  some_gradients(m, 0);
  int64_t n = 0;
  float* g = snapshot(m, 1, &n);
  double total = 0;
  CHECK_OK(fwp_dist_average_gradients(d, m, 1.0, &total));
  REQUIRE(total == 1.0, "total_weight %g", total);
  float* a = snapshot(m, 1, NULL);
  REQUIRE(memcmp(a, g, (size_t)n * sizeof(float)) == 0, "weight 1 on one rank changed the gradients");
  free(a);
  CHECK_OK(fwp_dist_average_gradients(d, m, 2.5, &total));
  REQUIRE(total == 2.5, "total_weight %g", total);
  a = snapshot(m, 1, NULL);
  require_close(a, g, n, 1e-6, "weight 2.5 on one rank");
  free(a);
  EXPECT_STATUS(fwp_dist_average_gradients(d, m, 0.0, &total), FWP_ERR_INVALID_ARGUMENT, "weight");
  a = snapshot(m, 1, NULL);
  require_close(a, g, n, 1e-6, "weight 0 (refused)");
  free(a);
  free(g);
  double v[2] = {1.5, -2.0};
  CHECK_OK(fwp_dist_sum(d, v, 2));
  REQUIRE(v[0] == 1.5 && v[1] == -2.0, "sum on one rank: %g %g", v[0], v[1]);
  CHECK_OK(fwp_dist_barrier(d));
  /* gather_state: the global state is the local one. */
  fwp_state *local = NULL, *global = NULL;
  CHECK_OK(fwp_state_create(m, 2, &local));
  CHECK_OK(fwp_state_create(m, 2, &global));
  int64_t wn = 0, zn = 0;
  CHECK_OK(fwp_state_size(local, 1, &wn, &zn));
  float* w = malloc((size_t)wn * sizeof(float));
  float* w2 = malloc((size_t)wn * sizeof(float));
  for (int64_t k = 0; k < wn; ++k) w[k] = (float)(k % 13) - 6.0f;
  CHECK_OK(fwp_state_set(local, 1, w, wn, NULL, 0));
  CHECK_OK(fwp_dist_gather_state(d, local, global));
  CHECK_OK(fwp_state_get(global, 1, w2, wn, NULL, 0));
  REQUIRE(memcmp(w, w2, (size_t)wn * sizeof(float)) == 0, "gather_state on one rank");
  free(w);
  free(w2);
  fwp_state_destroy(local);
  fwp_state_destroy(global);
  fwp_model_destroy(m);
  fwp_dist_destroy(d);
  fwp_context_destroy(ctx);
}

/* ---- a fake partner: two identical ranks -------------------------------------------------------------- */

typedef struct fake_partner {
  int fail;            /* return this from the next calls */
  int calls;
  int64_t elements;    /* over all calls */
  int64_t largest;     /* the largest count of one call */
  void* seen_user_data;
} fake_partner;

static int doubling_allreduce(void* buffer, int64_t count, fwp_dist_dtype dtype, void* user_data) {
  fake_partner* p = user_data;
  p->seen_user_data = user_data;
  p->calls++;
  if (p->fail) return p->fail;
  REQUIRE(count >= 1, "count %lld", (long long)count);
  p->elements += count;
  if (count > p->largest) p->largest = count;
  if (dtype == FWP_DIST_FLOAT32) {
    float* x = buffer;
    for (int64_t i = 0; i < count; ++i) x[i] *= 2.0f;
  } else {
    REQUIRE(dtype == FWP_DIST_FLOAT64, "dtype %d", (int)dtype);
    double* x = buffer;
    for (int64_t i = 0; i < count; ++i) x[i] *= 2.0;
  }
  return 0;
}

static void test_fake_partner_and_failures(void) {
  fwp_context* ctx = make_context(1);
  fake_partner p;
  memset(&p, 0, sizeof p);
  fwp_dist_config cfg;
  callback_config(&cfg, doubling_allreduce, &p, 0, 2);
  cfg.bucket_elements = 100;
  fwp_dist* d = NULL;
  CHECK_OK(fwp_dist_create(ctx, &cfg, &d));
  int32_t rank = -1, world = -1;
  CHECK_OK(fwp_dist_get_rank(d, &rank, &world));
  REQUIRE(rank == 0 && world == 2, "rank %d of %d", rank, world);
  double v = 1.5;
  CHECK_OK(fwp_dist_sum(d, &v, 1));
  REQUIRE(v == 3.0, "sum %g", v);
  REQUIRE(p.seen_user_data == &p, "user_data not passed");

  fwp_lm_config c;
  tiny_lm_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, 5);
  fwp_model* m = make_lm(ctx, &c);
  some_gradients(m, 0);
  int64_t n = 0;
  float* g = snapshot(m, 1, &n);
  memset(&p, 0, sizeof p);
  double total = 0;
  CHECK_OK(fwp_dist_average_gradients(d, m, 1.0, &total));
  REQUIRE(total == 2.0, "total_weight %g with an identical partner", total);
  float* a = snapshot(m, 1, NULL);
  require_close(a, g, n, 1e-6, "the mean of two equal gradients");
  free(a);
  REQUIRE(p.largest <= 100, "an all-reduce of %lld elements (bucket_elements 100)", (long long)p.largest);
  REQUIRE(p.elements >= n && p.calls >= (n + 99) / 100, "%d all-reduce calls of %lld elements for %lld gradients",
          p.calls, (long long)p.elements, (long long)n);

  /* An all-reduce that fails: FWP_ERR_DISTRIBUTED, and the handle stays broken. */
  p.fail = 7;
  v = 1.0;
  EXPECT_STATUS(fwp_dist_sum(d, &v, 1), FWP_ERR_DISTRIBUTED, "");
  p.fail = 0;
  const int calls = p.calls;
  EXPECT_STATUS(fwp_dist_sum(d, &v, 1), FWP_ERR_DISTRIBUTED, "");
  EXPECT_STATUS(fwp_dist_barrier(d), FWP_ERR_DISTRIBUTED, "");
  EXPECT_STATUS(fwp_dist_average_gradients(d, m, 1.0, NULL), FWP_ERR_DISTRIBUTED, "");
  EXPECT_STATUS(fwp_dist_sync_model(d, m), FWP_ERR_DISTRIBUTED, "");
  REQUIRE(p.calls == calls, "a broken handle called the all-reduce again");
  fwp_dist_destroy(d);

  /* fwp_dist_abort on the callback engine: returns, and the handle is broken. */
  memset(&p, 0, sizeof p);
  CHECK_OK(fwp_dist_create(ctx, &cfg, &d));
  v = 1.0;
  CHECK_OK(fwp_dist_sum(d, &v, 1));
  fwp_dist_abort(d, 3);
  EXPECT_STATUS(fwp_dist_sum(d, &v, 1), FWP_ERR_DISTRIBUTED, "");
  fwp_dist_destroy(d);

  /* Argument checks on a working handle. */
  CHECK_OK(fwp_dist_create(ctx, &cfg, &d));
  EXPECT_STATUS(fwp_dist_sum(d, NULL, 1), FWP_ERR_NULL_POINTER, "values");
  EXPECT_STATUS(fwp_dist_sum(d, &v, 0), FWP_ERR_INVALID_ARGUMENT, "count");
  EXPECT_STATUS(fwp_dist_average_gradients(d, m, -1.0, NULL), FWP_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_STATUS(fwp_dist_average_gradients(d, m, NAN, NULL), FWP_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_STATUS(fwp_dist_average_gradients(d, NULL, 1.0, NULL), FWP_ERR_NULL_POINTER, "model");
  fwp_context* other = make_context(2);
  fwp_model* foreign = make_lm(other, &c);
  EXPECT_STATUS(fwp_dist_average_gradients(d, foreign, 1.0, NULL), FWP_ERR_CONTEXT_MISMATCH, "context");
  EXPECT_STATUS(fwp_dist_sync_model(d, foreign), FWP_ERR_CONTEXT_MISMATCH, "context");
  fwp_model_destroy(foreign);
  fwp_context_destroy(other);
  v = 1.0;
  CHECK_OK(fwp_dist_sum(d, &v, 1)); /* not broken by refused calls */
  REQUIRE(v == 2.0, "sum %g", v);
  fwp_dist_destroy(d);
  free(g);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

/* ---- two ranks on two threads ---------------------------------------------------------------------------- */

/* An all-reduce over threads: each rank posts its buffer, every rank sums all of them in rank order into
   a buffer of its own (the same bits everywhere), and copies the sum back once all have read. */
typedef struct thread_group {
  pthread_barrier_t barrier;
  void* buffers[2];
  int64_t counts[2];
  fwp_dist_dtype dtypes[2];
} thread_group;

typedef struct thread_rank {
  thread_group* group;
  int rank;
  double weight;
  /* results */
  double synced_hash, total, trained_hash;
  float* grads;  /* before averaging */
  float* avg;    /* after */
  int64_t n;
  float* gathered; /* layer 0's W of the gathered state */
  int64_t gathered_n;
} thread_rank;

static int thread_allreduce(void* buffer, int64_t count, fwp_dist_dtype dtype, void* user_data) {
  thread_rank* me = user_data;
  thread_group* g = me->group;
  g->buffers[me->rank] = buffer;
  g->counts[me->rank] = count;
  g->dtypes[me->rank] = dtype;
  pthread_barrier_wait(&g->barrier);
  const int same = g->counts[0] == g->counts[1] && g->dtypes[0] == g->dtypes[1];
  const size_t size = dtype == FWP_DIST_FLOAT32 ? sizeof(float) : sizeof(double);
  void* sum = same ? malloc((size_t)count * size) : NULL;
  if (sum != NULL) {
    for (int64_t i = 0; i < count; ++i) {
      if (dtype == FWP_DIST_FLOAT32)
        ((float*)sum)[i] = ((const float*)g->buffers[0])[i] + ((const float*)g->buffers[1])[i];
      else
        ((double*)sum)[i] = ((const double*)g->buffers[0])[i] + ((const double*)g->buffers[1])[i];
    }
  }
  pthread_barrier_wait(&g->barrier); /* everyone has read every buffer */
  if (sum == NULL) return 1;          /* the ranks disagree (or no memory): a failure on both */
  memcpy(buffer, sum, (size_t)count * size);
  free(sum);
  return 0;
}

static void* run_rank(void* arg) {
  thread_rank* me = arg;
  fwp_context* ctx = make_context(10 + (uint64_t)me->rank);
  fwp_dist_config cfg;
  callback_config(&cfg, thread_allreduce, me, me->rank, 2);
  cfg.bucket_elements = 257;
  fwp_dist* d = NULL;
  CHECK_OK(fwp_dist_create(ctx, &cfg, &d));
  fwp_lm_config c;
  tiny_lm_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA, 5 + (uint64_t)me->rank * 10);
  fwp_model* m = make_lm(ctx, &c);
  CHECK_OK(fwp_dist_sync_model(d, m));
  me->synced_hash = param_hash(m);
  some_gradients(m, me->rank);
  me->grads = snapshot(m, 1, &me->n);
  CHECK_OK(fwp_dist_average_gradients(d, m, me->weight, &me->total));
  me->avg = snapshot(m, 1, NULL);
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
  CHECK_OK(fwp_optimizer_step(opt, NULL));
  me->trained_hash = param_hash(m);
  /* gather_state: rows of rank 0 then rank 1. */
  fwp_state *local = NULL, *global = NULL;
  CHECK_OK(fwp_state_create(m, 1, &local));
  CHECK_OK(fwp_state_create(m, 2, &global));
  int64_t wn = 0;
  CHECK_OK(fwp_state_size(local, 0, &wn, NULL));
  float* w = malloc((size_t)wn * sizeof(float));
  for (int64_t k = 0; k < wn; ++k) w[k] = (float)(me->rank * 1000 + k % 100);
  CHECK_OK(fwp_state_set(local, 0, w, wn, NULL, 0));
  free(w);
  CHECK_OK(fwp_dist_gather_state(d, local, global));
  me->gathered_n = 2 * wn;
  me->gathered = malloc((size_t)me->gathered_n * sizeof(float));
  CHECK_OK(fwp_state_get(global, 0, me->gathered, me->gathered_n, NULL, 0));
  CHECK_OK(fwp_dist_barrier(d));
  fwp_state_destroy(local);
  fwp_state_destroy(global);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(m);
  fwp_dist_destroy(d);
  fwp_context_destroy(ctx);
  return NULL;
}

static void test_two_threads(void) {
  thread_group group;
  REQUIRE(pthread_barrier_init(&group.barrier, NULL, 2) == 0, "pthread_barrier_init");
  thread_rank ranks[2];
  memset(ranks, 0, sizeof ranks);
  pthread_t threads[2];
  for (int r = 0; r < 2; ++r) {
    ranks[r].group = &group;
    ranks[r].rank = r;
    ranks[r].weight = r == 0 ? 1.0 : 3.0;
    REQUIRE(pthread_create(&threads[r], NULL, run_rank, &ranks[r]) == 0, "pthread_create");
  }
  for (int r = 0; r < 2; ++r) pthread_join(threads[r], NULL);
  pthread_barrier_destroy(&group.barrier);

  REQUIRE(ranks[0].synced_hash == ranks[1].synced_hash, "the replicas differ after fwp_dist_sync_model");
  REQUIRE(ranks[0].total == 4.0 && ranks[1].total == 4.0, "total_weight %g, %g", ranks[0].total, ranks[1].total);
  const int64_t n = ranks[0].n;
  int64_t differ = 0;
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float g0 = ranks[0].grads[i], g1 = ranks[1].grads[i];
    differ += g0 != g1;
    const double want = ((double)g0 + 3.0 * g1) / 4.0;
    const double d = fabs(ranks[0].avg[i] - want);
    if (d > worst) worst = d;
    REQUIRE(d <= 1e-7 + 1e-5 * fabs(want), "gradient %lld: %.9g, expected (g0 + 3 g1) / 4 = %.9g", (long long)i,
            ranks[0].avg[i], want);
  }
  REQUIRE(differ > n / 4, "the two ranks' gradients are (almost) equal: the check would prove nothing");
  REQUIRE(memcmp(ranks[0].avg, ranks[1].avg, (size_t)n * sizeof(float)) == 0, "the averaged gradients differ");
  REQUIRE(ranks[0].trained_hash == ranks[1].trained_hash, "the replicas differ after a step");
  REQUIRE(ranks[0].trained_hash != ranks[0].synced_hash, "the step changed nothing");
  const int64_t half = ranks[0].gathered_n / 2;
  for (int r = 0; r < 2; ++r) {
    REQUIRE(memcmp(ranks[r].gathered, ranks[0].gathered, (size_t)ranks[0].gathered_n * sizeof(float)) == 0,
            "the ranks gathered different states");
    for (int64_t k = 0; k < half; ++k)
      REQUIRE(ranks[0].gathered[r * half + k] == (float)(r * 1000 + k % 100), "gathered row of rank %d, element %lld",
              r, (long long)k);
  }
  printf("two threads: weights 1, 3: worst difference %.3g over %lld gradients\n", worst, (long long)n);
  for (int r = 0; r < 2; ++r) {
    free(ranks[r].grads);
    free(ranks[r].avg);
    free(ranks[r].gathered);
  }
}

int main(void) {
  g_rank = 0;
  test_config_and_engines();
  test_world_size_one();
  test_fake_partner_and_failures();
  test_two_threads();
  printf("dist callback: all checks passed\n");
  return 0;
}
