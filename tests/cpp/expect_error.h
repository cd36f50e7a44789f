// The check every C++ test of bad input makes: calling f throws fwp::Error
// with the given status and a message that mentions `fragment`.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "core/error.h"

namespace fwp {
namespace test {

template <typename F>
void expect_error(fwp_status status, const std::string& fragment, F&& f) {
  try {
    f();
    ADD_FAILURE() << "no error (expected one mentioning '" << fragment << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

}  // namespace test
}  // namespace fwp
