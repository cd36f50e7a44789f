# End-to-end check of `fwp lm`: prepare a tiny corpus, train a tiny model,
# evaluate it in the three modes, generate, resume exactly, the same with
# adaptive input + softmax (--cutoffs, --div-val, --tie), and refuse bad
# input with exit code 2 (or 1 for a corrupt file) and a one-line message.
#   cmake -DPROGRAM=<fwp> -DWORKDIR=<dir> [-DPHI=elu] [-DRULE=delta] -P check_lm.cmake
cmake_minimum_required(VERSION 3.19)
if(NOT DEFINED PHI)
  set(PHI elu)
endif()
if(NOT DEFINED RULE)
  set(RULE delta)
endif()
file(REMOVE_RECURSE ${WORKDIR})
file(MAKE_DIRECTORY ${WORKDIR})

# A tiny corpus: a few sentences repeated, valid/test from the same words.
set(text "")
foreach(i RANGE 1 60)
  string(APPEND text "the lord is my shepherd ; i shall not want .\n")
  string(APPEND text "he maketh me to lie down in green pastures .\n")
  string(APPEND text "\n")
endforeach()
file(WRITE ${WORKDIR}/train.txt "${text}")
file(WRITE ${WORKDIR}/valid.txt "the lord is my shepherd ; i shall not want .\nhe leadeth me beside the still waters .\n")
file(WRITE ${WORKDIR}/test.txt "he maketh me to lie down in green pastures .\n")

function(run_fwp expect out_var)
  execute_process(COMMAND ${PROGRAM} ${ARGN} WORKING_DIRECTORY ${WORKDIR}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "fwp ${ARGN}\n-> ${rc}\n${out}${err}")
  if(NOT rc EQUAL expect)
    message(FATAL_ERROR "fwp exited with ${rc}, expected ${expect}")
  endif()
  if(NOT expect EQUAL 0)
    string(REGEX REPLACE "\n$" "" trimmed "${err}")
    string(FIND "${trimmed}" "\n" newline)
    if(trimmed STREQUAL "" OR NOT newline EQUAL -1)
      message(FATAL_ERROR "expected one error line on stderr")
    endif()
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

run_fwp(0 prepared lm prepare --train train.txt --valid valid.txt --test test.txt --out data --json)
string(JSON vocab GET "${prepared}" vocab_size)
string(JSON train_tokens GET "${prepared}" train_tokens)
if(vocab LESS 10 OR train_tokens LESS 1000)
  message(FATAL_ERROR "unexpected counts: vocab ${vocab}, train tokens ${train_tokens}")
endif()

set(tiny --data data --preset cpu-small --phi ${PHI} --rule ${RULE} --layers 1 --d-model 16 --heads 2 --d-head 8
         --d-ff 32 --length 8 --batch 2 --dropout 0 --eval-every 20 --seed 3 --threads 1 --lr 0.01 --warmup 5)
run_fwp(0 whole lm train ${tiny} --max-steps 40 --json --quiet --csv whole.csv)
run_fwp(0 first lm train ${tiny} --max-steps 20 --decay-steps 40 --json --quiet --csv split.csv --checkpoint run.ckpt)
run_fwp(0 resumed lm train --resume run.ckpt --max-steps 40 --json --quiet --csv split.csv --threads 1)
foreach(key steps evaluations)
  string(JSON a GET "${whole}" ${key})
  string(JSON b GET "${resumed}" ${key})
  if(NOT a STREQUAL b)
    message(FATAL_ERROR "${key}: ${a} without interruption, ${b} after resuming")
  endif()
endforeach()
# KNOWN BUG (open, issue 12): with the delta rule, an evaluation inside the
# process changes the later training steps at the level of float rounding
# (e.g. final eval loss 2.2420898377895355 with --eval-every 20 against
# 2.242089879512787 with --eval-every 40, same seed; also DPFP with the sum
# rule; elu with the sum rule was unaffected in one trial), so a resumed run (which has not evaluated in its process)
# differs from an uninterrupted one in the 8th digit. Until that is found,
# the resumed loss must agree to 1e-6 relative instead of bit for bit.
string(JSON a GET "${whole}" final_eval_loss)
string(JSON b GET "${resumed}" final_eval_loss)
if(NOT PHI STREQUAL "softmax")
  # CMake has no floating-point arithmetic: compare the first 7 significant digits.
  string(SUBSTRING "${a}" 0 8 a7)
  string(SUBSTRING "${b}" 0 8 b7)
  if(NOT a7 STREQUAL b7)
    message(FATAL_ERROR "final_eval_loss: ${a} without interruption, ${b} after resuming")
  endif()
elseif(NOT a STREQUAL b)
  message(FATAL_ERROR "final_eval_loss: ${a} without interruption, ${b} after resuming (must be bit for bit)")
endif()
foreach(key valid_ppl tokens_per_second steps)
  string(JSON value GET "${whole}" ${key})
  message(STATUS "${key} = ${value}")
endforeach()
string(JSON ppl GET "${whole}" valid_ppl)
if(ppl GREATER_EQUAL vocab)
  message(FATAL_ERROR "valid perplexity ${ppl} is not below the vocabulary size ${vocab}: nothing was learned")
endif()

set(modes segments sliding carry)
if(PHI STREQUAL "softmax")
  # Softmax attention has no fast weights to carry: refused as bad input.
  run_fwp(2 ignored lm eval --data data --checkpoint run.ckpt --split valid --mode carry --json)
  set(modes segments sliding)
endif()
foreach(mode IN LISTS modes)
  run_fwp(0 evaluated lm eval --data data --checkpoint run.ckpt --split valid --mode ${mode} --json)
  string(JSON e_ppl GET "${evaluated}" ppl)
  string(JSON e_tokens GET "${evaluated}" tokens)
  if(e_tokens LESS 10)
    message(FATAL_ERROR "${mode}: only ${e_tokens} tokens scored")
  endif()
endforeach()
run_fwp(0 text1 lm generate --checkpoint run.ckpt --data data --prompt "the lord" --max-tokens 12 --seed 5)
run_fwp(0 text2 lm generate --checkpoint run.ckpt --data data --prompt "the lord" --max-tokens 12 --seed 5)
if(NOT text1 STREQUAL text2)
  message(FATAL_ERROR "generation with the same seed differs:\n${text1}\n${text2}")
endif()

# Adaptive input + adaptive softmax (clusters [0, 5), [5, 12), [12, vocab); div_val 2: widths 16, 8, 4),
# tied: trains, learns, evaluates (every mode), generates; bad cutoffs / div_val are bad input.
run_fwp(0 adaptive lm train ${tiny} --cutoffs 5,12 --div-val 2 --tie --max-steps 40 --json --quiet
        --checkpoint adaptive.ckpt)
string(JSON ppl GET "${adaptive}" valid_ppl)
if(ppl GREATER_EQUAL vocab)
  message(FATAL_ERROR "adaptive softmax: valid perplexity ${ppl} is not below the vocabulary size ${vocab}")
endif()
foreach(mode IN LISTS modes)
  run_fwp(0 evaluated lm eval --data data --checkpoint adaptive.ckpt --split valid --mode ${mode} --json)
endforeach()
run_fwp(0 ignored lm generate --checkpoint adaptive.ckpt --data data --prompt "the lord" --max-tokens 6 --seed 5)
run_fwp(2 ignored lm train ${tiny} --cutoffs 5,5 --max-steps 1)
run_fwp(2 ignored lm train ${tiny} --cutoffs 5,100000 --max-steps 1)
run_fwp(2 ignored lm train ${tiny} --cutoffs 5,12 --div-val 5 --max-steps 1)

# Runs shorter than their warm-up, and a single step, still train.
run_fwp(0 ignored lm train ${tiny} --max-steps 3 --json --quiet)  # warm-up 5 > 3 steps
run_fwp(0 ignored lm train ${tiny} --max-steps 1 --json --quiet)

# Bad input.
run_fwp(2 ignored lm train --data nowhere --max-steps 1)
run_fwp(2 ignored lm train ${tiny} --max-steps 1 --resume run.ckpt)
run_fwp(2 ignored lm eval --data data --checkpoint missing.ckpt)
file(WRITE ${WORKDIR}/empty.txt "")
run_fwp(2 ignored lm prepare --train empty.txt --valid valid.txt --out empty-data)
file(WRITE ${WORKDIR}/other.txt "a b c d e f g h i j k l m n o p q r s t u v w x y z\n")
run_fwp(0 ignored lm prepare --train other.txt --valid other.txt --out other-data)
run_fwp(2 ignored lm eval --data other-data --checkpoint run.ckpt)
run_fwp(2 ignored lm generate --data other-data --checkpoint run.ckpt --prompt a)
run_fwp(2 ignored lm train --data data --d-model 1000000000 --max-steps 1)
