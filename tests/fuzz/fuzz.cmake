# Fuzz targets (issue 10), included from tests/CMakeLists.txt.
#
# fuzz_checkpoint_replay: the checkpoint fuzz target built with the project's
# compiler as a plain program that replays the committed corpus (seeds and
# every past finding); always built and run.
add_executable(fuzz_checkpoint_replay ${CMAKE_CURRENT_LIST_DIR}/fuzz_checkpoint.cpp)
target_compile_definitions(fuzz_checkpoint_replay PRIVATE FWP_FUZZ_REPLAY)
target_link_libraries(fuzz_checkpoint_replay PRIVATE fwp_internal)
fwp_target_defaults(fuzz_checkpoint_replay)
add_test(NAME fuzz_checkpoint_replay
         COMMAND fuzz_checkpoint_replay ${CMAKE_CURRENT_LIST_DIR}/corpus/checkpoint)
set_tests_properties(fuzz_checkpoint_replay PROPERTIES LABELS "cpp;fuzz" TIMEOUT 300)

option(FWP_FUZZ "Build the libFuzzer targets (needs clang; set by tests/fuzz/run_fuzz.sh)" OFF)
if(FWP_FUZZ)
  # The libFuzzer build (a separate clang build directory, configured by
  # run_fuzz.sh with FWP_SANITIZE=ON for ASan and UBSan): the library gets
  # coverage instrumentation, the target libFuzzer's main.
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FWP_FUZZ needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  target_compile_options(fwp_internal PRIVATE -fsanitize=fuzzer-no-link)
  add_executable(fuzz_checkpoint ${CMAKE_CURRENT_LIST_DIR}/fuzz_checkpoint.cpp)
  target_link_libraries(fuzz_checkpoint PRIVATE fwp_internal)
  fwp_target_defaults(fuzz_checkpoint)
  target_compile_options(fuzz_checkpoint PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_checkpoint PRIVATE -fsanitize=fuzzer)
else()
  # fuzz_checkpoint: builds that clang directory (under this build's) and fuzzes
  # for 30 s from the corpus; fails on any finding (and when clang or libFuzzer
  # is missing: scripts/setup.sh installs them).
  add_test(NAME fuzz_checkpoint
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run_fuzz.sh ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR}/fuzz-build 30)
  set_tests_properties(fuzz_checkpoint PROPERTIES LABELS fuzz TIMEOUT 3600 RUN_SERIAL ON)
endif()
