/* Assertions the C API tests share (CMocka): a call fails with a given
   status and a message that mentions a phrase, or succeeds. Include after
   <cmocka.h> and "fwp/fwp.h". */
#ifndef FWP_TESTS_API_TEST_MACROS_H
#define FWP_TESTS_API_TEST_MACROS_H

#include <string.h>

#define EXPECT_ERROR(call, want, needle)                                                          \
  do {                                                                                            \
    fwp_clear_error();                                                                            \
    assert_int_equal((call), (want));                                                             \
    const char* msg_ = fwp_last_error_message();                                                  \
    assert_non_null(msg_);                                                                        \
    if (strstr(msg_, (needle)) == NULL) fail_msg("message '%s' does not mention '%s'", msg_, (needle)); \
  } while (0)

#define CHECK_OK(call)                                                                   \
  do {                                                                                   \
    const fwp_status s_ = (call);                                                        \
    if (s_ != FWP_OK) fail_msg("%s failed: %s", #call, fwp_last_error_message());        \
  } while (0)

#endif
