# Checks that `fwp retrieval --resume` continues a run exactly: training to
# 2N steps in one go and training to N steps, then resuming to 2N, must give the
# same evaluation losses (bit for bit, as printed) at every evaluation.
#   cmake -DPROGRAM=<fwp> -DARGS=<common flags, |-separated> -DSTEPS=<2N> -DWORKDIR=<dir>
#         [-DCONFLICT=<a defining flag and a value other than the run's, |-separated; default --lr|0.5>]
#         [-DEVAL_PAIRS=<the run's evaluation length, checked in the resumed run's config>] -P check_resume.cmake
cmake_minimum_required(VERSION 3.19)

string(REPLACE "|" ";" args "${ARGS}")
file(REMOVE_RECURSE ${WORKDIR})
file(MAKE_DIRECTORY ${WORKDIR})
math(EXPR half "${STEPS} / 2")

function(run_fwp out_var)
  execute_process(COMMAND ${PROGRAM} ${ARGN} WORKING_DIRECTORY ${WORKDIR}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "fwp ${ARGN}\n-> ${rc}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "fwp exited with ${rc}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

run_fwp(whole retrieval ${args} --max-steps ${STEPS} --json --quiet --csv whole.csv)
run_fwp(first retrieval ${args} --max-steps ${half} --json --quiet --csv split.csv --checkpoint run.safetensors)
string(JSON first_steps GET "${first}" steps)
if(NOT first_steps EQUAL half)
  message(FATAL_ERROR "the first half stopped after ${first_steps} steps, not ${half}; choose flags that reach the cap")
endif()
# Only run control changes on resumption; the defining flags come from the checkpoint.
run_fwp(resumed retrieval --resume run.safetensors --max-steps ${STEPS} --json --quiet --csv split.csv)

if(DEFINED EVAL_PAIRS)
  string(JSON resumed_pairs GET "${resumed}" config eval_pairs)
  if(NOT resumed_pairs EQUAL EVAL_PAIRS)
    message(FATAL_ERROR "the resumed run evaluates on ${resumed_pairs} pairs, not the checkpoint's ${EVAL_PAIRS}")
  endif()
endif()

foreach(key final_eval_loss best_eval_loss steps evaluations stopped_by)
  string(JSON a GET "${whole}" ${key})
  string(JSON b GET "${resumed}" ${key})
  if(NOT a STREQUAL b)
    message(FATAL_ERROR "${key}: ${a} without interruption, ${b} after resuming")
  endif()
endforeach()
string(JSON resumed_flag GET "${resumed}" resumed)
if(NOT resumed_flag STREQUAL "ON" AND NOT resumed_flag STREQUAL "true")
  message(FATAL_ERROR "the resumed run does not report resumed = true (${resumed_flag})")
endif()

# The evaluation logs must agree row by row except for the wall-clock column.
foreach(name whole split)
  file(STRINGS ${WORKDIR}/${name}.csv rows)
  set(${name}_rows "")
  foreach(row IN LISTS rows)
    string(REGEX REPLACE ",[^,]*$" "" row "${row}")
    list(APPEND ${name}_rows "${row}")
  endforeach()
endforeach()
if(NOT whole_rows STREQUAL split_rows)
  message(FATAL_ERROR "evaluation logs differ:\n${whole_rows}\nvs\n${split_rows}")
endif()

# A flag that defines the run must not silently override the checkpoint.
if(NOT DEFINED CONFLICT)
  set(CONFLICT "--lr|0.5")
endif()
string(REPLACE "|" ";" conflict "${CONFLICT}")
execute_process(COMMAND ${PROGRAM} retrieval --resume run.safetensors ${conflict} WORKING_DIRECTORY ${WORKDIR}
                RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(NOT rc EQUAL 2 OR NOT err MATCHES "conflicts with the checkpoint")
  message(FATAL_ERROR "a conflicting ${conflict} on --resume gave exit ${rc}: ${err}")
endif()
