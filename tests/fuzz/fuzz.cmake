# Fuzz targets (issue 10), included from tests/CMakeLists.txt. One per reader
# of outside bytes (docs/reliability.md lists them):
#   checkpoint   checkpoint / safetensors files (fuzz_checkpoint.cpp)
#   tokenizer    tokenizer files: word vocabulary and SentencePiece model (fuzz_tokenizer.cpp)
#   token_file   token files and the token data source (fuzz_token_file.cpp)
#   pair_file    pair files of parallel text and the pair data source (fuzz_pair_file.cpp)
#   text_corpus  the text readers of `fwp lm prepare` (fuzz_text_corpus.cpp)
#   cli          the `fwp` argument parser (fuzz_cli.cpp; where the tools are built)
#
# Each target NAME is built two ways:
# - fuzz_NAME_replay: with the project's compiler as a plain program that
#   replays the committed corpus tests/fuzz/corpus/NAME/ (seeds and every past
#   finding); built and run in every build (ctest fuzz_NAME_replay).
# - fuzz_NAME: the libFuzzer program, in a build with FWP_FUZZ (below);
#   ctest fuzz_NAME fuzzes it for a bounded time (tests/fuzz/run_fuzz.sh).

# FWP_FUZZ: the libFuzzer targets in this build. Needs clang and FWP_SANITIZE
# (a finding is a bad status, an ASan or UBSan report, a hang or a huge
# allocation). CI's sanitizer build (build-asan/, scripts/test.sh) sets it, so
# one clang build both runs the sanitized tests and fuzzes. The library gets
# libFuzzer's coverage instrumentation (-fsanitize=fuzzer-no-link), which the
# other tests of that build ignore; only the fuzz targets link libFuzzer's main.
option(FWP_FUZZ "Build the libFuzzer targets fuzz_* and their bounded ctest runs (needs clang and FWP_SANITIZE)" OFF)
# Seconds each libFuzzer target runs in ctest (CI runs all of them: keep the sum small).
set(FWP_FUZZ_SECONDS 25 CACHE STRING "Seconds each fuzz_* ctest entry fuzzes")
if(FWP_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "FWP_FUZZ needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}: configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(NOT FWP_SANITIZE)
    message(FATAL_ERROR "FWP_FUZZ needs FWP_SANITIZE=ON: without ASan and UBSan most memory errors are not findings")
  endif()
  target_compile_options(fwp_internal PRIVATE -fsanitize=fuzzer-no-link)
  if(TARGET fwp_cli_commands)
    # The parser's code (the commands' flags and CLI11's templates) is compiled there.
    target_compile_options(fwp_cli_commands PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endif()

set(FWP_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

# fwp_add_fuzz_target(NAME LIBRARIES...): the two programs and ctest entries of tests/fuzz/fuzz_NAME.cpp.
function(fwp_add_fuzz_target name)
  set(source ${FWP_FUZZ_DIR}/fuzz_${name}.cpp)
  add_executable(fuzz_${name}_replay ${source})
  target_compile_definitions(fuzz_${name}_replay PRIVATE FWP_FUZZ_REPLAY)
  target_link_libraries(fuzz_${name}_replay PRIVATE ${ARGN})
  # fuzz_common.h's error type (header-only) also for targets that see the library only through the C API.
  target_include_directories(fuzz_${name}_replay PRIVATE ${PROJECT_SOURCE_DIR}/src)
  fwp_target_defaults(fuzz_${name}_replay)
  add_test(NAME fuzz_${name}_replay
           COMMAND fuzz_${name}_replay ${FWP_FUZZ_DIR}/corpus/${name})
  set_tests_properties(fuzz_${name}_replay PROPERTIES LABELS "cpp;fuzz" TIMEOUT 300)
  if(FWP_FUZZ)
    add_executable(fuzz_${name} ${source})
    target_link_libraries(fuzz_${name} PRIVATE ${ARGN})
    target_include_directories(fuzz_${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
    fwp_target_defaults(fuzz_${name})
    target_compile_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz_${name} PRIVATE -fsanitize=fuzzer)
    # Fuzzes from the corpus; fails on any finding (kept in <build>/findings/).
    add_test(NAME fuzz_${name}
             COMMAND bash ${FWP_FUZZ_DIR}/run_fuzz.sh --binary $<TARGET_FILE:fuzz_${name}>
                     --target ${name} ${PROJECT_SOURCE_DIR} ${CMAKE_BINARY_DIR} ${FWP_FUZZ_SECONDS})
    set_tests_properties(fuzz_${name} PROPERTIES LABELS fuzz TIMEOUT 600)
  endif()
endfunction()

fwp_add_fuzz_target(checkpoint fwp_internal)
fwp_add_fuzz_target(tokenizer fwp_internal)
fwp_add_fuzz_target(token_file fwp_internal)
fwp_add_fuzz_target(pair_file fwp_internal)
fwp_add_fuzz_target(text_corpus fwp_internal)
if(TARGET fwp_cli_commands)
  fwp_add_fuzz_target(cli fwp_cli_commands)
endif()
