# Runs a program and checks its exit code and output; used by the "cli" tests.
#   cmake -DPROGRAM=<exe> [-DARGS=a|b|c] [-DENV=VAR=value|...] -DEXPECT_EXIT=<code>
#         [-DONE_LINE_STDERR=ON] [-DSTDOUT_CONTAINS=x|y] [-DSTDERR_MATCHES=<regex>]
#         [-DWORKDIR=<dir>] [-DSTDOUT_EMPTY=ON] -P run_and_check.cmake
# Lists use "|" so they survive add_test() unchanged.
cmake_minimum_required(VERSION 3.19)

if(NOT DEFINED PROGRAM OR NOT DEFINED EXPECT_EXIT)
  message(FATAL_ERROR "run_and_check.cmake needs PROGRAM and EXPECT_EXIT")
endif()
string(REPLACE "|" ";" args "${ARGS}")
string(REPLACE "|" ";" env "${ENV}")
if(NOT DEFINED WORKDIR)
  set(WORKDIR ${CMAKE_CURRENT_BINARY_DIR})
endif()
file(MAKE_DIRECTORY ${WORKDIR})

execute_process(COMMAND ${CMAKE_COMMAND} -E env ${env} ${PROGRAM} ${args}
                WORKING_DIRECTORY ${WORKDIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "exit code: ${rc}")
message(STATUS "stdout:\n${out}")
message(STATUS "stderr:\n${err}")

if(NOT "${rc}" STREQUAL "${EXPECT_EXIT}")
  message(FATAL_ERROR "expected exit code ${EXPECT_EXIT}, got ${rc}")
endif()

if(ONE_LINE_STDERR)
  string(REGEX REPLACE "\n$" "" trimmed "${err}")
  if(trimmed STREQUAL "")
    message(FATAL_ERROR "expected an error message on stderr, got nothing")
  endif()
  string(FIND "${trimmed}" "\n" newline)
  if(NOT newline EQUAL -1)
    message(FATAL_ERROR "expected exactly one line on stderr")
  endif()
  if(NOT err MATCHES "\n$")
    message(FATAL_ERROR "the error line on stderr does not end with a newline")
  endif()
endif()

if(DEFINED STDOUT_CONTAINS)
  string(REPLACE "|" ";" needles "${STDOUT_CONTAINS}")
  foreach(needle IN LISTS needles)
    string(FIND "${out}" "${needle}" at)
    if(at EQUAL -1)
      message(FATAL_ERROR "stdout does not contain '${needle}'")
    endif()
  endforeach()
endif()

# A failed --json run prints nothing on stdout, so what it printed stays valid JSON lines.
if(STDOUT_EMPTY AND NOT out STREQUAL "")
  message(FATAL_ERROR "expected nothing on stdout")
endif()

if(DEFINED STDERR_MATCHES AND NOT err MATCHES "${STDERR_MATCHES}")
  message(FATAL_ERROR "stderr does not match '${STDERR_MATCHES}'")
endif()
