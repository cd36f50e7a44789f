/*
 * Trains the synthetic associative-retrieval model of Schlag, Irie and
 * Schmidhuber (ICML 2021, section 6.1) with the fwp C API and the paper's
 * recipe: Adam (lr 1e-3), batches of 32 sequences, an evaluation every 100
 * steps on 20 fresh sequences each queried with every distinct key (at most
 * 200 queries), stopping when the evaluation loss is <= 0.001 or after 11
 * evaluations without improvement.
 *
 * The model is the library's default retrieval model: setting 1 (capacity),
 * DPFP nu = 1 features and the delta rule with sum-normalised features.
 *
 *   usage: retrieval [S [max_steps [seed]]]     (defaults: 20 100000 1)
 *
 * Exit status: 0 after training, 1 if a library call fails, 2 for bad arguments.
 */
#include <fwp/fwp.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BATCH_SIZE 32
#define EVAL_EVERY 100
#define EVAL_SEQUENCES 20
#define MAX_EVAL_QUERIES 200
#define PATIENCE 11
#define TARGET_LOSS 0.001f

/* Prints the library's message for a failed call and jumps to cleanup. */
#define CHECK(call)                                                                      \
  do {                                                                                   \
    fwp_status check_status_ = (call);                                                   \
    if (check_status_ != FWP_OK) {                                                       \
      fprintf(stderr, "retrieval: %s failed: %s (%s)\n", #call, fwp_last_error_message(), \
              fwp_status_string(check_status_));                                         \
      goto cleanup;                                                                      \
    }                                                                                    \
  } while (0)

/* Parses a decimal integer in [min, max]; returns 0 on failure. */
static int parse_integer(const char* text, long long min, long long max, long long* out) {
  char* end = NULL;
  long long value;
  errno = 0;
  value = strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno == ERANGE || value < min || value > max) return 0;
  *out = value;
  return 1;
}

/* One batch of sequences in caller-owned arrays, as the C API expects. */
typedef struct batch_buffers {
  int64_t batch_size, seq_len, num_queries;
  int32_t *keys, *values, *queries, *targets;
} batch_buffers;

static int batch_alloc(batch_buffers* b, int64_t batch_size, int64_t seq_len, int64_t num_queries) {
  b->batch_size = batch_size;
  b->seq_len = seq_len;
  b->num_queries = num_queries;
  b->keys = malloc(sizeof(int32_t) * (size_t)(batch_size * seq_len));
  b->values = malloc(sizeof(int32_t) * (size_t)(batch_size * seq_len));
  b->queries = malloc(sizeof(int32_t) * (size_t)(batch_size * num_queries));
  b->targets = malloc(sizeof(int32_t) * (size_t)(batch_size * num_queries));
  return b->keys && b->values && b->queries && b->targets;
}

static void batch_free(batch_buffers* b) {
  free(b->keys);
  free(b->values);
  free(b->queries);
  free(b->targets);
}

static fwp_retrieval_batch batch_view(const batch_buffers* b) {
  fwp_retrieval_batch view;
  view.batch_size = b->batch_size;
  view.seq_len = b->seq_len;
  view.num_queries = b->num_queries;
  view.keys = b->keys;
  view.values = b->values;
  view.queries = b->queries;
  view.targets = b->targets;
  return view;
}

int main(int argc, char** argv) {
  long long num_keys = 20, max_steps = 100000, seed = 1;
  int exit_code = 1;
  fwp_context* ctx = NULL;
  fwp_model* model = NULL;
  fwp_optimizer* opt = NULL;
  fwp_retrieval_data* train_data = NULL;
  fwp_retrieval_data* eval_data = NULL;
  batch_buffers train = {0, 0, 0, NULL, NULL, NULL, NULL};
  batch_buffers eval = {0, 0, 0, NULL, NULL, NULL, NULL};
  fwp_context_config ctx_config;
  fwp_retrieval_config model_config;
  fwp_optimizer_config opt_config;
  int64_t seq_len = 0, step = 0, evals_since_best = 0;
  float best = 1e30f, last_eval = 0.0f;
  double train_loss_sum = 0.0;
  const char* stopped_by = "step cap";

  if (argc > 4 || (argc > 1 && !parse_integer(argv[1], 2, 100000, &num_keys)) ||
      (argc > 2 && !parse_integer(argv[2], 1, INT64_MAX, &max_steps)) ||
      (argc > 3 && !parse_integer(argv[3], 0, INT64_MAX, &seed))) {
    fprintf(stderr, "usage: %s [S (2..100000) [max_steps (>= 1) [seed (>= 0)]]]\n", argv[0]);
    return 2;
  }

  fwp_context_config_init(&ctx_config);
  ctx_config.seed = (uint64_t)seed; /* initial weights */
  CHECK(fwp_context_create(&ctx_config, &ctx));

  fwp_retrieval_config_init(&model_config); /* DPFP nu=1, delta rule, sum-normalised */
  model_config.setting = 1;
  model_config.num_keys = num_keys;
  CHECK(fwp_model_create_retrieval(ctx, &model_config, &model));

  fwp_optimizer_config_init(&opt_config);
  opt_config.kind = FWP_OPTIMIZER_ADAM;
  opt_config.learning_rate = 1e-3f;
  CHECK(fwp_optimizer_create_for_model(model, &opt_config, &opt));

  CHECK(fwp_retrieval_data_create(1, num_keys, (uint64_t)seed + 1000u, &train_data));
  CHECK(fwp_retrieval_data_seq_len(train_data, &seq_len));
  /* Evaluation sequences come from their own generator: fresh ones at every evaluation. */
  CHECK(fwp_retrieval_data_create(1, num_keys, (uint64_t)seed + 2000u, &eval_data));

  if (!batch_alloc(&train, BATCH_SIZE, seq_len, 1) ||
      !batch_alloc(&eval, EVAL_SEQUENCES, seq_len, num_keys < MAX_EVAL_QUERIES ? num_keys : MAX_EVAL_QUERIES)) {
    fprintf(stderr, "retrieval: out of memory\n");
    goto cleanup;
  }

  printf("training DPFP nu=1 + delta rule on setting 1 with S = %lld keys (cap %lld steps, seed %lld)\n",
         num_keys, max_steps, seed);
  while (step < max_steps) {
    fwp_retrieval_batch view;
    float loss = 0.0f;

    CHECK(fwp_retrieval_data_sample(train_data, train.batch_size, 1, train.keys, train.values, train.queries,
                                    train.targets));
    view = batch_view(&train);
    CHECK(fwp_model_zero_grad(model));
    CHECK(fwp_retrieval_forward(model, &view, &loss, NULL, 0));
    CHECK(fwp_model_backward(model));
    CHECK(fwp_optimizer_step(opt, NULL));
    ++step;
    train_loss_sum += loss;

    if (step % EVAL_EVERY == 0 || step == max_steps) {
      const int64_t since_last = step % EVAL_EVERY == 0 ? EVAL_EVERY : step % EVAL_EVERY;
      CHECK(fwp_retrieval_data_sample(eval_data, eval.batch_size, eval.num_queries, eval.keys, eval.values,
                                      eval.queries, eval.targets));
      view = batch_view(&eval);
      CHECK(fwp_model_set_training(model, 0));
      CHECK(fwp_retrieval_forward(model, &view, &last_eval, NULL, 0));
      CHECK(fwp_model_set_training(model, 1));
      if (last_eval < best) {
        best = last_eval;
        evals_since_best = 0;
      } else {
        ++evals_since_best;
      }
      printf("step %7lld  train loss %.5f  eval loss %.6f  best %.6f\n", (long long)step,
             train_loss_sum / (double)since_last, last_eval, best);
      fflush(stdout);
      train_loss_sum = 0.0;
      if (last_eval <= TARGET_LOSS) {
        stopped_by = "target eval loss reached";
        break;
      }
      if (evals_since_best >= PATIENCE) {
        stopped_by = "no improvement for 11 evaluations";
        break;
      }
    }
  }
  printf("S = %lld: final eval loss %.6f, best %.6f after %lld steps (%s)\n", num_keys, last_eval, best,
         (long long)step, stopped_by);
  exit_code = 0;

cleanup:
  batch_free(&train);
  batch_free(&eval);
  fwp_retrieval_data_destroy(eval_data);
  fwp_retrieval_data_destroy(train_data);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
  return exit_code;
}
