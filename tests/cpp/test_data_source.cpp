// Data sources: the retrieval generator as a DataSource (config, state, the
// check of a stored state) and the C API's one handle for every kind
// (fwp_data): kind queries, the retrieval functions rejecting another kind,
// and checkpoints through the handle.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/handles.h"
#include "core/error.h"
#include "counter_source.h"
#include "data/retrieval_data.h"
#include "fwp/fwp.h"

namespace fwp {
namespace {

using test_support::CounterSource;

std::vector<int32_t> draw(RetrievalData& data, int64_t batch) {
  const int64_t L = data.seq_len();
  std::vector<int32_t> k(batch * L), v(batch * L), q(batch), t(batch);
  data.sample(batch, 1, k.data(), v.data(), q.data(), t.data());
  std::vector<int32_t> all = k;
  all.insert(all.end(), v.begin(), v.end());
  all.insert(all.end(), q.begin(), q.end());
  all.insert(all.end(), t.begin(), t.end());
  return all;
}

TEST(DataSource, RetrievalGeneratorStateResumesTheSameDraws) {
  RetrievalData a(2, 6, 11);
  const DataSource& source = a;
  EXPECT_EQ(source.kind(), FWP_DATA_RETRIEVAL);
  EXPECT_EQ(source.kind_name(), "retrieval");
  EXPECT_EQ(source.config_json(), (nlohmann::json{{"setting", 2}, {"num_keys", 6}}));
  draw(a, 3);
  const nlohmann::json state = a.state_json();
  const std::vector<int32_t> expected = draw(a, 4);

  RetrievalData b(2, 6, 999);
  EXPECT_NE(b.state_json(), state);
  b.check_state(state);
  b.restore_state(state);
  EXPECT_EQ(b.state_json(), state);
  EXPECT_EQ(draw(b, 4), expected);
}

// The generator's numbers are part of the reproducibility contract: seeded
// runs (and the paper tables made with them) must not change. These are the
// draws of fwp 0.1 for seed 7, S = 5, two sequences with one query each.
TEST(DataSource, RetrievalGeneratorDrawsAreFixed) {
  RetrievalData one(1, 5, 7);
  EXPECT_EQ(draw(one, 2), (std::vector<int32_t>{1, 3, 0, 2, 4, 0, 2, 1, 3, 4,    // keys
                                                2, 0, 3, 1, 4, 0, 4, 3, 2, 1,    // values
                                                2, 4, 1, 1}));                   // queries, targets
  RetrievalData two(2, 5, 7);
  EXPECT_EQ(draw(two, 2), (std::vector<int32_t>{4, 4, 3, 4, 4, 1, 1, 1, 3, 4, 2, 3, 2, 1, 4, 1, 1, 0, 0, 2,
                                                3, 1, 2, 1, 0, 3, 0, 4, 0, 2, 0, 4, 0, 2, 3, 3, 2, 3, 2, 2,
                                                3, 0, 0, 2}));
}

TEST(DataSource, RetrievalGeneratorRejectsBadStatesWithoutChange) {
  RetrievalData data(1, 5, 3);
  const nlohmann::json before = data.state_json();
  nlohmann::json too_short = before;
  too_short["rng"].erase(0);
  nlohmann::json not_decimal = before;
  not_decimal["rng"][0] = "0x10";
  nlohmann::json too_big = before;
  too_big["rng"][5] = "18446744073709551616";  // 2^64
  nlohmann::json number = before;
  number["rng"][1] = 5;
  for (const nlohmann::json& bad :
       {nlohmann::json::object(), nlohmann::json::array(), nlohmann::json{{"rng", "x"}}, too_short, not_decimal,
        too_big, number}) {
    try {
      data.check_state(bad);
      ADD_FAILURE() << "accepted " << bad.dump();
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), FWP_ERR_FORMAT) << bad.dump();
      EXPECT_NE(std::string(e.what()).find("retrieval generator"), std::string::npos) << e.what();
    }
    EXPECT_EQ(data.state_json(), before);
  }
  nlohmann::json max = before;
  max["rng"][0] = "18446744073709551615";
  EXPECT_NO_THROW(data.check_state(max));
}

// ---- the C API handle -------------------------------------------------------------------------------

// A C handle around a data source of a kind the public header does not name.
std::unique_ptr<fwp_data> counter_handle(int64_t period) {
  auto handle = std::make_unique<fwp_data>();
  handle->impl = std::make_unique<CounterSource>(period);
  return handle;
}

std::string last_error() { return fwp_last_error_message(); }

TEST(DataSourceApi, KindsAndRetrievalFunctionsOnAnotherKind) {
  fwp_retrieval_data* generator = nullptr;
  ASSERT_EQ(fwp_retrieval_data_create(1, 4, 1, &generator), FWP_OK);
  fwp_data* as_data = generator;  // the same type: no cast
  fwp_data_kind kind = FWP_DATA_PARALLEL_TEXT;
  EXPECT_EQ(fwp_data_get_kind(as_data, &kind), FWP_OK);
  EXPECT_EQ(kind, FWP_DATA_RETRIEVAL);
  EXPECT_EQ(fwp_data_get_kind(nullptr, &kind), FWP_ERR_NULL_POINTER);
  EXPECT_NE(last_error().find("data"), std::string::npos);
  EXPECT_EQ(fwp_data_get_kind(as_data, nullptr), FWP_ERR_NULL_POINTER);
  EXPECT_NE(last_error().find("kind"), std::string::npos);
  fwp_data_destroy(as_data);
  fwp_data_destroy(nullptr);

  auto counter = counter_handle(3);
  int64_t seq_len = -7;
  EXPECT_EQ(fwp_retrieval_data_seq_len(counter.get(), &seq_len), FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("'counter' data source, not a retrieval generator"), std::string::npos)
      << last_error();
  EXPECT_EQ(seq_len, -7);
  int32_t ids[16] = {};
  EXPECT_EQ(fwp_retrieval_data_sample(counter.get(), 1, 1, ids, ids + 4, ids + 8, ids + 12),
            FWP_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last_error().find("not a retrieval generator"), std::string::npos) << last_error();
  EXPECT_EQ(fwp_retrieval_data_seq_len(nullptr, &seq_len), FWP_ERR_NULL_POINTER);
  EXPECT_EQ(static_cast<CounterSource&>(*counter->impl).position(), 0) << "nothing was drawn";
}

TEST(DataSourceApi, CheckpointsTakeAnyKindThroughTheHandle) {
  char dir_pattern[] = "/tmp/fwp_data_api_XXXXXX";
  ASSERT_NE(mkdtemp(dir_pattern), nullptr);
  const std::string dir = dir_pattern;
  const std::string path = dir + "/c.safetensors";

  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 1;
  fwp_context* ctx = nullptr;
  ASSERT_EQ(fwp_context_create(&cc, &ctx), FWP_OK);
  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  rc.num_keys = 4;
  rc.d_head = 8;
  fwp_model* model = nullptr;
  ASSERT_EQ(fwp_model_create_retrieval(ctx, &rc, &model), FWP_OK);

  auto counter = counter_handle(4);
  static_cast<CounterSource&>(*counter->impl).next();
  ASSERT_EQ(fwp_checkpoint_save(path.c_str(), model, nullptr, counter.get(), nullptr), FWP_OK) << last_error();
  auto resumed = counter_handle(4);
  ASSERT_EQ(fwp_checkpoint_load(path.c_str(), model, nullptr, resumed.get()), FWP_OK) << last_error();
  EXPECT_EQ(static_cast<CounterSource&>(*resumed->impl).position(), 1);

  // The file holds a counter's state: a retrieval generator is refused and left as it was.
  fwp_retrieval_data* generator = nullptr;
  ASSERT_EQ(fwp_retrieval_data_create(1, 4, 1, &generator), FWP_OK);
  EXPECT_EQ(fwp_checkpoint_load(path.c_str(), model, nullptr, generator), FWP_ERR_FORMAT);
  EXPECT_NE(last_error().find("'counter' data source"), std::string::npos) << last_error();
  fwp_retrieval_data* fresh = nullptr;
  ASSERT_EQ(fwp_retrieval_data_create(1, 4, 1, &fresh), FWP_OK);
  int32_t a[16] = {}, b[16] = {};
  ASSERT_EQ(fwp_retrieval_data_sample(generator, 1, 1, a, a + 4, a + 8, a + 12), FWP_OK);
  ASSERT_EQ(fwp_retrieval_data_sample(fresh, 1, 1, b, b + 4, b + 8, b + 12), FWP_OK);
  EXPECT_TRUE(std::equal(a, a + 16, b)) << "the refused load did not move the generator";

  fwp_retrieval_data_destroy(generator);
  fwp_retrieval_data_destroy(fresh);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace fwp
