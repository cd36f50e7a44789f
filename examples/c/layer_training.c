/*
 * Uses the fast-weight layer inside your own training loop, with the C API only:
 *
 *   - a context and a layer (linear-transformer form: elu+1 features, sum rule,
 *     attention normalisation) that carries its fast-weight state across calls;
 *   - forward passes over segments of long streams, a loss computed here in C,
 *     and backward passes with the gradient of that loss;
 *   - an Adam optimizer over the layer's parameters (fwp_optimizer_create_for_layer);
 *   - the fast-weight state carried from segment to segment (carry_state = 1),
 *     saved and restored with fwp_layer_get_state / fwp_layer_set_state;
 *   - token-by-token generation with fwp_layer_step, which reproduces the
 *     outputs of the segment-wise forward passes.
 *
 * The task: each stream has its own random offset mu (one vector per batch
 * row); its tokens are x_t = mu + noise_t, and the target at every token is
 * the running mean of the stream so far, x_1..x_t. A layer whose attention is
 * uniform computes exactly that average, but only if it remembers the earlier
 * segments of the stream: the state is its memory.
 *
 *   usage: layer_training [steps [seed]]      (defaults: 300 1)
 *
 * Exit status: 0 when training reduced the loss and step-wise generation
 * matched the forward pass, 1 otherwise (or when a library call fails),
 * 2 for bad arguments.
 */
#include <fwp/fwp.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  D_MODEL = 8,           /* token width */
  BATCH = 8,             /* streams trained side by side */
  SEGMENT = 16,          /* tokens per forward/backward call */
  SEGMENTS_PER_STREAM = 4
};
#define NOISE 0.5f
#define LEARNING_RATE 0.01f

/* Prints the library's message for a failed call and jumps to cleanup. */
#define CHECK(call)                                                                          \
  do {                                                                                       \
    fwp_status check_status_ = (call);                                                       \
    if (check_status_ != FWP_OK) {                                                           \
      fprintf(stderr, "layer_training: %s failed: %s (%s)\n", #call, fwp_last_error_message(), \
              fwp_status_string(check_status_));                                             \
      goto cleanup;                                                                          \
    }                                                                                        \
  } while (0)

/* A small deterministic generator (64-bit LCG): uniform floats in [-1, 1). */
static uint64_t rng_state;
static float uniform(void) {
  rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
  return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* One stream per batch row: its offset and the running sum of its tokens. */
typedef struct streams {
  float mu[BATCH][D_MODEL];
  float sum[BATCH][D_MODEL];
  int64_t count;
} streams;

static void new_streams(streams* s) {
  for (int b = 0; b < BATCH; ++b)
    for (int d = 0; d < D_MODEL; ++d) {
      s->mu[b][d] = 2.0f * uniform();
      s->sum[b][d] = 0.0f;
    }
  s->count = 0;
}

/* Fills the next segment x [BATCH][SEGMENT][D_MODEL] and its targets (running means). */
static void next_segment(streams* s, float* x, float* target) {
  for (int t = 0; t < SEGMENT; ++t) {
    for (int b = 0; b < BATCH; ++b)
      for (int d = 0; d < D_MODEL; ++d) {
        size_t i = ((size_t)b * SEGMENT + t) * D_MODEL + d;
        x[i] = s->mu[b][d] + NOISE * uniform();
        s->sum[b][d] += x[i];
        target[i] = s->sum[b][d] / (float)(s->count + 1);
      }
    s->count += 1;
  }
}

/* loss = 0.5 * mean((y - target)^2); dy = dloss/dy. */
static float mse_loss(const float* y, const float* target, float* dy, size_t n) {
  double loss = 0.0;
  for (size_t i = 0; i < n; ++i) {
    float diff = y[i] - target[i];
    loss += 0.5 * (double)diff * diff;
    if (dy) dy[i] = diff / (float)n;
  }
  return (float)(loss / (double)n);
}

/* Parses a decimal integer in [min, max]; returns 0 on failure. */
static int parse_integer(const char* text, long long min, long long max, long long* out) {
  char* end = NULL;
  errno = 0;
  long long value = strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno == ERANGE || value < min || value > max) return 0;
  *out = value;
  return 1;
}

/* The loss of fresh streams, segment by segment with the state carried (evaluation mode). */
static fwp_status evaluate(fwp_layer* layer, float* x, float* y, float* target, float* loss) {
  streams s;
  fwp_status status;
  const size_t n = (size_t)BATCH * SEGMENT * D_MODEL;
  double total = 0.0;
  new_streams(&s);
  if ((status = fwp_layer_set_training(layer, 0)) != FWP_OK) return status;
  if ((status = fwp_layer_reset_state(layer)) != FWP_OK) return status;
  for (int seg = 0; seg < SEGMENTS_PER_STREAM; ++seg) {
    next_segment(&s, x, target);
    if ((status = fwp_layer_forward(layer, x, BATCH, SEGMENT, y)) != FWP_OK) return status;
    total += mse_loss(y, target, NULL, n);
  }
  *loss = (float)(total / SEGMENTS_PER_STREAM);
  return fwp_layer_set_training(layer, 1);
}

int main(int argc, char** argv) {
  long long steps = 300, seed = 1;
  if (argc > 3 || (argc > 1 && !parse_integer(argv[1], 1, 10000000, &steps)) ||
      (argc > 2 && !parse_integer(argv[2], 0, INT64_MAX, &seed))) {
    fprintf(stderr, "usage: layer_training [steps [seed]]\n");
    return 2;
  }
  rng_state = (uint64_t)seed;

  int exit_code = 1;
  fwp_context* ctx = NULL;
  fwp_layer* layer = NULL;
  fwp_optimizer* opt = NULL;
  const size_t n = (size_t)BATCH * SEGMENT * D_MODEL;
  float* x = malloc(n * sizeof(float));
  float* y = malloc(n * sizeof(float));
  float* dy = malloc(n * sizeof(float));
  float* target = malloc(n * sizeof(float));
  float* y_steps = malloc(n * sizeof(float));
  float *w = NULL, *z = NULL;
  if (!x || !y || !dy || !target || !y_steps) {
    fprintf(stderr, "layer_training: out of memory\n");
    goto cleanup;
  }

  /* Context: CPU, one thread, a fixed seed (the layer's initial weights). */
  fwp_context_config ctx_config;
  fwp_context_config_init(&ctx_config);
  ctx_config.num_threads = 1;
  ctx_config.seed = (uint64_t)seed;
  CHECK(fwp_context_create(&ctx_config, &ctx));

  /* Layer: one head, elu+1 features, sum rule with attention normalisation
   * ("Linear Transformer"), state carried across forward calls. */
  fwp_layer_config config;
  fwp_layer_config_init(&config);
  config.d_model = D_MODEL;
  config.num_heads = 1;
  config.d_head = D_MODEL;
  config.feature_map = FWP_FEATURE_MAP_ELU;
  config.update_rule = FWP_UPDATE_SUM;
  config.sum_normalize = 0;
  config.attn_normalize = 1;
  config.scale_output = 0;
  config.init_std = 0.3f;
  config.carry_state = 1;
  CHECK(fwp_layer_create(ctx, &config, &layer));

  int64_t d_dot = 0, num_params = 0;
  CHECK(fwp_layer_feature_dim(layer, &d_dot));
  CHECK(fwp_layer_num_params(layer, &num_params));
  printf("layer: d_model %d, 1 head, d_dot %lld, %lld parameter tensors:", D_MODEL, (long long)d_dot,
         (long long)num_params);
  for (int64_t i = 0; i < num_params; ++i) {
    fwp_param_info info;
    CHECK(fwp_layer_param_info(layer, i, &info));
    printf(" %s[%lld x %lld]", info.name, (long long)info.shape[0], (long long)info.shape[1]);
  }
  printf("\n");

  fwp_optimizer_config opt_config;
  fwp_optimizer_config_init(&opt_config);
  opt_config.kind = FWP_OPTIMIZER_ADAM;
  opt_config.learning_rate = LEARNING_RATE;
  opt_config.clip_grad_norm = 1.0f;
  CHECK(fwp_optimizer_create_for_layer(layer, &opt_config, &opt));

  float initial_loss = 0.0f, final_loss = 0.0f;
  CHECK(evaluate(layer, x, y, target, &initial_loss));
  printf("step %5d  eval loss %.5f\n", 0, initial_loss);

  /* The training loop: every SEGMENTS_PER_STREAM steps a new stream begins and
   * the state is reset; in between, each forward starts from the state the
   * previous one left (gradients are truncated at segment boundaries). */
  streams train;
  for (long long step = 0; step < steps; ++step) {
    if (step % SEGMENTS_PER_STREAM == 0) {
      new_streams(&train);
      CHECK(fwp_layer_reset_state(layer));
    }
    next_segment(&train, x, target);
    CHECK(fwp_optimizer_zero_grad(opt));
    CHECK(fwp_layer_forward(layer, x, BATCH, SEGMENT, y));
    float loss = mse_loss(y, target, dy, n);
    CHECK(fwp_layer_backward(layer, dy, BATCH, SEGMENT, NULL));
    float grad_norm = 0.0f;
    CHECK(fwp_optimizer_step(opt, &grad_norm));
    if ((step + 1) % 100 == 0 || step + 1 == steps) {
      CHECK(evaluate(layer, x, y, target, &final_loss));
      printf("step %5lld  train loss %.5f  grad norm %.4f  eval loss %.5f\n", step + 1, loss, grad_norm,
             final_loss);
    }
  }

  /* Generation: a fresh stream token by token with fwp_layer_step must give
   * what the segment-wise forward passes give. Halfway through, the state is
   * saved, forgotten and restored, as a program would do to pause a stream. */
  CHECK(fwp_layer_set_training(layer, 0));
  uint64_t saved_rng = rng_state;
  streams gen;
  new_streams(&gen);
  CHECK(fwp_layer_reset_state(layer));
  next_segment(&gen, x, target);
  CHECK(fwp_layer_forward(layer, x, BATCH, SEGMENT, y));
  rng_state = saved_rng; /* replay the same stream for the step-wise run */
  new_streams(&gen);
  next_segment(&gen, x, target);
  CHECK(fwp_layer_reset_state(layer));

  int64_t w_count = 0, z_count = 0, state_batch = 0;
  CHECK(fwp_layer_state_size(layer, BATCH, &w_count, &z_count));
  w = malloc((size_t)w_count * sizeof(float));
  z = malloc((size_t)z_count * sizeof(float));
  if (!w || !z) {
    fprintf(stderr, "layer_training: out of memory\n");
    goto cleanup;
  }
  float token[BATCH * D_MODEL], out[BATCH * D_MODEL];
  for (int t = 0; t < SEGMENT; ++t) {
    if (t == SEGMENT / 2) {
      CHECK(fwp_layer_get_state(layer, &state_batch, w, w_count, z, z_count));
      CHECK(fwp_layer_reset_state(layer));
      CHECK(fwp_layer_set_state(layer, state_batch, w, w_count, z, z_count));
    }
    for (int b = 0; b < BATCH; ++b)
      memcpy(&token[b * D_MODEL], &x[((size_t)b * SEGMENT + t) * D_MODEL], D_MODEL * sizeof(float));
    CHECK(fwp_layer_step(layer, token, BATCH, out));
    for (int b = 0; b < BATCH; ++b)
      memcpy(&y_steps[((size_t)b * SEGMENT + t) * D_MODEL], &out[b * D_MODEL], D_MODEL * sizeof(float));
  }
  float max_diff = 0.0f;
  for (size_t i = 0; i < n; ++i) max_diff = fmaxf(max_diff, fabsf(y_steps[i] - y[i]));
  printf("generation: %d steps of batch %d, state batch %lld (%lld + %lld floats), "
         "max |step - forward| = %.2e\n",
         SEGMENT, BATCH, (long long)state_batch, (long long)w_count, (long long)z_count, max_diff);

  int64_t taken = 0;
  CHECK(fwp_optimizer_get_step(opt, &taken));
  printf("trained %lld steps: eval loss %.5f -> %.5f\n", (long long)taken, initial_loss, final_loss);
  if (!(final_loss < 0.5f * initial_loss)) {
    fprintf(stderr, "layer_training: the loss did not halve (%.5f -> %.5f)\n", initial_loss, final_loss);
  } else if (!(max_diff <= 1e-4f)) {
    fprintf(stderr, "layer_training: step-wise outputs differ from the forward pass by %.2e\n", max_diff);
  } else {
    exit_code = 0;
  }

cleanup:
  /* Destroy the optimizer before its layer; the layer keeps the context alive. */
  fwp_optimizer_destroy(opt);
  fwp_context_destroy(ctx);
  fwp_layer_destroy(layer);
  free(w);
  free(z);
  free(x);
  free(y);
  free(dy);
  free(target);
  free(y_steps);
  return exit_code;
}
