# `fwp mt train` and `fwp mt translate` end to end on a tiny synthetic parallel
# corpus written here and prepared with `fwp mt prepare`: a tiny model of each
# attention kind (and a delta-rule decoder) trains, its --json has the pinned
# fields, --csv its rows and --plot a PNG; --resume continues exactly (the
# same final eval loss and checkpoint tensors as the uninterrupted run);
# translate writes one line per input line (an empty line too) from stdin or
# --input/--output, greedy and by beam, reproducibly, and `fwp mt score`
# reads its output; bad input exits 2 with one line on stderr.
#   cmake -DPROGRAM=<fwp> -DWORKDIR=<dir> -P check_mt_train.cmake
cmake_minimum_required(VERSION 3.19)
file(REMOVE_RECURSE ${WORKDIR})
file(MAKE_DIRECTORY ${WORKDIR}/corpus)

# Sentences built from small word lists, the target a word-by-word "translation" (as check_mt_prepare.cmake).
set(en_words the lord said unto moses and aaron go speak people land water light day night)
set(es_words el senor dijo a moises y aaron ve habla pueblo tierra agua luz dia noche)
list(LENGTH en_words word_count)
function(sentence index length out_en out_es)
  set(en "")
  set(es "")
  foreach(k RANGE 1 ${length})
    math(EXPR w "(${index} * 7 + ${k} * 3 + ${k} * ${index}) % ${word_count}")
    list(GET en_words ${w} e)
    list(GET es_words ${w} s)
    string(APPEND en "${e} ")
    string(APPEND es "${s} ")
  endforeach()
  string(STRIP "${en}" en)
  string(STRIP "${es}" es)
  set(${out_en} "${en}" PARENT_SCOPE)
  set(${out_es} "${es}" PARENT_SCOPE)
endfunction()
# write_split(name first last): pairs first..last of lengths 3..8 into corpus/name.{en,es}.
function(write_split name first last)
  set(en_text "")
  set(es_text "")
  foreach(i RANGE ${first} ${last})
    math(EXPR length "3 + ${i} % 6")
    sentence(${i} ${length} en es)
    string(APPEND en_text "${en}\n")
    string(APPEND es_text "${es}\n")
  endforeach()
  file(WRITE ${WORKDIR}/corpus/${name}.en "${en_text}")
  file(WRITE ${WORKDIR}/corpus/${name}.es "${es_text}")
endfunction()
write_split(train 1 60)
write_split(valid 70 75)
write_split(test 80 82)

# run_fwp(expect out_var args...): runs fwp in WORKDIR; a failure must print exactly one line on stderr.
# INPUT <file> as the first arguments feeds that file on standard input.
function(run_fwp expect out_var)
  set(args ${ARGN})
  set(input /dev/null)
  list(GET args 0 first)
  if(first STREQUAL "INPUT")
    list(GET args 1 input)
    list(REMOVE_AT args 0 1)
  endif()
  execute_process(COMMAND ${PROGRAM} ${args} WORKING_DIRECTORY ${WORKDIR} INPUT_FILE ${input}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "fwp ${args}\n-> ${rc}\n${out}${err}")
  if(NOT rc EQUAL expect)
    message(FATAL_ERROR "fwp exited with ${rc}, expected ${expect}")
  endif()
  if(NOT expect EQUAL 0)
    string(REGEX REPLACE "\n$" "" trimmed "${err}")
    string(FIND "${trimmed}" "\n" newline)
    if(NOT trimmed MATCHES "^fwp: error: " OR NOT newline EQUAL -1)
      message(FATAL_ERROR "expected one error line on stderr")
    endif()
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

function(expect_json json_text path expected)
  string(REPLACE ";" " " shown "${path}")
  string(JSON value GET "${json_text}" ${path})
  if(NOT value STREQUAL "${expected}")
    message(FATAL_ERROR "${shown}: ${value}, expected ${expected}")
  endif()
endfunction()
function(expect_positive json_text path)
  string(JSON type TYPE "${json_text}" ${path})
  string(JSON value GET "${json_text}" ${path})
  if(NOT type STREQUAL "NUMBER" OR NOT value GREATER 0)
    message(FATAL_ERROR "${path}: ${value} (${type}), expected a positive number")
  endif()
endfunction()

# The tensors of a checkpoint (safetensors: an 8-byte little-endian header length, the JSON header,
# the data): the header without its __metadata__ (the run state, with wall-clock seconds) and a hash of
# the data; equal for two checkpoints when every parameter, moment and data/RNG state is bit for bit equal.
function(checkpoint_tensors path out_var)
  file(READ ${path} length_hex LIMIT 8 HEX)
  set(reversed "")
  foreach(i RANGE 7 0 -1)
    math(EXPR at "${i} * 2")
    string(SUBSTRING "${length_hex}" ${at} 2 byte)
    string(APPEND reversed "${byte}")
  endforeach()
  math(EXPR header_length "0x${reversed}")
  file(READ ${path} header OFFSET 8 LIMIT ${header_length})
  string(JSON header REMOVE "${header}" __metadata__)
  math(EXPR data_offset "8 + ${header_length}")
  file(READ ${path} data OFFSET ${data_offset} HEX)
  string(LENGTH "${data}" data_hex_length)
  if(data_hex_length LESS 1000)
    message(FATAL_ERROR "${path}: only ${data_hex_length} hex digits of tensor data")
  endif()
  string(SHA256 data_hash "${data}")
  set(${out_var} "${header}\n${data_hash}" PARENT_SCOPE)
endfunction()

# The evaluation log without its seconds column (the fifth).
function(csv_without_seconds path out_var)
  file(STRINGS ${path} rows)
  set(kept "")
  foreach(row IN LISTS rows)
    string(REGEX REPLACE "^([^,]*,[^,]*,[^,]*,[^,]*),[^,]*," "\\1,," row "${row}")
    string(APPEND kept "${row}\n")
  endforeach()
  set(${out_var} "${kept}" PARENT_SCOPE)
endfunction()

set(vocab 60)
run_fwp(0 prepared mt prepare --corpus corpus --src-lang en --tgt-lang es --out data --vocab-size ${vocab} --json)
expect_json("${prepared}" "valid;pairs" 6)
# Another folder: a tokenizer of another vocabulary, which the models trained on `data` do not fit.
run_fwp(0 ignored mt prepare --corpus corpus --src-lang en --tgt-lang es --out other --vocab-size 50 --quiet)
# ... and one of the same vocabulary size and special ids from another SentencePiece model: only the
# tokenizer's fingerprint in the checkpoint tells it apart.
file(COPY ${WORKDIR}/corpus/ DESTINATION ${WORKDIR}/corpus2)
file(APPEND ${WORKDIR}/corpus2/train.en "unto unto unto aaron aaron aaron speak speak\n")
file(APPEND ${WORKDIR}/corpus2/train.es "habla habla habla aaron aaron aaron moises moises\n")
run_fwp(0 ignored mt prepare --corpus corpus2 --src-lang en --tgt-lang es --out same_size --vocab-size ${vocab}
        --quiet)
file(SHA256 ${WORKDIR}/data/tokenizer.fwptok data_tokenizer)
file(SHA256 ${WORKDIR}/same_size/tokenizer.fwptok same_size_tokenizer)
if(data_tokenizer STREQUAL same_size_tokenizer)
  message(FATAL_ERROR "corpus2 gives the same tokenizer: the folder same_size tests nothing")
endif()
# A data folder moved elsewhere is the same data.
file(COPY ${WORKDIR}/data/ DESTINATION ${WORKDIR}/moved)

# A tiny model; a short warm-up and a high rate so that 10 steps change the parameters visibly.
set(tiny_shape --encoder-layers 1 --decoder-layers 1 --d-model 16 --heads 2 --d-head 8 --d-ff 32
               --max-tokens 64 --eval-every 5 --bleu-sentences 5 --threads 1)
set(tiny ${tiny_shape} --lr 0.01 --warmup 5)
find_program(GNUPLOT gnuplot)
set(kinds "softmax|Transformer" "elu|Linear" "favor|Performer m=16" "dpfp|DPFP nu=1" "delta|Linear delta decoder")
foreach(entry IN LISTS kinds)
  string(REPLACE "|" ";" entry "${entry}")
  list(GET entry 0 kind)
  list(GET entry 1 label)
  if(kind STREQUAL "delta")
    set(model_flags --decoder-rule delta)
  else()
    set(model_flags --attn ${kind})
  endif()
  set(plot_flags "")
  if(GNUPLOT)
    set(plot_flags --plot ${kind}.png)
  endif()
  run_fwp(0 trained mt train --data data ${tiny} ${model_flags} --max-steps 10 --json --quiet --csv ${kind}.csv
          --checkpoint ${kind}.ckpt ${plot_flags})
  expect_json("${trained}" command "mt train")
  expect_json("${trained}" model "${label}")
  expect_json("${trained}" steps 10)
  expect_json("${trained}" evaluations 2)
  expect_json("${trained}" stopped_by max_steps)
  expect_json("${trained}" resumed OFF)
  foreach(path parameters tokens_per_second train_tokens final_eval_loss valid_ppl "metrics;ppl" "metrics;lr")
    expect_positive("${trained}" "${path}")
  endforeach()
  foreach(metric bleu chrf)  # may be 0 after 10 steps, but numbers in [0, 100]
    string(JSON type TYPE "${trained}" metrics ${metric})
    string(JSON value GET "${trained}" metrics ${metric})
    if(NOT type STREQUAL "NUMBER" OR value LESS 0 OR value GREATER 100)
      message(FATAL_ERROR "metrics ${metric}: ${value} (${type})")
    endif()
  endforeach()
  string(JSON ppl GET "${trained}" valid_ppl)
  string(JSON loss GET "${trained}" final_eval_loss)
  if(ppl GREATER_EQUAL vocab)
    message(FATAL_ERROR "${label}: valid perplexity ${ppl} is not below the vocabulary size ${vocab} after 10 steps")
  endif()
  file(STRINGS ${WORKDIR}/${kind}.csv rows)
  list(LENGTH rows row_count)
  list(GET rows 0 header)
  if(NOT row_count EQUAL 3 OR NOT header STREQUAL "model,step,eval_loss,best,seconds,ppl,bleu,chrf,lr")
    message(FATAL_ERROR "${kind}.csv: expected the header and two rows:\n${rows}")
  endif()
  list(GET rows 1 row5)
  list(GET rows 2 row10)
  set(number "[-+0-9.e]+")
  foreach(row_step "${row5}|5" "${row10}|10")
    string(REPLACE "|" ";" row_step "${row_step}")
    list(GET row_step 0 row)
    list(GET row_step 1 step)
    if(NOT row MATCHES "^${label},${step},${number},${number},${number},${number},${number},${number},${number}$")
      message(FATAL_ERROR "${kind}.csv: unexpected row for step ${step}: ${row}")
    endif()
  endforeach()
  if(GNUPLOT)
    file(READ ${WORKDIR}/${kind}.png signature LIMIT 4 HEX)
    if(NOT signature STREQUAL "89504e47")
      message(FATAL_ERROR "--plot did not write a PNG (${signature})")
    endif()
  endif()
endforeach()
if(NOT GNUPLOT)
  message(STATUS "gnuplot not found: --plot is not checked")
endif()

# Exact resume: 10 steps in one go, and 5 then --resume to 10 (dropout on: its RNG stream is saved too;
# FAVOR+ redraws its features each step, another stream).
foreach(kind elu favor)
  run_fwp(0 whole mt train --data data ${tiny} --attn ${kind} --max-steps 10 --json --quiet --csv whole_${kind}.csv
          --checkpoint whole_${kind}.ckpt)
  run_fwp(0 first mt train --data data ${tiny} --attn ${kind} --max-steps 5 --json --quiet --csv split_${kind}.csv
          --checkpoint split_${kind}.ckpt)
  expect_json("${first}" steps 5)
  set(moved_data "")
  if(kind STREQUAL "favor")
    set(moved_data --data moved)  # the same files elsewhere: allowed on --resume
  endif()
  run_fwp(0 resumed mt train --resume split_${kind}.ckpt --max-steps 10 --json --quiet --csv split_${kind}.csv
          --threads 1 ${moved_data})
  expect_json("${resumed}" resumed ON)
  foreach(key final_eval_loss best_eval_loss steps evaluations stopped_by "metrics;bleu" "metrics;chrf" "metrics;lr")
    string(JSON a GET "${whole}" ${key})
    string(JSON b GET "${resumed}" ${key})
    if(NOT a STREQUAL b)
      message(FATAL_ERROR "${kind} ${key}: ${a} without interruption, ${b} after resuming (must be bit for bit)")
    endif()
  endforeach()
  string(JSON a GET "${first}" final_eval_loss)
  string(JSON b GET "${whole}" final_eval_loss)
  if(a STREQUAL b)
    message(FATAL_ERROR "${kind}: the eval loss did not change between steps 5 and 10; the comparison shows nothing")
  endif()
  csv_without_seconds(${WORKDIR}/whole_${kind}.csv whole_rows)
  csv_without_seconds(${WORKDIR}/split_${kind}.csv split_rows)
  if(NOT whole_rows STREQUAL split_rows)
    message(FATAL_ERROR "${kind}: evaluation logs differ:\n${whole_rows}vs\n${split_rows}")
  endif()
  # The resumed run saved to the checkpoint it resumed from.
  checkpoint_tensors(${WORKDIR}/whole_${kind}.ckpt whole_tensors)
  checkpoint_tensors(${WORKDIR}/split_${kind}.ckpt split_tensors)
  if(NOT whole_tensors STREQUAL split_tensors)
    message(FATAL_ERROR "${kind}: the checkpoint after 10 steps differs from the resumed run's")
  endif()
endforeach()
# The first elu run had the same defining flags: the same tensors; another model: others.
checkpoint_tensors(${WORKDIR}/whole_elu.ckpt whole_tensors)
checkpoint_tensors(${WORKDIR}/elu.ckpt rerun_tensors)
checkpoint_tensors(${WORKDIR}/softmax.ckpt softmax_tensors)
if(NOT rerun_tensors STREQUAL whole_tensors)
  message(FATAL_ERROR "two runs with the same flags give different checkpoint tensors")
endif()
if(softmax_tensors STREQUAL whole_tensors)
  message(FATAL_ERROR "two different models give the same checkpoint tensors: checkpoint_tensors() sees nothing")
endif()

# Translation: one output line per input line, an empty line included (it gets an empty translation).
file(READ ${WORKDIR}/data/valid.source.txt valid_source)
string(REGEX REPLACE "\n$" "" valid_source "${valid_source}")
string(REPLACE "\n" ";" valid_lines "${valid_source}")
list(GET valid_lines 0 line1)
list(GET valid_lines 1 line2)
file(WRITE ${WORKDIR}/input.txt "${line1}\n\n${line2}\r\nmoses and aaron")  # CRLF, no final line end
set(shape "^[^\n]+\n\n[^\n]+\n[^\n]+\n$")
foreach(entry IN LISTS kinds)
  string(REPLACE "|" ";" entry "${entry}")
  list(GET entry 0 kind)
  foreach(beam 1 4)
    run_fwp(0 translated INPUT ${WORKDIR}/input.txt mt translate --checkpoint ${kind}.ckpt --data data --beam ${beam}
            --threads 1)
    if(NOT translated MATCHES "${shape}")
      message(FATAL_ERROR "${kind}, beam ${beam}: not one line per input line (the second empty):\n${translated}")
    endif()
    set(${kind}_beam${beam} "${translated}")
  endforeach()
endforeach()
run_fwp(0 again INPUT ${WORKDIR}/input.txt mt translate --checkpoint elu.ckpt --data data --beam 4 --threads 1 --quiet)
if(NOT again STREQUAL elu_beam4)
  message(FATAL_ERROR "translating twice gives different output:\n${elu_beam4}vs\n${again}")
endif()
run_fwp(0 ignored mt translate --checkpoint elu.ckpt --data data --beam 4 --threads 1 --input input.txt
        --output output.txt)
file(READ ${WORKDIR}/output.txt from_file)
if(NOT from_file STREQUAL elu_beam4)
  message(FATAL_ERROR "--input/--output differ from standard input/output:\n${elu_beam4}vs\n${from_file}")
endif()
# Batches of padded sources give what one sentence at a time gives.
run_fwp(0 one_by_one INPUT ${WORKDIR}/input.txt mt translate --checkpoint elu.ckpt --data data --beam 4 --threads 1
        --batch-size 1 --quiet)
if(NOT one_by_one STREQUAL elu_beam4)
  message(FATAL_ERROR "--batch-size 1 gives other translations:\n${elu_beam4}vs\n${one_by_one}")
endif()
run_fwp(0 moved INPUT ${WORKDIR}/input.txt mt translate --checkpoint elu.ckpt --data moved --beam 4 --threads 1 --quiet)
if(NOT moved STREQUAL elu_beam4)
  message(FATAL_ERROR "the moved data folder gives other translations:\n${elu_beam4}vs\n${moved}")
endif()
run_fwp(0 nothing mt translate --checkpoint elu.ckpt --data data --quiet)  # no input line: no output line
if(NOT nothing STREQUAL "")
  message(FATAL_ERROR "no input gave output: ${nothing}")
endif()

# The translation of the valid sources, scored against their references.
run_fwp(0 ignored mt translate --checkpoint elu.ckpt --data data --beam 4 --threads 1 --input data/valid.source.txt
        --output valid.hyp --quiet)
run_fwp(0 scored mt score --hyp valid.hyp --ref data/valid.target.txt --json)
expect_json("${scored}" sentences 6)
expect_json("${scored}" num_refs 1)
foreach(metric bleu chrf)
  string(JSON type TYPE "${scored}" ${metric})
  if(NOT type STREQUAL "NUMBER")
    message(FATAL_ERROR "mt score: ${metric} is ${type}")
  endif()
endforeach()

# A model that learns the word-by-word translation: its greedy BLEU on every valid sentence at the last
# evaluation is what `fwp mt translate --beam 1` and `fwp mt score` give for its checkpoint, exactly.
run_fwp(0 learned mt train --data data --encoder-layers 1 --decoder-layers 1 --d-model 32 --heads 2 --d-head 16
        --d-ff 64 --max-tokens 256 --eval-every 300 --max-steps 300 --bleu-sentences 0 --threads 1 --lr 0.01
        --warmup 20 --dropout 0 --json --quiet --checkpoint learned.ckpt)
run_fwp(0 ignored mt translate --checkpoint learned.ckpt --data data --beam 1 --threads 1 --input data/valid.source.txt
        --output learned.hyp --quiet)
run_fwp(0 rescored mt score --hyp learned.hyp --ref data/valid.target.txt --json)
foreach(metric bleu chrf)
  string(JSON trained_score GET "${learned}" metrics ${metric})
  string(JSON translated_score GET "${rescored}" ${metric})
  if(NOT trained_score STREQUAL translated_score)
    message(FATAL_ERROR "${metric}: ${trained_score} at the last evaluation, ${translated_score} by translate + score")
  endif()
  if(translated_score LESS 30)
    message(FATAL_ERROR "${metric} ${translated_score} after 300 steps: the model learned too little")
  endif()
endforeach()

# Checkpoints of other kinds: a retrieval model and a language model.
run_fwp(0 ignored retrieval --keys 6 --max-steps 1 --threads 1 --quiet --checkpoint retrieval.ckpt)
run_fwp(0 ignored lm prepare --train corpus/train.en --valid corpus/valid.en --out lm_data --quiet)
run_fwp(0 ignored lm train --data lm_data --layers 1 --d-model 16 --heads 2 --d-head 8 --d-ff 32 --length 8 --batch 2
        --max-steps 1 --eval-every 1 --threads 1 --quiet --checkpoint lm.ckpt)

# A loss that becomes NaN ends the run with exit code 1, one line, and stopped_by non_finite in --json.
run_fwp(1 diverged mt train --data data ${tiny_shape} --lr 1e30 --warmup 1 --max-steps 20 --json --quiet)
expect_json("${diverged}" stopped_by non_finite)

# Bad input: exit code 2 and one line.
string(ASCII 255 invalid_byte)
file(WRITE ${WORKDIR}/invalid.txt "${line1}\nthe ${invalid_byte}lord\n")
run_fwp(2 ignored mt train --max-steps 1)                                     # no --data
run_fwp(2 ignored mt train ${tiny} --data nowhere --max-steps 1)              # not a folder
run_fwp(2 ignored mt train ${tiny} --data corpus --max-steps 1)               # not a prepared folder
run_fwp(2 ignored mt train --data data ${tiny} --plot curve.png --max-steps 1)  # --plot without --csv
run_fwp(2 ignored mt train --data data ${tiny} --attn relu --max-steps 1)
run_fwp(2 ignored mt train --data data ${tiny} --attn elu --encoder-attn dpfp --max-steps 1)
run_fwp(2 ignored mt train --data data ${tiny} --attn softmax --decoder-rule delta --max-steps 1)
run_fwp(2 ignored mt train --data data ${tiny} --decoder-attn softmax --decoder-rule delta --max-steps 1)
run_fwp(2 ignored mt train --resume split_elu.ckpt --lr 0.5 --max-steps 20)   # a defining flag
run_fwp(2 ignored mt train --resume split_elu.ckpt --d-model 32 --max-steps 20)
run_fwp(2 ignored mt train --resume split_elu.ckpt --attn dpfp --max-steps 20)
run_fwp(2 ignored mt train --resume split_elu.ckpt --data other --max-steps 20)  # another tokenizer
run_fwp(2 ignored mt train --resume split_elu.ckpt --data same_size --max-steps 20)
run_fwp(2 ignored mt train --resume missing.ckpt --max-steps 20)
set(translate mt translate --checkpoint elu.ckpt --data data)
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt mt translate --checkpoint missing.ckpt --data data)
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt mt translate --checkpoint retrieval.ckpt --data data)
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt mt translate --checkpoint lm.ckpt --data data)
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt mt translate --checkpoint elu.ckpt --data other)
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt mt translate --checkpoint elu.ckpt --data same_size)
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt mt translate --checkpoint elu.ckpt --data nowhere)
run_fwp(2 ignored INPUT ${WORKDIR}/invalid.txt ${translate})
run_fwp(2 ignored ${translate} --input invalid.txt)
run_fwp(2 ignored ${translate} --input missing.txt)
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt ${translate} --output missing/out.txt)
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt ${translate} --beam 0)
string(REPEAT "lord " 1100 long_line)
file(WRITE ${WORKDIR}/long.txt "${line1}\n${long_line}\n")
run_fwp(2 ignored INPUT ${WORKDIR}/long.txt ${translate})  # over the longest source translated
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt ${translate} --max-len-a 0 --max-len-b 0.5)  # no output token
string(REPEAT "lord " 250 long_line)  # about 1000 tokens: a * n + b over the library's most
file(WRITE ${WORKDIR}/long.txt "${long_line}\n")
run_fwp(2 ignored INPUT ${WORKDIR}/long.txt ${translate} --max-len-a 1000 --max-len-b 100000)
run_fwp(0 ignored INPUT ${WORKDIR}/input.txt ${translate} --max-len-a 0 --max-len-b 1 --quiet)  # the least
run_fwp(2 ignored INPUT ${WORKDIR}/input.txt mt translate --data data)  # no --checkpoint
if(EXISTS ${WORKDIR}/missing)
  message(FATAL_ERROR "a refused --output created its folder")
endif()
