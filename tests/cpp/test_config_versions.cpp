// Config structs of older header versions (src/api/checks.h: read_config and
// write_config): a caller built against an older fwp.h passes a smaller struct;
// its fields are honoured, the appended ones take their defaults, and only the
// caller's bytes are ever written back.
#include <gtest/gtest.h>

#include <cstring>

#include "api/checks.h"

namespace {

// A config as released first (v1), and as it is now (v2: two fields appended,
// one of which fits in v1's trailing padding).
struct ConfigV1 {
  uint32_t struct_size;
  int64_t width;
  int32_t flag;
};
struct ConfigV2 {
  uint32_t struct_size;
  int64_t width;
  int32_t flag;
  int32_t appended_in_padding;  // offset 20: inside sizeof(ConfigV1) == 24
  double appended;
};
static_assert(sizeof(ConfigV1) == 24 && offsetof(ConfigV2, appended_in_padding) < sizeof(ConfigV1),
              "the test needs a field that lands in the old struct's padding");

void init_v2(ConfigV2* c) {
  std::memset(c, 0, sizeof *c);
  c->struct_size = sizeof *c;
  c->width = 128;
  c->flag = 1;
  c->appended_in_padding = 7;
  c->appended = 0.5;
}

const auto kV1 = FWP_CONFIG_LAYOUT(ConfigV1, flag);

TEST(ConfigVersions, CurrentSizeIsCopiedWhole) {
  ConfigV2 user;
  init_v2(&user);
  user.width = 3;
  user.appended = 2.0;
  const ConfigV2 c = fwp::api::read_config(user, init_v2, "config", {kV1});
  EXPECT_EQ(c.width, 3);
  EXPECT_EQ(c.appended, 2.0);
}

TEST(ConfigVersions, OlderStructKeepsItsFieldsAndDefaultsTheRest) {
  // An old caller's struct, with garbage in its padding where v2 has a field.
  unsigned char raw[sizeof(ConfigV2)];
  std::memset(raw, 0xAB, sizeof raw);
  ConfigV1 old{};
  std::memset(&old, 0xAB, sizeof old);
  old.struct_size = sizeof(ConfigV1);
  old.width = 64;
  old.flag = 0;
  std::memcpy(raw, &old, sizeof old);
  ConfigV2 as_new;
  std::memcpy(&as_new, raw, sizeof as_new);

  const ConfigV2 c = fwp::api::read_config(as_new, init_v2, "config", {kV1});
  EXPECT_EQ(c.struct_size, sizeof(ConfigV2));
  EXPECT_EQ(c.width, 64);
  EXPECT_EQ(c.flag, 0);
  EXPECT_EQ(c.appended_in_padding, 7) << "padding bytes of the old struct must not be read as a field";
  EXPECT_EQ(c.appended, 0.5);
}

TEST(ConfigVersions, WriteTouchesOnlyTheCallersFields) {
  unsigned char raw[sizeof(ConfigV2)];
  std::memset(raw, 0xCD, sizeof raw);
  ConfigV1 old{};
  old.struct_size = sizeof(ConfigV1);
  std::memcpy(raw, &old, kV1.field_bytes);  // the caller's padding keeps its 0xCD bytes
  ConfigV2 full;
  init_v2(&full);
  full.width = 99;
  auto* user = reinterpret_cast<ConfigV2*>(raw);
  fwp::api::write_config(user, full, "config", {kV1});
  EXPECT_EQ(user->struct_size, sizeof(ConfigV1));
  EXPECT_EQ(user->width, 99);
  EXPECT_EQ(user->flag, 1);
  // Everything past the v1 fields (its padding and beyond) is untouched.
  for (size_t i = kV1.field_bytes; i < sizeof raw; ++i) EXPECT_EQ(raw[i], 0xCD) << "byte " << i;
}

TEST(ConfigVersions, SizesOutsideTheReleasedRangeAreRejected) {
  ConfigV2 user;
  init_v2(&user);
  for (uint32_t bad : {0u, 4u, static_cast<uint32_t>(sizeof(ConfigV1) - 1), static_cast<uint32_t>(sizeof(ConfigV2) + 8)}) {
    user.struct_size = bad;
    try {
      fwp::api::read_config(user, init_v2, "config", {kV1});
      ADD_FAILURE() << "struct_size " << bad << " was accepted";
    } catch (const fwp::Error& e) {
      EXPECT_EQ(e.status(), FWP_ERR_INVALID_ARGUMENT);
      const std::string expected = "config->struct_size must be in [" + std::to_string(sizeof(ConfigV1)) + ", " +
                                   std::to_string(sizeof(ConfigV2)) + "] (got " + std::to_string(bad) + ")";
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    }
  }
  // A size between two releases honours the older one.
  user.struct_size = sizeof(ConfigV1) + 4;
  user.width = 5;
  user.appended = 9.0;
  const ConfigV2 c = fwp::api::read_config(user, init_v2, "config", {kV1});
  EXPECT_EQ(c.width, 5);
  EXPECT_EQ(c.appended, 0.5);
}

TEST(ConfigVersions, WithoutOlderReleasesOnlyTheCurrentSizeIsAccepted) {
  ConfigV2 user;
  init_v2(&user);
  EXPECT_NO_THROW(fwp::api::read_config(user, init_v2, "config"));
  user.struct_size = sizeof(ConfigV2) - 8;
  EXPECT_THROW(fwp::api::read_config(user, init_v2, "config"), fwp::Error);
}

}  // namespace
