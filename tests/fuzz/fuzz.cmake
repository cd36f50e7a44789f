# Fuzz targets (issue 10), included from tests/CMakeLists.txt.
#
# fuzz_checkpoint_replay: the checkpoint fuzz target built with the project's
# compiler as a plain program that replays the committed corpus (seeds and
# every past finding); built and run in every build.
add_executable(fuzz_checkpoint_replay ${CMAKE_CURRENT_LIST_DIR}/fuzz_checkpoint.cpp)
target_compile_definitions(fuzz_checkpoint_replay PRIVATE FWP_FUZZ_REPLAY)
target_link_libraries(fuzz_checkpoint_replay PRIVATE fwp_internal)
fwp_target_defaults(fuzz_checkpoint_replay)
add_test(NAME fuzz_checkpoint_replay
         COMMAND fuzz_checkpoint_replay ${CMAKE_CURRENT_LIST_DIR}/corpus/checkpoint)
set_tests_properties(fuzz_checkpoint_replay PROPERTIES LABELS "cpp;fuzz" TIMEOUT 300)

# FWP_FUZZ: the libFuzzer target in this build. Needs clang and FWP_SANITIZE
# (a finding is a bad status, an ASan or UBSan report, a hang or a huge
# allocation). CI's sanitizer build (build-asan/, scripts/test.sh) sets it, so
# one clang build both runs the sanitized tests and fuzzes. The library gets
# libFuzzer's coverage instrumentation (-fsanitize=fuzzer-no-link), which the
# other tests of that build ignore; only the fuzz target links libFuzzer's main.
option(FWP_FUZZ "Build the libFuzzer target fuzz_checkpoint and its 30-s ctest run (needs clang and FWP_SANITIZE)" OFF)
if(FWP_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FWP_FUZZ needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}: configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(NOT FWP_SANITIZE)
    message(FATAL_ERROR "FWP_FUZZ needs FWP_SANITIZE=ON: without ASan and UBSan most memory errors are not findings")
  endif()
  target_compile_options(fwp_internal PRIVATE -fsanitize=fuzzer-no-link)
  add_executable(fuzz_checkpoint ${CMAKE_CURRENT_LIST_DIR}/fuzz_checkpoint.cpp)
  target_link_libraries(fuzz_checkpoint PRIVATE fwp_internal)
  fwp_target_defaults(fuzz_checkpoint)
  target_compile_options(fuzz_checkpoint PRIVATE -fsanitize=fuzzer)
  target_link_options(fuzz_checkpoint PRIVATE -fsanitize=fuzzer)
  # Fuzzes for 30 s from the corpus; fails on any finding (kept in <build>/findings/).
  add_test(NAME fuzz_checkpoint
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/run_fuzz.sh --binary $<TARGET_FILE:fuzz_checkpoint>
                   ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR} 30)
  set_tests_properties(fuzz_checkpoint PROPERTIES LABELS fuzz TIMEOUT 600)
endif()
