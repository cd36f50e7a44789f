# Tests of the `fwp` program and the C examples (label "cli"), included by
# tests/CMakeLists.txt. They run the programs as a user would and check exit
# codes, messages and outputs with the CMake scripts in tests/cli/.
set(FWP_CLI_CHECK ${CMAKE_CURRENT_SOURCE_DIR}/cli/run_and_check.cmake)
set(FWP_CLI_WORK ${CMAKE_CURRENT_BINARY_DIR}/cli_work)

# fwp_cli_test(<name> EXIT <code> ARGS <args...> [ONE_LINE] [STDOUT <text>...] [STDERR_MATCHES <regex>]
#              [ENV <VAR=value>...])
function(fwp_cli_test name)
  cmake_parse_arguments(T "ONE_LINE" "EXIT;STDERR_MATCHES" "ARGS;STDOUT;ENV" ${ARGN})
  string(REPLACE ";" "|" args "${T_ARGS}")
  set(defines -DPROGRAM=$<TARGET_FILE:fwp_cli> "-DARGS=${args}" -DEXPECT_EXIT=${T_EXIT}
              -DWORKDIR=${FWP_CLI_WORK}/${name})
  if(T_ONE_LINE)
    list(APPEND defines -DONE_LINE_STDERR=ON)
  endif()
  if(T_STDOUT)
    string(REPLACE ";" "|" stdout "${T_STDOUT}")
    list(APPEND defines "-DSTDOUT_CONTAINS=${stdout}")
  endif()
  if(T_STDERR_MATCHES)
    list(APPEND defines "-DSTDERR_MATCHES=${T_STDERR_MATCHES}")
  endif()
  if(T_ENV)
    string(REPLACE ";" "|" env "${T_ENV}")
    list(APPEND defines "-DENV=${env}")
  endif()
  add_test(NAME cli_${name} COMMAND ${CMAKE_COMMAND} ${defines} -P ${FWP_CLI_CHECK})
  set_tests_properties(cli_${name} PROPERTIES LABELS cli)
endfunction()

if(TARGET fwp_cli)
  # Help and version.
  fwp_cli_test(help EXIT 0 ARGS --help STDOUT retrieval --version)
  fwp_cli_test(version EXIT 0 ARGS --version STDOUT "fwp ${PROJECT_VERSION}")
  # Every flag of `fwp retrieval` is documented in its help.
  fwp_cli_test(retrieval_help EXIT 0 ARGS retrieval --help
               STDOUT --setting --phi --rule --nu --m --keys --seed --max-steps --batch --lr --threads --device
                      --eval-every --eval-seqs --eval-pairs --patience --target-loss --sum-norm --no-sum-norm --attn-norm
                      --no-attn-norm --csv --sweep-csv --plot --checkpoint --resume --skip-done --on-non-finite
                      --max-skips --json --quiet)

  # Bad flags and values: exit code 2 and one line on stderr.
  fwp_cli_test(error_no_subcommand EXIT 2 ONE_LINE ARGS "")
  fwp_cli_test(error_unknown_flag EXIT 2 ONE_LINE ARGS retrieval --bogus STDERR_MATCHES "bogus")
  fwp_cli_test(error_bad_phi EXIT 2 ONE_LINE ARGS retrieval --phi relu STDERR_MATCHES "--phi")
  fwp_cli_test(error_keys_zero EXIT 2 ONE_LINE ARGS retrieval --keys 0 STDERR_MATCHES "--keys")
  fwp_cli_test(error_keys_empty_range EXIT 2 ONE_LINE ARGS retrieval --keys 5:3:1 STDERR_MATCHES "--keys")
  fwp_cli_test(error_keys_zero_step EXIT 2 ONE_LINE ARGS retrieval --keys 20:40:0)
  fwp_cli_test(error_bad_lr EXIT 2 ONE_LINE ARGS retrieval --lr -1 STDERR_MATCHES "--lr")
  fwp_cli_test(error_bad_setting EXIT 2 ONE_LINE ARGS retrieval --setting 3)
  fwp_cli_test(error_negative_seed EXIT 2 ONE_LINE ARGS retrieval --seed -1 STDERR_MATCHES "--seed")
  fwp_cli_test(error_nu_without_dpfp EXIT 2 ONE_LINE ARGS retrieval --phi elu --nu 2 STDERR_MATCHES "--nu")
  fwp_cli_test(error_softmax_delta EXIT 2 ONE_LINE ARGS retrieval --phi softmax --rule delta)
  fwp_cli_test(error_eval_pairs_negative EXIT 2 ONE_LINE ARGS retrieval --eval-pairs -1 STDERR_MATCHES "--eval-pairs")
  fwp_cli_test(error_eval_pairs_too_long EXIT 2 ONE_LINE ARGS retrieval --setting 2 --eval-pairs 131073
               STDERR_MATCHES "--eval-pairs")
  fwp_cli_test(error_eval_pairs_setting1 EXIT 2 ONE_LINE ARGS retrieval --setting 1 --keys 6 --eval-pairs 5
               STDERR_MATCHES "every key once")
  fwp_cli_test(error_resume_missing EXIT 2 ONE_LINE ARGS retrieval --resume does-not-exist.safetensors)
  # A run that cannot start (no gnuplot for --plot): exit code 1, one clear line, before any training.
  fwp_cli_test(error_plot_without_gnuplot EXIT 1 ONE_LINE ENV PATH=/nonexistent
               ARGS retrieval --keys 4:6:2 --max-steps 1 --plot out.png STDERR_MATCHES "gnuplot")
  if(NOT FWP_ENABLE_CUDA)
    # A library error: the message comes from fwp_last_error_message(), exit code 1.
    fwp_cli_test(error_cuda_not_built EXIT 1 ONE_LINE ARGS retrieval --device cuda --max-steps 1
                 STDERR_MATCHES "creating the context")
  endif()

  # A tiny run: --json has the required fields and the CSV files their rows.
  add_test(NAME cli_retrieval_json
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/retrieval_json
                   "-DARGS=retrieval|--keys|6|--max-steps|120|--eval-every|50|--threads|1|--json|--quiet|--csv|eval.csv|--sweep-csv|sweep.csv"
                   -DMAX_STEPS=120 -DRUNS=1 -DEVAL_CSV=eval.csv -DSWEEP_CSV=sweep.csv
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_retrieval_run.cmake)
  # The evaluation length defaults to the paper's S pairs in setting 2 (trained on 2S),
  # and --eval-pairs sets it; the eval log and sweep CSV record it.
  add_test(NAME cli_retrieval_setting2_eval_pairs_default
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/retrieval_s2_default
                   "-DARGS=retrieval|--setting|2|--keys|6:8:2|--max-steps|60|--eval-every|30|--threads|1|--json|--quiet|--csv|eval.csv|--sweep-csv|sweep.csv"
                   -DMAX_STEPS=60 -DRUNS=2 -DEVAL_CSV=eval.csv -DSWEEP_CSV=sweep.csv -DEVAL_PAIRS=S
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_retrieval_run.cmake)
  add_test(NAME cli_retrieval_setting2_eval_pairs
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/retrieval_s2_pairs
                   "-DARGS=retrieval|--setting|2|--keys|6|--eval-pairs|12|--max-steps|60|--eval-every|30|--threads|1|--json|--quiet|--csv|eval.csv|--sweep-csv|sweep.csv"
                   -DMAX_STEPS=60 -DRUNS=1 -DEVAL_CSV=eval.csv -DSWEEP_CSV=sweep.csv -DEVAL_PAIRS=12
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_retrieval_run.cmake)
  # The evaluation really uses that length: one pair per sequence is read back exactly by the
  # attention-normalised sum rule (y = v phi(k).phi(q) / z.phi(q) = v), so the first evaluation
  # reaches loss 0 and stops the run; with the default S pairs it cannot.
  add_test(NAME cli_retrieval_setting2_one_pair_is_exact
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/retrieval_s2_one_pair
                   "-DARGS=retrieval|--setting|2|--keys|6|--eval-pairs|1|--phi|dpfp|--rule|sum|--max-steps|30|--eval-every|10|--threads|1|--json|--quiet"
                   -DMAX_STEPS=30 -DRUNS=1 -DEVAL_PAIRS=1 -DEXPECT_STEPS=10
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_retrieval_run.cmake)
  set_tests_properties(cli_retrieval_setting2_eval_pairs_default cli_retrieval_setting2_eval_pairs
                       cli_retrieval_setting2_one_pair_is_exact PROPERTIES LABELS cli)
  # Resuming from a checkpoint reproduces the uninterrupted run exactly.
  add_test(NAME cli_retrieval_resume
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/retrieval_resume
                   "-DARGS=--keys|6|--phi|dpfp|--rule|delta|--eval-every|50|--threads|1|--target-loss|0|--patience|100"
                   -DSTEPS=200 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_resume.cmake)
  # FAVOR+ redraws its random features at every training step: the checkpoint must restore that stream too.
  add_test(NAME cli_retrieval_resume_favor
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/retrieval_resume_favor
                   "-DARGS=--keys|6|--phi|favor|--m|16|--eval-every|50|--threads|1|--target-loss|0|--patience|100"
                   -DSTEPS=200 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_resume.cmake)
  # --eval-pairs is kept by the checkpoint: a resumed setting-2 run evaluates on the same length
  # and refuses another one.
  add_test(NAME cli_retrieval_resume_eval_pairs
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/retrieval_resume_pairs
                   "-DARGS=--setting|2|--keys|6|--eval-pairs|9|--eval-every|50|--threads|1|--target-loss|0|--patience|100"
                   -DSTEPS=200 -DCONFLICT=--eval-pairs|7 -DEVAL_PAIRS=9 -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_resume.cmake)
  set_tests_properties(cli_retrieval_json cli_retrieval_resume cli_retrieval_resume_favor cli_retrieval_resume_eval_pairs
                       PROPERTIES LABELS cli)
  # `fwp lm`: prepare, train, resume exactly, eval in three modes, generate reproducibly, bad input -> exit 2.
  foreach(attention IN ITEMS "elu|delta" "dpfp|sum" "softmax|sum")
    string(REPLACE "|" ";" pair "${attention}")
    list(GET pair 0 phi)
    list(GET pair 1 rule)
    add_test(NAME cli_lm_${phi}_${rule}
             COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/lm_${phi}_${rule}
                     -DPHI=${phi} -DRULE=${rule} -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_lm.cmake)
    set_tests_properties(cli_lm_${phi}_${rule} PROPERTIES LABELS cli TIMEOUT 600)
  endforeach()
  # A training whose loss becomes NaN stops with exit code 1, one line on stderr and stopped_by non_finite.
  fwp_cli_test(error_diverged EXIT 1 ONE_LINE ARGS retrieval --keys 6 --lr 1e30 --max-steps 50 --threads 1 --json
               --quiet STDOUT non_finite STDERR_MATCHES "diverged at step [0-9]+: the (loss is|gradient of '[^']+' is not finite)")
  # --on-non-finite skip: the steps are skipped, and the run stops at --max-skips of them in a row.
  fwp_cli_test(error_diverged_after_skips EXIT 1 ONE_LINE
               ARGS retrieval --keys 6 --lr 1e30 --max-steps 50 --threads 1 --json --quiet --on-non-finite skip --max-skips 3
               STDOUT non_finite skipped_steps STDERR_MATCHES "diverged at step [0-9]+: .*[(]3 steps in a row with a non-finite")
  fwp_cli_test(error_bad_on_non_finite EXIT 2 ONE_LINE ARGS retrieval --on-non-finite maybe STDERR_MATCHES "on-non-finite")
  fwp_cli_test(error_bad_max_skips EXIT 2 ONE_LINE ARGS retrieval --max-skips 0 STDERR_MATCHES "max-skips")
  fwp_cli_test(error_lm_bad_on_non_finite EXIT 2 ONE_LINE ARGS lm train --on-non-finite maybe
               STDERR_MATCHES "on-non-finite")
  # --dist: an unknown engine is a usage error; one this build lacks fails (exit 1) before any work.
  fwp_cli_test(error_bad_dist EXIT 2 ONE_LINE ARGS lm train --dist gloo STDERR_MATCHES "--dist")
  if(NOT FWP_ENABLE_CUDA)
    fwp_cli_test(error_dist_nccl_not_built EXIT 1 ONE_LINE ARGS retrieval --dist nccl --max-steps 1
                 STDERR_MATCHES "--dist nccl: this build of fwp has no NCCL")
  endif()
  if(NOT FWP_HAVE_MPI)
    fwp_cli_test(error_dist_mpi_not_built EXIT 1 ONE_LINE ARGS mt train --dist mpi STDERR_MATCHES "--dist mpi")
  endif()
  # Two processes (mpirun) train as one: lm (sum, delta, --carry), retrieval and mt reach the
  # loss of one process within 1e-4; resuming is exact and re-shards to another number of processes.
  find_program(FWP_BASH bash)
  if(FWP_HAVE_MPI AND MPIEXEC_EXECUTABLE AND FWP_BASH)
    set(dist_mt "")
    if(FWP_HAVE_SENTENCEPIECE)
      set(dist_mt mt)
    endif()
    add_test(NAME cli_dist_mpi
             COMMAND ${FWP_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_dist.sh $<TARGET_FILE:fwp_cli>
                     ${MPIEXEC_EXECUTABLE} ${FWP_CLI_WORK}/dist_mpi ${dist_mt})
    # mpirun refuses root without these (CI containers run as root); set for this test only.
    set_tests_properties(cli_dist_mpi PROPERTIES LABELS cli TIMEOUT 600
                         ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
  endif()
  # Ctrl-C (SIGINT) and SIGTERM: exit 130 / 143 after saving the checkpoint; --resume continues exactly.
  find_program(FWP_BASH bash)
  if(FWP_BASH)
    add_test(NAME cli_retrieval_interrupt
             COMMAND ${FWP_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_interrupt.sh $<TARGET_FILE:fwp_cli>
                     ${FWP_CLI_WORK}/retrieval_interrupt)
    set_tests_properties(cli_retrieval_interrupt PROPERTIES LABELS cli TIMEOUT 300)
  endif()
  if(FWP_BASH)
    # 50 runs killed with SIGKILL at random moments (most inside a checkpoint
    # save): the checkpoint always loads, never goes back, and --resume continues.
    add_test(NAME cli_kill9_checkpoint
             COMMAND ${FWP_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_kill9.sh $<TARGET_FILE:fwp_cli>
                     ${FWP_CLI_WORK}/kill9_checkpoint 50)
    set_tests_properties(cli_kill9_checkpoint PROPERTIES LABELS "cli;fault" TIMEOUT 300)
    # An interrupted sweep is completed by rerunning it with --skip-done.
    add_test(NAME cli_retrieval_sweep_resume
             COMMAND ${FWP_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_sweep_resume.sh $<TARGET_FILE:fwp_cli>
                     ${FWP_CLI_WORK}/sweep_resume)
    set_tests_properties(cli_retrieval_sweep_resume PROPERTIES LABELS cli TIMEOUT 300)
  endif()

  find_program(FWP_GNUPLOT gnuplot)
  if(FWP_GNUPLOT)
    # Two values of S with a sweep table and a plot.
    add_test(NAME cli_retrieval_sweep_plot
             COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/retrieval_sweep
                     "-DARGS=retrieval|--keys|4:6:2|--phi|elu|--max-steps|60|--eval-every|30|--threads|1|--json|--sweep-csv|sweep.csv|--plot|sweep.png"
                     -DMAX_STEPS=60 -DRUNS=2 -DSWEEP_CSV=sweep.csv -DPLOT=sweep.png
                     -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_retrieval_run.cmake)
    set_tests_properties(cli_retrieval_sweep_plot PROPERTIES LABELS cli)
  else()
    message(STATUS "gnuplot not found: the test of fwp retrieval --plot is not registered")
  endif()
endif()

if(TARGET fwp_train_driver)
  # The training driver of the tools (tools/train/) with a scripted task.
  file(GLOB FWP_TOOLS_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/tools/*.cpp)
  add_executable(fwp_tools_tests ${FWP_TOOLS_TESTS} ${PROJECT_SOURCE_DIR}/tools/retrieval_sweep.cpp)
  target_link_libraries(fwp_tools_tests PRIVATE fwp_train_driver GTest::gtest GTest::gtest_main)
  fwp_target_defaults(fwp_tools_tests)
  gtest_discover_tests(fwp_tools_tests DISCOVERY_TIMEOUT 60 TEST_PREFIX tools. PROPERTIES LABELS cli)
endif()

if(TARGET example_retrieval)
  # The C example trains a small configuration to a step cap.
  add_test(NAME cli_example_retrieval COMMAND $<TARGET_FILE:example_retrieval> 6 150 3)
  set_tests_properties(cli_example_retrieval PROPERTIES LABELS cli
                       PASS_REGULAR_EXPRESSION "S = 6: final eval loss [0-9.]+, best [0-9.]+ after [0-9]+ steps")
  add_test(NAME cli_example_retrieval_usage COMMAND $<TARGET_FILE:example_retrieval> 1)
  set_tests_properties(cli_example_retrieval_usage PROPERTIES LABELS cli WILL_FAIL ON)
endif()

if(TARGET example_lm)
  # The C language-model example on its generated corpus: it exits 1 unless training lowered the
  # perplexity and the reloaded checkpoint scores the same; the regex checks it reached generation.
  file(MAKE_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/example_lm)
  add_test(NAME cli_example_lm
           COMMAND $<TARGET_FILE:example_lm> --steps 150 --out-dir ${CMAKE_CURRENT_BINARY_DIR}/example_lm)
  set_tests_properties(cli_example_lm PROPERTIES LABELS cli
                       PASS_REGULAR_EXPRESSION "greedy:  the cat [|].*sampled: the cat [|].*saved ")
  add_test(NAME cli_example_lm_usage COMMAND $<TARGET_FILE:example_lm> --steps 0)
  set_tests_properties(cli_example_lm_usage PROPERTIES LABELS cli WILL_FAIL ON)
endif()

if(TARGET fwp_cli)
  # Reliability (issue 10): every output path is checked before step 1. Each run would train for
  # hours if it got that far (a huge step cap, no stopping rule), so the TIMEOUT shows it did not;
  # it exits 2 with one line naming the flag, and --json's stdout stays empty (valid JSON lines).
  set(FWP_CLI_LONG_RUN retrieval|--max-steps|100000000|--target-loss|0|--patience|1000000|--threads|1|--json)
  set(FWP_CLI_BAD_OUTPUTS
      csv_missing_folder "--keys|4:6:2|--csv|missing/evals.csv" "--csv"
      sweep_csv_missing_folder "--keys|4:6:2|--sweep-csv|missing/sweep.csv" "--sweep-csv"
      plot_missing_folder "--keys|4:6:2|--plot|missing/plot.png" "--plot"
      plot_into_a_file "--keys|6|--plot|CMakeCache.txt/plot.png" "--plot"
      checkpoint_missing_folder "--keys|4:6:2|--checkpoint|missing/run.safetensors" "--checkpoint"
      checkpoint_is_a_folder "--keys|6|--checkpoint|." "--checkpoint")
  while(FWP_CLI_BAD_OUTPUTS)
    list(POP_FRONT FWP_CLI_BAD_OUTPUTS name flags flag)
    add_test(NAME cli_output_${name}
             COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> "-DARGS=${FWP_CLI_LONG_RUN}|${flags}"
                     -DEXPECT_EXIT=2 -DONE_LINE_STDERR=ON -DSTDOUT_EMPTY=ON "-DSTDERR_MATCHES=^fwp: error: ${flag} "
                     -DWORKDIR=${CMAKE_CURRENT_BINARY_DIR} -P ${FWP_CLI_CHECK})
    set_tests_properties(cli_output_${name} PROPERTIES LABELS cli TIMEOUT 60)
  endwhile()
  # A checkpoint that is a FIFO, nests deeply or declares a huge header fails at once (exit 1).
  if(FWP_BASH)
    add_test(NAME cli_bad_checkpoint
             COMMAND ${FWP_BASH} ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_bad_checkpoint.sh $<TARGET_FILE:fwp_cli>
                     ${FWP_CLI_WORK}/bad_checkpoint)
    set_tests_properties(cli_bad_checkpoint PROPERTIES LABELS cli TIMEOUT 150)
  endif()
endif()

# Machine translation: `fwp mt score` against sacrebleu's scores (tests/fixtures/mt_metrics.json), and the
# Bible corpus build (scripts/make-bible-corpus.py) is deterministic; skipped, visibly, without the SWORD modules.
if(TARGET fwp_cli AND Python3_Interpreter_FOUND)
  add_test(NAME cli_mt_score
           COMMAND Python3::Interpreter ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_mt_score.py $<TARGET_FILE:fwp_cli>
                   ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/mt_metrics.json ${FWP_CLI_WORK}/mt_score)
  set_tests_properties(cli_mt_score PROPERTIES LABELS cli TIMEOUT 120)
endif()
if(TARGET fwp_cli)
  fwp_cli_test(mt_score_help EXIT 0 ARGS mt score --help STDOUT --hyp --ref --json)
endif()
# `fwp mt prepare`: counts, skipped training pairs, kept valid/test pairs, byte-identical reruns, bad input -> 2.
if(TARGET fwp_cli AND FWP_HAVE_SENTENCEPIECE)
  add_test(NAME cli_mt_prepare
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/mt_prepare
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_mt_prepare.cmake)
  set_tests_properties(cli_mt_prepare PROPERTIES LABELS cli TIMEOUT 300)
  # `fwp mt train` (each attention kind, a delta decoder; --json, --csv, --plot; exact --resume) and
  # `fwp mt translate` (one line per input line, beam and greedy, files, reproducible), bad input -> 2.
  add_test(NAME cli_mt_train
           COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:fwp_cli> -DWORKDIR=${FWP_CLI_WORK}/mt_train
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_mt_train.cmake)
  set_tests_properties(cli_mt_train PROPERTIES LABELS cli TIMEOUT 300)
endif()
add_test(NAME bible_corpus_deterministic
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/check_bible_corpus.sh ${PROJECT_SOURCE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/bible_corpus)
set_tests_properties(bible_corpus_deterministic PROPERTIES LABELS scripts SKIP_RETURN_CODE 77 TIMEOUT 300)
